"""Training progress in logs at a readable rate: Keras' `verbose=2` writes two lines per epoch (600 for a
300-epoch head); this writes the first epoch, then one line at most every LOG_EVERY_S seconds, and the last. An
epoch longer than that (fine-tuning a backbone on a CPU) also says how far it got, so no log falls silent."""

from __future__ import annotations

import logging
import numbers
import time
from collections.abc import Callable

import keras

from transferlab.core.progress import LOG_EVERY_S, on_terminal

log = logging.getLogger("transferlab.progress")


class EpochLog(keras.callbacks.Callback):
    """A log line for the first epoch, then whenever `every_s` seconds have passed (inside a long epoch too, with
    its batch count), and for the last one run."""

    def __init__(self, desc: str, every_s: float = LOG_EVERY_S, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self.desc, self.every_s, self.clock = desc, every_s, clock
        self.started = self.last = 0.0
        self.logged = self.done = self.epoch = 0
        self.figures: dict = {}

    def on_train_begin(self, logs=None) -> None:
        self.started = self.last = self.clock()

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        self.epoch = epoch + 1

    def on_train_batch_end(self, batch: int, logs=None) -> None:
        steps = self.params.get("steps")
        if batch + 1 == steps:  # the epoch's own line follows
            return
        now = self.clock()
        if now - self.last >= self.every_s:
            self.last = now
            log.info("%s: epoch %d/%s, batch %d/%s (%.0f s)", self.desc, self.epoch, self.params.get("epochs", "?"),
                     batch + 1, steps or "?", now - self.started)

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        self.done, self.figures = epoch + 1, dict(logs or {})
        now = self.clock()
        if self.logged == 0 or now - self.last >= self.every_s:
            self._line(now)

    def on_train_end(self, logs=None) -> None:
        if self.done and self.logged != self.done:  # the last epoch run (early stopping may end before `epochs`)
            self._line(self.clock())

    def _line(self, now: float) -> None:
        self.last, self.logged = now, self.done
        shown = ", ".join(f"{name} {value:.4g}" for name, value in self.figures.items()
                          if isinstance(value, numbers.Real) and name != "learning_rate")
        log.info("%s: epoch %d/%s, %s (%.0f s)", self.desc, self.done, self.params.get("epochs", "?"), shown,
                 now - self.started)


def training_progress(desc: str) -> tuple[int, tuple]:
    """Keras' `verbose` and the callbacks that show training: a bar with ETA inside each epoch on a terminal
    (verbose 1); in logs and CI, EpochLog's lines instead of Keras' own (verbose 0)."""
    return (1, ()) if on_terminal() else (0, (EpochLog(desc),))
