"""The Prefect flow on synthetic workspaces: real DVC stages, real Prefect (test harness), real MLflow."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from flows.orchestration import CACHED, RAN
from tests.conftest import experiments, params_of
from transferlab.workspace import SMOKE_PARAMS, create_workspace, run_tool

pytestmark = pytest.mark.slow
FAST = {**SMOKE_PARAMS, "data.synthetic.images_per_class": 5, "head.epochs": 2}


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):  # PREFECT_HOME is the session's (tests/conftest.py)
        yield


def _artifact(key):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    # Every flow run adds a version under the same key: the newest one is the last run's.
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
                                      sort=ArtifactSort.CREATED_DESC, limit=1)
    return found[0] if found else None


def test_two_flow_runs_on_one_workspace_one_runs_every_stage_the_other_finds_them_cached(harness, tmp_path):
    from flows.pipeline import METRICS_KEY, SUMMARY_KEY, pipeline

    workspace = create_workspace(tmp_path / "ws", FAST)
    with ThreadPoolExecutor(2) as pool:
        results = [future.result() for future in [pool.submit(pipeline, workspace=str(workspace)) for _ in range(2)]]
    outcomes_seen = sorted(tuple(sorted(set(r["stages"].values()))) for r in results)
    assert outcomes_seen == [(CACHED,), (RAN,)]  # one did the work, the other waited for the lock and found it cached
    assert all(set(r["stages"]) == {"check_params", "download", "preprocess", "extract_features", "data_report",
                                    "train_head", "fine_tune", "evaluate", "adversarial_report"} for r in results)
    summary = _artifact(SUMMARY_KEY)
    assert summary is not None and "| download | cached |" in summary.data  # the later run's summary
    headline = json.loads((workspace / "metrics" / "summary.json").read_text())
    assert f"| test_accuracy | {headline['test_accuracy']:.4g} |" in summary.data.split("## Metrics")[0]
    metrics = _artifact(METRICS_KEY)
    assert metrics is not None and "evaluate.fine_tuned.accuracy" in metrics.data


def test_a_wrong_configuration_fails_the_flow_at_once_with_the_stages_message(harness, tmp_path):
    from flows.pipeline import ConfigurationError, pipeline

    workspace = create_workspace(tmp_path / "ws", {**FAST, "data.source": "folder",
                                                   "data.folder.root": str(tmp_path / "missing")})
    # ConfigurationError (exit 2) is the failure the download task's retries skip (tests/test_orchestration.py)
    with pytest.raises(ConfigurationError, match="data.folder.root: folder not found"):
        pipeline(workspace=str(workspace))


def test_overrides_run_as_a_recorded_dvc_experiment(harness, workspace_copy):
    from flows.pipeline import pipeline

    workspace, _ = workspace_copy
    result = pipeline(workspace=str(workspace), overrides={"head.dropout": 0.35})
    assert result["stages"]["train_head"] == RAN and result["stages"]["extract_features"] == CACHED
    shown = json.loads(run_tool(workspace, "dvc", "exp", "show", "--json").stdout)
    assert [params_of(exp)["head"]["dropout"] for exp in experiments(shown)] == [0.35]
