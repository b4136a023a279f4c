"""The team's stack from real parts (PostgreSQL, SeaweedFS, MLflow's server with users, Prefect's server and a
worker), started once for this file: a writer's clone tracks, registers and pushes through it; a reader's clone
pulls, reads and predicts with the champion, and is refused before any work where it would write."""

from __future__ import annotations

import json
import random
import shlex
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import PROJECT_ROOT
from transferlab.stack.layout import Ports
from transferlab.workspace import run_tool, set_params

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]


def _free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_offset() -> int:
    """A port offset whose ports (and SeaweedFS's gRPC ports, 10000 above) nothing holds."""
    for _ in range(200):
        offset = random.randrange(1000, 30000, 7)
        ports = list(vars(Ports().shifted(offset)).values())
        if all(_free(port) for port in ports + [port + 10000 for port in ports[1:5]]):
            return offset
    raise AssertionError("no free ports for a stack")


def _stack(*args: str, stack: Path, cwd: Path = PROJECT_ROOT, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "transferlab", "stack", *args, "--dir", str(stack)], cwd=cwd,
                          capture_output=True, text=True, timeout=900)
    assert not check or done.returncode == 0, done.stderr[-3000:]
    return done


def _sourced(env_file: Path) -> dict[str, str]:
    """The variables an `export NAME=value` file sets, as a shell sourcing it would read them."""
    return dict(shlex.split(line.removeprefix("export "))[0].split("=", 1)
                for line in env_file.read_text().splitlines() if line.startswith("export "))


