"""The tracking store is checked before any work (issue 42): a server that refuses the credentials, stages racing
to create a fresh sqlite store, one left half-migrated, a sqlite URI in a missing folder, a moved project."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from tests.conftest import PROJECT_ROOT
from tests.mlflow_servers import kill_group, mlflow_server
from transferlab.stage_runner import run_stage
from transferlab.tracking.store import check_tracking_store

PASSWORD = "hunter2-Pa55"
ADMIN_PASSWORD = "adm1n-Pa55-word"


def _params(folder, text: str = "{}\n"):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(text)
    return ["--params", str(folder / "params.yaml")]


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    """One MLflow server with `--app-name basic-auth` for the file; its admin is the only account."""
    folder = tmp_path_factory.mktemp("auth-server")
    (folder / "auth.ini").write_text(textwrap.dedent(f"""\
        [mlflow]
        default_permission = READ
        database_uri = sqlite:///{folder / 'auth.db'}
        admin_username = admin
        admin_password = {ADMIN_PASSWORD}
        authorization_function = mlflow.server.auth:authenticate_request_basic_auth
        """))
    process, port = mlflow_server(folder, "basic-auth", {"MLFLOW_AUTH_CONFIG_PATH": str(folder / "auth.ini"),
                                                         "MLFLOW_FLASK_SERVER_SECRET_KEY": "a-test-key"})
    yield port
    kill_group(process)


@pytest.mark.slow  # a real MLflow server with authentication
@pytest.mark.parametrize("user", ["alice:" + PASSWORD, None], ids=["wrong credentials", "none"])
def test_a_server_that_refuses_the_credentials_stops_the_stage_before_any_work(auth_server, user, tmp_path,
                                                                               monkeypatch, capsys):
    """Issue 42: /health answers anyone, so check_params passed; the stage then failed in MLflow with a traceback
    after DVC had removed its outputs (data/raw)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://{user + '@' if user else ''}127.0.0.1:{auth_server}")
    ran = []
    assert run_stage("download", ran.append, [], _params(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert ran == [] and "\n" not in err and PASSWORD not in err
    assert err.startswith(f"download: error: MLFLOW_TRACKING_URI http://{'***@' if user else ''}127.0.0.1:")
    assert "refuses this client (HTTP 401 Unauthorized); set MLFLOW_TRACKING_USERNAME" in err


@pytest.mark.slow  # a real MLflow server with authentication
def test_the_credentials_a_server_accepts_pass_and_track(auth_server, tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{auth_server}")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN_PASSWORD)
    assert run_stage("download", lambda context: context.tracker.set_tags({"reached": "yes"}), [],
                     _params(tmp_path)) == 0
    import mlflow

    experiment = mlflow.get_experiment_by_name("transferlab")
    [run] = mlflow.MlflowClient().search_runs([experiment.experiment_id], "tags.reached = 'yes'")
    assert run.info.status == "FINISHED"


RACER = textwrap.dedent("""
    import sys, time
    from pathlib import Path

    import mlflow.store.tracking.sqlalchemy_store  # seconds of imports first: the processes race at the creation
    from transferlab.tracking.store import check_tracking_store

    root = Path(sys.argv[1])
    (root / f"ready-{sys.argv[2]}").touch()
    while not (root / "go").exists():
        time.sleep(0.001)
    check_tracking_store(root)
""")


def test_stages_making_a_fresh_store_at_once_leave_it_whole(tmp_path):
    """Issue 42: two stages starting together on a fresh store ran MLflow's migrations side by side (one failed
    with `duplicate column name`, or both left `_alembic_tmp_*` tables and every later stage failed)."""
    import mlflow

    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(PROJECT_ROOT), "MLFLOW_TRACKING_URI": ""}
    racers = [subprocess.Popen([sys.executable, "-c", RACER, str(tmp_path), str(index)], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for index in range(2)]
    while not all((tmp_path / f"ready-{index}").exists() for index in range(2)):
        assert all(racer.poll() is None for racer in racers), [racer.communicate()[0] for racer in racers]
        time.sleep(0.05)
    (tmp_path / "go").touch()
    outputs = [racer.communicate(timeout=300)[0] for racer in racers]
    assert [racer.returncode for racer in racers] == [0, 0], outputs
    with sqlite3.connect(tmp_path / "mlflow.db") as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not [name for name in tables if name.startswith("_alembic_tmp_")]
    # MLflow opens it only when its schema is at the head revision
    experiments = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_experiments()
    assert [experiment.name for experiment in experiments] == ["Default"]


def test_a_half_migrated_store_is_one_line_naming_its_fix(tmp_path, monkeypatch, capsys):
    database = tmp_path / "mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{database}")
    check_tracking_store(tmp_path)
    with sqlite3.connect(database) as connection:  # what an interrupted batch migration leaves behind
        connection.execute("CREATE TABLE _alembic_tmp_model_versions (name VARCHAR(256))")
    capsys.readouterr()  # MLflow's lines while it made the store
    ran = []
    assert run_stage("download", ran.append, [], _params(tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert ran == [] and "\n" not in err and "half-migrated (leftover _alembic_tmp_model_versions" in err
    assert f"sqlite3 {database} 'DROP TABLE _alembic_tmp_model_versions'" in err
    assert err.endswith(f"`mlflow db upgrade sqlite:///{database}`")


def test_a_sqlite_store_in_a_missing_folder_is_refused_and_makes_none(tmp_path, monkeypatch, capsys):
    """Issue 42: MLflow made the folders of `sqlite:////nonexistent/d/m.db` (a typo started an empty store)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'no' / 'such' / 'm.db'}")
    ran = []
    assert run_stage("download", ran.append, [], _params(tmp_path / "project")) == 1
    err = capsys.readouterr().err.strip()
    assert ran == [] and "\n" not in err and f"the folder {tmp_path / 'no' / 'such'} does not exist" in err
    assert not (tmp_path / "no").exists()


def test_a_moved_project_stops_before_writing_into_its_old_folder(tmp_path, monkeypatch, capsys):
    """Issue 42: a moved project logged its artifacts into the old path (MLflow fixes an experiment's artifact
    folder when it creates it) and so recreated the old folder with 7 files."""
    old, new = tmp_path / "old", tmp_path / "new"

    def logs_a_file(context):
        (context.root / "note.txt").write_text("an artifact")
        context.tracker.log_artifacts(context.root / "note.txt")

    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # the project's own sqlite:///mlflow.db
    assert run_stage("download", logs_a_file, [], _params(old)) == 0
    assert (old / "mlartifacts").is_dir()
    old.rename(new)
    monkeypatch.delenv("MLFLOW_TRACKING_URI")  # a stage's run sets it for its process
    capsys.readouterr()  # MLflow's lines while the first stage made the store
    assert run_stage("download", logs_a_file, [], _params(new)) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "moved or copied" in err
    assert f"keeps its artifacts in {old / 'mlartifacts'}, outside this store's {new / 'mlartifacts'}" in err
    assert not old.exists()
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # the fix the line names: a new experiment logs here
    assert run_stage("download", logs_a_file, [], _params(new, "mlflow: {experiment: moved}\n")) == 0
    logged = sorted((new / "mlartifacts").glob("*/artifacts/note.txt"))
    assert not old.exists() and len(logged) == 2  # the first run's, moved with the project, and the new one's
