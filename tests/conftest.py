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


def prepare_with(tmp_path: Path, overrides: dict) -> Path:
    """Run download + preprocess in-process on a copy of params.yaml with overrides; return the prepared dir."""
    import shutil

    from stages.download import download
    from stages.preprocess import preprocess
    from transferlab.stage_runner import run_stage
    from transferlab.workspace import set_params

    tmp_path.mkdir(parents=True, exist_ok=True)
    params_file = tmp_path / "params.yaml"
    shutil.copy(PROJECT_ROOT / "params.yaml", params_file)
    set_params(params_file, overrides)
    for stage, body in (("download", download), ("preprocess", preprocess)):
        code = run_stage(stage, body, ["data"], ["--params", str(params_file), "--no-track"])
        assert code == 0, f"{stage} exited {code}"
    return tmp_path / "data" / "prepared"
