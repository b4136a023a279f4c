"""Real `dvc repro` in a throw-away copy of the project, on synthetic data, with a real MLflow backend.

The session's built workspace (tests/conftest.py: resnet50 fine-tuned, vgg16 compared) is read here; tests
that change params or run experiments work on their own copy of it."""

import json

import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml

from tests.conftest import experiments, params_of
from transferlab.workspace import run_tool, set_params

pytestmark = pytest.mark.slow
STAGE_NAMES = sorted(["check_params", "download", "preprocess", "extract_features@resnet50", "data_report",
                      "extract_features@vgg16", "train_head@resnet50", "train_head@vgg16", "fine_tune", "evaluate",
                      "adversarial_report"])
TRACKED_STAGES = [name for name in STAGE_NAMES if name != "check_params"]  # the guard records no MLflow run


@pytest.fixture
def workspace(built_workspace):
    return built_workspace


def test_repro_runs_every_stage_and_leaves_status_clean(workspace):
    path, first, env = workspace
    for stage in STAGE_NAMES:
        assert f"Running stage '{stage}'" in first.stdout
    printed = first.stdout + first.stderr  # every stage's output: no TensorFlow start-up line, no cuInit error
    assert "cuInit" not in printed and "absl::InitializeLog" not in printed and "oneDNN" not in printed
    assert "ran out of data" not in printed and "will be ignored" not in printed  # warnings fixed at the cause
    block = first.stdout[first.stdout.rindex("== transferlab run =="):]  # the run ends with its headline block
    assert "registry: version 1 is champion" in block and "test accuracy" in block and "look at: " in block
    assert "Running stage" not in block
    assert "up to date" in run_tool(path, "dvc", "status", env=env).stdout
    second = run_tool(path, "dvc", "repro", env=env)
    assert "Running stage" not in second.stdout
    assert "didn't change, skipping" in second.stdout
    assert json.loads((path / "data" / "prepared" / "data_report.json").read_text())["num_images"] == 24
    assert (path / "data" / ".gitignore").read_text().split() == ["/params_checked.json", "/raw", "/prepared"]
    assert (path / "data" / "features" / ".gitignore").read_text().split() == ["/resnet50", "/vgg16"]


def test_dvc_metrics_and_plots_show_work(workspace, tmp_path):
    path, _, env = workspace
    metrics = json.dumps(json.loads(run_tool(path, "dvc", "metrics", "show", "--json", env=env).stdout))
    for name in ("train_head/resnet50.json", "train_head/vgg16.json", "fine_tune.json", "evaluate.json", "macro_f1",
                 "targeted_success"):
        assert name in metrics
    assert "top_3_accuracy" not in metrics  # three classes: top-3 would always be 1.0
    rendered = run_tool(path, "dvc", "plots", "show", "-o", str(tmp_path / "rendered"), env=env)
    assert (tmp_path / "rendered" / "index.html").is_file()
    html = (tmp_path / "rendered" / "index.html").read_text()
    assert "confusion" in html and "head accuracy" in html and "robust accuracy vs epsilon" in html
    for name in ("confusion.png", "misclassified.png", "confusion.json", "gradcam.png"):
        assert (path / "plots" / "evaluate" / name).is_file()


def test_the_adversarial_report_checks_transfer_to_the_other_compared_backbone(workspace):
    path, _, _ = workspace
    report = json.loads((path / "reports" / "adversarial" / "metrics.json").read_text())
    rows = {row["epsilon"]: row for row in report["transfer"]}
    assert set(rows) == {0.0, 8.0} and {row["model"] for row in rows.values()} == {"vgg16 head"}
    assert rows[0.0]["transfer_targeted"] == 0.0 or np.isnan(rows[0.0]["transfer_targeted"])  # no budget, no attack
    markdown = (path / "reports" / "adversarial" / "report.md").read_text()
    assert "## Transfer to other models" in markdown and "## Robust vs standard model" not in markdown


def test_backbones_compare_side_by_side_and_switching_the_fine_tuned_one_reextracts_nothing(workspace_copy):
    path, env = workspace_copy
    shown = json.loads(run_tool(path, "dvc", "metrics", "show", "--json", env=env).stdout)
    files = next(iter(shown.values()))["data"]
    for name in ("resnet50", "vgg16"):  # DVC shows the heads' metrics files side by side
        assert files[f"metrics/train_head/{name}.json"]["data"] == json.loads(
            (path / "metrics" / "train_head" / f"{name}.json").read_text())
    vgg_meta = json.loads((path / "data" / "features" / "vgg16" / "meta.json").read_text())
    assert vgg_meta["feature_width"] == 512 and vgg_meta["components"]["backbone"] == "vgg16"
    set_params(path / "params.yaml", {"backbone.name": "vgg16"})
    status = json.loads(run_tool(path, "dvc", "status", "--json", env=env).stdout)
    # the stages that read backbone.*, and the params guard (it watches all of params.yaml); nothing upstream
    # (the adversarial report builds the other compared backbones' models for its transfer check)
    assert set(status) == {"check_params", "data_report", "fine_tune", "evaluate", "adversarial_report"}


