"""Issue 14 under real `dvc repro`: one wrong value never costs an output, the MLflow store or the code."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from transferlab.core.paths import PARAMS_CHECK_FILE
from transferlab.workspace import run_tool, set_params

pytestmark = pytest.mark.slow


def _fingerprint(folder: Path) -> dict[str, str]:
    """Every file's hash, but the guard's own constant output (DVC removes it before rerunning the guard)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != Path(PARAMS_CHECK_FILE).name}


def _one_error_line(result, stage: str, expected: str) -> None:
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"{stage}: error:")]
    assert len(lines) == 1 and expected in lines[0], result.stderr[-3000:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"head.batch_size": 0}, "head.batch_size"),  # finding 3: DVC used to delete train_head's outputs first
    ({"data.tfds.name": "mnist"}, "data.tfds.name"),
    ({"paths.raw": "mlartifacts"}, "'mlartifacts' is inside 'mlartifacts'"),  # finding 1: every model deleted
    ({"paths.raw": "flows"}, "'flows' is inside 'flows'"),  # finding 1: tracked code overwritten
])
def test_bad_params_under_dvc_repro_touch_no_output(workspace_copy, overrides, expected):
    workspace, env = workspace_copy
    (workspace / "mlartifacts" / "1").mkdir(parents=True)
    (workspace / "mlartifacts" / "1" / "model.keras").write_bytes(b"a logged model")
    watched = ["models", "metrics", "plots", "data", "flows", "mlartifacts", "reports"]
    before = {name: _fingerprint(workspace / name) for name in watched}
    set_params(workspace / "params.yaml", overrides)
    result = run_tool(workspace, "dvc", "repro", check=False, env=env)
    _one_error_line(result, "check_params", expected)
    assert {name: _fingerprint(workspace / name) for name in watched} == before


def test_the_guard_reruns_nothing_when_params_change_validly(workspace_copy):
    """The check's output is a constant: a valid change reruns only the stages that read the changed key."""
    workspace, env = workspace_copy
    set_params(workspace / "params.yaml", {"evaluate.gallery_size": 4})
    result = run_tool(workspace, "dvc", "repro", env=env)
    ran = {line.split("'")[1] for line in result.stdout.splitlines() if line.startswith("Running stage")}
    assert ran == {"check_params", "evaluate"}, result.stdout
