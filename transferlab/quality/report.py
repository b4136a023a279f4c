"""The data report: class balance, image sizes, near-duplicates and train-test leakage, likely label errors and
outliers, all found on the cached bottleneck features; its figures, its sections and its gate."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from transferlab.core.errors import DataError
from transferlab.core.wording import plural
from transferlab.quality.copies import copies_of
from transferlab.quality.figures import plot_gallery, plot_pairs
from transferlab.quality.label_issues import out_of_fold_probabilities, rank_label_issues
from transferlab.quality.neighbours import Calibration, Whitening, calibrate, leakage, near_duplicate_pairs
from transferlab.quality.outliers import outlier_scores

SHOWN = 12  # rows and thumbnails per finding
CALIBRATION_IMAGES = 48  # training images copied four ways each: 192 copies set the near-duplicate threshold


@dataclass(frozen=True)
class Pooled:
    """Every split's features in one array, with each row's label, key (the image's path) and split."""

    features: np.ndarray
    labels: np.ndarray
    keys: np.ndarray
    splits: np.ndarray


def pooled(splits: dict) -> Pooled:
    present = [(name, part) for name, part in splits.items() if len(part.labels)]
    return Pooled(np.concatenate([part.features for _, part in present]).astype(np.float64),
                  np.concatenate([part.labels for _, part in present]),
                  np.concatenate([part.keys for _, part in present]).astype(str),
                  np.concatenate([np.full(len(part.labels), name) for name, part in present]))


def calibration_on(embed: Callable[[np.ndarray], np.ndarray], pixels: np.ndarray, whitening: Whitening,
                   everything: np.ndarray) -> Calibration:
    """Embed `pixels` (uint8 images) and their copies, and calibrate the near-duplicate threshold on them;
    `everything` holds the whitened unit rows of the whole data set."""
    variants = [copies_of(image) for image in pixels]
    copies = [embed(np.stack([v[k] for v in variants]).astype(np.float32)) for k in range(len(variants[0]))]
    originals = whitening.unit(embed(pixels.astype(np.float32)))
    return calibrate(originals, np.stack([whitening.unit(c) for c in copies]), everything)


@dataclass
class DataQuality:
    balance: pd.DataFrame
    sizes: pd.DataFrame
    calibration: Calibration
    pairs: pd.DataFrame
    leakage: dict
    label_issues: pd.DataFrame | None
    outliers: pd.DataFrame


def analyse(data: Pooled, manifest: pd.DataFrame, names: list[str], whitening: Whitening, calibration: Calibration,
            c: float | None, seed: int) -> DataQuality:
    train = data.splits == "train"
    pairs = near_duplicate_pairs(whitening.unit(data.features), data.keys, data.splits, calibration.threshold)
    probabilities = out_of_fold_probabilities(data.features, data.labels, c or 1.0, seed)
    issues = None if probabilities is None else rank_label_issues(data.labels, probabilities, data.keys, names)
    outliers = outlier_scores(data.features, data.labels, data.keys, data.features[train], data.labels[train])
    outliers["label"] = [names[i] for i in outliers.label]
    outliers["nearest_class"] = [names[i] for i in outliers.nearest_class]
    return DataQuality(class_balance(manifest), size_statistics(manifest), calibration, pairs,
                       leakage(pairs, data.splits), issues, outliers)


def class_balance(manifest: pd.DataFrame) -> pd.DataFrame:
    table = manifest.pivot_table(index="class_name", columns="split", values="path", aggfunc="count", fill_value=0)
    table = table.reindex(columns=[s for s in ("train", "validation", "test") if s in table.columns])
    table["share"] = (table.sum(axis=1) / table.values.sum()).round(4)
    table.columns.name = None  # else rendered as an empty column headed "split"
    return table.reset_index().rename(columns={"class_name": "class"})


def size_statistics(manifest: pd.DataFrame) -> pd.DataFrame:
    """Original width and height by file type (the suffix), with counts."""
    typed = manifest.assign(type=manifest.path.str.rsplit(".", n=1).str[-1].str.lower())
    grouped = typed.groupby("type")
    return pd.DataFrame({"images": grouped.size(), "width_median": grouped.width.median(),
                         "height_median": grouped.height.median(), "width_min": grouped.width.min(),
                         "height_min": grouped.height.min(), "width_max": grouped.width.max(),
                         "height_max": grouped.height.max()}).reset_index()


def data_metrics(quality: DataQuality) -> dict:
    """The compact figures of metrics/data.json."""
    pairs = quality.pairs
    flagged = int(quality.label_issues.flagged.sum()) if quality.label_issues is not None else None
    counts = quality.balance.drop(columns="share").set_index("class").sum(axis=1)
    return {"images": int(counts.sum()), "classes": int(len(counts)),
            "class_imbalance": round(float(counts.max() / max(counts.min(), 1)), 3),
            "near_duplicate_threshold": round(quality.calibration.threshold, 4),
            "near_duplicate_pairs": int(len(pairs)),
            "near_duplicate_pairs_across_splits": int((pairs.split_a != pairs.split_b).sum()),
            "test_images_leaked_from_train": quality.leakage["images"],
            "test_leakage_fraction": round(quality.leakage["fraction"], 4),
            "likely_label_errors": flagged,
            "outliers": int((quality.outliers.distance > 2).sum())}


def check_gate(quality: DataQuality, gate: float | None, report: str) -> None:
    """data.gate: stop the pipeline when more of the test split than this has a near-duplicate in training."""
    fraction = quality.leakage["fraction"]
    if gate is not None and fraction > gate:
        raise DataError(f"data.gate: {quality.leakage['images']} of {quality.leakage['of']} test images "
                        f"({fraction:.1%}) have a near-duplicate in train, above {gate:.1%}; see {report}")


def sections(quality: DataQuality, pixels_of: Callable[[set[str]], dict[str, np.ndarray]], images_dir: Path,
             preprocess_report: dict) -> list:
    """The report's sections; writes its thumbnail sheets into images_dir."""
    shown_pairs = quality.pairs.head(SHOWN)
    shown_issues = quality.label_issues[quality.label_issues.flagged].head(SHOWN) \
        if quality.label_issues is not None else None
    shown_outliers = quality.outliers.head(SHOWN // 2)
    wanted = set(shown_pairs.a) | set(shown_pairs.b) | set(shown_outliers.file)
    wanted |= set(shown_issues.file) if shown_issues is not None else set()
    pixels = pixels_of(wanted)
    return [_overview(quality, preprocess_report), _duplicates(quality, shown_pairs, pixels, images_dir),
            _label_errors(shown_issues, pixels, images_dir), _outliers(shown_outliers, pixels, images_dir)]


def _overview(quality: DataQuality, preprocess_report: dict) -> tuple:
    skipped, left_out = preprocess_report.get("num_skipped", 0), preprocess_report.get("num_left_out", 0)
    return ("Classes and images", [
        ("text", f"{plural(int(quality.balance.drop(columns='share').select_dtypes('number').values.sum()), 'image')}"
                 f" in {plural(len(quality.balance), 'class')}; {plural(skipped, 'file')} could not be decoded and "
                 f"{left_out} left out by the source (each with its reason in data/prepared/skipped.csv and "
                 f"left_out.csv)."),
        ("table", quality.balance), ("table", quality.sizes)])


def _duplicates(quality: DataQuality, shown: pd.DataFrame, pixels: dict, images_dir: Path) -> tuple:
    summary = quality.calibration.summary()
    blocks = [("text", f"Cosine similarity of the embeddings, PCA-whitened on the training split; threshold {summary['threshold']:.3f}, the "
                       f"similarity {1 - quality.calibration.quantile:.0%} of {summary['copies']} mirrored, resized "
                       f"and re-encoded copies of training images reach (median {summary['copy_similarity_median']:.3f}"
                       f"), while each of those images' nearest other image has a median of "
                       f"{summary['distinct_similarity_median']:.3f}."),
              ("text", f"{len(quality.pairs)} near-duplicate pairs, "
                       f"{int((quality.pairs.split_a != quality.pairs.split_b).sum())} across splits; "
                       f"{quality.leakage['images']} of {quality.leakage['of']} test images "
                       f"({quality.leakage['fraction']:.1%}) have a near-duplicate in train.")]
    if len(shown):
        blocks.append(("table", shown))
        sheet = [(pixels[a], pixels[b], f"{a} ({sa})\n{b} ({sb})\ncosine {s:.3f}")
                 for a, b, sa, sb, s in shown.itertuples(index=False) if a in pixels and b in pixels]
        plot_pairs(sheet, images_dir / "near_duplicates.png")
        blocks.append(("image", "near-duplicate pairs", "images/near_duplicates.png"))
    return "Near-duplicates and train-test leakage", blocks


def _label_errors(shown: pd.DataFrame | None, pixels: dict, images_dir: Path) -> tuple:
    if shown is None:
        return "Likely label errors", [("text", "Not checked: some class has fewer than two images.")]
    blocks = [("text", "cleanlab's find_label_issues on out-of-fold probabilities of the linear probe (every split "
                       "pooled, each image scored by a probe that never saw it); the lowest label quality first.")]
    if len(shown):
        blocks.append(("table", shown.drop(columns="flagged")))
        plot_gallery([pixels[f] for f in shown.file], [f"{f.split('/')[-1]}\ngiven {g}\nsuggested {s}"
                                                       for f, g, s in zip(shown.file, shown.given, shown.suggested)],
                     images_dir / "label_issues.png")
        blocks.append(("image", "likely label errors", "images/label_issues.png"))
    else:
        blocks.append(("text", "None flagged."))
    return "Likely label errors", blocks


def _outliers(shown: pd.DataFrame, pixels: dict, images_dir: Path) -> tuple:
    plot_gallery([pixels[f] for f in shown.file], [f"{f.split('/')[-1]}\n{label}, {d:.1f}x"
                                                   for f, label, d in zip(shown.file, shown.label, shown.distance)],
                 images_dir / "outliers.png")
    return "Outliers", [("text", "Distance to the nearest class centre of the training split, in units of that "
                                 "class's median distance: above about 2, an image resembles no class."),
                        ("table", shown), ("image", "outliers", "images/outliers.png")]
