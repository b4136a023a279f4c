"""How much progress to show: live bars on a terminal, one line per step in logs and CI."""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("transferlab.progress")


def on_terminal() -> bool:
    """Whether a person watches this process' output live (stderr is a terminal, as for tqdm)."""
    return sys.stderr.isatty()


LOG_EVERY_S = 15.0  # in logs: a progress line at most this often, so a long phase is never silent


def with_progress(items: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    """`items`, with progress: a tqdm bar (count, rate, ETA) on a terminal; in logs, a line when the phase
    starts, every LOG_EVERY_S seconds (count and ETA) and when it ends (count and time)."""
    total = total if total is not None else (len(items) if isinstance(items, Sized) else None)
    if on_terminal():
        from tqdm import tqdm

        yield from tqdm(items, total=total, desc=desc)
        return
    started = last = time.monotonic()
    log.info("%s: %s", desc, f"{total} to do" if total else "started")
    done = 0
    for item in items:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= LOG_EVERY_S:
            last = now
            log.info("%s: %s", desc, _status(done, total, now - started))
    log.info("%s: %d%s done in %.1f s", desc, done, f"/{total}" if total else "", time.monotonic() - started)


def _status(done: int, total: int | None, elapsed: float) -> str:
    if not total:
        return f"{done} in {elapsed:.0f} s"
    eta = elapsed / done * (total - done)
    return f"{done}/{total} ({100 * done / total:.0f} %), {elapsed:.0f} s, about {eta:.0f} s left"


class Heartbeat:
    """Inside one long item of a phase (one epsilon of a sweep on many images): a line only when LOG_EVERY_S
    seconds have passed since the last, so a log never falls silent longer than that and one batch."""

    def __init__(self, desc: str, every_s: float | None = None, clock: Callable[[], float] = time.monotonic):
        self.desc, self.every_s, self.clock = desc, LOG_EVERY_S if every_s is None else every_s, clock
        self.started = self.last = clock()

    def __call__(self, status: str) -> None:
        now = self.clock()
        if now - self.last >= self.every_s:
            self.last = now
            log.info("%s: %s (%.0f s)", self.desc, status, now - self.started)


@contextlib.contextmanager
def phase(desc: str) -> Iterator[None]:
    """One step too coarse for a count (a compiled loop): a line when it starts and one with its time."""
    started = time.monotonic()
    log.info("%s ...", desc)
    yield
    log.info("%s: done in %.1f s", desc, time.monotonic() - started)


def process_age() -> float | None:
    """Seconds since this process started (Linux: its /proc entry's time), None where that is not known."""
    import os

    try:
        return time.time() - os.stat(f"/proc/{os.getpid()}").st_ctime
    except OSError:
        return None


@contextlib.contextmanager
def stage_timing(stage: str) -> Iterator[None]:
    """One line when the stage's own work starts, saying how long start-up took (Python, TensorFlow, MLflow,
    params), and one with the work's time when it ends: what a slow stage spends where."""
    startup = process_age()
    log.info("%s: work starts%s", stage, f" after {startup:.1f} s of start-up" if startup is not None else "")
    started = time.monotonic()
    yield
    log.info("%s: work done in %.1f s", stage, time.monotonic() - started)
