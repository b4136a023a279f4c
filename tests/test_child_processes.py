"""Children end with the process that started them, a SIGKILL of it included; a stopped group leaves nothing."""

from __future__ import annotations

import os
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
            pool.map(time.sleep, [1, 1], chunksize=1)  # a task each: both workers ran the initializer
            print("at work", flush=True)
            time.sleep(120)
    ''')], stdout=subprocess.PIPE, text=True, env={"PYTHONPATH": str(PROJECT_ROOT)})
    assert parent.stdout.readline().strip() == "at work"
    everything = psutil.Process(parent.pid).children(recursive=True)  # the workers, multiprocessing's tracker
    workers = sum("spawn_main" in " ".join(child.cmdline()) for child in everything)
    parent.kill()
    parent.wait(timeout=30)
    assert workers == 2 and _all_end(everything) == []


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


# A child that does not end at SIGTERM, as a uvicorn server waiting on its connections and services may not.
DEAF_TO_SIGTERM = [sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                                         "print('deaf', flush=True); time.sleep(120)"]


@pytest.mark.parametrize(("parent_killed", "child_command"),
                         [(True, SLEEPER), (True, DEAF_TO_SIGTERM), (False, SLEEPER)],
                         ids=["parent-killed", "parent-killed-child-deaf-to-sigterm", "block-ended"])
def test_a_child_a_library_started_ends_if_the_process_dies_inside_the_watched_block(parent_killed, child_command):
    """Prefect's temporary server (started by Prefect: no `preexec_fn` to pass) outlived a SIGKILLed stage; in CI
    it outlived the watcher's SIGTERM by a minute, so one that ignores SIGTERM gets SIGKILL after the grace."""
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f'''
        import subprocess, sys, time
        from transferlab.core.child_processes import ending_with_this_process_while

        child = subprocess.Popen({child_command!r}, stdout=subprocess.PIPE, text=True)
        if {child_command is DEAF_TO_SIGTERM}:
            child.stdout.readline()  # its SIGTERM handler is set
        with ending_with_this_process_while(child.pid, grace_s=2):
            print(child.pid, flush=True)
            sys.stdin.readline()  # the test says when the block ends
        print("block ended", flush=True)
        time.sleep(120)
    ''')], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env={"PYTHONPATH": str(PROJECT_ROOT)})
    child = psutil.Process(int(parent.stdout.readline()))
    watcher = [process for process in psutil.Process(parent.pid).children() if process.pid != child.pid]
    if parent_killed:
        parent.kill()
        assert _all_end([child, *watcher]) == []
    else:
        parent.stdin.write("end\n")
        parent.stdin.flush()
        assert parent.stdout.readline().strip() == "block ended"
        assert _all_end(watcher) == [] and child.status() != psutil.STATUS_ZOMBIE  # not a death: the child stays
        parent.kill()
        child.kill()
    parent.wait(timeout=30)


def test_ctrl_c_while_spawned_pool_workers_start_up_ends_them_quietly(tmp_path):
    """A Ctrl-C reaching the group while the workers were still importing (before their initializer) printed a
    KeyboardInterrupt traceback from each, and could leave the pool hung; held, it waits for `end_with`."""
    script = tmp_path / "pool.py"
    script.write_text(textwrap.dedent('''
        import multiprocessing, os, sys, time
        from transferlab.core.child_processes import ctrl_c_ignored_while_starting_children, end_with
        from transferlab.core.interrupts import stop_on_interrupts

        if __name__ == "__mp_main__":
            print("worker starting", flush=True)
            time.sleep(3)  # a worker's start-up: importing the modules its tasks need

        if __name__ == "__main__":
            stop_on_interrupts()
            try:
                with ctrl_c_ignored_while_starting_children():
                    pool = multiprocessing.get_context("spawn").Pool(2, end_with, (os.getpid(),))
                with pool:
                    pool.map(time.sleep, [60, 60], chunksize=1)
            except KeyboardInterrupt:
                print("interrupted", flush=True)
                sys.exit(130)
    '''))
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, env={"PYTHONPATH": str(PROJECT_ROOT)}, start_new_session=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    starting = [parent.stdout.readline() for _ in range(2)]
    assert starting == ["worker starting\n"] * 2
    os.killpg(parent.pid, signal.SIGINT)  # a terminal's Ctrl-C reaches the whole foreground group
    output, _ = parent.communicate(timeout=60)
    assert parent.returncode == 130 and "Traceback" not in output and "KeyboardInterrupt" not in output, output
