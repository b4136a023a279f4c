"""The block a run ends with: headline, registry decision, where to look, and advice only below the gate."""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import pytest

from transferlab.dvc_runs import run_block_of
from transferlab.core.paths import PathsParams
from transferlab.evaluation.run_headline import RunFigures, advice, read_run_figures, run_block
from transferlab.tracking.tags import PIPELINE_TAG, STAGE_TAG

SUMMARY = {"head_val_accuracy": 0.66, "fine_tuned_val_accuracy": 0.66, "kept_head_only_weights": 1,
           "test_accuracy_head_only": 0.615, "test_accuracy": 0.615, "test_macro_f1": 0.6,
           "test_accuracy_low": 0.46, "test_accuracy_high": 0.75, "test_images": 40}
OVERFIT_HEAD = {"train_accuracy": 0.99, "val_accuracy": 0.66, "probe_test_accuracy": 0.62}
FINE_TUNE = {"val_accuracy": 0.66, "kept_head_only_weights": 1}
PER_CLASS = [{"class": "red kite", "recall": 0.31, "support": 40}, {"class": "buzzard", "recall": 0.9, "support": 40},
             {"class": "milan noir", "recall": 0.5, "support": 40}]
DATA = {"images": 400, "classes": 3, "class_imbalance": 4.5, "test_images_leaked_from_train": 3,
        "test_leakage_fraction": 0.075, "likely_label_errors": 7}
DECISION = {"registry.version": "3", "registry.alias": "challenger",
            "registry.reason": "test accuracy 0.6150 is below evaluate.min_accuracy 0.8"}


def _below_gate(**changes) -> RunFigures:
    fields = {"summary": SUMMARY, "head": OVERFIT_HEAD, "fine_tune": FINE_TUNE, "per_class": PER_CLASS,
              "min_accuracy": 0.8, "registry": DECISION, "data": DATA} | changes
    return RunFigures(**fields)


def test_a_run_below_the_gate_names_its_decision_and_draws_advice_from_its_figures():
    block = "\n".join(run_block(_below_gate(), PathsParams()))
    assert "test accuracy 0.615 (95 % interval 0.460-0.750, 40 test images)" in block
    assert "linear probe on the same features: test accuracy 0.620" in block
    assert "version 3 is challenger: test accuracy 0.6150 is below evaluate.min_accuracy 0.8" in block
    assert "fits the training images (0.990) far better than validation (0.660)" in block
    assert "a linear probe reaches only 0.620" in block and "compare.backbones" in block
    assert "red kite 0.31 (40 test images), milan noir 0.50 (40 test images)" in block  # weakest first
    assert "buzzard" not in block
    assert "fine_tune.epochs" in block  # fine-tuning was not kept
    assert "only 40 test images: the accuracy could be anywhere in 0.460-0.750" in block
    assert "plots/evaluate/" in block and "dvc metrics show" in block


def test_a_model_above_the_gate_gets_the_headline_and_no_advice():
    above = _below_gate(summary={**SUMMARY, "test_accuracy": 0.95}, registry=None)
    block = "\n".join(run_block(above, PathsParams()))
    assert advice(above) == [] and "what the figures suggest" not in block
    assert "nothing registered in this run" in block


@pytest.mark.parametrize("changes, absent", [
    ({"head": {**OVERFIT_HEAD, "train_accuracy": 0.7}}, "memorizes"),  # no train-validation gap
    ({"head": {**OVERFIT_HEAD, "probe_test_accuracy": 0.85}}, "features are the limit"),  # the probe does better
    ({"summary": {**SUMMARY, "test_accuracy_low": 0.6, "test_accuracy_high": 0.63}}, "could be anywhere"),
    # 0.15 wide, so 0.075 either side: within the 0.1 half-width that the tip allows
    ({"summary": {**SUMMARY, "test_accuracy_low": 0.55, "test_accuracy_high": 0.70}}, "could be anywhere"),
    ({"fine_tune": {**FINE_TUNE, "kept_head_only_weights": 0}}, "fine-tuning did not lower"),
    ({"data": {**DATA, "likely_label_errors": 0}}, "7 images as likely label errors"),
    ({"data": {**DATA, "class_imbalance": 2.0}}, "4.5 times the images of the smallest"),
    ({"data": {}}, "likely label errors"),  # no data report (it has not run): no tip from it
])
def test_each_tip_follows_its_own_figure(changes, absent):
    assert any(absent in tip for tip in advice(_below_gate()))
    assert not any(absent in tip for tip in advice(_below_gate(**changes)))


def test_test_images_leaked_from_training_are_named_above_the_gate_too():
    above = _below_gate(summary={**SUMMARY, "test_accuracy": 0.95})
    block = "\n".join(run_block(above, PathsParams()))
    assert "data: 3 test images (7.5%) have a near-duplicate in training" in block and advice(above) == []
    clean = "\n".join(run_block(_below_gate(data={**DATA, "test_images_leaked_from_train": 0}), PathsParams()))
    assert "near-duplicate in training" not in clean


def _write_metrics(root: Path, paths: PathsParams) -> None:
    for name, figures in ((paths.summary_metrics, SUMMARY), (paths.head_metrics_of("mobilenet_v2"), OVERFIT_HEAD),
                          (paths.fine_tune_metrics, FINE_TUNE), (paths.data_metrics, DATA)):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(json.dumps(figures), encoding="utf-8")
    rows = ["class,precision,recall,f1,support"] + [f"{r['class']},0.5,{r['recall']},0.5,{r['support']}"
                                                    for r in PER_CLASS]
    (root / paths.evaluate_per_class).write_text("\n".join(rows) + "\n", encoding="utf-8")


def test_repro_reads_the_decision_back_from_its_own_pipelines_evaluate_run(tmp_path, monkeypatch):
    paths = PathsParams()
    (tmp_path / "params.yaml").write_text((Path(__file__).parent.parent / "params.yaml").read_text())
    _write_metrics(tmp_path, paths)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    experiment = mlflow.create_experiment("transferlab")
    client = mlflow.MlflowClient()
    for pid, version in (("repro-mine", "3"), ("repro-other", "9")):
        client.create_run(experiment, tags={PIPELINE_TAG: pid, STAGE_TAG: "evaluate", **DECISION,
                                            "registry.version": version})
    assert read_run_figures(tmp_path, paths, "mobilenet_v2", 0.8) is not None
    block = "\n".join(run_block_of("repro-mine", tmp_path))
    assert "version 3 is challenger" in block and "version 9" not in block
    assert "red kite 0.31" in block and "7 images as likely label errors" in block  # metrics/data.json read
    assert "nothing registered" in "\n".join(run_block_of("repro-none", tmp_path))


def test_repro_prints_no_block_before_evaluate_has_written_its_figures(tmp_path, monkeypatch):
    (tmp_path / "params.yaml").write_text((Path(__file__).parent.parent / "params.yaml").read_text())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert run_block_of("repro-x", tmp_path) == []


def test_the_runs_are_pointed_to_on_the_team_s_server_without_its_credentials_or_in_mlflow_ui_locally():
    from transferlab.evaluation.run_headline import where_to_look

    shared = where_to_look(PathsParams(), "http://writer:s3cret@127.0.0.1:15000")[0]
    assert shared.endswith("the runs at http://***@127.0.0.1:15000") and "s3cret" not in shared
    local = where_to_look(PathsParams(), "")[0]
    assert local.endswith("`mlflow ui --backend-store-uri sqlite:///mlflow.db`")
