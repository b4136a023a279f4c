"""`transferlab drift FOLDER`: embed new images with the pipeline's backbone, compare them with the training
split's cached bottleneck features (quality/drift.py), write drift.json and report.md, log an MLflow run."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from transferlab.core.errors import DataError
from transferlab.core.output_folder import check_output_folder, write_outputs
from transferlab.core.params import Params
from transferlab.core.progress import with_progress
from transferlab.core.wording import plural
from transferlab.quality.drift import DriftResult, compare

log = logging.getLogger("transferlab.drift")

MIN_IMAGES = 10  # fewer leave the classifier's 5 folds with a single image of each set
DRIFT_JSON, REPORT_MD = "drift.json", "report.md"
# What makes a cached feature vector comparable with one computed now; the data's manifest, the graph form and
# the library versions change features by rounding at most, so a mismatch there is no reason to refuse.
EMBEDDING_KEYS = ("backbone", "alpha", "weights", "input_size", "preprocess", "pooling", "init_seed")


class FolderError(DataError):
    """The folder given to `transferlab drift` holds too few usable images: a bad argument, exit 2."""

    exit_code = 2


@dataclass(frozen=True)
class Embedded:
    features: np.ndarray  # one row per decodable file, in the order of `files`
    files: list[Path]
    errors: dict[Path, str]  # each file that could not be decoded, with the reason


def _stored_as_prepared(batches, quality: int, size: int):
    """Each image of the pixel batches as the training images reached the backbone: stored by preprocess as a
    JPEG at `quality` (`encode_jpeg`), decoded by TensorFlow as extraction decodes it. Without this round trip
    the classifier learns the JPEG artefacts: cats-vs-dogs halves read as drift (bench/drift_assets.py)."""
    import tensorflow as tf
    from PIL import Image

    from transferlab.data.images import encode_jpeg

    def encode(batch: np.ndarray) -> np.ndarray:
        return np.array([encode_jpeg(Image.fromarray(image), quality) for image in batch.astype(np.uint8)], object)

    def round_trip(batch):
        jpegs = tf.numpy_function(encode, [batch], tf.string, stateful=False)
        decoded = tf.map_fn(lambda jpeg: tf.io.decode_jpeg(jpeg, channels=3), jpegs, fn_output_signature=tf.uint8)
        return tf.cast(tf.ensure_shape(decoded, [None, size, size, 3]), tf.float32)

    return batches.map(round_trip, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)


def embed_files(paths: list[Path], params: Params, root: Path, seed: int, backbone: str | None = None,
                stored_as_prepared: bool = True) -> Embedded:
    """Features of image files as the pipeline computes them for its training images: decoded and resized as
    preprocess does (`decoded_batches`), stored as JPEG and decoded again (unless `stored_as_prepared` is
    False), through the backbone of `params` (or `backbone`, one of compare.backbones), rounded to the cache's
    dtype. Files that do not decode are left out and listed in `errors`."""
    import tensorflow as tf

    from transferlab.evaluation.predict import decoded_batches
    from transferlab.modeling.assembly import feature_extractor

    cfg = params.backbone_named(backbone or params.backbone.name)
    size = params.data.image_size
    errors: dict[int, str] = {}
    batches = decoded_batches(paths, size, params.data.resize, cfg.batch_size, errors, params.data.max_image_scale)
    if stored_as_prepared:
        batches = _stored_as_prepared(batches, params.data.jpeg_quality, size)
    extractor = feature_extractor(cfg, size, root, seed)
    # one trace for every batch size (the last batch is short): eager calls would be several times slower
    forward = tf.function(lambda images: extractor(images, training=False),
                          input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)])
    total = math.ceil(len(paths) / cfg.batch_size)
    parts = [forward(batch).numpy() for batch in with_progress(batches, total, f"drift: {plural(len(paths), 'image')}")]
    features = np.concatenate(parts) if parts else np.zeros((0, extractor.output_shape[-1]), np.float32)
    # the cache holds features rounded to backbone.dtype: round alike, so rounding is no difference between sets
    features = features.astype(cfg.dtype).astype(np.float32)
    kept = [index for index in range(len(paths)) if index not in errors]
    return Embedded(features[kept], [paths[index] for index in kept],
                    {paths[index]: errors[index] for index in sorted(errors)})


def _features_dir(params: Params, root: Path) -> Path:
    return root / params.paths.features_of(params.backbone.name)


def training_features(params: Params, root: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The training split's cached features and the cache's meta.json."""
    from transferlab.modeling.features import META, load_split, read_meta

    folder, name = _features_dir(params, root), params.backbone.name
    rerun = f"run the pipeline first (dvc repro extract_features@{name})"
    if not (folder / META).is_file():
        raise DataError(f"{folder}: no cached features of the training images; {rerun}")
    train = load_split(folder, "train")
    if len(train.features) == 0:
        raise DataError(f"{folder}: holds no features of the training split; {rerun}")
    return train.features.astype(np.float32), read_meta(folder)