@pytest.fixture(scope="module")
def team(tmp_path_factory, built_workspace):
    """The stack started once; the writer's clone (the built workspace with its outputs and DVC cache) set up as the
    writer, its evaluate re-run against the stack and its outputs pushed; the reader's clone made by `git clone`."""
    from transferlab.core.errors import UserError
    from transferlab.stack.postgres import server_binaries

    try:
        server_binaries()
    except UserError as exc:
        pytest.skip(f"no PostgreSQL server programs here ({exc}); CI installs them (.ci/run)")
    root = tmp_path_factory.mktemp("team")
    stack = root / "stack"
    up = _stack("up", "--port-offset", str(_free_offset()), stack=stack)
    try:
        source, _, _ = built_workspace
        writer = root / "writer"
        shutil.copytree(source, writer, symlinks=True, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", "tmp"))
        as_writer = _member(stack, "writer", writer)
        run_tool(writer, "python", "-m", "transferlab", "repro", "-f", "-s", "evaluate", env=as_writer)
        run_tool(writer, "git", "add", "-A", env=as_writer)
        run_tool(writer, "git", "commit", "-qm", "evaluated on the team's stack", env=as_writer)
        pushed = run_tool(writer, "dvc", "push", env=as_writer)
        reader = root / "reader"
        run_tool(root, "git", "clone", "-q", str(writer), str(reader))
        yield {"stack": stack, "up": up, "writer": writer, "as_writer": as_writer, "pushed": pushed,
               "reader": reader, "as_reader": _member(stack, "reader", reader)}
    finally:
        _stack("down", stack=stack, check=False)


def _member(stack: Path, user: str, clone: Path) -> dict[str, str]:
    printed = _stack("env", "--user", user, stack=stack, cwd=clone).stdout.strip()
    assert printed.startswith("source ") and printed.count("\n") == 0  # the only line: no secret printed
    return _sourced(Path(printed.removeprefix("source ")))


def test_status_names_each_service_healthy_and_no_secret(team):
    done = _stack("status", stack=team["stack"])
    lines = done.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["postgres", "object-store", "mlflow", "prefect", "prefect-worker"]
    assert all(line.split()[-1] == "ok" for line in lines), done.stdout


def test_the_reader_pulls_what_the_writer_pushed_and_its_own_push_is_refused(team):
    reader, as_reader = team["reader"], team["as_reader"]
    run_tool(reader, "dvc", "pull", env=as_reader)
    for name in ("metrics/evaluate.json", "models/fine_tuned/model.keras"):
        assert (reader / name).read_bytes() == (team["writer"] / name).read_bytes(), name
    assert "up to date" in run_tool(reader, "dvc", "status", env=as_reader).stdout
    (reader / "data" / "params_checked.json").write_text('{"params": "valid"}\n\n')  # a change to push
    run_tool(reader, "dvc", "commit", "-f", "data/params_checked.json", env=as_reader)
    refused = run_tool(reader, "dvc", "push", env=as_reader, check=False)
    assert refused.returncode != 0 and "AccessDenied" in refused.stdout + refused.stderr
    run_tool(reader, "git", "checkout", "--", ".", env=as_reader)
    run_tool(reader, "dvc", "checkout", "-f", env=as_reader)


def test_the_reader_is_refused_before_any_work_where_it_would_write_and_its_outputs_stay(team):
    reader, as_reader = team["reader"], team["as_reader"]
    run_tool(reader, "dvc", "pull", env=as_reader)
    before = (reader / "metrics" / "evaluate.json").read_bytes()
    set_params(reader / "params.yaml", {"evaluate.top_k": 2})
    refused = run_tool(reader, "python", "-m", "transferlab", "repro", env=as_reader, check=False)
    printed = refused.stdout + refused.stderr
    assert refused.returncode != 0 and "Traceback" not in printed
    assert "check_params: error: MLflow user 'reader' has READ on experiment 'transferlab'" in printed
    assert (reader / "metrics" / "evaluate.json").read_bytes() == before
    run_tool(reader, "git", "checkout", "--", "params.yaml", env=as_reader)


def test_the_reader_reads_the_writer_s_runs_and_predicts_with_the_champion(team, tmp_path):
    reader, as_reader = team["reader"], team["as_reader"]
    runs = run_tool(reader, "python", "-c", "import mlflow, json; print(json.dumps(mlflow.search_runs("
                    "experiment_names=['transferlab'], filter_string=\"run_name = 'evaluate'\")"
                    "['tags.registry.alias'].tolist()))", env=as_reader)
    assert json.loads(runs.stdout.strip().splitlines()[-1]) == ["champion"]
    image = next((reader / "data" / "raw").rglob("*.png"), None) or next((reader / "data" / "raw").rglob("*.jp*g"))
    predicted = run_tool(reader, "python", "-m", "transferlab", "predict", str(image), "--model",
                         "models:/transferlab@champion", "--json", env=as_reader)
    assert json.loads(predicted.stdout)[0]["top"], predicted.stdout  # downloaded through the server's S3 proxy


def _files_holding(folders: list[Path], secrets: list[str], allowed: set[Path]) -> list[str]:
    found = []
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file() and not path.is_symlink() and path not in allowed:
                data = path.read_bytes()
                found += [f"{path}: secret {index}" for index, secret in enumerate(secrets)
                          if secret.encode() in data]
    return found


def test_no_password_or_secret_key_is_in_any_file_log_tag_or_param_the_team_made(team):
    from transferlab.stack.secrets import read_credentials

    stack, writer, reader = team["stack"], team["writer"], team["reader"]
    secrets = read_credentials(stack / "credentials.json").all_secrets()
    kept = {stack / "credentials.json", stack / "mlflow-basic-auth.ini", *(stack / "members").glob("*.env"),
            writer / ".dvc" / "config.local", reader / ".dvc" / "config.local"}
    for path in kept:
        assert path.stat().st_mode & 0o077 == 0, path  # where a secret must be, only its owner reads it
    assert _files_holding([writer, reader, stack / "logs"], secrets, kept) == []
    assert not any(secret in team["up"].stdout + team["up"].stderr for secret in secrets)
    recorded = run_tool(reader, "python", "-c", "import mlflow, json; c = mlflow.MlflowClient(); runs = "
                        "c.search_runs([e.experiment_id for e in c.search_experiments()]); print(json.dumps("
                        "[[r.data.params, r.data.tags] for r in runs] + [[v.tags, v.description, v.source] for v "
                        "in c.search_model_versions()]))", env=team["as_reader"]).stdout
    assert len(json.loads(recorded.strip().splitlines()[-1])) >= 3  # the pipeline's run, evaluate's, a version
    assert not [index for index, secret in enumerate(secrets) if secret in recorded]


def test_down_stops_what_up_started_and_the_runs_survive_another_up(team):
    stack, reader = team["stack"], team["reader"]
    _stack("down", stack=stack)
    stopped = _stack("status", stack=stack, check=False)
    assert stopped.returncode == 1 and stopped.stdout.count("not running") == 4, stopped.stdout
    _stack("up", stack=stack)  # the ports stack.json holds
    runs = run_tool(reader, "python", "-c", "import mlflow; print(len(mlflow.search_runs(experiment_names="
                    "['transferlab'])))", env=team["as_reader"])
    assert int(runs.stdout.strip().splitlines()[-1]) >= 2