@pytest.mark.parametrize("backbone", ["resnet50", "vgg16"])
def test_a_heads_metrics_file_is_what_its_run_logged_and_counts_the_epochs_of_its_history(workspace, backbone):
    path, _, _ = workspace
    metrics = json.loads((path / "metrics" / "train_head" / f"{backbone}.json").read_text())
    mlflow.set_tracking_uri(f"sqlite:///{path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["transferlab"], filter_string=f"run_name = 'train_head@{backbone}'")
    assert len(runs) == 1
    logged = {key: runs.iloc[0][f"metrics.{key}"] for key in metrics if metrics[key] is not None}
    assert logged == pytest.approx({key: metrics[key] for key in logged}, rel=1e-12)
    history = pd.read_csv(path / "plots" / "train_head" / backbone / "accuracy.tsv", sep="\t")
    assert metrics["epochs_run"] == len(history) == history["epoch"].max()  # early stopping may end before head.epochs
    assert {"probe_test_accuracy", "probe_c", "test_accuracy"} <= logged.keys()  # the probe's baseline beside it


def test_one_parent_run_per_repro_with_a_child_per_stage(workspace):
    path, _, _ = workspace
    mlflow.set_tracking_uri(f"sqlite:///{path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["transferlab"])
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    children = runs[runs["tags.mlflow.parentRunId"].notna()]
    assert len(parents) == 1
    assert sorted(children["tags.mlflow.runName"]) == TRACKED_STAGES
    evaluate = children[children["tags.mlflow.runName"] == "evaluate"].iloc[0]
    assert evaluate["tags.registry.alias"] == "champion" and evaluate["tags.registry.version"] == "1"
    assert set(children["tags.mlflow.parentRunId"]) == {parents["run_id"].iloc[0]}
    parent = parents.iloc[0]  # the whole params.yaml on the pipeline's run: pipeline runs compare in the UI
    assert parent["params.head.l2"] == "probe" and parent["params.compare.backbones"] == "['resnet50', 'vgg16']"
    assert parent["params.adversarial.epsilons"] == "[0.0, 8.0]" and parent["params.data.image_size"] == "32"
    preprocess = children[children["tags.mlflow.runName"] == "preprocess"].iloc[0]
    assert preprocess["params.data.image_size"] == "32"
    assert preprocess["metrics.images_train"] + preprocess["metrics.images_validation"] \
        + preprocess["metrics.images_test"] == 24
    head = children[children["tags.mlflow.runName"] == "train_head@resnet50"].iloc[0]
    assert head["params.head.learning_rate"] == "0.001" and head["tags.device.device"] == "CPU"
    written = json.loads((path / "metrics" / "train_head" / "resnet50.json").read_text())  # what the run tracked
    for name in ("val_accuracy", "probe_val_accuracy", "probe_seconds"):
        assert head[f"metrics.{name}"] == pytest.approx(written[name]), name
    history = mlflow.MlflowClient().get_metric_history(head["run_id"], "epoch_loss")
    assert [m.step for m in history] == list(range(1, len(history) + 1)) and len(history) >= 1
    model = mlflow.keras.load_model(head["tags.transferlab.model_uri.head"])
    assert model.output_shape == (None, 3)
    experiment = mlflow.get_experiment_by_name("transferlab")
    assert experiment.artifact_location == (path / "mlartifacts").as_uri()


def test_a_repro_that_finds_everything_up_to_date_records_every_stage_as_restored(workspace_copy):
    """Issue 32: the pipeline run of an execution carries every stage, those DVC did not run marked as restored."""
    path, env = workspace_copy  # outputs and dvc.lock, no MLflow runs
    result = run_tool(path, "python", "-m", "transferlab", "repro", env=env)
    assert "Running stage" not in result.stdout and f"{len(TRACKED_STAGES)} stages were up to date" in result.stderr
    assert "registry: nothing registered in this run" in result.stdout
    mlflow.set_tracking_uri(f"sqlite:///{path / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["transferlab"])
    parent = runs[runs["tags.mlflow.parentRunId"].isna()].iloc[0]
    children = runs[runs["tags.mlflow.parentRunId"].notna()]
    assert sorted(children["tags.transferlab.stage"]) == TRACKED_STAGES
    assert set(children["tags.transferlab.restored"]) == {"true"} and parent["status"] == "FINISHED"
    summary = json.loads((path / "metrics" / "summary.json").read_text())
    assert parent["metrics.test_accuracy"] == pytest.approx(summary["test_accuracy"])


def test_changing_only_head_params_makes_only_the_heads_stale(workspace_copy):
    """What DVC then runs (the heads, never the extraction) is the queued sweep's check, tests/test_dvc_team_e2e.py."""
    path, env = workspace_copy
    set_params(path / "params.yaml", {"head.dropout": 0.3})
    status = run_tool(path, "dvc", "status", "--json", env=env).stdout
    # only what the params change, and the params guard
    assert set(json.loads(status)) == {"check_params", "train_head@resnet50", "train_head@vgg16"}


def test_exp_run_set_param_overrides_and_reruns_only_what_changed(workspace_copy):
    path, env = workspace_copy
    run_tool(path, "git", "add", "-A")
    run_tool(path, "git", "commit", "-q", "-m", "baseline")
    result = run_tool(path, "dvc", "exp", "run", "-S", "data.image_size=48", "extract_features", env=env)
    assert "Running stage 'preprocess'" in result.stdout
    assert "Running stage 'download'" not in result.stdout
    assert "Running stage 'extract_features@resnet50'" in result.stdout
    assert yaml.safe_load((path / "params.yaml").read_text())["data"]["image_size"] == 48
    shown = json.loads(run_tool(path, "dvc", "exp", "show", "--json", env=env).stdout)
    assert [params_of(exp)["data"]["image_size"] for exp in experiments(shown)] == [48]
    baseline = next(entry for entry in shown if entry.get("experiments"))  # the commit the experiment started from
    assert params_of(baseline)["data"]["image_size"] == 32


def test_a_bad_override_stops_the_stage_with_exit_2_and_its_one_line_message(workspace_copy):
    path, env = workspace_copy
    result = run_tool(path, "dvc", "exp", "run", "-S", "data.resize=stretch", check=False, env=env)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    # the guard stops it before DVC clears any stage's outputs, with the stage runner's exit code
    assert "failed to run: python -m stages.check_params, exited with 2" in output
    assert "check_params: error: params.yaml: data.resize: Input should be 'squash' or 'center_crop'" in output



def test_the_built_workspace_runs_the_defaults_but_for_offline_and_size_settings(workspace):
    """Every e2e test that reads the built workspace tests params.yaml's recipe: the probe-derived L2, fine-tuned
    weights kept only beyond the noise, flip TTA chosen on validation."""
    from tests.conftest import BUILT_PARAMS, PROJECT_ROOT
    from transferlab.workspace import OFFLINE_PARAMS, SIZE_PARAMS

    path, _, _ = workspace
    assert set(BUILT_PARAMS) == set(OFFLINE_PARAMS) | set(SIZE_PARAMS)

    def flat(tree, prefix=""):
        return {k: v for key, value in tree.items()
                for k, v in (flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value}).items()}

    default, built = (flat(yaml.safe_load((root / "params.yaml").read_text())) for root in (PROJECT_ROOT, path))
    assert {key for key in built if built[key] != default.get(key)} <= set(BUILT_PARAMS)
    assert (built["head.l2"], built["fine_tune.accept"], built["fine_tune.flip_tta"]) == ("probe", "beyond_noise", "auto")


def test_the_default_recipe_records_its_choices_and_evaluate_scores_the_saved_views(workspace):
    """head.l2: probe reaches the head as a number; the beyond-noise rule and the flip-TTA choice are each decided
    by the figures fine_tune.json records, and evaluate scores the head-only model with the same views."""
    from transferlab.data.prepared import split_size
    from transferlab.modeling.assembly import has_flip_tta, load_keras

    path, _, _ = workspace
    head = json.loads((path / "metrics" / "train_head" / "resnet50.json").read_text())
    train_images = split_size(path / "data" / "prepared", "train")
    assert head["l2"] > 0 and head["l2"] == pytest.approx(1 / (2 * head["probe_c"] * train_images), rel=1e-6)
    tuned = json.loads((path / "metrics" / "fine_tune.json").read_text())
    assert tuned["kept_head_only_weights"] == int(not tuned["val_loss_change_high"] < 0)
    assert tuned["flip_tta"] == int(tuned["val_loss_flip_tta"] < tuned["val_loss_single_view"])
    assert has_flip_tta(load_keras(path / "models" / "fine_tuned" / "model.keras")) == bool(tuned["flip_tta"])
    scored = json.loads((path / "metrics" / "evaluate.json").read_text())
    if tuned["kept_head_only_weights"]:  # the same weights, scored with the same views
        assert scored["head_only"] == scored["fine_tuned"]
    summary = json.loads((path / "metrics" / "summary.json").read_text())
    assert summary["test_accuracy"] == scored["fine_tuned"]["accuracy"]
    assert summary["kept_head_only_weights"] == tuned["kept_head_only_weights"]

