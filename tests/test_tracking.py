"""Tracking: an unreachable MLflow server stops a stage in seconds, before any work, with one clear line."""

from __future__ import annotations

import pytest

from tests.conftest import closed_port, run_stages
from tests.mlflow_servers import kill_group, mlflow_server
from transferlab.stage_runner import run_stage
from transferlab.tracking.runs import environment_tags
from transferlab.tracking.store import tracking_home


def test_unreachable_mlflow_fails_fast_and_leaves_outputs_untouched(tmp_path, monkeypatch, capsys):
    params = run_stages(tmp_path, {"data.source": "synthetic", "data.synthetic.images_per_class": 4,
                                   "data.image_size": 32})
    manifest = tmp_path / "data" / "prepared" / "manifest.csv"
    before = manifest.stat().st_mtime_ns
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://user:pw@127.0.0.1:{closed_port()}")
    import requests

    from stages import preprocess

    requests_sent = []
    monkeypatch.setattr(requests.Session, "request", lambda *args, **kwargs: requests_sent.append(args) or 1 / 0)
    code = run_stage("preprocess", preprocess.run, ["data"], ["--params", str(params)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and requests_sent == []  # stopped by the probe: MLflow's retrying client never started
    assert err[-1].startswith("preprocess: error: MLFLOW_TRACKING_URI http://***@127.0.0.1:")
    assert "no MLflow server answers" in err[-1] and "pw" not in err[-1]
    assert manifest.stat().st_mtime_ns == before


def test_queued_experiments_track_into_the_repo_that_queued_them(tmp_path, monkeypatch):
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking_home(tmp_path) == tmp_path.resolve()
    monkeypatch.setenv("DVC_ROOT", str(tmp_path / "repo"))  # what DVC sets in a queued run's temporary copy
    assert tracking_home(tmp_path / "repo" / ".dvc" / "tmp" / "exps" / "tmpabc") == (tmp_path / "repo").resolve()
    monkeypatch.setenv("DVC_EXP_NAME", "raspy-wire")
    assert environment_tags()["dvc.experiment"] == "raspy-wire"


@pytest.mark.slow  # a real MLflow server, killed mid-stage
def test_a_server_that_dies_mid_stage_costs_the_run_not_the_outputs_and_leaks_nothing(tmp_path, monkeypatch, capfd,
                                                                                      caplog):
    """Issue 14, finding 5: the password was printed four times in chained tracebacks and the outputs were lost."""
    import os

    password = "hunter2-Pa55"
    process, port = mlflow_server(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://alice:{password}@127.0.0.1:{port}")
    (tmp_path / "params.yaml").write_text("{}\n")
    output = tmp_path / "result.txt"
    def body(context):
        context.tracker.set_tags({"before": "the server dies"})
        kill_group(process)
        context.tracker.log_history({"loss": [1.0, 0.5]})
        context.tracker.set_tags({"after": "it died"})  # skipped: tracking was given up once
        assert context.tracker.lost and not context.tracker.active
        output.write_text("the stage's work")
        return {"accuracy": 1.0}

    try:
        code = run_stage("train_head", body, [], ["--params", str(tmp_path / "params.yaml")])
    finally:
        kill_group(process)
    captured = capfd.readouterr()
    printed = captured.out + captured.err + caplog.text
    assert code == 0 and output.read_text() == "the stage's work"
    assert printed.count("MLflow stopped answering while logging the epoch history") == 1
    assert password not in printed and "Traceback" not in printed
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "2"  # bounded retries: seconds, not MLflow's minutes


def test_a_silent_server_stops_a_stage_in_seconds(tmp_path, monkeypatch, capsys):
    """Issue 14, finding 11: a server that accepts connections and never answers once hung `download`."""
    import socket

    (tmp_path / "params.yaml").write_text("{}\n")
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{silent.getsockname()[1]}")
        code = run_stage("download", lambda context: None, [], ["--params", str(tmp_path / "params.yaml")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "no answer within 3 s" in err and "\n" not in err  # the probe's own timeout ended it


def test_a_killed_stages_run_is_marked_killed_by_the_next_stage(tmp_path):
    """Issue 14, finding 9: every SIGKILLed stage left its MLflow run RUNNING forever."""
    import subprocess
    import sys

    import mlflow

    from transferlab.tracking.processes import process_identity
    from transferlab.tracking.runs import stage_run
    from transferlab.tracking.tags import PROCESS_TAG

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with stage_run("download", "abandoned", tmp_path, {}):
        pass
    client = mlflow.MlflowClient()
    experiment = mlflow.get_experiment_by_name("abandoned").experiment_id
    dead = client.create_run(experiment, tags={PROCESS_TAG: process_identity(gone.pid)})
    alive = client.create_run(experiment, tags={PROCESS_TAG: process_identity()})
    foreign = client.create_run(experiment, tags={PROCESS_TAG: "another-host:1:1"})
    with stage_run("preprocess", "abandoned", tmp_path, {}):
        pass
    status = {name: client.get_run(run.info.run_id).info.status
              for name, run in (("dead", dead), ("alive", alive), ("foreign", foreign))}
    assert status == {"dead": "KILLED", "alive": "RUNNING", "foreign": "RUNNING"}


def test_a_corrupt_database_or_an_unknown_scheme_is_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    (tmp_path / "params.yaml").write_text("{}\n")
    (tmp_path / "mlflow.db").write_bytes(b"garbage, not sqlite " * 100)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    ran = []
    assert run_stage("download", ran.append, [], ["--params", str(tmp_path / "params.yaml")]) == 1
    assert "the MLflow tracking database cannot be read (file is not a database)" in capsys.readouterr().err
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "foo://bar")
    assert run_stage("download", ran.append, [], ["--params", str(tmp_path / "params.yaml")]) == 1
    assert "MLflow cannot track into a 'foo' URI" in capsys.readouterr().err and ran == []


def test_the_pipeline_run_spans_its_stages_carries_headlines_and_fails_with_a_stage(tmp_path, monkeypatch):
    """Issue 15: the parent run was closed at once (29 ms), stayed FINISHED when a stage failed, held no metrics."""
    import time

    import mlflow

    from transferlab.core.errors import DataError
    from transferlab.tracking.tags import EXPERIMENT_KIND_TAG

    (tmp_path / "params.yaml").write_text("data: {source: synthetic}\nbackbone: {name: resnet50, weights: none}\n"
                                          "compare: {backbones: [resnet50]}\nmlflow: {experiment: spans}\n")
    (tmp_path / "dvc.lock").write_text("schema: '2.0'\n")
    monkeypatch.setenv("TRANSFERLAB_PIPELINE_ID", "flow-run-1")
    argv = ["--params", str(tmp_path / "params.yaml")]

    def head(context):
        time.sleep(0.3)
        context.tracker.headline({"head_val_accuracy": 0.9, "not_measured": None})  # the stage names its headline
        return {"val_accuracy": 0.9, "test_accuracy": 0.8}

    def evaluate(context):
        raise DataError("the test split is empty")

    assert run_stage("train_head", head, [], argv + ["--backbone", "resnet50"]) == 0
    client = mlflow.MlflowClient()
    experiment = mlflow.get_experiment_by_name("spans")
    assert experiment.tags[EXPERIMENT_KIND_TAG] == "custom_model_development"
    (parent,) = client.search_runs([experiment.experiment_id], "tags.`transferlab.role` = 'pipeline'")
    assert parent.info.status == "FINISHED" and parent.data.metrics == {"head_val_accuracy": 0.9}
    assert parent.info.end_time - parent.info.start_time >= 300  # it lasted as long as its stage
    assert parent.info.run_name.endswith("synthetic resnet50")
    from transferlab.core.digest import file_sha256

    assert parent.data.tags["dvc.lock.sha256"] == file_sha256(tmp_path / "dvc.lock")
    assert run_stage("evaluate", evaluate, [], argv) == 1
    parent = client.get_run(parent.info.run_id)
    assert parent.info.status == "FAILED"
    children = client.search_runs([experiment.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert sorted((run.info.run_name, run.info.status) for run in children) == [("evaluate", "FAILED"),
                                                                               ("train_head@resnet50", "FINISHED")]


def test_epoch_metrics_reach_mlflow_while_training_runs(tmp_path):
    import keras
    import mlflow
    import numpy as np

    from transferlab.tracking.runs import stage_run

    seen = []

    class Probe(keras.callbacks.Callback):  # runs after the live logger, at the end of every epoch
        def on_epoch_end(self, epoch, logs=None):
            history = mlflow.MlflowClient().get_metric_history(mlflow.active_run().info.run_id, "epoch_loss")
            seen.append([point.step for point in history])

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    with stage_run("train_head", "live", tmp_path, {}) as tracker:
        model.fit(np.zeros((8, 2)), np.zeros((8, 1)), epochs=3, verbose=0,
                  callbacks=[*tracker.epoch_callbacks(), Probe()])
    assert seen == [[1], [1, 2], [1, 2, 3]]


def test_a_password_in_a_param_or_a_tag_reaches_no_mlflow_run(tmp_path):
    """Issue 42: `extract.cluster_address: ray://alice:PW@host` was stored in two MLflow params (the stage's and the
    pipeline's); every param and tag now passes through the redaction the log lines get."""
    import mlflow

    from transferlab.tracking.runs import stage_run

    password = "hunter2-Pa55"
    extract = {"extract": {"cluster_address": f"ray://alice:{password}@10.0.0.7:10001", "workers": 2}}
    with stage_run("extract_features", "secrets", tmp_path, extract, pipeline_params=extract) as tracker:
        tracker.set_tags({"cluster": f"ray://alice:{password}@10.0.0.7:10001"})
    experiment = mlflow.get_experiment_by_name("secrets")
    runs = mlflow.MlflowClient().search_runs([experiment.experiment_id])
    assert len(runs) == 2  # the pipeline's run and the stage's
    assert all(run.data.params["extract.cluster_address"] == "ray://***@10.0.0.7:10001" for run in runs)
    assert all(password not in value for run in runs for value in [*run.data.params.values(),
                                                                    *run.data.tags.values()])
    assert [run.data.tags["cluster"] for run in runs if "cluster" in run.data.tags] == ["ray://***@10.0.0.7:10001"]
