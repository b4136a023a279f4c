"""Throughput of `transferlab predict` (files -> tf.data decode -> batched model calls) against two baselines
measured in the same process on the same files and model:

  predecoded   Keras `model.predict` on the images decoded in advance (decoding not timed): the model's ceiling
  by hand      decode every file, then `model.predict` on the array (decoding timed): the obvious script
  per image    one `model.predict` per file, as `transferlab predict` did before (on a subset)

    python bench/predict_throughput.py [--n 512] [--batch 32] [--rounds 3]

Targets: predict >= 0.8x predecoded and >= 0.9x by hand. Real photos (the Kaggle cats and dogs of
../shared/assets) and real MobileNetV2 weights when present; otherwise synthetic 500x375 JPEGs and random
weights (the figures then say so). Each method runs once untimed, then `--rounds` times interleaved; the best
round of each counts (the least disturbed by other work on a shared machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ASSETS = ROOT.parent / "shared" / "assets"
WEIGHTS = ASSETS / "weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
PHOTOS = ASSETS / "images" / "cats_vs_dogs"


def photo_files(n: int, tmp: Path) -> tuple[list[Path], str]:
    found = sorted(path for path in PHOTOS.rglob("*.jpg")) if PHOTOS.is_dir() else []
    if len(found) >= n:
        return found[:n], f"{n} Kaggle cat/dog photos"
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for index in range(n):
        path = tmp / f"{index}.jpg"
        Image.fromarray(rng.integers(0, 255, (375, 500, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths, f"{n} synthetic 500x375 JPEGs (assets not found)"


def build_model(tmp: Path):
    import keras

    from transferlab.core.params import BackboneParams
    from transferlab.modeling.assembly import classifier

    weights = str(WEIGHTS) if WEIGHTS.is_file() else "none"
    inputs = keras.Input((1280,))
    head = keras.Model(inputs, keras.layers.Activation("softmax", name="probabilities")(
        keras.layers.Dense(2, name="logits")(inputs)))
    return classifier(BackboneParams(weights=weights), 224, head, tmp, seed=0), weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=512)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--per-image", type=int, default=64, help="files for the old one-at-a-time path")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import numpy as np

    from transferlab.data.images import model_pixels
    from transferlab.evaluation.predict import LoadedModel, predict_probabilities

    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        paths, source = photo_files(args.n, tmp)
        model, weights = build_model(tmp)
        loaded = LoadedModel(model, ["cat", "dog"], 224)
        predecoded = np.stack([model_pixels(path.read_bytes(), 224) for path in paths]).astype(np.float32)

        def by_hand():
            pixels = np.stack([model_pixels(path.read_bytes(), 224) for path in paths]).astype(np.float32)
            return model.predict(pixels, batch_size=args.batch, verbose=0)

        def per_image():
            return [model.predict(model_pixels(path.read_bytes(), 224)[None].astype(np.float32), verbose=0)
                    for path in paths[:args.per_image]]

        methods = {"predict (tf.data)": lambda: predict_probabilities(loaded, paths, args.batch)[0],
                   "predecoded (Keras predict)": lambda: model.predict(predecoded, batch_size=args.batch, verbose=0),
                   "by hand (decode, then predict)": by_hand, "per image (before)": per_image}
        counts = {name: (args.per_image if name.startswith("per image") else len(paths)) for name in methods}
        best = {name: float("inf") for name in methods}
        for name, method in methods.items():
            method()  # warm-up: tracing, thread pools, file cache
        for _ in range(args.rounds):
            for name, method in methods.items():
                started = time.perf_counter()
                method()
                best[name] = min(best[name], time.perf_counter() - started)
        ours = predict_probabilities(loaded, paths, args.batch)[0]
        agree = float(np.abs(ours - model.predict(predecoded, batch_size=args.batch, verbose=0)).max())

    rate = {name: counts[name] / seconds for name, seconds in best.items()}
    ours_rate = rate["predict (tf.data)"]
    print(f"{source}, MobileNetV2 224 px (weights: {'imagenet file' if weights != 'none' else 'random'}), "
          f"batch {args.batch}, {os.cpu_count()} CPUs, best of {args.rounds}")
    print(f"{'method':34s} {'images/s':>9s} {'predict / this':>15s}")
    for name in methods:
        print(f"{name:34s} {rate[name]:9.1f} {ours_rate / rate[name]:14.2f}x")
    figures = {"predict_images_per_s": ours_rate,
               "ratio_to_predecoded": ours_rate / rate["predecoded (Keras predict)"],
               "ratio_to_by_hand": ours_rate / rate["by hand (decode, then predict)"],
               "speedup_over_per_image": ours_rate / rate["per image (before)"], "max_abs_difference": agree}
    print(json.dumps(figures))
    verdict = figures["ratio_to_predecoded"] >= 0.8 and figures["ratio_to_by_hand"] >= 0.9
    print(f"targets (>= 0.8x predecoded, >= 0.9x by hand): {'met' if verdict else 'NOT met'}")


if __name__ == "__main__":
    main()
