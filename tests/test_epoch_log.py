"""Training in logs: the first epoch, a line at most every 15 s, and the last epoch run; not two lines per epoch."""

from __future__ import annotations

import logging

import keras
import numpy as np

from transferlab.modeling import epoch_log
from transferlab.modeling.epoch_log import EpochLog, training_progress


def _fit(epochs: int, callback: EpochLog, patience: int | None = None, ticks: tuple = (), batch_size: int = 32):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy")
    features, labels = np.random.default_rng(0).normal(size=(16, 4)), np.arange(16) % 2
    stops = [keras.callbacks.EarlyStopping("loss", patience=patience, min_delta=10.0)] if patience else []
    model.fit(features, labels, epochs=epochs, verbose=0, batch_size=batch_size,
              callbacks=[*stops, *ticks, callback])


class FakeClock(keras.callbacks.Callback):
    """Time that passes only as training does: `per_epoch` seconds at each epoch's end, `per_batch` at each
    batch's (it runs before EpochLog, which then reads it)."""

    def __init__(self, per_epoch: float = 0.0, per_batch: float = 0.0):
        super().__init__()
        self.now, self.per_epoch, self.per_batch = 0.0, per_epoch, per_batch

    def __call__(self) -> float:
        return self.now

    def on_train_batch_end(self, batch, logs=None):
        self.now += self.per_batch

    def on_epoch_end(self, epoch, logs=None):
        self.now += self.per_epoch


def _epochs_logged(caplog) -> list[str]:
    return [record.getMessage().split(",")[0] for record in caplog.records if "epoch " in record.getMessage()]


def test_a_300_epoch_fit_logs_the_first_epoch_one_line_per_15_seconds_and_the_last(caplog):
    clock = FakeClock(per_epoch=1.0)  # every epoch takes one second
    caplog.set_level(logging.INFO, logger="transferlab.progress")
    _fit(60, EpochLog("head", clock=clock), ticks=(clock,))
    assert _epochs_logged(caplog) == ["head: epoch 1/60", "head: epoch 16/60", "head: epoch 31/60",
                                      "head: epoch 46/60", "head: epoch 60/60"]
    assert "loss " in caplog.records[0].getMessage()


def test_an_epoch_longer_than_15_seconds_says_how_far_it_got(caplog):
    clock = FakeClock(per_batch=10.0)  # 4 batches of 10 s: no 15 s without a line
    caplog.set_level(logging.INFO, logger="transferlab.progress")
    _fit(2, EpochLog("fine-tune", clock=clock), ticks=(clock,), batch_size=4)
    lines = [record.getMessage().split(" (")[0].split(", loss")[0] for record in caplog.records
             if record.name == "transferlab.progress"]
    assert lines == ["fine-tune: epoch 1/2, batch 2/4", "fine-tune: epoch 1/2", "fine-tune: epoch 2/2, batch 2/4",
                     "fine-tune: epoch 2/2"]


def test_an_early_stop_logs_the_epoch_it_stopped_at(caplog):
    caplog.set_level(logging.INFO, logger="transferlab.progress")
    _fit(300, EpochLog("head", every_s=3600), patience=3)  # min_delta 10: no epoch counts as an improvement
    assert _epochs_logged(caplog) == ["head: epoch 1/300", "head: epoch 4/300"]


def test_on_a_terminal_keras_shows_its_bar_and_in_logs_the_epoch_lines_replace_it(monkeypatch):
    monkeypatch.setattr(epoch_log, "on_terminal", lambda: True)
    assert training_progress("head") == (1, ())
    monkeypatch.setattr(epoch_log, "on_terminal", lambda: False)
    verbose, callbacks = training_progress("head")
    assert verbose == 0 and isinstance(callbacks[0], EpochLog)
