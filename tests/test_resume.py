"""The fine-tune resume checkpoint: written whole or not at all, and a damaged one is discarded, not fatal."""

from __future__ import annotations

import errno
import logging

import keras
import numpy as np
import pytest

from transferlab.modeling import resume
from transferlab.modeling.resume import CHECKPOINT, VerifiedBackupAndRestore


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
    weights = tmp_path / "backup" / CHECKPOINT
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
    weights = tmp_path / "backup" / CHECKPOINT
    saved = weights.read_bytes()

    def disk_full(variables, path):
        path.write_bytes(b"PK\x03\x04")  # the first bytes, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(resume, "save_variables", disk_full)
    with pytest.raises(OSError, match="No space left"):
        _fit(_model(), tmp_path / "backup")
    assert weights.read_bytes() == saved
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == [CHECKPOINT, "training_metadata.json"]


def _partly_frozen():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8, activation="relu", name="frozen"),
                              keras.layers.BatchNormalization(name="norm"), keras.layers.Dense(1, name="top")])
    model.get_layer("frozen").trainable = False
    model.compile("adam", "mse")
    return model


def test_the_checkpoint_holds_what_fit_changes_and_a_resumed_fit_matches_an_unbroken_one(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _fit(_partly_frozen(), tmp_path / "backup", _Kill())
    with np.load(tmp_path / "backup" / CHECKPOINT) as saved:
        paths = list(saved["paths"])
    assert not any("frozen/" in path for path in paths), paths
    assert any(path.endswith("norm/moving_mean") for path in paths)  # a trainable layer's non-trainable state too
    assert any(path.endswith("top/kernel") for path in paths)
    assert any(path.split("/")[0].startswith("adam") for path in paths), paths  # the optimizer's moments, iteration
    resumed, unbroken = _partly_frozen(), _partly_frozen()
    _fit(resumed, tmp_path / "backup")
    unbroken.fit(*DATA, epochs=4, verbose=0)
    for ours, theirs in zip(resumed.weights + resumed.optimizer.variables, unbroken.weights + unbroken.optimizer.variables):
        np.testing.assert_allclose(ours.numpy(), theirs.numpy(), rtol=1e-5, atol=1e-7, err_msg=ours.path)


def test_a_checkpoint_of_another_model_is_discarded_not_half_loaded(tmp_path, caplog):
    with pytest.raises(KeyboardInterrupt):
        _fit(_partly_frozen(), tmp_path / "backup", _Kill())
    model = _model()
    with caplog.at_level(logging.WARNING, "transferlab.resume"):
        assert _fit(model, tmp_path / "backup", epochs=1) == [0]
    assert "cannot be loaded" in caplog.text  # by its count or its shapes
