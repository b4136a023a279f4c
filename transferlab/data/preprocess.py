"""Stage `preprocess`: decode every raw image, drop and report bad ones, resize, split, write shards + manifest."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from transferlab.core.child_processes import ctrl_c_ignored_while_starting_children, end_with
from transferlab.core.errors import DataError
from transferlab.core.progress import with_progress
from transferlab.core.resources import capped_workers
from transferlab.core.wording import plural
from transferlab.data.images import DEFAULT_MAX_SCALE, UndecodableImage, decode_for, encode_jpeg, resize
from transferlab.core.params import DataParams
from transferlab.data.raw_layout import (LEFT_OUT_FILE, NOT_UTF8_FILE, SHOWN, RawImage, SourceInfo, list_raw_images,
                                         printable_name, read_source_info)
from transferlab.data.prepared import CLASSES, DATA_REPORT, LEFT_OUT, MANIFEST, SKIPPED, ShardWriter
from transferlab.data.splits import SPLITS, assign_splits


@dataclass(frozen=True)
class Decoded:
    """What a worker returns for one file: the resized JPEG, or the reason there is none."""

    sha256: str
    jpeg: bytes | None
    reason: str | None
    width: int = 0
    height: int = 0


def process_file(path: str, size: int, mode: str, quality: int, max_scale: int = DEFAULT_MAX_SCALE) -> Decoded:
    """Decode, resize, re-encode and hash one file (runs in worker processes). The file is read from disk as
    the decoder needs it, so a huge or bogus file is answered from its header, never held in memory whole."""
    with open(path, "rb") as file:
        try:
            image = decode_for(file, size, max_scale)
        except UndecodableImage as exc:
            return Decoded("", None, str(exc))
        file.seek(0)
        sha = hashlib.file_digest(file, "sha256").hexdigest()
    width, height = image.size
    return Decoded(sha, encode_jpeg(resize(image, size, mode), quality), None, width, height)


def _process_star(args: tuple) -> Decoded:
    return process_file(*args)


CHUNK = 8  # files a decode worker takes at a time: more workers than chunks would start idle
# A spawned decode worker's peak: about 0.1 GB of interpreter, NumPy, pandas and Pillow, plus one photo at the
# decode guard's size (JPEGs decode at a reduced scale; a 50-megapixel PNG is 0.15 GB of RGB).
DECODE_WORKER_BYTES = 0.3e9


def _decoded_stream(items: list[RawImage], cfg: DataParams):
    """Decoded results in item order; a spawn pool keeps TensorFlow out of the workers. They end with this process
    however it ends (after a SIGKILL they waited for work forever) and die quietly at Ctrl-C, which it reports."""
    jobs = [(str(item.path), cfg.image_size, cfg.resize, cfg.jpeg_quality, cfg.max_image_scale) for item in items]
    workers = 1 if len(jobs) < 32 else min(capped_workers(cfg.num_workers, "data.num_workers", DECODE_WORKER_BYTES),
                                           -(-len(jobs) // CHUNK))
    if workers == 1:  # a pool's start-up costs more than a few images' decoding
        yield from map(_process_star, jobs)
        return
    with ctrl_c_ignored_while_starting_children():
        pool = multiprocessing.get_context("spawn").Pool(workers, end_with, (os.getpid(),))
    with pool:
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
    if len(class_names) < 2:
        raise DataError(f"{source.description}: the images are of {plural(len(class_names), 'class')} "
                        f"{class_names}; a classifier needs at least two")
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
        raise DataError(f"{raw_dir}: none of the {plural(len(items), 'file')} could be decoded as an image")
    manifest = pd.DataFrame(rows).sort_values("path", kind="stable").reset_index(drop=True)
    manifest.to_csv(out_dir / MANIFEST, index=False)
    classes = [{"index": label_of[name], "name": name, "species": source.species.get(name)} for name in class_names]
    (out_dir / CLASSES).write_text(json.dumps(classes, indent=2), encoding="utf-8")
    pd.DataFrame(skipped, columns=["file", "reason"]).to_csv(out_dir / SKIPPED, index=False)
    shutil.copyfile(raw_dir / LEFT_OUT_FILE, out_dir / LEFT_OUT)
    report = build_report(manifest, skipped, source, class_names, cfg)
    (out_dir / DATA_REPORT).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return report


def build_report(manifest: pd.DataFrame, skipped: list[dict], source: SourceInfo, class_names: list[str],
                 cfg: DataParams) -> dict:
    """The data report; its lists of skipped and left-out files are counted by reason and show the first SHOWN
    (skipped.csv and left_out.csv hold every one)."""
    counts = {split: {name: 0 for name in class_names} for split in SPLITS}
    for (split, name), count in manifest.groupby(["split", "class_name"]).size().items():
        counts[split][name] = int(count)
    warnings = [f"class {name!r} has no {split} images" for split in SPLITS for name in class_names
                if counts[split][name] == 0]
    duplicates = duplicate_images(manifest)
    for kind in ("across_classes", "across_splits"):
        if duplicates[kind]:
            where = "classes (conflicting labels)" if kind == "across_classes" else "splits (test images seen in training)"
            found = len(duplicates[kind])
            warnings.append(f"{plural(found, 'image')} {'appears' if found == 1 else 'appear'} byte for byte in two "
                            f"{where}, e.g. {' = '.join(duplicates[kind][0])}; see duplicates in data_report.json")
    return {
        "source": source.description,
        "image_size": cfg.image_size,
        "num_classes": len(class_names),
        "classes": class_names,
        "totals": {split: sum(counts[split].values()) for split in SPLITS},
        "counts": counts,
        "num_images": int(len(manifest)),
        "num_skipped": len(skipped),
        "skipped_by_reason": dict(Counter(_reason_kind(entry["reason"]) for entry in skipped)),
        "skipped": skipped[:SHOWN],
        "num_left_out": source.num_left_out,
        "left_out_by_reason": source.left_out_by_reason,
        "left_out": list(source.left_out),
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
