"""A pipeline execution's run carries every stage, those DVC skipped marked as restored, and a version that a failed
attempt registered follows the execution that finished (real sqlite MLflow store)."""

from __future__ import annotations

import mlflow
import pytest

from transferlab.execution_record import downstream, experiment_name
from transferlab.tracking.completion import FIRST_RUN_TAG, MODEL_MD5_TAG, RESTORED_TAG, complete_pipeline_run
from transferlab.tracking.tags import PARENT_TAG, PIPELINE_ROLE, PIPELINE_TAG, ROLE_TAG, STAGE_TAG

STAGES = ["download", "train_head@resnet50", "evaluate", "adversarial_report"]


@pytest.fixture
def store(tmp_path):
    (tmp_path / "params.yaml").write_text("base: {seed: 1}\n")
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path, mlflow.create_experiment("transferlab"), mlflow.MlflowClient()


def _execution(client, experiment: str, pid: str, ran: list[str], status: str) -> str:
    parent = client.create_run(experiment, tags={PIPELINE_TAG: pid, ROLE_TAG: PIPELINE_ROLE}).info.run_id
    for stage in ran:
        child = client.create_run(experiment, run_name=stage, tags={PARENT_TAG: parent, PIPELINE_TAG: pid,
                                                                    STAGE_TAG: stage})
        client.set_terminated(child.info.run_id)
    client.set_terminated(parent, status)
    return parent


def _version(client, parent: str, experiment_name: str) -> str:
    client.create_registered_model("transferlab")
    return client.create_model_version("transferlab", "file:///nowhere", tags={
        MODEL_MD5_TAG: "abc.dir", "pipeline.run_id": parent, "dvc.experiment": experiment_name}).version


def test_a_resumed_execution_carries_every_stage_and_adopts_the_failed_attempts_version(store):
    root, experiment, client = store
    failed = _execution(client, experiment, "attempt", STAGES[:3], "FAILED")  # evaluate registered, the report failed
    version = _version(client, failed, "exp-a")
    resumed = _execution(client, experiment, "retry", ["adversarial_report"], "FINISHED")
    restored = complete_pipeline_run(root, "transferlab", "retry", STAGES, {"test_accuracy": 0.9, "n": None},
                                     ("transferlab", "abc.dir"), "exp-b")
    assert restored == STAGES[:3]
    children = client.search_runs([experiment], f"tags.`{PARENT_TAG}` = '{resumed}'")
    marked = {run.data.tags[STAGE_TAG]: run.data.tags.get(RESTORED_TAG) for run in children}
    assert marked == {"download": "true", "train_head@resnet50": "true", "evaluate": "true",
                      "adversarial_report": None}
    run = client.get_run(resumed)
    assert run.info.status == "FINISHED" and run.data.metrics == {"test_accuracy": 0.9}
    tags = client.get_model_version("transferlab", version).tags
    assert tags["pipeline.run_id"] == resumed and tags["dvc.experiment"] == "exp-b" and tags[FIRST_RUN_TAG] == failed
    assert len(tags["params.sha256"]) == 64


def test_a_version_that_a_finished_execution_registered_keeps_its_lineage(store):
    root, experiment, client = store
    finished = _execution(client, experiment, "first", STAGES, "FINISHED")
    version = _version(client, finished, "exp-a")
    complete_pipeline_run(root, "transferlab", "second", STAGES, {}, ("transferlab", "abc.dir"))
    tags = client.get_model_version("transferlab", version).tags
    assert tags["pipeline.run_id"] == finished and tags["dvc.experiment"] == "exp-a" and FIRST_RUN_TAG not in tags


def test_an_execution_that_ran_nothing_gets_a_pipeline_run_with_every_stage_restored(store):
    root, experiment, client = store
    assert complete_pipeline_run(root, "transferlab", "cached", STAGES, {"test_accuracy": 1.0}) == STAGES
    [parent] = client.search_runs([experiment], f"tags.`{ROLE_TAG}` = '{PIPELINE_ROLE}'")
    assert parent.data.tags[PIPELINE_TAG] == "cached" and parent.data.metrics == {"test_accuracy": 1.0}


def test_a_stage_is_stale_when_it_changed_or_reads_the_outputs_of_one_that_did():
    lock = {"prepare": {"outs": [{"path": "data/prepared"}]},
            "head": {"deps": [{"path": "data/prepared"}], "outs": [{"path": "models/head"}]},
            "tune": {"deps": [{"path": "models/head/head.keras"}], "outs": [{"path": "models/tuned"}]},
            "report": {"deps": [{"path": "data/raw"}]}}
    assert downstream(lock, {"head"}) == {"head", "tune"}
    assert downstream(lock, {"prepare"}) == {"prepare", "head", "tune"}
    assert downstream(lock, set()) == set()


def test_an_execution_in_a_new_store_makes_its_experiment_as_a_stage_would(tmp_path):
    (tmp_path / "params.yaml").write_text("base: {seed: 1}\n")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    complete_pipeline_run(tmp_path, "transferlab", "first", STAGES, {})
    experiment = mlflow.get_experiment_by_name("transferlab")  # artifacts beside the database, not in ./mlruns
    assert experiment.artifact_location == (tmp_path / "mlartifacts").as_uri()
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_the_experiment_dvc_ran_is_read_from_its_closing_line():
    output = "Running stage 'train_head@resnet50':\n...\nRan experiment(s): tawny-moth\nExperiment results have been applied"
    assert experiment_name(output) == "tawny-moth" and experiment_name("Running stage 'x'") is None
