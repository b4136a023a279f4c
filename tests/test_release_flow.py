"""`python -m flows.release` refuses in one line what cannot work, before Prefect or a model server starts."""

import shutil
import subprocess
import sys

import pytest

from tests.conftest import PROJECT_ROOT, closed_port
from transferlab.workspace import tool_env


def _release(workspace, *args, **env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.release", *args, "--workspace", str(workspace)],
                          cwd=PROJECT_ROOT, env=tool_env(env), capture_output=True, text=True, timeout=120)


@pytest.fixture
def workspace(tmp_path):
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    return tmp_path


def test_serve_without_a_prefect_server_or_with_one_that_does_not_answer_is_one_line(workspace, monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    done = _release(workspace, "serve")
    assert done.returncode == 2 and done.stderr.strip().splitlines() == [
        "flows.release: error: serve needs a Prefect server whose automations can start the release: set "
        "PREFECT_API_URL (`make serve` starts one on 127.0.0.1:4200)"]
    done = _release(workspace, "serve", PREFECT_API_URL=f"http://me:secret@127.0.0.1:{closed_port()}/api")
    assert done.returncode == 2 and "no Prefect server answers" in done.stderr and "secret" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_releasing_a_version_that_does_not_exist_is_one_line(workspace):
    done = _release(workspace, "run", "--version", "7", MLFLOW_TRACKING_URI=f"sqlite:///{workspace / 'm.db'}")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "flows.release: error: --version: transferlab has no version 7"
    done = _release(workspace, "run", MLFLOW_TRACKING_URI=f"sqlite:///{workspace / 'm.db'}")
    assert done.stderr.strip().splitlines()[-1] == (
        "flows.release: error: transferlab has no champion to release; name a version with --version")


def test_a_notification_block_that_is_not_type_slash_name_is_one_line(workspace):
    done = _release(workspace, "run", "--notify-block", "team", MLFLOW_TRACKING_URI=f"sqlite:///{workspace / 'm.db'}")
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == (
        "flows.release: error: --notify-block: 'team' is not <block type>/<block name> (e.g. custom-webhook/team)")


def test_a_workspace_without_params_is_one_line(tmp_path):
    done = _release(tmp_path / "nowhere", "run")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("flows.release: error: ") and "params.yaml" in line


def test_a_failed_check_ends_the_flow_in_a_failed_state_with_its_summary_not_an_exception(workspace, monkeypatch):
    """A rolled-back release is the run's outcome: a Failed state carrying the summary the notice tells, not an
    exception (Prefect printed its traceback as a crash). The check itself is release()'s, tested in
    test_release.py; here only what the flow makes of its outcome."""
    import logging

    import flows.release as release_flow
    from transferlab.serving.release import Outcome

    summary = "transferlab version 3 rolled back (champion: 2): served answers differ"
    monkeypatch.setattr(release_flow, "_client", lambda folder: (None, "sqlite:///unused.db"))
    monkeypatch.setattr(release_flow, "release", lambda *args: Outcome("3", False, summary, None, "2"))
    monkeypatch.setattr(release_flow, "get_run_logger", lambda: logging.getLogger("test.release"))
    state = release_flow.release_flow.fn(version="3", workspace=str(workspace))
    assert state.is_failed() and state.message == summary
