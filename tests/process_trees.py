"""Every process a command under test started, found by a mark in the environment it inherits (whoever re-parents
it, whatever session it moves to), and the check that none of them outlives the command."""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping

import psutil

MARK = "TRANSFERLAB_TEST_TREE"


def marked(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with a mark of its own: the processes started with it and all their descendants carry it."""
    return {**env, MARK: uuid.uuid4().hex}


def tree(env: Mapping[str, str]) -> list[psutil.Process]:
    """The running processes that carry the mark of `env`."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.pid != os.getpid() and process.environ().get(MARK) == env[MARK]:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue  # ended while we looked, or not ours to read
    return found


def commands(env: Mapping[str, str]) -> list[str]:
    """The command lines of the running processes that carry the mark of `env`."""
    found = []
    for process in tree(env):
        try:
            found.append(" ".join(process.cmdline()))
        except psutil.NoSuchProcess:
            continue  # ended while we looked
    return found


def survivors(env: Mapping[str, str], wait_s: float = 60) -> list[str]:
    """The marked processes still running after each has had `wait_s` to end, as command lines; they are killed so
    that a failing test leaves nothing behind either."""
    _, alive = psutil.wait_procs(tree(env), timeout=wait_s)
    left = []
    for process in alive:
        try:
            left.append(f"{process.pid}: {' '.join(process.cmdline())[:200]}")
            process.kill()
        except psutil.NoSuchProcess:
            continue  # it ended after all
    return left
