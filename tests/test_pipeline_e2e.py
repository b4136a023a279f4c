"""Real `dvc repro` in a throw-away copy of the project, on synthetic data, with a real MLflow backend."""

import json

import mlflow
import pytest
import yaml

from transferlab.workspace import create_workspace, run_tool

SMALL = {"data.source": "synthetic", "data.synthetic.images_per_class": 8, "data.synthetic.image_size": 24,
         "data.image_size": 32}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    path = create_workspace(tmp_path_factory.mktemp("e2e") / "ws", SMALL)
    env = {"MLFLOW_TRACKING_URI": ""}  # the project default: sqlite:///mlflow.db in the workspace
    first = run_tool(path, "dvc", "repro", env=env)
    return path, first, env


def test_repro_runs_both_stages_and_leaves_status_clean(workspace):
    path, first, env = workspace
    assert "Running stage 'download'" in first.stdout and "Running stage 'preprocess'" in first.stdout
    assert "up to date" in run_tool(path, "dvc", "status", env=env).stdout
    second = run_tool(path, "dvc", "repro", env=env)
    assert "Running stage" not in second.stdout
    assert "didn't change, skipping" in second.stdout
    assert json.loads((path / "data" / "prepared" / "data_report.json").read_text())["num_images"] == 24
    assert (path / "data" / ".gitignore").read_text().split() == ["/raw", "/prepared"]


def test_one_parent_run_per_repro_with_a_child_per_stage(workspace):
    path, _, _ = workspace
    mlflow.set_tracking_uri(f"sqlite:///{path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["transferlab"])
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    children = runs[runs["tags.mlflow.parentRunId"].notna()]
    assert len(parents) == 1
    assert sorted(children["tags.mlflow.runName"]) == ["download", "preprocess"]
    assert set(children["tags.mlflow.parentRunId"]) == {parents["run_id"].iloc[0]}
    preprocess = children[children["tags.mlflow.runName"] == "preprocess"].iloc[0]
    assert preprocess["params.data.image_size"] == "32"
    assert preprocess["metrics.images_train"] + preprocess["metrics.images_validation"] \
        + preprocess["metrics.images_test"] == 24
    experiment = mlflow.get_experiment_by_name("transferlab")
    assert experiment.artifact_location == (path / "mlartifacts").as_uri()


def test_exp_run_set_param_overrides_and_reruns_only_what_changed(workspace):
    path, _, env = workspace
    run_tool(path, "git", "add", "-A")
    run_tool(path, "git", "commit", "-q", "-m", "baseline")
    result = run_tool(path, "dvc", "exp", "run", "-S", "data.image_size=48", env=env)
    assert "Running stage 'preprocess'" in result.stdout
    assert "Running stage 'download'" not in result.stdout
    assert yaml.safe_load((path / "params.yaml").read_text())["data"]["image_size"] == 48
    shown = json.loads(run_tool(path, "dvc", "exp", "show", "--json", env=env).stdout)
    assert len(json.dumps(shown)) > 0 and "48" in json.dumps(shown)


def test_bad_override_fails_with_exit_2_message(workspace):
    path, _, env = workspace
    result = run_tool(path, "dvc", "exp", "run", "-S", "data.resize=stretch", check=False, env=env)
    assert result.returncode != 0
    assert "data.resize" in result.stdout + result.stderr
