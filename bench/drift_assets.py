"""`transferlab drift`'s acceptance check on the real photos of ../shared/assets:

    python bench/drift_assets.py [--seeds 1 2 3]

Every image is embedded by `drift_check.embed_files` (the command's own decode + feature_extractor path) with
the assets' MobileNetV2 1.0 ImageNet weights at 224 px, then:

  (a) the Oxford-IIIT pet photos (3 breeds) against all Kaggle cats-vs-dogs photos: must show drift;
  (b) a random half of cats-vs-dogs against the other half, for each seed: must show none.

And what the command meets in use, where its reference is the training split as the pipeline cached it:

  (c) a half as the pipeline extracts it (preprocess' JPEGs in a TFRecord shard, `features.shard_features`)
      against the other half through `embed_files`: must show none; and how far the two paths' features of the
      same images lie apart;
  (d) as (c), with the JPEG round trip of `embed_files` switched off: the skew that round trip removes.

Prints each comparison's AUC, MMD, p-value, counts and seconds; exits 1 when (a), (b) or (c) fails.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ASSETS = ROOT.parent / "shared" / "assets"
WEIGHTS = ASSETS / "weights" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
CATS_DOGS = ASSETS / "images" / "cats_vs_dogs"
OXFORD = ASSETS / "images" / "oxford_pets_3breeds" / "images"


def bench_params():
    from transferlab.core.params_loader import parse_params

    return parse_params({"data": {"image_size": 224, "resize": "squash"},
                         "backbone": {"name": "mobilenet_v2", "alpha": 1.0, "weights": str(WEIGHTS)}}, "bench")


def cats_dogs_files() -> list[Path]:
    return sorted(path for split in ("train", "validation") for kind in ("cats", "dogs")
                  for path in (CATS_DOGS / split / kind).iterdir() if path.is_file())


def embedded(label: str, paths: list[Path], params, stored_as_prepared: bool = True) -> np.ndarray:
    from transferlab.quality.drift_check import embed_files

    started = time.perf_counter()
    result = embed_files(paths, params, ROOT, params.base.seed, stored_as_prepared=stored_as_prepared)
    seconds = time.perf_counter() - started
    print(f"embedded {label}: {len(result.files)} of {len(paths)} files ({len(result.errors)} undecodable), "
          f"{result.features.shape[1]} wide, {seconds:.1f} s ({len(paths) / seconds:.1f} images/s)", flush=True)
    return result.features


def pipeline_features(paths: list[Path], params, folder: Path) -> np.ndarray:
    """The files' features as the pipeline caches its training split: preprocess' JPEGs (`process_file`) in
    TFRecord shards (`ShardWriter`), extracted by `features.shard_features`, frozen graph as the stage uses it."""
    import io

    from transferlab.data.prepared import ShardWriter, shard_files
    from transferlab.data.preprocess import process_file
    from transferlab.modeling.features import FREEZE_FROM_IMAGES, shard_features

    started = time.perf_counter()
    writer, sizes = ShardWriter(folder, "train", params.data.shard_size), {}
    for index, path in enumerate(paths):
        jpeg = process_file(str(path), params.data.image_size, params.data.resize, params.data.jpeg_quality).jpeg
        shard = writer.write(jpeg, 0, str(index))
        sizes[shard] = sizes.get(shard, 0) + 1
    writer.close()
    cfg = params.backbone_named(params.backbone.name)
    rows: dict[int, np.ndarray] = {}
    for _, npz in shard_features(shard_files(folder, "train"), sizes, cfg, params.data.image_size, ROOT,
                                 params.base.seed, len(paths) >= FREEZE_FROM_IMAGES):
        with np.load(io.BytesIO(npz)) as arrays:
            rows.update(zip(map(int, arrays["keys"]), arrays["features"]))
    seconds = time.perf_counter() - started
    print(f"extracted cats_vs_dogs as the pipeline does: {len(rows)} images, {seconds:.1f} s", flush=True)
    return np.stack([rows[index] for index in range(len(paths))]).astype(np.float32)


def show(label: str, reference: np.ndarray, current: np.ndarray, seed: int):
    from transferlab.quality.drift import compare

    started = time.perf_counter()
    result = compare(reference, current, seed)
    print(f"{label}: AUC {result.auc:.4f}  MMD {result.mmd:.5f}  p {result.p_value:.4f}  "
          f"{result.current_count} vs {result.reference_count}  {time.perf_counter() - started:.1f} s", flush=True)
    print(f"  {result.verdict()}", flush=True)
    return result


def halves(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(count)
    return np.sort(order[:count // 2]), np.sort(order[count // 2:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    args = parser.parse_args()
    if not WEIGHTS.is_file():
        print(f"assets not found at {ASSETS}", file=sys.stderr)
        return 2
    from transferlab.core.native_logs import quiet_tensorflow

    quiet_tensorflow()  # before anything imports TensorFlow
    params = bench_params()
    started = time.perf_counter()
    files = cats_dogs_files()
    cats_dogs = embedded("cats_vs_dogs", files, params)
    oxford = embedded("oxford_pets_3breeds", sorted(OXFORD.glob("*.jpg")), params)
    ok = show("(a) oxford vs all cats_vs_dogs", cats_dogs, oxford, params.base.seed).drifted
    for seed in args.seeds:
        first, second = halves(len(cats_dogs), seed)
        ok &= not show(f"(b) cats_vs_dogs half vs half, split seed {seed}", cats_dogs[first], cats_dogs[second],
                       seed).drifted
    with tempfile.TemporaryDirectory() as temp:
        pipeline = pipeline_features(files, params, Path(temp))
    gap = np.abs(pipeline - cats_dogs).max() / np.abs(pipeline).max()
    print(f"embed_files vs the pipeline, same {len(files)} images: largest difference {gap:.2e} of the largest feature")
    for seed in args.seeds:
        first, second = halves(len(cats_dogs), seed)
        ok &= not show(f"(c) pipeline half vs embed_files half, split seed {seed}", pipeline[first],
                       cats_dogs[second], seed).drifted
    direct = embedded("cats_vs_dogs without the JPEG round trip", files, params, stored_as_prepared=False)
    for seed in args.seeds:
        first, second = halves(len(cats_dogs), seed)
        show(f"(d) pipeline half vs half without the round trip, split seed {seed}", pipeline[first],
             direct[second], seed)
    print(f"acceptance: {'pass' if ok else 'FAIL'} (a: drift; b, c: none for every seed); "
          f"{time.perf_counter() - started:.0f} s in all")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
