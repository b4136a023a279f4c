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
from typing import Any, Callable, Iterable, Iterator

import numpy as np

from transferlab.core.atomic import atomic_write_bytes
from transferlab.core.backbones import spec_for, weights_identity
from transferlab.core.digest import file_sha256
from transferlab.core.errors import DataError
from transferlab.core.params import BackboneParams
from transferlab.core.progress import with_progress
from transferlab.data.prepared import (MANIFEST, SPLITS, decoded_keys, read_classes, shard_files, shard_sizes, split_of,
                                       tagged_image_batches)
from transferlab.modeling.assembly import feature_extractor

META = "meta.json"


@dataclass(frozen=True)
class SplitFeatures:
    features: np.ndarray
    labels: np.ndarray
    keys: np.ndarray


def cache_components(cfg: BackboneParams, image_size: int, manifest_sha: str, weights_id: str, seed: int,
                     frozen: bool = False) -> dict:
    """Everything that changes a feature vector: the data, the network and its weights, how pixels are scaled,
    pooling, dtype, whether the graph was frozen (last-bit rounding), and the library versions that compute it."""
    import keras
    import tensorflow as tf

    spec = spec_for(cfg.name)
    return {
        "manifest_sha256": manifest_sha, "backbone": cfg.name, "weights": weights_id,
        "alpha": cfg.alpha if spec.takes_alpha else None, "input_size": image_size,
        "preprocess": f"keras.applications.{spec.preprocess_module}.preprocess_input as {spec.scaling} layers",
        "pooling": cfg.pooling, "dtype": cfg.dtype,
        "graph": "frozen" if frozen else "variables", "tensorflow": tf.__version__, "keras": keras.__version__,
        # random-init weights differ by seed; pretrained ones do not
        "init_seed": seed if weights_id == "none" else None,
    }


def cache_key(components: dict) -> str:
    return hashlib.sha256(json.dumps(components, sort_keys=True).encode()).hexdigest()[:20]


def stream_features(forward, shards: list[Path], expected: dict[str, int], batch_size: int, image_size: int,
                    dtype: str) -> Iterator[tuple[Path, dict[str, np.ndarray]]]:
    """Features of many shards from one pipelined stream; yields (shard, arrays) as each shard completes.

    A shard is complete once it has given as many rows as the manifest says it holds (`expected`, by file
    name). A short shard is never yielded; a long one raises DataError when its extra rows arrive, which can
    be after it was yielded: a caller that kept it must drop it (the shards and manifest disagree)."""
    pending: dict[int, list[dict[str, np.ndarray]]] = {}
    received = dict.fromkeys(range(len(shards)), 0)
    for pixels, labels, keys, indices in tagged_image_batches(shards, batch_size, image_size):
        columns = {"features": forward(pixels).numpy()[:len(labels)].astype(dtype), "labels": labels.numpy(),
                   "keys": keys.numpy()}
        indices = indices.numpy()
        for index in map(int, np.unique(indices)):
            mine = indices == index
            pending.setdefault(index, []).append({name: column[mine] for name, column in columns.items()})
            received[index] += int(mine.sum())
            wanted = expected.get(shards[index].name, 0)
            if received[index] > wanted:
                raise DataError(_mismatch(shards[index], wanted, "more"))
            if received[index] == wanted:
                yield shards[index], _joined(pending.pop(index))
    short = sorted(pending.keys() | {index for index, count in received.items() if count == 0})
    if short:
        raise DataError(_mismatch(shards[short[0]], expected.get(shards[short[0]].name, 0), "fewer"))


def _mismatch(shard: Path, wanted: int, than: str) -> str:
    return f"{shard}: holds {than} images than manifest.csv says ({wanted}); run the preprocess stage again"


