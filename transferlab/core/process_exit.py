"""Ending a stage's process as the interpreter would, without its teardown of every module and object."""

from __future__ import annotations

import atexit
import os
import sys
import threading
from typing import NoReturn


def exit_without_teardown(code: int) -> NoReturn:
    """Wait for non-daemon threads, run the atexit handlers (logging, MLflow, Ray, multiprocessing) and flush the
    standard streams, in the interpreter's own order, then leave without finalizing the modules: with TensorFlow
    and Keras loaded that takes 1.5-2 s of CPU per stage process, paid by every stage of every `dvc repro`
    (a train_head stage's exit: 1.58 s -> 0.06 s)."""
    for thread in threading.enumerate():
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()  # noqa: SLF001 - the interpreter's own step, run before the exit it skips
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