def check_same_embedding(meta: dict[str, Any], params: Params, root: Path, seed: int) -> None:
    """The cache was computed by the backbone that will embed the new images; otherwise the comparison would
    measure the change of network, not of data."""
    from transferlab.core.backbones import weights_identity
    from transferlab.modeling.features import cache_components

    cfg, folder = params.backbone_named(params.backbone.name), _features_dir(params, root)
    now = cache_components(cfg, params.data.image_size, "", weights_identity(cfg.weights, root), seed)
    cached = meta.get("components", {})
    for key in EMBEDDING_KEYS:
        if cached.get(key) != now[key]:
            raise DataError(f"{folder}: its features were computed with {key} {cached.get(key)!r}, params.yaml now "
                            f"gives {now[key]!r}; run `dvc repro extract_features@{cfg.name}` first")


def image_files(folder: Path) -> tuple[list[Path], list[dict[str, str]]]:
    """The image files under `folder` (recursively), at least MIN_IMAGES of them, and what was left out unopened
    (a FIFO, device or socket named like an image), for the report."""
    from transferlab.evaluation.predict import expand_inputs

    if not folder.is_dir():
        raise FolderError(f"{folder}: not a folder")
    paths, left_out = expand_inputs([str(folder)])
    if len(paths) < MIN_IMAGES:
        raise FolderError(f"{folder}: holds {plural(len(paths), 'image file')}; drift needs at least {MIN_IMAGES}")
    return paths, left_out


def _record(result: DriftResult, folder: Path, backbone: str, embedded: Embedded, files: int) -> dict[str, Any]:
    return {**result.as_record(), "folder": str(folder.resolve()), "backbone": backbone,
            "counts": {"training": result.reference_count, "new": result.current_count, "image_files": files,
                       "undecodable": len(embedded.errors)},
            "undecodable": [{"file": str(path), "error": reason} for path, reason in embedded.errors.items()]}


def _markdown(record: dict[str, Any]) -> str:
    import pandas as pd

    from transferlab.core.report_pages import to_markdown

    decision = {True: "drift", False: "no drift"}
    table = pd.DataFrame([
        {"test": "domain classifier (ROC AUC, out of fold)", "value": record["auc"],
         "drift when": f"> {record['auc_threshold']:.3g}", "says": decision[record["drifted"]]},
        {"test": "MMD² (RBF kernel), permutation p-value", "value": record["p_value"],
         "drift when": f"< {record['alpha']}", "says": decision[record["mmd_drifted"]]},
    ])
    counts = record["counts"]
    facts = [f"folder: {record['folder']}", f"backbone: {record['backbone']}",
             f"images: {counts['new']} new (of {plural(counts['image_files'], 'file')}, {counts['undecodable']} "
             f"undecodable) "
             f"vs {counts['training']} training", f"MMD²: {record['mmd']:.4g}"]
    return to_markdown("Drift report", [("Verdict", [("text", record["verdict"]), ("table", table), ("list", facts)])])


