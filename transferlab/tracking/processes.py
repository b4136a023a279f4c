"""Which pipeline execution and which process a run belongs to, and the sweep of runs whose process is gone.

Stages run as separate processes under `dvc repro`, so the parent is found by a pipeline id:
`TRANSFERLAB_PIPELINE_ID` when a flow sets it, else the id of the `dvc` process that launched
the stage (all stages of one `dvc repro` share it), else a fresh id for a stage run by hand.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path

from transferlab.core.atomic import pid_alive
from transferlab.tracking.tags import PIPELINE_ID_ENV, PROCESS_TAG, STAGE_TAG

log = logging.getLogger("transferlab.tracking")


def _proc_stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a process from /proc; None where /proc is absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[1]), fields[19]


def _dvc_ancestor_id() -> str | None:
    pid = os.getppid()
    for _ in range(8):
        stat = _proc_stat(pid)
        if stat is None or pid <= 1:
            return None
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if any(Path(arg.decode(errors="replace")).name == "dvc" or arg == b"dvc" for arg in argv[:3]):
            return f"dvc-{pid}-{stat[1]}"
        pid = stat[0]
    return None


def shared_pipeline_id() -> str | None:
    """The id of the pipeline execution this stage belongs to (a flow's, or its `dvc` process'); None by hand."""
    return os.environ.get(PIPELINE_ID_ENV) or _dvc_ancestor_id()


def pipeline_id() -> str:
    return shared_pipeline_id() or f"manual-{uuid.uuid4().hex[:12]}"


def process_identity(pid: int | None = None) -> str:
    pid = pid or os.getpid()
    stat = _proc_stat(pid)
    return f"{socket.gethostname()}:{pid}:{stat[1] if stat else ''}"


def is_alive(identity: str) -> bool:
    """Whether the process `identity` names still runs; another host's process counts as alive (not ours to judge)."""
    host, _, rest = identity.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another machine's process: not ours to judge
    pid = int(pid_text)
    stat = _proc_stat(pid)
    if stat is not None:
        return not started or stat[1] == started  # same pid, same start time: the same process
    return pid_alive(pid)  # no /proc (macOS): the pid alone, which the OS may have reused; then the run stays RUNNING


def end_abandoned_runs(client, experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING stage runs whose process on this host is gone (SIGKILL, power loss)."""
    running = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000)
    ended = []
    for run in running:
        identity = run.data.tags.get(PROCESS_TAG)
        if identity and not is_alive(identity):
            client.set_terminated(run.info.run_id, "KILLED")
            ended.append(run.info.run_id)
            log.info("MLflow run %s (%s) was left RUNNING by a process that no longer exists; marked KILLED",
                     run.info.run_id, run.data.tags.get(STAGE_TAG, "?"))
    return ended
