"""Feature-extraction throughput of the stage's tf.data path versus Keras `model.predict` on decoded tensors.

    python bench/extract_throughput.py [--n 256] [--batch 32] [--weights PATH|none]

Same backbone, batch size and precision on both sides; model build and one warm-up batch are not timed.
Peak RSS is measured for extraction over N and 4N images, each in a fresh process. The speed options
(XLA `jit_compile`, bfloat16 compute, half and double the batch size) are timed on the stage path in one process and compared with the
float32 features by cosine similarity; an option is worth turning on only with a gain and cosine >= 0.999.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ASSET_WEIGHTS = ROOT.parent / "shared/assets/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


def _prepared(tmp: Path, n: int, size: int, classes: int = 4, val_fraction: float = 0.0,
              test_fraction: float = 0.0) -> Path:
    """A prepared dataset of `n` synthetic images in `classes` classes (the benches' shared data)."""
    from transferlab.core.params import DataParams
    from transferlab.data.preprocess import prepare_dataset
    from transferlab.data.raw_layout import IMAGES_DIR, UNSPLIT, SourceInfo, write_source_info
    from transferlab.data.sources.synthetic import write_synthetic_folder

    raw, out = tmp / "raw", tmp / "prepared"
    out.mkdir()
    write_synthetic_folder(raw / IMAGES_DIR / UNSPLIT, classes, n // classes, size, seed=0)
    write_source_info(raw, SourceInfo("synthetic", "bench"))
    prepare_dataset(raw, out, DataParams(image_size=size, val_fraction=val_fraction, test_fraction=test_fraction), 0,
                    progress=False)
    return out


def measure(n: int, batch: int, weights: str, mode: str) -> dict:
    import numpy as np
    import tensorflow as tf

    from transferlab.modeling.devices import configure_devices
    from transferlab.data.prepared import image_batches
    from transferlab.modeling.assembly import feature_extractor
    from transferlab.modeling.features import extract_shard
    from transferlab.core.params import BackboneParams
    from transferlab.data.prepared import shard_files

    device = configure_devices()
    cfg = BackboneParams(weights=weights, batch_size=batch)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = _prepared(Path(tmp), n, 224)
        shards = shard_files(prepared, "train")
        model = feature_extractor(cfg, 224, ROOT, 0)
        if mode == "stage":
            forward = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
            forward(next(iter(image_batches([shards[0]], batch)))[0])
            started = time.perf_counter()
            count = sum(len(extract_shard(forward, path, batch, "float32")["labels"]) for path in shards)
        else:
            images = np.concatenate([b[0].numpy() for path in shards for b in image_batches([path], batch)])
            model.predict(images[:batch], batch_size=batch, verbose=0)
            started = time.perf_counter()
            count = len(model.predict(images, batch_size=batch, verbose=0))
        seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"mode": mode, "n": count, "images_per_s": count / seconds, "peak_rss_mb": rss,
            "device": device.device, "precision": device.precision}


def variants(n: int, batch: int, weights: str) -> dict:
    """Stage-path throughput and feature agreement for float32, XLA and bfloat16 on the same images."""
    import keras
    import numpy as np
    import tensorflow as tf

    from transferlab.data.prepared import image_batches
    from transferlab.modeling.assembly import feature_extractor
    from transferlab.modeling.features import extract_shard
    from transferlab.core.params import BackboneParams
    from transferlab.data.prepared import shard_files

    cfg = BackboneParams(weights=weights, batch_size=batch)
    results, reference = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        shards = shard_files(_prepared(Path(tmp), n, 224), "train")
        options = (("float32", "float32", False, batch), ("xla", "float32", True, batch),
                   ("bfloat16", "mixed_bfloat16", False, batch),
                   (f"batch {batch // 2}", "float32", False, batch // 2), (f"batch {batch * 2}", "float32", False, batch * 2))
        for name, policy, jit, size in options:
            keras.mixed_precision.set_global_policy(policy)
            model = feature_extractor(cfg, 224, ROOT, 0)
            forward = tf.function(lambda images, m=model: m(images, training=False), jit_compile=jit)
            for warm in image_batches([shards[0]], size):  # every batch shape once: XLA compiles per shape
                forward(warm[0])
            started = time.perf_counter()
            features = np.concatenate([extract_shard(forward, path, size, "float32")["features"] for path in shards])
            seconds = time.perf_counter() - started
            reference = features if reference is None else reference
            cosine = (features * reference).sum(1) / (np.linalg.norm(features, axis=1) * np.linalg.norm(reference, axis=1))
            results[name] = {"images_per_s": len(features) / seconds, "min_cosine": float(cosine.min())}
    keras.mixed_precision.set_global_policy("float32")
    return results


def _child(n: int, batch: int, weights: str, mode: str) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--n", str(n), "--batch", str(batch),
                          "--weights", weights], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--weights", default=str(ASSET_WEIGHTS) if ASSET_WEIGHTS.is_file() else "none")
    parser.add_argument("--child", choices=["stage", "predict", "variants"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "variants":
        print(json.dumps(variants(args.n, args.batch, args.weights)))
        return
    if args.child:
        print(json.dumps(measure(args.n, args.batch, args.weights, args.child)))
        return
    stage, predict = _child(args.n, args.batch, args.weights, "stage"), _child(args.n, args.batch, args.weights, "predict")
    large = _child(4 * args.n, args.batch, args.weights, "stage")
    print(f"backbone mobilenet_v2 1.0 @224, batch {args.batch}, {stage['device']} {stage['precision']}, "
          f"weights {Path(args.weights).name}")
    print(f"stage (tf.data from shards): {stage['images_per_s']:7.1f} images/s  (N={stage['n']})")
    print(f"keras predict (in memory):   {predict['images_per_s']:7.1f} images/s")
    print(f"ratio stage / predict:       {stage['images_per_s'] / predict['images_per_s']:7.2f} (target >= 0.9)")
    print(f"peak RSS N={stage['n']}: {stage['peak_rss_mb']:.0f} MB, 4N={large['n']}: {large['peak_rss_mb']:.0f} MB "
          f"(ratio {large['peak_rss_mb'] / stage['peak_rss_mb']:.2f}); 4N throughput {large['images_per_s']:.1f} images/s")
    options = _child(args.n, args.batch, args.weights, "variants")
    base = options["float32"]["images_per_s"]
    for name, figures in options.items():
        print(f"option {name:9s} {figures['images_per_s']:7.1f} images/s (x{figures['images_per_s'] / base:.2f}), "
              f"min cosine to float32 {figures['min_cosine']:.5f}")


if __name__ == "__main__":
    main()
