"""The stack's pieces that need no server: its layout and ports, its credentials file, what each member's key and
account may do, and a member's environment file."""

from __future__ import annotations

import contextlib
import json
import stat

import pytest

from transferlab.core.errors import UserError
from transferlab.stack import control, object_store, tracking_server
from transferlab.stack.layout import Ports, StackLayout, default_stack_dir, load_layout, save_layout
from transferlab.stack.secrets import MEMBERS, load_or_create, read_credentials


def test_one_stack_per_account_unless_a_folder_is_named(tmp_path):
    assert default_stack_dir({"TRANSFERLAB_STACK_DIR": str(tmp_path / "s")}) == tmp_path / "s"
    assert default_stack_dir({"XDG_DATA_HOME": str(tmp_path)}) == tmp_path / "transferlab" / "stack"


def test_a_stack_keeps_the_ports_of_its_first_up_and_refuses_to_move_them(tmp_path):
    layout = load_layout(tmp_path, port_offset=7)
    assert layout.ports == Ports().shifted(7) and layout.ports.mlflow == Ports().mlflow + 7
    save_layout(layout)
    assert load_layout(tmp_path).ports == layout.ports  # `status`, `down`, `env` find the same services
    # the id names its data kept elsewhere (a root-run PostgreSQL's): the same stack keeps it, a new one does not
    assert load_layout(tmp_path).stack_id == layout.stack_id != load_layout(tmp_path / "new").stack_id
    with pytest.raises(UserError, match=r"--port-offset 8 would move them"):
        load_layout(tmp_path, port_offset=8)


def test_credentials_are_generated_once_into_a_file_only_the_owner_reads(tmp_path):
    path = tmp_path / "credentials.json"
    first = load_or_create(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create(path) == first  # the services' passwords do not change under them
    assert set(first.members) == set(MEMBERS) and len(set(first.all_secrets())) == len(first.all_secrets())
    path.chmod(0o644)
    with pytest.raises(UserError, match="readable by others"):
        read_credentials(path)


def test_the_reader_s_key_may_read_and_list_the_object_store_only(tmp_path):
    credentials = load_or_create(tmp_path / "c.json")
    identities = {identity["name"]: identity for identity in object_store.s3_config(credentials)["identities"]}
    assert identities["reader"]["actions"] == ["Read", "List"]
    assert "Write" in identities["writer"]["actions"] and "Admin" not in identities["writer"]["actions"]
    keys = {identity["credentials"][0]["accessKey"] for identity in identities.values()}
    assert len(keys) == 3  # one key each: the reader's cannot push


def test_mlflow_grants_edit_to_the_writer_and_read_to_everyone_else(tmp_path):
    layout = StackLayout(tmp_path)
    ini = tracking_server.auth_config(layout, load_or_create(tmp_path / "c.json"))
    assert "default_permission = READ" in ini and "postgresql://" in ini
    assert tracking_server.ROLE_PERMISSIONS == {"writer": "EDIT", "reader": "READ"}


def test_a_member_environment_file_holds_that_member_s_secrets_and_only_its_owner_reads_it(tmp_path):
    layout = StackLayout(tmp_path)
    save_layout(layout)
    credentials = load_or_create(layout.credentials_file)
    path = control.write_member_env(layout, "reader")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    reader = credentials.members["reader"]
    assert f"MLFLOW_TRACKING_PASSWORD={reader['mlflow_password']}" in text.replace("'", "")
    assert reader["s3_secret_key"] in text and credentials.members["writer"]["s3_secret_key"] not in text
    assert credentials.postgres_password not in text and credentials.mlflow_admin_password not in text
    with pytest.raises(UserError, match="not a member of this stack"):
        control.write_member_env(layout, "admin")


def test_status_without_a_stack_is_one_line(tmp_path, capsys):
    from transferlab.cli import main

    assert main(["stack", "status", "--dir", str(tmp_path / "none")]) == 1
    assert capsys.readouterr().err.strip() == (f"transferlab stack: error: stack status: no stack in "
                                               f"{tmp_path / 'none'}; start one with `transferlab stack up`")


def test_a_second_up_or_down_while_one_works_on_the_stack_is_refused_in_one_line(tmp_path, monkeypatch):
    from transferlab.stack import postgres

    def went_on(*_):
        raise AssertionError("a second up went on beside the first")

    monkeypatch.setattr(postgres, "initialize", went_on)
    monkeypatch.setattr(control, "stop_daemon", went_on)
    layout = StackLayout(tmp_path)
    with control.one_at_a_time(layout, "up"):
        with pytest.raises(UserError, match=r"stack up: another `transferlab stack up` or `down` is working on"):
            control.up(layout, "transferlab", "transferlab", say=lambda _: None)
        with pytest.raises(UserError, match=r"stack down: another"):
            control.down(layout, say=lambda _: None)
    with pytest.raises(AssertionError, match="went on"):  # the lock ends with its holder
        control.down(layout, say=lambda _: None)


def test_up_refuses_a_port_another_program_holds_before_starting_or_asking_it_anything(tmp_path):
    import dataclasses
    import socket

    def started(*_):
        raise AssertionError("mlflow started over a taken port (its health check then asked the other program)")

    with socket.create_server(("127.0.0.1", 0)) as other_program:  # e.g. `python -m http.server` on that port
        port = other_program.getsockname()[1]
        layout = StackLayout(tmp_path, Ports(mlflow=port))
        mlflow = next(daemon for daemon in control.DAEMONS if daemon.name == tracking_server.SERVICE)
        with pytest.raises(UserError, match=rf"^mlflow: port {port} on 127.0.0.1 is taken by another program"):
            control._start(dataclasses.replace(mlflow, start=started), layout, load_or_create(tmp_path / "c.json"))


def test_down_stops_what_a_daemon_started_after_its_own_process_was_killed(tmp_path):
    """kill -9 of `mlflow server` leaves its uvicorn holding the port: status and down still know it as the stack's."""
    import os
    import signal
    import sys
    import time

    from transferlab.stack.daemons import _group, running_pid, start_daemon, stop_daemon

    marker, child_pid_file = "--port 65123", tmp_path / "child.pid"
    child = [sys.executable, "-c", "import time; time.sleep(120)", *marker.split()]
    leader = (f"import os, subprocess, time; child = subprocess.Popen({child!r}); "
              f"open({str(child_pid_file)!r}, 'w').write(str(child.pid)); time.sleep(120)")
    pid_file = tmp_path / "mlflow.pid"
    pid = start_daemon([sys.executable, "-c", leader, *marker.split()], os.environ, tmp_path / "log", pid_file)
    while not (child_pid_file.exists() and child_pid_file.read_text()):
        time.sleep(0.05)
    child_pid = int(child_pid_file.read_text())
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    try:
        assert running_pid(pid_file, marker) == pid
        assert stop_daemon(pid_file, marker, grace_s=5)
        assert not _group(pid)  # the orphaned child ended with its group
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(child_pid, signal.SIGKILL)
