"""Real `dvc repro` in a throw-away copy of the project, on synthetic data, with a real MLflow backend."""

import json

import mlflow
import pytest
import yaml

from transferlab.workspace import SMOKE_PARAMS, create_workspace, run_tool

SMALL = {**SMOKE_PARAMS, "compare.backbones": ["resnet50", "vgg16"]}  # resnet50 is fine-tuned, vgg16 compared
STAGE_NAMES = sorted(["download", "preprocess", "extract_features@resnet50", "extract_features@vgg16",
                      "train_head@resnet50", "train_head@vgg16", "fine_tune", "evaluate", "adversarial_report"])


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    path = create_workspace(tmp_path_factory.mktemp("e2e") / "ws", SMALL)
    env = {"MLFLOW_TRACKING_URI": ""}  # the project default: sqlite:///mlflow.db in the workspace
    first = run_tool(path, "dvc", "repro", env=env)
    return path, first, env


def test_repro_runs_every_stage_and_leaves_status_clean(workspace):
    path, first, env = workspace
    for stage in STAGE_NAMES:
        assert f"Running stage '{stage}'" in first.stdout
    assert "up to date" in run_tool(path, "dvc", "status", env=env).stdout
    second = run_tool(path, "dvc", "repro", env=env)
    assert "Running stage" not in second.stdout
    assert "didn't change, skipping" in second.stdout
    assert json.loads((path / "data" / "prepared" / "data_report.json").read_text())["num_images"] == 24
    assert (path / "data" / ".gitignore").read_text().split() == ["/raw", "/prepared"]
    assert (path / "data" / "features" / ".gitignore").read_text().split() == ["/resnet50", "/vgg16"]


def test_dvc_metrics_and_plots_show_work(workspace):
    path, _, env = workspace
    metrics = json.dumps(json.loads(run_tool(path, "dvc", "metrics", "show", "--json", env=env).stdout))
    for name in ("train_head/resnet50.json", "train_head/vgg16.json", "fine_tune.json", "evaluate.json", "top_3_accuracy", "targeted_success"):
        assert name in metrics
    rendered = run_tool(path, "dvc", "plots", "show", "-o", str(path / "rendered"), env=env)
    assert rendered.returncode == 0 and (path / "rendered" / "index.html").is_file()
    html = (path / "rendered" / "index.html").read_text()
    assert "confusion" in html and "head accuracy" in html and "robust accuracy vs epsilon" in html
    for name in ("confusion.png", "misclassified.png", "confusion.json"):
        assert (path / "plots" / "evaluate" / name).is_file()


def test_backbones_compare_side_by_side_and_switching_the_fine_tuned_one_reextracts_nothing(workspace):
    path, _, env = workspace
    shown = json.loads(run_tool(path, "dvc", "metrics", "show", "--json", env=env).stdout)
    files = next(iter(shown.values()))["data"]
    heads = {name: files[f"metrics/train_head/{name}.json"]["data"] for name in ("resnet50", "vgg16")}
    for metrics in heads.values():
        assert 0.0 <= metrics["test_accuracy"] <= 1.0 and metrics["epochs_run"] >= 1
    vgg_meta = json.loads((path / "data" / "features" / "vgg16" / "meta.json").read_text())
    assert vgg_meta["feature_width"] == 512 and vgg_meta["components"]["backbone"] == "vgg16"
    from transferlab.workspace import set_params

    set_params(path / "params.yaml", {"backbone.name": "vgg16"})
    try:
        status = json.loads(run_tool(path, "dvc", "status", "--json", env=env).stdout)
        assert set(status) == {"fine_tune", "evaluate"}  # the stages that read backbone.*; nothing upstream
    finally:
        set_params(path / "params.yaml", {"backbone.name": "resnet50"})


def test_one_parent_run_per_repro_with_a_child_per_stage(workspace):
    path, _, _ = workspace
    mlflow.set_tracking_uri(f"sqlite:///{path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["transferlab"])
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    children = runs[runs["tags.mlflow.parentRunId"].notna()]
    assert len(parents) == 1
    assert sorted(children["tags.mlflow.runName"]) == STAGE_NAMES
    evaluate = children[children["tags.mlflow.runName"] == "evaluate"].iloc[0]
    assert evaluate["tags.registry.alias"] == "champion" and evaluate["tags.registry.version"] == "1"
    assert set(children["tags.mlflow.parentRunId"]) == {parents["run_id"].iloc[0]}
    preprocess = children[children["tags.mlflow.runName"] == "preprocess"].iloc[0]
    assert preprocess["params.data.image_size"] == "32"
    assert preprocess["metrics.images_train"] + preprocess["metrics.images_validation"] \
        + preprocess["metrics.images_test"] == 24
    head = children[children["tags.mlflow.runName"] == "train_head@resnet50"].iloc[0]
    assert head["params.head.learning_rate"] == "0.001" and head["tags.device.device"] == "CPU"
    assert 0.0 <= head["metrics.val_accuracy"] <= 1.0
    history = mlflow.MlflowClient().get_metric_history(head["run_id"], "epoch_loss")
    assert [m.step for m in history] == list(range(1, len(history) + 1)) and len(history) >= 1
    model = mlflow.keras.load_model(head["tags.transferlab.model_uri.head"])
    assert model.output_shape == (None, 3)
    experiment = mlflow.get_experiment_by_name("transferlab")
    assert experiment.artifact_location == (path / "mlartifacts").as_uri()


def test_changing_only_head_params_reruns_only_the_head(workspace):
    path, _, env = workspace
    from transferlab.workspace import set_params

    set_params(path / "params.yaml", {"head.dropout": 0.3})
    status = run_tool(path, "dvc", "status", "--json", env=env).stdout
    assert set(json.loads(status)) == {"train_head@resnet50", "train_head@vgg16"}  # only what the params change
    result = run_tool(path, "dvc", "repro", env=env)
    assert "Running stage 'train_head@resnet50'" in result.stdout
    assert "Stage 'extract_features@resnet50' didn't change, skipping" in result.stdout
    assert "Running stage 'extract_features" not in result.stdout


def test_exp_run_set_param_overrides_and_reruns_only_what_changed(workspace):
    path, _, env = workspace
    run_tool(path, "git", "add", "-A")
    run_tool(path, "git", "commit", "-q", "-m", "baseline")
    result = run_tool(path, "dvc", "exp", "run", "-S", "data.image_size=48", env=env)
    assert "Running stage 'preprocess'" in result.stdout
    assert "Running stage 'download'" not in result.stdout
    assert "Running stage 'extract_features@resnet50'" in result.stdout
    assert yaml.safe_load((path / "params.yaml").read_text())["data"]["image_size"] == 48
    shown = json.loads(run_tool(path, "dvc", "exp", "show", "--json", env=env).stdout)
    assert "48" in json.dumps(shown)


def test_bad_override_fails_with_exit_2_message(workspace):
    path, _, env = workspace
    result = run_tool(path, "dvc", "exp", "run", "-S", "data.resize=stretch", check=False, env=env)
    assert result.returncode != 0
    assert "data.resize" in result.stdout + result.stderr
