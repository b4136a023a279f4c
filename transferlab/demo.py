"""`make demo`: the whole pipeline, offline, on a synthetic dataset, in a workspace of its own."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from transferlab.core.params_loader import load_params
from transferlab.data.prepared import DATA_REPORT
from transferlab.workspace import PROJECT_ROOT, create_workspace, stream_tool

DEMO_PARAMS = {"data.source": "synthetic", "data.image_size": 64, "backbone.name": "resnet50", "compare.backbones": ["resnet50"], "backbone.weights": "none", "fine_tune.epochs": 2,
               "adversarial.target": "class_0", "adversarial.num_images": 8, "adversarial.ideal_steps": 60,
               "data.synthetic.images_per_class": 50}  # 30 test images: evaluate.min_test_images lets it be champion


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m transferlab.demo", description=__doc__)
    parser.add_argument("--dir", type=Path, default=PROJECT_ROOT / "build" / "demo")
    args = parser.parse_args(argv)
    shutil.rmtree(args.dir, ignore_errors=True)
    workspace = create_workspace(args.dir, DEMO_PARAMS)
    print(f"demo workspace: {workspace}", flush=True)
    # each stage's output as it happens, not at the end; one pipeline id, so one MLflow pipeline run
    code = stream_tool(workspace, "python", "-m", "transferlab", "repro")
    if code != 0:
        return code
    prepared = workspace / load_params(workspace / "params.yaml").paths.prepared
    report = json.loads((prepared / DATA_REPORT).read_text())
    print(f"prepared images per split: {report['totals']}")
    print(f"inspect it: cd {workspace} && dvc status && mlflow ui --backend-store-uri sqlite:///mlflow.db, then "
          f"open http://127.0.0.1:5000/#/experiments/1?workflowType=machine_learning")
    return 0


if __name__ == "__main__":
    sys.exit(main())
