"""Feature-extraction throughput of the stage's stream versus Keras `model.predict` on decoded tensors.

    python bench/extract_throughput.py [--n 1024] [--batch 32] [--rounds 3] [--weights PATH|none]
                                       [--memory] [--variants]

N synthetic images in the default 512-image shards (1,024 = two shards, as a 1,000-image run has). In one
process, interleaved over `--rounds` rounds (medians printed):
  stream     the stage: `stream_features` over all shards, one padded batch shape, a fresh compiled forward
             (frozen from 1,000 images, as the stage does; its one-off freezing cost is printed, not timed)
  per-shard  the previous stage path: one tf.data pipeline per shard, a `reduce_retracing` tf.function
  predict    Keras `model.predict` on the same images decoded in advance (the baseline)
  forward    a compiled forward (variables, not frozen) over the decoded images in fixed-shape batches: the
             limit of the previous path (no decoding at all)
Each side's model is built and warmed with one batch before timing. `--memory`: peak RSS of extraction
over N and 4N images, each in a fresh process. `--variants`: the speed options (XLA `jit_compile`,
bfloat16 compute, half and double the batch size) on the stream, compared with the float32 features by
cosine similarity; an option is worth turning on only with a gain and cosine >= 0.999.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
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


def _stream(model, prepared: Path, batch: int, size: int = 224):
    """The stage's way: a fresh compiled forward (frozen as the stage would for this many images), warmed once,
    then every shard through one stream."""
    from transferlab.data.prepared import shard_files, shard_sizes, tagged_image_batches
    from transferlab.modeling.features import FREEZE_FROM_IMAGES, compiled_forward, stream_features

    shards = shard_files(prepared, "train")
    forward = compiled_forward(model, batch, size, frozen=sum(shard_sizes(prepared).values()) >= FREEZE_FROM_IMAGES)
    forward(next(iter(tagged_image_batches(shards[:1], batch, size)))[0])
    return lambda: [arrays for _, arrays in stream_features(forward, shards, shard_sizes(prepared), batch, size,
                                                           "float32")]


def _per_shard(model, prepared: Path, batch: int):
    """The previous stage path: one pipeline per shard, drained and refilled, retracing on short batches."""
    import tensorflow as tf

    from transferlab.data.prepared import image_batches, shard_files

    shards = shard_files(prepared, "train")
    forward = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
    forward(next(iter(image_batches(shards[:1], batch)))[0])
    return lambda: [{"features": forward(images).numpy()} for path in shards for images, _, _ in image_batches([path], batch)]


def _predict(model, images, batch: int):
    model.predict(images[:batch], batch_size=batch, verbose=0)
    return lambda: [{"features": model.predict(images, batch_size=batch, verbose=0)}]


def _forward(model, images, batch: int):
    """The compiled-forward limit: fixed-shape batches already decoded (the last one padded)."""
    import numpy as np
    import tensorflow as tf

    padded = np.concatenate([images, np.zeros((-len(images) % batch, *images.shape[1:]), images.dtype)])
    batches = [tf.constant(padded[i:i + batch]) for i in range(0, len(padded), batch)]
    forward = tf.function(lambda x: model(x, training=False), input_signature=[tf.TensorSpec(batches[0].shape)])
    forward(batches[0])
    return lambda: [{"features": forward(b).numpy()} for b in batches]


def compare(n: int, batch: int, weights: str, rounds: int) -> dict:
    """Images/s of each way, interleaved over rounds, and how far the stream's features are from predict's."""
    import numpy as np

    from transferlab.core.params import BackboneParams
    from transferlab.data.prepared import image_batches, shard_files
    from transferlab.modeling.assembly import feature_extractor
    from transferlab.modeling.devices import configure_devices

    device = configure_devices()
    model = feature_extractor(BackboneParams(weights=weights, batch_size=batch), 224, ROOT, 0)
    seconds: dict[str, list[float]] = {"stream": [], "per-shard": [], "predict": [], "forward": []}
    with tempfile.TemporaryDirectory() as tmp:
        prepared = _prepared(Path(tmp), n, 224)
        images = np.concatenate([b[0].numpy() for b in image_batches(shard_files(prepared, "train"), batch)])
        shards = len(shard_files(prepared, "train"))
        setups = {"stream": lambda: _stream(model, prepared, batch), "per-shard": lambda: _per_shard(model, prepared, batch),
                  "predict": lambda: _predict(model, images, batch), "forward": lambda: _forward(model, images, batch)}
        setup_seconds: dict[str, list[float]] = {name: [] for name in setups}
        for _ in range(rounds):
            outputs = {}
            for name, setup in setups.items():
                started = time.perf_counter()
                way = setup()
                setup_seconds[name].append(time.perf_counter() - started)
                started = time.perf_counter()
                outputs[name] = np.concatenate([part["features"] for part in way()])[:len(images)]
                seconds[name].append(time.perf_counter() - started)
    gap = float(np.abs(outputs["stream"] - outputs["predict"]).max())
    return {"n": len(images), "shards": shards, "device": device.device, "precision": device.precision,
            "images_per_s": {name: len(images) / statistics.median(times) for name, times in seconds.items()},
            "setup_s": {name: statistics.median(times) for name, times in setup_seconds.items()},
            "max_abs_difference_to_predict": gap, "max_abs_feature": float(np.abs(outputs["predict"]).max()),
            "rounds": rounds}


def measure(n: int, batch: int, weights: str) -> dict:
    """Stream throughput and peak RSS of one extraction over n images (run in a fresh process)."""
    from transferlab.core.params import BackboneParams
    from transferlab.modeling.assembly import feature_extractor

    model = feature_extractor(BackboneParams(weights=weights, batch_size=batch), 224, ROOT, 0)
    with tempfile.TemporaryDirectory() as tmp:
        run = _stream(model, _prepared(Path(tmp), n, 224), batch)
        started = time.perf_counter()
        count = sum(len(arrays["labels"]) for arrays in run())
        seconds = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"n": count, "images_per_s": count / seconds, "peak_rss_mb": rss}


def variants(n: int, batch: int, weights: str) -> dict:
    """Stage-path throughput and feature agreement for float32, XLA and bfloat16 on the same images."""
    import keras
    import numpy as np
    import tensorflow as tf

    from transferlab.core.params import BackboneParams
    from transferlab.data.prepared import shard_files, shard_sizes, tagged_image_batches
    from transferlab.modeling.assembly import feature_extractor
    from transferlab.modeling.features import stream_features

    cfg = BackboneParams(weights=weights, batch_size=batch)
    results, reference = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        prepared = _prepared(Path(tmp), n, 224)
        shards, sizes = shard_files(prepared, "train"), shard_sizes(prepared)
        options = (("float32", "float32", False, batch), ("xla", "float32", True, batch),
                   ("bfloat16", "mixed_bfloat16", False, batch),
                   (f"batch {batch // 2}", "float32", False, batch // 2), (f"batch {batch * 2}", "float32", False, batch * 2))
        for name, policy, jit, size in options:
            keras.mixed_precision.set_global_policy(policy)
            model = feature_extractor(cfg, 224, ROOT, 0)
            forward = tf.function(lambda images, m=model: m(images, training=False), jit_compile=jit,
                                  input_signature=[tf.TensorSpec([size, 224, 224, 3], tf.float32)])
            forward(next(iter(tagged_image_batches(shards[:1], size, 224)))[0])  # XLA compiles its one shape here
            started = time.perf_counter()
            features = np.concatenate([arrays["features"] for _, arrays in
                                       stream_features(forward, shards, sizes, size, 224, "float32")])
            seconds = time.perf_counter() - started
            reference = features if reference is None else reference
            cosine = (features * reference).sum(1) / (np.linalg.norm(features, axis=1) * np.linalg.norm(reference, axis=1))
            results[name] = {"images_per_s": len(features) / seconds, "min_cosine": float(cosine.min())}
    keras.mixed_precision.set_global_policy("float32")
    return results


def _child(n: int, batch: int, weights: str, mode: str, rounds: int = 1) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", mode, "--n", str(n), "--batch", str(batch),
                          "--weights", weights, "--rounds", str(rounds)], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--weights", default=str(ASSET_WEIGHTS) if ASSET_WEIGHTS.is_file() else "none")
    parser.add_argument("--memory", action="store_true", help="peak RSS over N and 4N images (fresh processes)")
    parser.add_argument("--variants", action="store_true", help="XLA, bfloat16 and batch-size options")
    parser.add_argument("--child", choices=["compare", "memory", "variants"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        work = {"compare": lambda: compare(args.n, args.batch, args.weights, args.rounds),
                "memory": lambda: measure(args.n, args.batch, args.weights),
                "variants": lambda: variants(args.n, args.batch, args.weights)}[args.child]
        print(json.dumps(work()))
        return
    result = _child(args.n, args.batch, args.weights, "compare", args.rounds)
    rates = result["images_per_s"]
    print(f"backbone mobilenet_v2 1.0 @224, batch {args.batch}, {result['device']} {result['precision']}, "
          f"weights {Path(args.weights).name}; {result['n']} images in {result['shards']} shards, "
          f"medians of {result['rounds']} interleaved rounds")
    for name, rate in rates.items():
        print(f"{name:10s} {rate:7.1f} images/s  = {rate / rates['predict']:.2f}x predict   "
              f"(set-up and warm-up batch, not timed: {result['setup_s'][name]:.2f} s)")
    print(f"stream / predict {rates['stream'] / rates['predict']:.2f} (target >= 1.3); stream / per-shard "
          f"{rates['stream'] / rates['per-shard']:.2f}; stream / forward limit {rates['stream'] / rates['forward']:.2f}; "
          f"max |stream - predict| feature difference {result['max_abs_difference_to_predict']:.2e} "
          f"(features up to {result['max_abs_feature']:.1f})")
    if args.memory:
        small, large = (_child(n, args.batch, args.weights, "memory") for n in (args.n, 4 * args.n))
        print(f"peak RSS N={small['n']}: {small['peak_rss_mb']:.0f} MB, 4N={large['n']}: {large['peak_rss_mb']:.0f} MB "
              f"(ratio {large['peak_rss_mb'] / small['peak_rss_mb']:.2f}); 4N throughput {large['images_per_s']:.1f} images/s")
    if args.variants:
        options = _child(args.n, args.batch, args.weights, "variants")
        base = options["float32"]["images_per_s"]
        for name, figures in options.items():
            print(f"option {name:9s} {figures['images_per_s']:7.1f} images/s (x{figures['images_per_s'] / base:.2f}), "
                  f"min cosine to float32 {figures['min_cosine']:.5f}")


if __name__ == "__main__":
    main()
