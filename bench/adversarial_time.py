"""Wall time of the adversarial report with the default `adversarial.*` params on a MobileNetV2 1.0 @224 model
(../shared/assets weights when present, else random; a 3-class head), phase by phase, with its figures.

    python bench/adversarial_time.py [--images 32]

The test images are synthetic (the report's cost does not depend on what they show); the target is class_0 and
the head leans to class_1, so about a third of the images are correctly classified non-targets, which the
targeted attacks run on (on the Oxford 3-breed model, about two thirds).
Run it on two revisions (bench/compare_revisions.py, or a checkout of each) to compare times and figures.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
WEIGHTS = ROOT.parent / "shared/assets/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


class PhaseTimes(logging.Handler):
    """Collects the `... done in X s` lines the report logs for each phase."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if " done in " in message or ": done in " in message:
            self.lines.append(message)


def prepared_test_split(tmp: Path, images: int) -> Path:
    from bench.extract_throughput import _prepared

    return _prepared(tmp, 3 * images, 224, classes=3, test_fraction=0.34)  # a third of them become test


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32, help="images per class generated (a third go to test)")
    args = parser.parse_args()
    from transferlab.adversarial.report import build_report
    from transferlab.core.params import AdversarialParams, BackboneParams, HeadParams
    from transferlab.data.prepared import read_classes
    from transferlab.modeling.assembly import classifier
    from transferlab.modeling.devices import configure_devices
    from transferlab.modeling.head import build_head

    configure_devices(mixed_precision=False)
    times = PhaseTimes()
    logging.getLogger("transferlab").addHandler(times)
    logging.getLogger("transferlab").setLevel(logging.INFO)
    weights = str(WEIGHTS) if WEIGHTS.is_file() else "none"
    cfg = AdversarialParams(target="class_0")
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        prepared = prepared_test_split(tmp, args.images)
        import keras

        keras.utils.set_random_seed(0)  # the same head in every run, so figures compare across revisions
        head = build_head(HeadParams(normalize=False, l2=0.0), 1280, 3)
        head.get_layer("logits").bias.assign([0.0, 3.0, 0.0])  # class_1 "correct" and not the target: attacked
        model = classifier(BackboneParams(weights=weights), 224, head, tmp, 0)
        (tmp / "images").mkdir()
        started = time.perf_counter()
        report = build_report(model, read_classes(prepared), prepared, cfg, 42, tmp, tmp / "images")
        total = time.perf_counter() - started
    print(f"adversarial report, defaults ({cfg.num_images} images, {cfg.steps} PGD steps x {len(cfg.epsilons)} "
          f"epsilons, {cfg.replication_steps} unbounded steps, 2 x {cfg.ideal_steps} ideal-image steps), "
          f"MobileNetV2 224 ({'imagenet file' if weights != 'none' else 'random'} weights): {total:.1f} s")
    for line in times.lines:
        print("  " + line)
    metrics = report.metrics
    print(json.dumps({"total_s": round(total, 1), "replication": metrics["replication"], "ideal": metrics["ideal"]}))
    for row in metrics["sweep"]:
        print("  " + ", ".join(f"{key} {value:.4g}" for key, value in row.items()))


if __name__ == "__main__":
    main()
