"""`transferlab compare` on a real sqlite MLflow store: the newest pipeline runs, their headline figures, the
registry's decision and only the params that differ."""

from __future__ import annotations

import shutil

import mlflow
import pytest

from tests.conftest import PROJECT_ROOT
from transferlab.cli import main
from transferlab.tracking.comparison import PipelineRun, changed_params
from transferlab.tracking.tags import PARENT_TAG, PIPELINE_ROLE, ROLE_TAG

SAME = {"data.image_size": "224", "backbone.name": "mobilenet_v2"}


def _pipeline(client, experiment: str, name: str, params: dict, accuracy: float, registry: tuple | None) -> str:
    started = 1_780_000_000_000 + 60_000 * len(client.search_runs([experiment]))  # a minute apart: a sure order
    run = client.create_run(experiment, run_name=name, tags={ROLE_TAG: PIPELINE_ROLE}, start_time=started)
    for key, value in {**SAME, **params}.items():
        client.log_param(run.info.run_id, key, value)
    client.log_metric(run.info.run_id, "test_accuracy", accuracy)
    client.set_terminated(run.info.run_id)
    if registry:
        child = client.create_run(experiment, start_time=started + 1, tags={
            PARENT_TAG: run.info.run_id, "registry.version": registry[0], "registry.alias": registry[1]})
        client.set_terminated(child.info.run_id)
    return run.info.run_id[:6]


@pytest.fixture
def store(tmp_path):
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("transferlab")
    client = mlflow.MlflowClient()
    ids = [_pipeline(client, experiment, "folder:birds mobilenet_v2", {"head.l2": "probe"}, 0.615, ("1", "challenger")),
           _pipeline(client, experiment, "folder:birds mobilenet_v2", {"head.l2": "0.01"}, 0.802, ("2", "champion")),
           _pipeline(client, experiment, "folder:birds resnet50", {"head.l2": "0.01", "fine_tune.epochs": "10"}, 0.81,
                     None)]
    return tmp_path, uri, ids


def test_compare_shows_the_newest_runs_their_figures_decisions_and_only_changed_params(store, capsys):
    root, uri, ids = store
    assert main(["compare", "--params", str(root / "params.yaml"), "--tracking-uri", uri, "--last", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header, rows = lines[0], {line.split()[0] + (" " + line.split()[1] if line.startswith("param") else ""): line
                              for line in lines[1:]}
    assert header.index(ids[2]) < header.index(ids[1]) and ids[0] not in header  # newest first, --last 2
    assert rows["registry"].split()[1:] == ["-", "v2", "champion"]
    assert rows["test_accuracy"].split()[1:] == ["0.81", "0.802"]
    assert rows["param fine_tune.epochs"].split()[2:] == ["10", "-"]
    assert "param head.l2" not in rows  # equal on both runs shown
    assert not any("image_size" in line or "backbone.name" in line for line in lines)


def test_changed_params_counts_a_key_missing_from_one_run():
    runs = [PipelineRun("a", "x", 0, "FINISHED", {}, {"a": "1", "b": "2"}),
            PipelineRun("b", "x", 0, "FINISHED", {}, {"a": "1"})]
    assert changed_params(runs) == ["b"]


def test_compare_without_a_database_says_so_and_creates_none(tmp_path, capsys):
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert main(["compare", "--params", str(tmp_path / "params.yaml"), "--tracking-uri", uri]) != 0
    error = capsys.readouterr().err.strip()
    assert error.startswith("transferlab compare: ") and "no MLflow database here yet" in error
    assert len(error.splitlines()) == 1 and not (tmp_path / "mlflow.db").exists()


def test_compare_names_an_experiment_without_pipeline_runs(store, capsys):
    root, uri, _ = store
    assert main(["compare", "--params", str(root / "params.yaml"), "--tracking-uri", uri,
                 "--experiment", "birds"]) != 0
    assert "experiment 'birds': no pipeline runs" in capsys.readouterr().err


def test_compare_refuses_more_runs_than_mlflow_returns_in_one_line(store, capsys):
    """Issue 42: `--last 99999999999999999999` was MLflow's traceback."""
    root, uri, _ = store
    assert main(["compare", "--params", str(root / "params.yaml"), "--tracking-uri", uri,
                 "--last", "99999999999999999999"]) == 1
    error = capsys.readouterr().err.strip()
    assert error == ("transferlab compare: error: --last 99999999999999999999: MLflow returns at most 50000 runs "
                     "from one search; ask for that many or fewer")


# ids without the URIs: xdist's node id (`...[uri]@group`, in PYTEST_CURRENT_TEST) would read as a URL with a user
@pytest.mark.parametrize("uri", ["http://[::1", "http://127.0.0.1:notaport", "foo://x"],
                         ids=["ipv6-unclosed", "port-not-a-number", "unknown-scheme"])
def test_compare_with_a_tracking_uri_mlflow_cannot_use_is_one_line(uri, tmp_path, capsys, monkeypatch):
    """Issue 42: the first two were ValueError tracebacks."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # --tracking-uri sets it: put back what it was after
    shutil.copy(PROJECT_ROOT / "params.yaml", tmp_path / "params.yaml")
    assert main(["compare", "--params", str(tmp_path / "params.yaml"), "--tracking-uri", uri]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"transferlab compare: error: MLFLOW_TRACKING_URI {uri}: ") and "\n" not in error
