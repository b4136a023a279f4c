"""Accuracy you can trust, on both real asset sets: the linear probe, the head and the fine-tuned model,
each with its 95 % Wilson interval and its training time, from one `dvc repro evaluate` per data set.

    python bench/accuracy.py [--only cats_vs_dogs|oxford]

Cats vs dogs: the 1,500 Kaggle photos, 1,000 train, the 500 official validation photos halved into 250
validation and 250 test (`data.test_fraction=0.5`). Oxford: the 3-breed assets with the official trainval /
test lists (298 test). MobileNetV2 1.0 @224 with the assets' ImageNet weights, every other param at its
default. Each data set runs in a fresh workspace; training times are the stages' own "work done" lines
(the probe's is its own fit). "flip TTA": fine_tune.flip_tta (auto) chose to average each image with its
mirror image. Needs ../shared/assets. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ASSETS = ROOT.parent / "shared" / "assets"
WEIGHTS = ASSETS / "weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
DATA = {"cats_vs_dogs": {"data.folder.root": str(ASSETS / "images" / "cats_vs_dogs"), "data.test_fraction": 0.5},
        "oxford": {"data.folder.root": str(ASSETS / "images" / "oxford_pets_3breeds")}}
DONE = re.compile(r"transferlab\.progress INFO (\S+): work done in ([\d.]+) s")


def one_data_set(name: str, folder: Path) -> list[dict]:
    """Rows (model, val accuracy, test accuracy, test images, seconds) of one data set's run."""
    from transferlab.workspace import create_workspace, run_tool

    overrides = {"data.source": "folder", "backbone.weights": str(WEIGHTS), **DATA[name]}
    workspace = create_workspace(folder / name, overrides)
    result = run_tool(workspace, sys.executable, "-m", "transferlab", "repro", "evaluate",
                      env={"MLFLOW_TRACKING_URI": ""}, timeout=3600)
    seconds = {m.group(1).split("@")[0]: float(m.group(2)) for m in DONE.finditer(result.stdout + result.stderr)}
    metrics = workspace / "metrics"
    head = json.loads((metrics / "train_head" / "mobilenet_v2.json").read_text())
    tuned = json.loads((metrics / "fine_tune.json").read_text())
    scored = json.loads((metrics / "evaluate.json").read_text())
    test_images = scored["fine_tuned"]["n"]
    # evaluate scores both whole models the way fine_tune saved the final one
    flip = " + flip TTA" if tuned.get("flip_tta") else ""
    return [
        {"model": "linear probe (logistic regression, C by 5-fold CV)", "val": head["probe_val_accuracy"],
         "test": head["probe_test_accuracy"], "n": test_images, "seconds": head["probe_seconds"]},
        {"model": "head (on cached features, one view)", "val": head["val_accuracy"], "test": head["test_accuracy"],
         "n": test_images, "seconds": seconds["train_head"]},
        {"model": "head-only model" + flip, "val": head["val_accuracy"], "test": scored["head_only"]["accuracy"],
         "n": test_images, "seconds": seconds["train_head"]},
        {"model": "fine-tuned" + flip + (" (kept the head's weights)" if tuned["kept_head_only_weights"] else ""),
         "val": tuned["val_accuracy"], "test": scored["fine_tuned"]["accuracy"], "n": test_images,
         "seconds": seconds["train_head"] + seconds["fine_tune"]},
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=sorted(DATA))
    args = parser.parse_args()
    if not (ASSETS / "SOURCES.md").is_file():
        raise SystemExit(f"needs the real assets at {ASSETS}")
    from transferlab.core.intervals import accuracy_interval

    print("| data | model | val accuracy | test accuracy [95 % interval] | training time (s) |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in [args.only] if args.only else sorted(DATA):
            for row in one_data_set(name, Path(tmp)):
                low, high = accuracy_interval(round(row["test"] * row["n"]), row["n"])
                print(f"| {name} ({row['n']} test) | {row['model']} | {row['val']:.4f} | "
                      f"{row['test']:.4f} [{low:.3f}, {high:.3f}] | {row['seconds']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
