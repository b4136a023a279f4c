"""The fine-tune resume checkpoint: written whole or not at all, and a damaged one is discarded, not fatal."""

from __future__ import annotations

import errno
import logging

import keras
import numpy as np
import pytest

from transferlab.modeling.resume import VerifiedBackupAndRestore


def _model():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    return model


DATA = (np.random.default_rng(0).normal(size=(32, 4)).astype("float32"), np.zeros((32, 1), "float32"))


class _Kill(keras.callbacks.Callback):
    """Stops the process the way a SIGKILL after an epoch's backup would: by raising out of fit."""

    def on_epoch_end(self, epoch, logs=None):
        if epoch == 1:
            raise KeyboardInterrupt


class _Epochs(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seen = []

    def on_epoch_begin(self, epoch, logs=None):
        self.seen.append(epoch)


def _fit(model, backup, *extra, epochs=4):
    epochs_seen = _Epochs()
    model.fit(*DATA, epochs=epochs, verbose=0, callbacks=[VerifiedBackupAndRestore(backup), epochs_seen, *extra])
    return epochs_seen.seen


def test_a_killed_fit_resumes_after_its_last_backed_up_epoch(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _fit(_model(), tmp_path / "backup", _Kill())
    assert _fit(_model(), tmp_path / "backup") == [2, 3]
    assert not (tmp_path / "backup").exists()  # a finished fit removes its backup


def test_a_truncated_checkpoint_is_discarded_with_a_warning_and_training_starts_over(tmp_path, caplog):
    """Issue 14, finding 4: a disk full mid-write left a truncated file that failed every later run."""
    with pytest.raises(KeyboardInterrupt):
        _fit(_model(), tmp_path / "backup", _Kill())
    weights = tmp_path / "backup" / "latest.weights.h5"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 3])
    history_log = tmp_path / "history.csv"
    history_log.write_text("epoch,loss\n0,1.0\n1,0.5\n")
    model, fresh = _model(), [w.numpy() for w in _model().weights]
    callback = VerifiedBackupAndRestore(tmp_path / "backup", discard_with=(history_log,))
    seen = _Epochs()
    with caplog.at_level(logging.WARNING, "transferlab.resume"):
        model.fit(*DATA, epochs=1, verbose=0, callbacks=[callback, seen], shuffle=False)
    assert seen.seen == [0]
    assert "cannot be loaded" in caplog.text and "starts from epoch 1" in caplog.text
    assert not history_log.exists()
    reference = _model()
    reference.set_weights(fresh)
    reference.fit(*DATA, epochs=1, verbose=0, shuffle=False)
    for ours, theirs in zip(model.weights, reference.weights):  # nothing of the damaged file leaked in
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-6)


def test_a_failed_write_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    with pytest.raises(KeyboardInterrupt):
        _fit(_model(), tmp_path / "backup", _Kill())
    weights = tmp_path / "backup" / "latest.weights.h5"
    saved = weights.read_bytes()

    def disk_full(self, filepath, overwrite=True, **kwargs):
        with open(filepath, "wb") as handle:
            handle.write(b"\x89HDF\r\n")  # the first bytes, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device", filepath)

    monkeypatch.setattr(keras.Model, "save_weights", disk_full)
    with pytest.raises(OSError, match="No space left"):
        _fit(_model(), tmp_path / "backup")
    assert weights.read_bytes() == saved
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == ["latest.weights.h5", "training_metadata.json"]
