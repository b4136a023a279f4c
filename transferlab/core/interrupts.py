"""Ctrl-C and SIGTERM stop a command as a KeyboardInterrupt whatever disposition its process inherited, and the
processes it forks start with the defaults instead of its handlers."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

_forks_reset = False


def _terminate_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt  # SIGTERM (`kill`, Prefect cancelling, a scheduler) ends like Ctrl-C: one line, 130


def default_dispositions() -> None:
    """SIGINT and SIGTERM end this process without a word. Run in every forked child of a command: a fork pool's
    worker (cleanlab's) that kept the parent's handler raised KeyboardInterrupt when its pool terminated it,
    printing a traceback or dying inside the pool's queue lock, which left the pool deadlocked."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def stop_on_interrupts() -> None:
    """From the main thread of a command's process: SIGINT and SIGTERM raise KeyboardInterrupt. SIGINT is set
    explicitly: a background job of a non-interactive shell (`cmd &` in a script, a CI runner's step) inherits it
    ignored, that survives exec, and Python (and asyncio, Prefect's runner) then never sees Ctrl-C."""
    global _forks_reset
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    if not _forks_reset:  # once per process: each registration would run again in every fork
        os.register_at_fork(after_in_child=default_dispositions)
        _forks_reset = True


def current_handlers() -> dict[int, object]:
    return {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}


def put_back(handlers: dict[int, object]) -> None:
    """From the main thread: the handlers that `current_handlers` returned, over those a library set since (ray.init
    sets SIGTERM to sys.exit, and its core worker adds absl's lines: a SIGTERM became a Prefect crash and exit -6)."""
    if threading.current_thread() is threading.main_thread():
        for number, handler in handlers.items():
            if handler is not None:  # None: a handler set outside Python, which cannot be put back
                signal.signal(number, handler)


@contextlib.contextmanager
def dispositions_while(actions: dict[int, object]) -> Iterator[None]:
    """The signal `actions` (number: handler, SIG_IGN or SIG_DFL) for the length of the block, the previous ones
    after it. Main thread only: elsewhere Python cannot change a handler, and nothing is changed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {number: signal.signal(number, action) for number, action in actions.items()}
    try:
        yield
    finally:
        for number, handler in kept.items():
            signal.signal(number, handler)