def write_report(out_dir: Path, record: dict[str, Any], owned: bool = False) -> None:
    """drift.json and report.md into `out_dir`, which is written into, never replaced (it may be the user's)."""
    write_outputs(out_dir, {DRIFT_JSON: json.dumps(record, indent=2) + "\n", REPORT_MD: _markdown(record)},
                  "transferlab drift", owned)


def _warn_undecodable(embedded: Embedded, files: int) -> None:
    if embedded.errors:
        path, reason = next(iter(embedded.errors.items()))
        log.warning("drift: %d of %d image files could not be decoded and were left out (first: %s: %s)",
                    len(embedded.errors), files, path, reason)


def default_out_dir(params: Params, root: Path) -> Path:
    return root / params.paths.reports / "drift"


def report_dir(out: Path | None, folder: Path, params: Params, root: Path) -> Path:
    """Where the report goes, checked before any work: `out` when it is new, empty or an earlier report's, else
    `<paths.reports>/drift` (the project's own folder); never the images' folder or one that holds it."""
    default = default_out_dir(params, root)
    chosen = out or default
    check_output_folder(chosen, [folder], owned=_is_default(chosen, default))
    return chosen


def _is_default(out: Path, default: Path) -> bool:
    return Path(out).resolve() == default.resolve()


def tracked_metrics(result: DriftResult) -> dict[str, float]:
    """The figures the command's MLflow run records."""
    return {"drift_auc": result.auc, "drift_mmd": result.mmd, "drift_p_value": result.p_value,
            "drifted": float(result.drifted)}


@dataclass(frozen=True)
class DriftInputs:
    folder: Path
    paths: list[Path]  # its image files
    reference: np.ndarray  # the training split's cached features
    left_out: list[dict[str, str]] = field(default_factory=list)  # special files, never opened


def checked_inputs(folder: Path, params: Params, root: Path) -> DriftInputs:
    """What a drift check needs, each checked in seconds, before any embedding (and before the caller's MLflow
    run, so that a bad argument is one line and no run)."""
    paths, left_out = image_files(folder)  # the cheapest check first: the argument itself
    reference, meta = training_features(params, root)
    check_same_embedding(meta, params, root, params.base.seed)
    return DriftInputs(folder, paths, reference, left_out)


def measure_drift(inputs: DriftInputs, params: Params, root: Path, out_dir: Path | None = None) -> DriftResult:
    """Embed the new images, compare them with the training split, write drift.json and report.md into
    `out_dir` (default `<paths.reports>/drift`)."""
    folder, paths, reference, name = inputs.folder, inputs.paths, inputs.reference, params.backbone.name
    embedded = embed_files(paths, params, root, params.base.seed)
    _warn_undecodable(embedded, len(paths))
    if len(embedded.files) < MIN_IMAGES:
        raise FolderError(f"{folder}: only {len(embedded.files)} of {len(paths)} image files could be decoded; "
                          f"drift needs at least {MIN_IMAGES}")
    if embedded.features.shape[1] != reference.shape[1]:
        raise DataError(f"{_features_dir(params, root)}: its features are {reference.shape[1]} wide, the backbone "
                        f"gives {embedded.features.shape[1]}; run `dvc repro extract_features@{name}` first")
    result = compare(reference, embedded.features, params.base.seed)
    record = {**_record(result, folder, name, embedded, len(paths)), "left_out": inputs.left_out}
    default = default_out_dir(params, root)
    out_dir = out_dir or default
    write_report(out_dir, record, owned=_is_default(out_dir, default))
    return result


def run_drift(folder: Path, params: Params, root: Path, out_dir: Path | None = None) -> DriftResult:
    """The whole check without MLflow, which is the caller's (`transferlab drift`: this package sits below
    `tracking`)."""
    inputs = checked_inputs(folder, params, root)
    return measure_drift(inputs, params, root, report_dir(out_dir, folder, params, root))
