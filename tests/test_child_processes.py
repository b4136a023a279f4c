"""Children end with the process that started them, a SIGKILL of it included; a stopped group leaves nothing."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

from tests.conftest import PROJECT_ROOT
from transferlab.core.child_processes import stop_group

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


def _all_end(processes: list[psutil.Process]) -> list[psutil.Process]:
    """The processes still running once each has had a generous while to end (a process that hangs instead
    is what the tests look for, not a slow one)."""
    _, alive = psutil.wait_procs(processes, timeout=30)
    for process in alive:
        process.kill()
    return alive


@pytest.mark.parametrize("sent", [signal.SIGKILL, signal.SIGTERM])
def test_a_child_started_to_end_with_this_process_ends_when_it_is_killed(sent):
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f'''
        import subprocess, time
        from transferlab.core.child_processes import ending_with_this_process

        child = subprocess.Popen({SLEEPER!r}, preexec_fn=ending_with_this_process())
        print(child.pid, flush=True)
        time.sleep(120)
    ''')], stdout=subprocess.PIPE, text=True, env={"PYTHONPATH": str(PROJECT_ROOT)})
    child = psutil.Process(int(parent.stdout.readline()))
    parent.send_signal(sent)
    parent.wait(timeout=30)
    assert _all_end([child]) == []


def test_a_pool_worker_started_with_end_with_ends_when_the_process_that_started_it_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent('''
        import multiprocessing, os, time
        from transferlab.core.child_processes import end_with

        if __name__ == "__main__":
            pool = multiprocessing.get_context("spawn").Pool(2, end_with, (os.getpid(),))
            time.sleep(120)
    ''')], env={"PYTHONPATH": str(PROJECT_ROOT)})
    started = psutil.Process(parent.pid)
    while len(workers := [child for child in started.children() if "spawn_main" in " ".join(child.cmdline())]) < 2:
        assert parent.poll() is None
    everything = started.children(recursive=True)  # the workers and multiprocessing's resource tracker
    parent.kill()
    parent.wait(timeout=30)
    assert len(workers) == 2 and _all_end(everything) == []


def test_stopping_a_group_ends_its_leader_and_the_processes_the_leader_started():
    leader = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f'''
        import subprocess, time
        child = subprocess.Popen({SLEEPER!r})
        print(child.pid, flush=True)
        time.sleep(120)
    ''')], stdout=subprocess.PIPE, text=True, process_group=0)
    grandchild = psutil.Process(int(leader.stdout.readline()))
    stop_group(leader)
    assert leader.returncode == -signal.SIGTERM
    assert _all_end([grandchild]) == []

