"""The Prefect flow on synthetic workspaces: real DVC stages, real Prefect (test harness), real MLflow."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from flows.orchestration import CACHED, RAN
from tests.conftest import experiments, params_of
from transferlab.workspace import SMOKE_PARAMS, create_workspace, run_tool, set_params

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


def test_two_flow_runs_on_one_workspace_one_runs_the_stale_stages_the_other_finds_them_cached(harness,
                                                                                             workspace_copy):
    """A copy of the built workspace with one param changed: only check_params and evaluate are stale."""
    from flows.pipeline import METRICS_KEY, SUMMARY_KEY, pipeline

    workspace, _ = workspace_copy
    set_params(workspace / "params.yaml", {"evaluate.gallery_size": 4})
    with ThreadPoolExecutor(2) as pool:
        results = [future.result() for future in [pool.submit(pipeline, workspace=str(workspace)) for _ in range(2)]]
    ran = sorted({stage for stage, outcome in r["stages"].items() if outcome == RAN} for r in results)
    assert ran == [set(), {"check_params", "evaluate"}]  # one did the work, the other waited for the lock: cached
    assert all(set(r["stages"]) == {"check_params", "download", "preprocess", "extract_features", "data_report",
                                    "train_head", "fine_tune", "evaluate", "adversarial_report"} for r in results)
    summary = _artifact(SUMMARY_KEY)
    assert summary is not None and "| evaluate | cached |" in summary.data  # the later run's summary
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


def test_overrides_run_the_readmes_adversarial_recipe_as_a_recorded_dvc_experiment(harness, workspace_copy):
    """README's recipe (`dvc exp run -S fine_tune.adversarial.epsilon=...`, here as the flow's overrides) reruns
    from fine_tune on, and the report sets the adversarially fine-tuned model beside the head-only one."""
    from flows.pipeline import pipeline

    workspace, _ = workspace_copy
    result = pipeline(workspace=str(workspace), overrides={"fine_tune.adversarial.epsilon": 2,
                                                           "fine_tune.adversarial.steps": 1})
    assert result["stages"]["fine_tune"] == RAN and result["stages"]["adversarial_report"] == RAN
    assert result["stages"]["train_head"] == result["stages"]["extract_features"] == CACHED
    shown = json.loads(run_tool(workspace, "dvc", "exp", "show", "--json").stdout)
    assert [params_of(exp)["fine_tune"]["adversarial"]["epsilon"] for exp in experiments(shown)] == [2]
    report = json.loads((workspace / "reports" / "adversarial" / "metrics.json").read_text())
    assert report["standard"]["model"] == "head-only (standard)"
    assert [row["epsilon"] for row in report["standard"]["sweep"]] == [0.0, 8.0]
    headline = json.loads((workspace / "metrics" / "adversarial.json").read_text())
    assert {"robust_accuracy_eps_8", "standard_robust_accuracy_eps_8"} <= set(headline)
    markdown = (workspace / "reports" / "adversarial" / "report.md").read_text()
    assert "## Robust vs standard model" in markdown and "robust_accuracy_standard" in markdown
    assert (workspace / "reports" / "adversarial" / "images" / "robust_vs_standard.png").is_file()
