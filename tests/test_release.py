"""The release's own logic on a real MLflow registry (sqlite); serving and HTTP are tests/test_release_check.py's."""

import shutil
from pathlib import Path
from urllib.parse import urlparse

import mlflow
import pytest

from tests.test_registry import _log_and_gate, _model
from transferlab.serving import release as release_module
from transferlab.serving.release import FLOW_RUN_TAG, SUMMARY_TAG, Outcome, ReleaseSettings, notice, record, release


def test_a_champion_whose_model_files_are_missing_is_rolled_back_with_one_line_naming_them(tmp_path, monkeypatch):
    """Issue 42: a traceback (MLflow's "No such artifact: 'MLmodel'") instead of a failed check."""
    def no_server(*args, **kwargs):
        raise AssertionError("a model server was started for a model whose files are missing")

    monkeypatch.setattr(release_module, "served", no_server)
    _log_and_gate(tmp_path, _model(0), 0.95)
    version, decision = _log_and_gate(tmp_path, _model(1), 0.96)
    assert (version, decision.previous) == ("2", "1")
    client = mlflow.MlflowClient()
    where = client.get_model_version_download_uri("pets", "2")
    shutil.rmtree(Path(urlparse(where).path))
    outcome = release(client, "pets", "2", mlflow.get_tracking_uri(), ReleaseSettings())
    assert (outcome.passed, outcome.champion) == (False, "1")
    assert outcome.summary == (f"pets version 2 rolled back (champion: 1): pets version 2: its model files are "
                               f"missing ({where} holds no MLmodel)")
    assert client.get_model_version("pets", "2").tags[SUMMARY_TAG] == outcome.summary
    assert str(client.get_model_version_by_alias("pets", "champion").version) == "1"


def test_a_notice_tells_the_summary_its_own_flow_run_recorded_never_an_earlier_ones(tmp_path):
    """Issue 42: a release that ended before recording was announced with the previous release's summary."""
    _log_and_gate(tmp_path, _model(0), 0.95)
    client = mlflow.MlflowClient()
    record(client, "pets", Outcome("1", True, "pets version 1 released: p50 9 ms", None, "1"), "flow-run-a")
    tags = client.get_model_version("pets", "1").tags
    assert tags[FLOW_RUN_TAG] == "flow-run-a"
    assert notice(tags, "flow-run-a", "flow-run-a: Failed") == "pets version 1 released: p50 9 ms"
    crashed = "release flow run b: Failed: it crashed"
    assert notice(tags, "flow-run-b", crashed) == crashed
    assert notice({}, "flow-run-b", "release flow run b: Completed: ") == "release flow run b: Completed: "


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path, monkeypatch):
    """MLflow's own default would put artifacts in ./mlruns: the checkout."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
