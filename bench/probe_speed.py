"""How long the linear probe's fit takes, and what a smaller search would change (issue 32: 58 s on 1,000 x 1,280
features of 5 classes). On cached features of a pipeline run (its data/features/<backbone> folder):

    python bench/probe_speed.py data/features/mobilenet_v2 [more folders]

For each folder: the probe as train_head fits it (the baseline, measured in the same run) and the variants below,
each with its time, the C it chose and its validation accuracy and log loss.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from transferlab.modeling import probe as probe_module  # noqa: E402
from transferlab.modeling.features import load_splits  # noqa: E402
from transferlab.modeling.probe import fit_probe, probe_scores  # noqa: E402

VARIANTS = {"every other C (7 values)": {"C_GRID": np.logspace(-4, 2, 7)},
            "3 folds": {"MAX_FOLDS": 3}}


def measure(splits: dict, label: str) -> None:
    started = time.perf_counter()
    fitted = fit_probe(splits["train"], 42)
    seconds = time.perf_counter() - started
    scores = probe_scores(fitted, splits["validation"], "val")
    print(f"  {label:28s} {seconds:6.1f} s  C={fitted.c:<8.3g} val accuracy {scores['val_accuracy']:.4f}  "
          f"val loss {scores['val_loss']:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("features", nargs="+", type=Path)
    for folder in parser.parse_args().features:
        splits = load_splits(folder)
        train = splits["train"]
        print(f"{folder}: {train.features.shape[0]} x {train.features.shape[1]} training features, "
              f"{len(set(train.labels))} classes")
        measure(splits, "as train_head fits it")
        for label, changes in VARIANTS.items():
            saved = {name: getattr(probe_module, name) for name in changes}
            for name, value in changes.items():
                setattr(probe_module, name, value)
            try:
                measure(splits, label)
            finally:
                for name, value in saved.items():
                    setattr(probe_module, name, value)


if __name__ == "__main__":
    main()
