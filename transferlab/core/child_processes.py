"""Child processes that end with the process that started them, a SIGKILL of it included (Linux's parent-death
signal for our own children, a watcher process for a library's), and the stop of a child's whole process group."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

from transferlab.core.interrupts import default_dispositions, dispositions_while

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@functools.cache
def _prctl() -> Callable[..., int] | None:
    """libc's prctl, looked up before any fork (nothing is loaded between a fork and its exec); None off Linux."""
    return getattr(ctypes.CDLL(None, use_errno=True), "prctl", None)


def end_with(parent: int) -> None:
    """In a child of `parent`: SIGTERM when `parent` ends, however it ends; SIGINT and SIGTERM at their defaults.
    A pool's initializer (with `initargs=(os.getpid(),)`), or the child's half of `ending_with_this_process`."""
    default_dispositions()
    prctl = _prctl()
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # the parent ended before the call above: no signal would come
        os.kill(os.getpid(), signal.SIGTERM)


@contextlib.contextmanager
def ctrl_c_ignored_while_starting_children() -> Iterator[None]:
    """SIGINT ignored while this process starts spawned children, which inherit that through exec (a blocked mask
    does not survive multiprocessing's spawn): a Ctrl-C to the group during their start-up made Python's handler
    print a KeyboardInterrupt traceback in each, and could hang the pool; `end_with` gives them the default action
    once started. Starting them takes milliseconds, and a Ctrl-C inside those is lost to this process too. Main
    thread only (elsewhere Python cannot change a handler, and nothing is changed)."""
    with dispositions_while({signal.SIGINT: signal.SIG_IGN}):
        yield


def ending_with_this_process() -> Callable[[], None]:
    """A `preexec_fn` for `subprocess.Popen`: the child gets SIGTERM when this process ends. The signal comes when
    the thread that started the child ends: start it from the thread that outlives it (the main one)."""
    _prctl()
    return functools.partial(end_with, os.getpid())


def stop_group(process: subprocess.Popen, grace_s: float = 30, sent: int = signal.SIGTERM) -> None:
    """`sent` (SIGTERM) to the process group that `process` leads (started with `process_group=0` or a session of
    its own), then SIGKILL to what is left after `grace_s`, or at once at another Ctrl-C (which is raised again)."""
    with contextlib.suppress(ProcessLookupError):  # the whole group has ended already
        os.killpg(process.pid, sent)
    try:
        process.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        kill_group(process)
    except KeyboardInterrupt:
        kill_group(process)
        raise


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL to the process group that `process` leads; returns once its leader is gone."""
    with contextlib.suppress(ProcessLookupError):  # the whole group has ended already
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


# A watched child's time to end after SIGTERM before SIGKILL: Prefect's own `SubprocessASGIServer.stop` allows its
# server 5 s. A uvicorn server can wait on its connections and services far longer (one outlived a minute in CI).
WATCHED_CHILD_GRACE_S = 5.0

# The watcher's whole program: wait for the pipe from the watched-over process to close. A block that ends says
# "done" first; a pipe that closes without it means that process died (SIGKILL included): end the child it named,
# SIGTERM, then SIGKILL after the grace. (Asking getppid() instead raced: a dying process closes its files before
# its children are handed to another parent, so the watcher could see its parent alive and leave.)
WATCHER = """import contextlib, os, signal, sys, time
child, grace = int(sys.argv[1]), float(sys.argv[2])
if sys.stdin.buffer.read() != b"done":
    with contextlib.suppress(ProcessLookupError):  # it ended with its parent already
        os.kill(child, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            os.kill(child, 0)  # ProcessLookupError once it has ended and been reaped
            time.sleep(0.1)
        os.kill(child, signal.SIGKILL)
"""


@contextlib.contextmanager
def ending_with_this_process_while(child: int, grace_s: float = WATCHED_CHILD_GRACE_S) -> Iterator[None]:
    """For the block: SIGTERM to `child`, a process that a library started (no `preexec_fn` to pass), if this
    process dies, SIGKILL included, and SIGKILL if it is still running `grace_s` later. A small watcher process
    does it; it leaves at the block's end."""
    # A session of its own: a terminal's Ctrl-C is for this process to handle (and no preexec_fn, unsafe in a process
    # with TensorFlow's threads)
    watcher = subprocess.Popen([sys.executable, "-c", WATCHER, str(child), str(grace_s)], stdin=subprocess.PIPE,
                               start_new_session=True)
    try:
        yield
    finally:
        with contextlib.suppress(BrokenPipeError):  # a watcher that is gone has nothing to be told
            watcher.stdin.write(b"done")
            watcher.stdin.close()
        watcher.wait()
