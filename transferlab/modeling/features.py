"""Bottleneck features: the frozen backbone run once over the prepared shards, cached per shard.

One `.npz` per prepared shard (features, labels, keys) plus `meta.json` with the cache key. A killed
run leaves its completed shards in a scratch folder keyed by that cache key; the rerun reuses them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transferlab.core.atomic import atomic_write_bytes
from transferlab.core.backbones import spec_for, weights_identity
from transferlab.core.digest import file_sha256
from transferlab.core.params import BackboneParams
from transferlab.core.progress import with_progress
from transferlab.data.prepared import MANIFEST, SPLITS, image_batches, read_classes, shard_files, split_of
from transferlab.modeling.assembly import feature_extractor

META = "meta.json"


@dataclass(frozen=True)
class SplitFeatures:
    features: np.ndarray
    labels: np.ndarray
    keys: np.ndarray


def cache_components(cfg: BackboneParams, image_size: int, manifest_sha: str, weights_id: str, seed: int) -> dict:
    """Everything that changes a feature vector: the data, the network and its weights, how pixels are scaled,
    pooling, dtype, and the library versions that compute it."""
    import keras
    import tensorflow as tf

    spec = spec_for(cfg.name)
    return {
        "manifest_sha256": manifest_sha, "backbone": cfg.name, "weights": weights_id,
        "alpha": cfg.alpha if spec.takes_alpha else None, "input_size": image_size,
        "preprocess": f"keras.applications.{spec.preprocess_module}.preprocess_input as {spec.scaling} layers",
        "pooling": cfg.pooling, "dtype": cfg.dtype, "tensorflow": tf.__version__, "keras": keras.__version__,
        # random-init weights differ by seed; pretrained ones do not
        "init_seed": seed if weights_id == "none" else None,
    }


def cache_key(components: dict) -> str:
    return hashlib.sha256(json.dumps(components, sort_keys=True).encode()).hexdigest()[:20]


def extract_shard(forward, path: Path, batch_size: int, dtype: str) -> dict[str, np.ndarray]:
    """Features of one shard (shards are never empty: preprocess opens one only to write into it)."""
    features, labels, keys = [], [], []
    for images, label, key in image_batches([path], batch_size):
        features.append(forward(images).numpy().astype(dtype))
        labels.append(label.numpy())
        keys.append(key.numpy())
    return {"features": np.concatenate(features), "labels": np.concatenate(labels),
            "keys": np.concatenate(keys).astype(str)}


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def extract_features(prepared: Path, out_dir: Path, scratch: Path, cfg: BackboneParams, image_size: int,
                     root: Path, seed: int, progress: bool = True) -> dict[str, Any]:
    """Write one feature file per prepared shard into out_dir, resuming from scratch; returns meta."""
    import tensorflow as tf

    components = cache_components(cfg, image_size, file_sha256(prepared / MANIFEST),
                                  weights_identity(cfg.weights, root), seed)
    key = cache_key(components)
    resume_dir = scratch / "features" / key
    resume_dir.mkdir(parents=True, exist_ok=True)
    shards = [path for split in SPLITS for path in shard_files(prepared, split)]
    todo = [path for path in shards if not (resume_dir / f"{path.stem}.npz").is_file()]
    if todo:
        extractor = feature_extractor(cfg, image_size, root, seed)
        forward = tf.function(lambda images: extractor(images, training=False), reduce_retracing=True)
        for path in with_progress(todo, desc="extract_features: shards") if progress else todo:
            atomic_write_bytes(resume_dir / f"{path.stem}.npz",
                               _npz_bytes(extract_shard(forward, path, cfg.batch_size, cfg.dtype)))
    counts = {split: 0 for split in SPLITS}
    width = 0
    for path in shards:
        target = out_dir / f"{path.stem}.npz"
        shutil.copyfile(resume_dir / target.name, target)
        with np.load(target) as arrays:
            counts[split_of(path)] += len(arrays["labels"])
            width = arrays["features"].shape[1] or width
    meta = {"cache_key": key, "components": components, "counts": counts, "feature_width": width,
            "classes": read_classes(prepared),
            "resumed_shards": len(shards) - len(todo)}
    (out_dir / META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    shutil.rmtree(resume_dir, ignore_errors=True)
    return meta


def load_split(features_dir: Path, split: str) -> SplitFeatures:
    """All feature shards of one split, concatenated in shard order."""
    parts = [np.load(path) for path in sorted(Path(features_dir).glob(f"{split}-*.npz"))]
    if not parts:
        return SplitFeatures(np.zeros((0, 0), np.float32), np.zeros(0, np.int64), np.zeros(0, str))
    return SplitFeatures(np.concatenate([p["features"] for p in parts]), np.concatenate([p["labels"] for p in parts]),
                         np.concatenate([p["keys"] for p in parts]))


def read_meta(features_dir: Path) -> dict[str, Any]:
    return json.loads((Path(features_dir) / META).read_text(encoding="utf-8"))


def load_splits(features_dir: Path) -> dict[str, SplitFeatures]:
    return {split: load_split(features_dir, split) for split in SPLITS}