def _joined(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    joined = {name: np.concatenate([part[name] for part in parts]) for name in parts[0]}
    return {**joined, "keys": decoded_keys(joined["keys"])}


# Freezing costs 0.5-4 s once (MobileNetV2-ResNet50) and saves 10-25 % a batch: it pays from about this many.
FREEZE_FROM_IMAGES = 1000


def compiled_forward(extractor, batch_size: int, image_size: int, frozen: bool = False):
    """The extractor as one graph for the stream's single batch shape, traced once; `frozen`: weights in it.

    Weights do not change during extraction; as constants, grappler folds each batch normalization into its
    convolution: 1.25-1.3x the same graph with variables for MobileNetV2 on a 2-core CPU
    (bench/extract_throughput.py), features equal to 1e-5 relative. `convert_variables_to_constants_v2` is
    TensorFlow's own freezing (the TFLite converter's)."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    signature = [tf.TensorSpec([batch_size, image_size, image_size, 3], tf.float32)]
    graph = tf.function(lambda images: extractor(images, training=False), input_signature=signature)
    if not frozen:
        return graph
    constant = convert_variables_to_constants_v2(graph.get_concrete_function())
    return lambda images: tf.nest.flatten(constant(images))[0]  # a frozen function returns its outputs as a list


def traced_backbone(cfg: BackboneParams, image_size: int, root: Path, seed: int, frozen: bool):
    """The backbone's feature extractor built and traced for the stream's batch shape."""
    return compiled_forward(feature_extractor(cfg, image_size, root, seed), cfg.batch_size, image_size, frozen)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


@dataclass(frozen=True)
class ExtractionPlan:
    """What an extraction computes and where its finished shards wait (the resume folder, keyed by the cache key)."""

    components: dict[str, Any]
    key: str
    resume_dir: Path
    shards: list[Path]  # every prepared shard, in split order
    sizes: dict[str, int]  # rows per shard file name, from the manifest
    frozen: bool

    @property
    def todo(self) -> list[Path]:
        return [path for path in self.shards if not (self.resume_dir / f"{path.stem}.npz").is_file()]


def plan_extraction(prepared: Path, scratch: Path, cfg: BackboneParams, image_size: int, root: Path,
                    seed: int) -> ExtractionPlan:
    sizes = shard_sizes(prepared)
    frozen = sum(sizes.values()) >= FREEZE_FROM_IMAGES  # the whole dataset decides: a resumed run freezes alike
    components = cache_components(cfg, image_size, file_sha256(prepared / MANIFEST),
                                  weights_identity(cfg.weights, root), seed, frozen)
    key = cache_key(components)
    resume_dir = scratch / "features" / key
    resume_dir.mkdir(parents=True, exist_ok=True)
    shards = [path for split in SPLITS for path in shard_files(prepared, split)]
    return ExtractionPlan(components, key, resume_dir, shards, sizes, frozen)


def shard_features(shards: list[Path], sizes: dict[str, int], cfg: BackboneParams, image_size: int, root: Path,
                   seed: int, frozen: bool, progress: bool = False, forward=None) -> Iterator[tuple[Path, bytes]]:
    """The features of `shards` as .npz bytes, one shard at a time as each completes: the work of one process,
    the stage's own or a cluster task's (`forward`: the compiled backbone, when the caller keeps one)."""
    import tensorflow as tf

    forward = forward or traced_backbone(cfg, image_size, root, seed, frozen)
    stream = stream_features(forward, shards, sizes, cfg.batch_size, image_size, cfg.dtype)
    if progress:
        stream = with_progress(stream, total=len(shards), desc="extract_features: shards")
    prepared = shards[0].parent if shards else Path(".")
    try:
        for path, arrays in stream:
            yield path, _npz_bytes(arrays)
    except tf.errors.InvalidArgumentError as exc:  # the stream's fixed shape met an image of another size
        raise DataError(f"{prepared}: its images are not {image_size}x{image_size} px (data.image_size); run the "
                        f"preprocess stage again ({str(exc).splitlines()[0][:120]})") from None


def write_shards(plan: ExtractionPlan, results: Iterable[tuple[Path, bytes]]) -> None:
    """Keep each finished shard in the resume folder as it arrives: a killed run loses only unfinished shards."""
    try:
        for path, npz in results:
            atomic_write_bytes(plan.resume_dir / f"{Path(path).stem}.npz", npz)
    except DataError:
        shutil.rmtree(plan.resume_dir)  # features of a dataset whose shards and manifest disagree: resume nothing
        raise


def collect_features(plan: ExtractionPlan, prepared: Path, out_dir: Path, resumed: int) -> dict[str, Any]:
    """Copy every finished shard into out_dir with meta.json; returns meta."""
    counts = {split: 0 for split in SPLITS}
    width = 0
    for path in plan.shards:
        target = out_dir / f"{path.stem}.npz"
        shutil.copyfile(plan.resume_dir / target.name, target)
        with np.load(target) as arrays:
            counts[split_of(path)] += len(arrays["labels"])
            width = arrays["features"].shape[1] or width
    meta = {"cache_key": plan.key, "components": plan.components, "counts": counts, "feature_width": width,
            "classes": read_classes(prepared), "resumed_shards": resumed}
    (out_dir / META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    shutil.rmtree(plan.resume_dir, ignore_errors=True)
    return meta


def extract_features(prepared: Path, out_dir: Path, scratch: Path, cfg: BackboneParams, image_size: int,
                     root: Path, seed: int, progress: bool = True,
                     extract_todo: Callable[[ExtractionPlan], None] | None = None) -> dict[str, Any]:
    """Write one feature file per prepared shard into out_dir, resuming from scratch; returns meta.

    `extract_todo(plan)` computes the unfinished shards into the resume folder elsewhere (a cluster); by default
    this process does."""
    plan = plan_extraction(prepared, scratch, cfg, image_size, root, seed)
    todo = plan.todo
    if todo and extract_todo is not None:
        extract_todo(plan)
    elif todo:
        write_shards(plan, shard_features(todo, plan.sizes, cfg, image_size, root, seed, plan.frozen, progress))
    return collect_features(plan, prepared, out_dir, len(plan.shards) - len(todo))


def embedder(cfg: BackboneParams, image_size: int, root: Path, seed: int) -> Callable[[np.ndarray], np.ndarray]:
    """A function from a stack of images (pixels 0-255) to their features, in batches of cfg.batch_size."""
    import keras

    extractor = feature_extractor(cfg, image_size, root, seed)
    batch = cfg.batch_size
    return lambda images: np.concatenate([keras.ops.convert_to_numpy(extractor(images[i:i + batch], training=False))
                                          for i in range(0, len(images), batch)])


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
