"""What the fine-tune stage's own machinery costs: its epoch time against a plain Keras `fit` of the same model,
on the same datasets (augmentation and validation included), measured in the same run.

    python bench/fine_tune_overhead.py [--n 256] [--rounds 3] [--epochs 3] [--adversarial 1] [--unfreeze-top 20]

`fine_tune` adds the initial evaluation, early stopping, the verified resume checkpoint written every epoch
and the CSV epoch log; the plain fit has none of them. Rounds alternate the two; each figure is the median
over rounds of the median epoch time without the first (tracing) epoch. Target: plain / pipeline >= 0.95.
MobileNetV2 1.0 @224 (../shared/assets weights when present, else random: timing does not depend on them).
`--adversarial EPS` times a third fit in each round: the stage with `fine_tune.adversarial.epsilon=EPS` (the other
`fine_tune.adversarial` keys at their defaults), which is what adversarial fine-tuning costs over the standard one.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ASSET_WEIGHTS = ROOT.parent / "shared/assets/weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


def prepared_data(tmp: Path, n: int) -> Path:
    from bench.extract_throughput import _prepared

    return _prepared(tmp, n * 5 // 4, 224, classes=2, val_fraction=0.2)  # 80 % train: n images


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="training images")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--adversarial", type=float, default=0.0, help="also time adversarial fine-tuning at this epsilon")
    parser.add_argument("--unfreeze-top", type=int, default=20, help="fine_tune.unfreeze_top of every fit")
    args = parser.parse_args()
    from transferlab.adversarial.training import adversarial_fitting
    from bench.training_speed import epoch_timer, steady_epoch
    from transferlab.core.params import AdversarialTrainingParams, BackboneParams, FineTuneParams, HeadParams
    from transferlab.data.prepared import image_dataset
    from transferlab.modeling.assembly import backbone_of, classifier, compile_for
    from transferlab.modeling.devices import configure_devices
    from transferlab.modeling.fine_tuning import augmentation, fine_tune, unfreeze_top
    from transferlab.modeling.head import build_head

    device = configure_devices()
    weights = str(ASSET_WEIGHTS) if ASSET_WEIGHTS.is_file() else "none"
    # no early stop: every fit runs every epoch
    cfg = FineTuneParams(epochs=args.epochs, patience=args.epochs, unfreeze_top=args.unfreeze_top)

    def model():
        return classifier(BackboneParams(weights=weights), 224, build_head(HeadParams(normalize=False, l2=0.0), 1280, 2),
                          ROOT, 0)

    def pipeline(prepared: Path, scratch: Path, epsilon: float = 0.0) -> float:
        timer = epoch_timer()
        adversarial = AdversarialTrainingParams(epsilon=epsilon)
        fine_tune(model(), prepared, cfg.model_copy(update={"adversarial": adversarial}), scratch, 0, verbose=0,
                  callbacks=(timer,), fitting=adversarial_fitting(adversarial, 0))
        return steady_epoch(timer.seconds)

    def plain(prepared: Path) -> float:
        network = model()
        unfreeze_top(backbone_of(network), cfg.unfreeze_top)
        compile_for(network, cfg.learning_rate)
        train = image_dataset(prepared, "train", cfg.batch_size, shuffle=True, augment=augmentation(cfg, 0), seed=0)
        timer = epoch_timer()
        network.fit(train, validation_data=image_dataset(prepared, "validation", cfg.batch_size),
                    epochs=args.epochs, callbacks=[timer], verbose=0)
        return steady_epoch(timer.seconds)

    times: dict[str, list[float]] = {"pipeline": [], "plain": [], "adversarial": []}
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        prepared = prepared_data(tmp, args.n)
        for round_ in range(args.rounds):
            times["pipeline"].append(pipeline(prepared, tmp / f"scratch{round_}"))
            times["plain"].append(plain(prepared))
            if args.adversarial:
                times["adversarial"].append(pipeline(prepared, tmp / f"adversarial{round_}", args.adversarial))
    pipeline_s, plain_s = statistics.median(times["pipeline"]), statistics.median(times["plain"])
    print(f"fine-tune epoch, MobileNetV2 1.0 @224, top {cfg.unfreeze_top} layers, {args.n} training images, "
          f"batch {cfg.batch_size}, {device.device}; median of {args.rounds} rounds")
    print(f"  fine_tune (the stage's):  {pipeline_s:6.2f} s  rounds {[round(t, 2) for t in times['pipeline']]}")
    print(f"  plain Keras fit:          {plain_s:6.2f} s  rounds {[round(t, 2) for t in times['plain']]}")
    ratio = plain_s / pipeline_s
    print(f"  plain / pipeline = {ratio:.3f} (target >= 0.95: {'met' if ratio >= 0.95 else 'NOT met'})")
    if args.adversarial:
        adversarial_s, defaults = statistics.median(times["adversarial"]), AdversarialTrainingParams()
        print(f"  adversarial fine_tune (epsilon {args.adversarial:g}, {defaults.steps} PGD steps on "
              f"{defaults.fraction:.0%} of each batch, validation on the same mix): {adversarial_s:6.2f} s  "
              f"rounds {[round(t, 2) for t in times['adversarial']]}  = {adversarial_s / pipeline_s:.2f}x the standard")


if __name__ == "__main__":
    main()
