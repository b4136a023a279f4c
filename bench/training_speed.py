"""Why the head trains on cached features: epoch time on features versus end-to-end through the frozen
backbone, and the fine-tune epoch time, on the same images, backbone and batch size.

    python bench/training_speed.py [--n 256] [--batch 32] [--epochs 3]

MobileNetV2 1.0 @224 (../shared/assets weights when present, else random: timing does not depend on
the weights). Feature extraction, model building and the first (tracing) epoch are not timed; each
figure is the median over the remaining epochs. Peak RSS is of the whole process.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ASSET_WEIGHTS = ROOT.parent / "shared/assets/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


def epoch_timer():
    """A keras callback that records each epoch's wall time in `.seconds`."""
    import keras

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._started = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._started)

    return EpochTimer()


def steady_epoch(seconds: list[float]) -> float:
    """Median epoch time without the first epoch, which traces and compiles."""
    return statistics.median(seconds[1:] if len(seconds) > 1 else seconds)


def _prepared(tmp: Path, n: int) -> Path:
    from bench.extract_throughput import _prepared as prepared

    return prepared(tmp, n, 224)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    import keras
    import numpy as np

    from transferlab.modeling.devices import configure_devices
    from transferlab.data.prepared import image_dataset
    from transferlab.modeling.assembly import backbone_of, classifier, compile_for, feature_extractor
    from transferlab.modeling.features import compiled_forward, stream_features
    from transferlab.modeling.fine_tuning import unfreeze_top
    from transferlab.modeling.head import build_head
    from transferlab.core.params import BackboneParams, HeadParams
    from transferlab.data.prepared import shard_files, shard_sizes

    device = configure_devices()
    weights = str(ASSET_WEIGHTS) if ASSET_WEIGHTS.is_file() else "none"
    cfg = BackboneParams(weights=weights, batch_size=args.batch)
    head_cfg = HeadParams(batch_size=args.batch, dropout=0.2, l2=0.0)
    with tempfile.TemporaryDirectory() as tmp:
        prepared = _prepared(Path(tmp), args.n)
        extractor = feature_extractor(cfg, 224, ROOT, 0)
        parts = [arrays for _, arrays in stream_features(compiled_forward(extractor, args.batch, 224),
                                                         shard_files(prepared, "train"), shard_sizes(prepared),
                                                         args.batch, 224, "float32")]
        features = np.concatenate([p["features"] for p in parts])
        labels = np.concatenate([p["labels"] for p in parts])
        classes = int(labels.max()) + 1

        head = build_head(head_cfg, features.shape[1], classes, features)
        timer = epoch_timer()
        head.fit(features, labels, batch_size=args.batch, epochs=args.epochs + 1, callbacks=[timer], verbose=0)
        on_features = steady_epoch(timer.seconds)

        frozen = classifier(cfg, 224, build_head(head_cfg, features.shape[1], classes, features), ROOT, 0)
        compile_for(frozen, head_cfg.learning_rate)
        timer = epoch_timer()
        frozen.fit(image_dataset(prepared, "train", args.batch), epochs=args.epochs + 1, callbacks=[timer], verbose=0)
        end_to_end = steady_epoch(timer.seconds)

        unfreeze_top(backbone_of(frozen), 20)
        compile_for(frozen, 1e-5)
        timer = epoch_timer()
        frozen.fit(image_dataset(prepared, "train", args.batch), epochs=args.epochs + 1, callbacks=[timer], verbose=0)
        fine_tune = steady_epoch(timer.seconds)

        # Keras turns XLA on by itself only where a GPU is present ("auto"); measure it here as well.
        frozen.compile(optimizer=keras.optimizers.Adam(1e-5), loss=frozen.loss, metrics=["accuracy"], jit_compile=True)
        timer = epoch_timer()
        frozen.fit(image_dataset(prepared, "train", args.batch), epochs=args.epochs + 1, callbacks=[timer], verbose=0)
        fine_tune_xla = steady_epoch(timer.seconds)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"mobilenet_v2 1.0 @224, {args.n} training images, batch {args.batch}, {device.device} {device.precision}")
    print(f"head epoch on cached features:         {on_features * 1000:9.1f} ms")
    print(f"same head end-to-end, frozen backbone: {end_to_end * 1000:9.1f} ms "
          f"(ratio {end_to_end / on_features:.0f}x, target >= 20x)")
    print(f"fine-tune epoch (top 20 layers):       {fine_tune * 1000:9.1f} ms ({args.n / fine_tune:.1f} images/s)")
    print(f"fine-tune epoch with XLA (jit_compile): {fine_tune_xla * 1000:9.1f} ms (x{fine_tune / fine_tune_xla:.2f})")
    print(f"peak RSS: {rss:.0f} MB")


if __name__ == "__main__":
    main()
