"""Shared fixtures: the real assets in ../shared (skipped with a reason where absent) and small generated data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS = PROJECT_ROOT.parent / "shared" / "assets"


@pytest.fixture(scope="session")
def assets() -> Path:
    if not (ASSETS / "SOURCES.md").is_file():
        pytest.skip(f"real assets not found at {ASSETS} (CI provides ../shared/assets)")
    return ASSETS


@pytest.fixture(autouse=True)
def _isolated_mlflow(tmp_path, monkeypatch):
    """No test writes into the developer's mlflow.db: a test that tracks gets its own backend."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow-test.db'}")


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


STAGES = ("download", "preprocess", "extract_features", "train_head", "fine_tune", "evaluate")
HEAD_STAGES = STAGES[:4]


def run_stages(tmp_path: Path, overrides: dict, stages=STAGES[:2], track: bool = False) -> Path:
    """Run stages in-process, in order, on a copy of params.yaml with overrides; returns the params file."""
    import importlib
    import shutil

    from transferlab.stage_runner import run_stage
    from transferlab.workspace import set_params

    tmp_path.mkdir(parents=True, exist_ok=True)
    params_file = tmp_path / "params.yaml"
    if not params_file.exists():
        shutil.copy(PROJECT_ROOT / "params.yaml", params_file)
    set_params(params_file, overrides)
    for stage in stages:
        body = importlib.import_module(f"stages.{stage}").run
        argv = ["--params", str(params_file)] + ([] if track else ["--no-track"])
        code = run_stage(stage, body, ["data"], argv)
        assert code == 0, f"{stage} exited {code}"
    return params_file


def prepare_with(tmp_path: Path, overrides: dict) -> Path:
    """Run download + preprocess; return the prepared dir."""
    run_stages(tmp_path, overrides)
    return tmp_path / "data" / "prepared"


MOBILENET_V2 = "weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


@pytest.fixture(scope="session")
def cats_dogs_pipeline(tmp_path_factory, assets) -> Path:
    """The whole pipeline, once per session, on the real Kaggle photos with real MobileNetV2 weights."""
    root = tmp_path_factory.mktemp("cats_dogs")
    run_stages(root, {"data.source": "folder", "data.folder.root": str(assets / "images" / "cats_vs_dogs"),
                      "data.image_size": 224, "backbone.name": "mobilenet_v2", "backbone.alpha": 1.0,
                      "backbone.weights": str(assets / MOBILENET_V2)}, STAGES)
    return root
