"""The stack's long-running processes: started in a session of their own (a terminal's Ctrl-C or the end of the
command that started them does not reach them), their ids in pid files, stopped only when a pid file names them."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from transferlab.core.errors import UserError


def start_daemon(argv: list[str], env: Mapping[str, str], log: Path, pid_file: Path) -> int:
    """`argv` in the background with its output appended to `log`; its id is written to `pid_file`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as output:
        process = subprocess.Popen(argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=output,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    pid_file.write_text(str(process.pid), encoding="utf-8")
    return process.pid


def refuse_taken_ports(name: str, host: str, ports: tuple[int, ...]) -> None:
    """One line when another program listens on a port `name` is to take: its start would fail, and the stack's
    health check (and MLflow's admin password) would reach that program instead."""
    for port in ports:
        with socket.socket() as probe:
            probe.settimeout(2)
            if probe.connect_ex((host, port)) == 0:
                raise UserError(f"{name}: port {port} on {host} is taken by another program (`ss -ltnp 'sport = "
                                f":{port}'` names it); stop it and run `transferlab stack up` again")


def running_pid(pid_file: Path, marker: str) -> int | None:
    """The id in `pid_file` if that process still runs and its command line holds `marker` (an id the OS gave to
    another process since is not ours to stop)."""
    try:
        pid = int(pid_file.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
    if Path(f"/proc/{pid}").exists():
        return pid if marker in _command(pid) else None
    # its leader killed (kill -9), the group lives on in its children (mlflow's uvicorn holds the port): the OS
    # gives no new process an id that still names a group, so these are the daemon's
    return pid if any(marker in _command(member) for member in _group(pid)) else None


def _command(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return ""


def _group(pgid: int) -> list[int]:
    """The live processes of process group `pgid`."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            state, _, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
            if int(group) == pgid and state != "Z":
                members.append(int(stat.parent.name))
    return members


def stop_daemon(pid_file: Path, marker: str, grace_s: float = 10) -> bool:
    """SIGTERM to the session the daemon of `pid_file` leads, SIGKILL after `grace_s`; False if none ran."""
    pid = running_pid(pid_file, marker)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    if not wait_until(lambda: not _alive(pid) and not _group(pid), grace_s):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
        wait_until(lambda: not _alive(pid) and not _group(pid), 5)
    pid_file.unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # ours: reaped now
            return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_until(ready: Callable[[], bool], timeout_s: float, every_s: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return True
        time.sleep(every_s)
    return ready()


def await_ready(name: str, ready: Callable[[], bool], pid: int, log: Path, timeout_s: float,
                secrets: list[str]) -> None:
    """Wait for the started service `pid` to answer; one line naming it and its log when it ends or stays silent."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if ready():
            return
        if not _alive(pid):
            raise UserError(f"{name} stopped while starting; see {log} (last line: {last_line(log, secrets)})")
        time.sleep(0.5)
    raise UserError(f"{name} did not answer within {timeout_s:g} s; see {log} (last line: "
                    f"{last_line(log, secrets)})")


def last_line(log: Path, secrets: list[str]) -> str:
    """The log's last line with the stack's secrets masked (a service may print its connection string)."""
    from transferlab.core.redaction import scrub

    with contextlib.suppress(OSError):
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
        return scrub(lines[-1], secrets)[:200] if lines else "empty"
    return "no log"
