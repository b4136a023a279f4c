"""Team workflows on real DVC: push to a remote, clone elsewhere, pull, nothing to recompute; experiments."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import experiments, metrics_of, params_of
from transferlab.workspace import run_tool

pytestmark = pytest.mark.slow


@pytest.fixture
def pipeline_run(workspace_copy, tmp_path):
    """A built workspace with its results committed and its own DVC remote."""
    workspace, _ = workspace_copy
    run_tool(workspace, "dvc", "remote", "modify", "--local", "local", "url", str(tmp_path / "remote"))
    run_tool(workspace, "git", "add", "-A")
    run_tool(workspace, "git", "commit", "-q", "-m", "pipeline results")
    return tmp_path, workspace


def test_default_remote_needs_no_setup(pipeline_run):
    _, workspace = pipeline_run
    # The committed (project) config; the tests point their copy elsewhere with `--local`.
    assert run_tool(workspace, "dvc", "config", "--project", "core.remote").stdout.strip() == "local"
    assert run_tool(workspace, "dvc", "config", "--project", "remote.local.url").stdout.strip() == \
        str(Path("~/.cache/transferlab/dvc-storage").expanduser())  # DVC expands the ~ it stores


def test_push_clone_pull_leaves_nothing_to_run(pipeline_run):
    root, workspace = pipeline_run
    pushed = run_tool(workspace, "dvc", "push")
    assert "pushed" in pushed.stdout
    clone = root / "clone"
    run_tool(root, "git", "clone", "-q", str(workspace), str(clone))
    run_tool(clone, "dvc", "remote", "modify", "--local", "local", "url", str(root / "remote"))
    run_tool(clone, "dvc", "pull")
    for out in ("data/raw", "data/prepared", "data/features/resnet50", "models/head/resnet50/head.keras",
                "models/fine_tuned/model.keras", "reports/adversarial/images"):
        assert (clone / out).exists(), out
    for out in ("models/fine_tuned/model.keras", "models/head/resnet50/head.keras", "data/features/resnet50/meta.json"):
        assert (clone / out).read_bytes() == (workspace / out).read_bytes(), out  # the pushed bytes came back
    assert "up to date" in run_tool(clone, "dvc", "status").stdout
    repro = run_tool(clone, "dvc", "repro")
    assert "Running stage" not in repro.stdout


def test_a_queued_learning_rate_sweep_runs_every_experiment_on_one_feature_extraction_tracked_in_the_repo(
        pipeline_run):
    _, workspace = pipeline_run
    env = {"MLFLOW_TRACKING_URI": ""}  # the project default, sqlite:///mlflow.db in the repo root
    # Up to the heads only (the target): what the test is about, without re-running fine-tuning each time.
    for rate in (0.01, 0.003):
        run_tool(workspace, "dvc", "exp", "run", "--queue", "-S", f"head.learning_rate={rate}", "train_head", env=env)
    run_tool(workspace, "dvc", "exp", "run", "--run-all", "-j", "1", env=env)  # fails the test on a non-zero exit
    status = run_tool(workspace, "dvc", "queue", "status").stdout
    assert status.count("Success") >= 2 and "Failed" not in status
    shown = json.loads(run_tool(workspace, "dvc", "exp", "show", "--json").stdout)
    runs = experiments(shown)
    assert sorted(params_of(exp)["head"]["learning_rate"] for exp in runs) == [0.003, 0.01]
    baseline = next(entry for entry in shown if entry.get("experiments"))
    heads = [metrics_of(entry, "metrics/train_head/resnet50.json") for entry in [baseline, *runs]]
    committed = json.loads((workspace / "metrics" / "train_head" / "resnet50.json").read_text())
    assert heads[0] == committed  # the baseline's are the workspace's own
    for head in heads[1:]:  # each experiment carries the same figures of its own
        assert head.keys() == committed.keys()
    assert len({head["train_loss"] for head in heads[1:]}) == 2  # two learning rates trained two different heads
    # Queued runs work in a temporary copy of the repo; their MLflow runs must land in the repo's own backend.
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workspace / 'mlflow.db'}")
    tracked = mlflow.search_runs(experiment_names=["transferlab"])
    in_experiments = tracked[tracked["tags.dvc.experiment"].notna()]
    heads = in_experiments[in_experiments["tags.mlflow.runName"] == "train_head@resnet50"]
    assert set(heads["params.head.learning_rate"]) == {"0.01", "0.003"}
    stages = set(in_experiments["tags.mlflow.runName"])
    assert not {name for name in stages if name.startswith(("extract_features", "preprocess"))}, stages  # shared
