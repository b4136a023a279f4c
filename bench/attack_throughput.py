"""PGD throughput on the pipeline's model: images per second per attack step (forward + input gradient).

    python bench/attack_throughput.py [--model models/fine_tuned/model.keras] [--n 16] [--steps 5]

Without a trained model it builds MobileNetV2 1.0 @224 (../shared/assets weights, else random) with a
two-class head, the shape of the cats-vs-dogs model.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ASSET_WEIGHTS = ROOT.parent / "shared/assets/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


def default_model():
    from transferlab.core.params import BackboneParams, HeadParams
    from transferlab.modeling.assembly import classifier
    from transferlab.modeling.head import build_head

    weights = str(ASSET_WEIGHTS) if ASSET_WEIGHTS.is_file() else "none"
    return classifier(BackboneParams(weights=weights), 224, build_head(HeadParams(normalize=False, l2=0.0), 1280, 2), ROOT, 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--model", type=Path)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    import numpy as np

    from transferlab.adversarial.attacks import class_mask, pgd
    from transferlab.modeling.devices import configure_devices
    from transferlab.modeling.assembly import load_keras
    from transferlab.modeling.outputs import logits_function

    device = configure_devices(mixed_precision=False)
    model = load_keras(args.model) if args.model else default_model()
    forward = logits_function(model)
    size = model.input_shape[1]
    images = np.random.default_rng(0).uniform(0, 255, (args.n, size, size, 3)).astype(np.float32)
    labels = np.zeros(args.n, np.int64)
    target = class_mask(2, [1])
    pgd(forward, images[:2], labels[:2], 8.0, 1, 2.0, target)  # warm-up
    started = time.perf_counter()
    pgd(forward, images, labels, 8.0, args.steps, 2.0, target)
    seconds = time.perf_counter() - started
    print(f"PGD on {model.name} @{size}, {device.device} {device.precision}: {args.n} images x {args.steps} steps "
          f"in {seconds:.1f} s = {args.n * args.steps / seconds:.1f} image-steps/s "
          f"({args.n / seconds:.2f} images/s for a {args.steps}-step attack)")


if __name__ == "__main__":
    main()
