"""The Prefect flow on a synthetic workspace: real DVC stages, real Prefect (test harness), real MLflow."""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.test_pipeline_e2e import SMALL
from flows.orchestration import CACHED, RAN, outcomes, override_arguments
from transferlab.workspace import create_workspace

FAST = {**SMALL, "data.synthetic.images_per_class": 5, "head.epochs": 2}


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    os.environ["PREFECT_HOME"] = str(tmp_path_factory.mktemp("prefect-home"))
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
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


def test_outcomes_are_read_from_dvc_output():
    text = "Running stage 'train_head':\nStage 'download' didn't change, skipping\nStage 'x' is cached - skipping"
    assert outcomes(text, ["download", "train_head", "x", "y"]) == {"download": CACHED, "train_head": RAN, "x": CACHED}
    assert override_arguments({"head.dropout": 0.3, "adversarial.epsilons": [0, 2]}) == \
        ["-S", "adversarial.epsilons=[0, 2]", "-S", "head.dropout=0.3"]


def test_flow_runs_every_stage_then_reports_them_cached(harness, tmp_path):
    from flows.pipeline import METRICS_KEY, SUMMARY_KEY, pipeline

    workspace = create_workspace(tmp_path / "ws", FAST)
    first = pipeline(workspace=str(workspace))
    assert set(first["stages"].values()) == {RAN}
    second = pipeline(workspace=str(workspace))
    assert set(second["stages"].values()) == {CACHED}
    summary = _artifact(SUMMARY_KEY)
    assert summary is not None and "| download | cached |" in summary.data
    assert _artifact(METRICS_KEY) is not None


def test_two_flow_runs_on_one_workspace_both_succeed_one_after_the_other(harness, tmp_path):
    from flows.pipeline import pipeline

    workspace = create_workspace(tmp_path / "ws", FAST)

    def run(name):
        result = pipeline(workspace=str(workspace))
        return name, result

    with ThreadPoolExecutor(2) as pool:
        results = [future.result() for future in [pool.submit(run, "a"), pool.submit(run, "b")]]
    outcomes_seen = sorted(tuple(sorted(set(r["stages"].values()))) for _, r in results)
    assert outcomes_seen == [(CACHED,), (RAN,)]  # one did the work, the other waited and found it cached


def test_a_failing_stage_fails_the_flow_with_its_own_message(harness, tmp_path):
    from flows.pipeline import pipeline

    workspace = create_workspace(tmp_path / "ws", {**FAST, "data.source": "folder",
                                                   "data.folder.root": str(tmp_path / "missing")})
    with pytest.raises(RuntimeError, match="data.folder.root: folder not found"):
        pipeline(workspace=str(workspace))


def test_overrides_run_as_a_recorded_dvc_experiment(harness, tmp_path):
    import json

    from flows.pipeline import pipeline
    from transferlab.workspace import run_tool

    workspace = create_workspace(tmp_path / "ws", FAST)
    result = pipeline(workspace=str(workspace), overrides={"head.dropout": 0.35})
    assert result["stages"]["train_head"] == RAN
    shown = run_tool(workspace, "dvc", "exp", "show", "--json").stdout
    assert "0.35" in json.dumps(json.loads(shown))
