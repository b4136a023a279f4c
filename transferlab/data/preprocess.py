"""Stage `preprocess`: decode every raw image, drop and report bad ones, resize, split, write shards + manifest."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from transferlab.core.errors import DataError
from transferlab.core.progress import with_progress
from transferlab.core.resources import capped_workers
from transferlab.data.images import UndecodableImage, decode_for, encode_jpeg, resize
from transferlab.core.params import DataParams
from transferlab.data.raw_layout import NOT_UTF8_FILE, RawImage, list_raw_images, printable_name, read_source_info
from transferlab.data.prepared import CLASSES, DATA_REPORT, MANIFEST, ShardWriter
from transferlab.data.splits import SPLITS, assign_splits


@dataclass(frozen=True)
class Decoded:
    """What a worker returns for one file: the resized JPEG, or the reason there is none."""

    sha256: str
    jpeg: bytes | None
    reason: str | None
    width: int = 0
    height: int = 0


def process_file(path: str, size: int, mode: str, quality: int) -> Decoded:
    """Hash, decode, resize and re-encode one file (runs in worker processes)."""
    data = Path(path).read_bytes()
    sha = hashlib.sha256(data).hexdigest()
    try:
        image = decode_for(data, size)
    except UndecodableImage as exc:
        return Decoded(sha, None, str(exc))
    width, height = image.size
    return Decoded(sha, encode_jpeg(resize(image, size, mode), quality), None, width, height)


def _process_star(args: tuple) -> Decoded:
    return process_file(*args)


CHUNK = 8  # files a decode worker takes at a time: more workers than chunks would start idle
# A spawned decode worker's peak: about 0.1 GB of interpreter, NumPy, pandas and Pillow, plus one photo at the
# decode guard's size (JPEGs decode at a reduced scale; a 50-megapixel PNG is 0.15 GB of RGB).
DECODE_WORKER_BYTES = 0.3e9


def _decoded_stream(items: list[RawImage], cfg: DataParams):
    """Decoded results in item order; a spawn pool keeps TensorFlow out of the workers."""
    jobs = [(str(item.path), cfg.image_size, cfg.resize, cfg.jpeg_quality) for item in items]
    if len(jobs) < 32:
        yield from map(_process_star, jobs)
        return
    workers = min(capped_workers(cfg.num_workers, "data.num_workers", DECODE_WORKER_BYTES), -(-len(jobs) // CHUNK))
    if workers == 1:
        yield from map(_process_star, jobs)
        return
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        yield from pool.imap(_process_star, jobs, chunksize=CHUNK)


def _write_order(items: list[RawImage], seed: int) -> list[RawImage]:
    # Shuffled once, deterministically, so every shard mixes classes (fine-tune streams shards).
    order = np.random.default_rng(seed).permutation(len(items))
    return [items[index] for index in order]


def prepare_dataset(raw_dir: Path, out_dir: Path, cfg: DataParams, seed: int, progress: bool = True) -> dict:
    """Write shards, manifest.csv, classes.json and data_report.json into out_dir; return the report."""
    items = list_raw_images(raw_dir)
    if not items:
        raise DataError(f"{raw_dir}: no image files found (check data.source and its settings)")
    source = read_source_info(raw_dir)
    class_names = sorted({item.class_name for item in items})
    label_of = {name: index for index, name in enumerate(class_names)}
    split_of = assign_splits(items, cfg.val_fraction, cfg.test_fraction, seed)
    writers = {split: ShardWriter(out_dir, split, cfg.shard_size) for split in SPLITS}
    rows, skipped = [], []
    ordered = _write_order(items, seed)
    try:
        stream = _decoded_stream(ordered, cfg)
        pairs = zip(ordered, stream)
        for item, result in with_progress(pairs, len(ordered), "preprocess: images") if progress else pairs:
            if (shown := printable_name(item.relative)) is not None:  # a raw folder filled by hand
                skipped.append({"file": shown, "reason": NOT_UTF8_FILE})
                continue
            if result.jpeg is None:
                skipped.append({"file": item.relative, "reason": result.reason})
                continue
            split = split_of[item.relative]
            shard = writers[split].write(result.jpeg, label_of[item.class_name], item.relative)
            rows.append({"path": item.relative, "label": label_of[item.class_name], "class_name": item.class_name,
                         "split": split, "source_split": item.source_split, "sha256": result.sha256,
                         "width": result.width, "height": result.height, "shard": shard})
    finally:
        for writer in writers.values():
            writer.close()
    if not rows:
        raise DataError(f"{raw_dir}: none of the {len(items)} files could be decoded as an image")
    manifest = pd.DataFrame(rows).sort_values("path", kind="stable").reset_index(drop=True)
    manifest.to_csv(out_dir / MANIFEST, index=False)
    classes = [{"index": label_of[name], "name": name, "species": source.species.get(name)} for name in class_names]
    (out_dir / CLASSES).write_text(json.dumps(classes, indent=2), encoding="utf-8")
    report = build_report(manifest, skipped, source.left_out, class_names, cfg, source.description)
    (out_dir / DATA_REPORT).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return report


def build_report(manifest: pd.DataFrame, skipped: list[dict], left_out: list[dict], class_names: list[str],
                 cfg: DataParams, description: str) -> dict:
    counts = {split: {name: 0 for name in class_names} for split in SPLITS}
    for (split, name), count in manifest.groupby(["split", "class_name"]).size().items():
        counts[split][name] = int(count)
    warnings = [f"class {name!r} has no {split} images" for split in SPLITS for name in class_names
                if counts[split][name] == 0]
    duplicates = duplicate_images(manifest)
    for kind in ("across_classes", "across_splits"):
        if duplicates[kind]:
            where = "classes (conflicting labels)" if kind == "across_classes" else "splits (test images seen in training)"
            warnings.append(f"{len(duplicates[kind])} images appear byte for byte in two {where}, e.g. "
                            f"{' = '.join(duplicates[kind][0])}; see duplicates in data_report.json")
    return {
        "source": description,
        "image_size": cfg.image_size,
        "num_classes": len(class_names),
        "classes": class_names,
        "totals": {split: sum(counts[split].values()) for split in SPLITS},
        "counts": counts,
        "num_images": int(len(manifest)),
        "num_skipped": len(skipped),
        "skipped_by_reason": dict(Counter(_reason_kind(entry["reason"]) for entry in skipped)),
        "skipped": skipped,
        "num_left_out": len(left_out),
        "left_out": left_out,
        "duplicates": duplicates,
        "warnings": warnings,
    }


def duplicate_images(manifest: pd.DataFrame) -> dict[str, list[list[str]]]:
    """Files with the same bytes in more than one class or split, as lists of their paths.

    They are kept (the data is the user's; dropping one copy would hide which label is wrong) and reported."""
    found: dict[str, list[list[str]]] = {"across_classes": [], "across_splits": []}
    for _, group in manifest[manifest.duplicated("sha256", keep=False)].groupby("sha256", sort=False):
        paths = sorted(group["path"])
        if group["class_name"].nunique() > 1:
            found["across_classes"].append(paths)
        if group["split"].nunique() > 1:
            found["across_splits"].append(paths)
    return {kind: sorted(groups) for kind, groups in found.items()}


def _reason_kind(reason: str) -> str:
    return reason.split(":")[0]
