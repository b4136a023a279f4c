"""A `BackupAndRestore` whose checkpoint is written atomically and verified on resume.

Keras writes `latest.weights.h5` in place: a disk that fills up (or a kill) mid-write leaves a truncated
file, and every later run then fails in `load_weights` ("expected 2 variables, but received 0") until
someone deletes the scratch folder by hand. Here the weights and the epoch counter are written beside
their targets and renamed over them, and a checkpoint that does not load is discarded with a warning:
training starts over, from the weights the model had before the attempt.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import keras

log = logging.getLogger("transferlab.resume")


class VerifiedBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` (per epoch) with atomic writes and a verified, discardable resume.

    `discard_with` names files that belong to the backup (an epoch log) and go when it is discarded."""

    def __init__(self, backup_dir: str | Path, discard_with: tuple[Path, ...] = ()):
        super().__init__(str(backup_dir), save_freq="epoch", delete_checkpoint=True)
        self.discard_with = tuple(Path(p) for p in discard_with)

    def on_train_begin(self, logs=None):
        if not Path(self._weights_path).exists() and not Path(self._training_metadata_path).exists():
            return
        before = [variable.numpy() for variable in self.model.weights]
        try:
            super().on_train_begin(logs)
            self._check_metadata()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            for variable, value in zip(self.model.weights, before):  # a half-loaded file must leave no trace
                variable.assign(value)
            self.model._initial_epoch = 0
            self._discard(exc)

    def _check_metadata(self) -> None:
        path, weights = Path(self._training_metadata_path), Path(self._weights_path)
        if weights.exists() != path.exists():
            raise ValueError("the weights and the epoch counter are not both there")
        if path.exists():
            epoch = json.loads(path.read_text())["epoch"]
            if not isinstance(epoch, int) or epoch < 0:
                raise ValueError(f"bad epoch {epoch!r} in {path.name}")

    def _discard(self, exc: BaseException) -> None:
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        log.warning("the resume checkpoint in %s cannot be loaded (%s); discarded: training starts from epoch 1",
                    self.backup_dir, reason)
        shutil.rmtree(self.backup_dir, ignore_errors=True)
        for path in self.discard_with:
            path.unlink(missing_ok=True)

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        weights, metadata = Path(self._weights_path), Path(self._training_metadata_path)
        weights_tmp = weights.with_name(f".{weights.name}.tmp-{os.getpid()}.weights.h5")
        metadata_tmp = metadata.with_name(f".{metadata.name}.tmp-{os.getpid()}")
        try:
            self.model.save_weights(str(weights_tmp), overwrite=True)
            metadata_tmp.write_text(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))
            os.replace(weights_tmp, weights)
            os.replace(metadata_tmp, metadata)
        finally:
            weights_tmp.unlink(missing_ok=True)
            metadata_tmp.unlink(missing_ok=True)
