"""A `BackupAndRestore` whose checkpoint is written atomically and verified on resume.

Keras writes `latest.weights.h5` in place: a disk that fills up (or a kill) mid-write leaves a truncated
file, and every later run then fails in `load_weights` ("expected 2 variables, but received 0") until
someone deletes the scratch folder by hand. Here the weights and the epoch counter are written beside
their targets and renamed over them, and a checkpoint that does not load is discarded with a warning:
training starts over, from the weights the model had before the attempt.

The checkpoint holds only what fit can change: the variables of trainable layers and the optimizer's. Keras
saves every weight every epoch; for a fine-tune of MobileNetV2's top 20 layers that was 262 variables and
0.22-0.25 s an epoch (an 11 % overhead), where the 12 trainable ones and their optimizer slots take 0.01 s
(bench/fine_tune_overhead.py). The frozen rest is rebuilt identically by a resuming run: fine-tune's scratch
folder is keyed by the head, backbone and data it started from.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import zipfile
from pathlib import Path

import keras
import numpy as np

log = logging.getLogger("transferlab.resume")


CHECKPOINT = "latest.changing.npz"


def frozen_variable_ids(layer) -> set[int]:
    """ids of the variables that belong to frozen layers (a frozen layer freezes everything inside it)."""
    if not layer.trainable:
        return {id(variable) for variable in layer.weights}
    return set().union(*(frozen_variable_ids(inner) for inner in getattr(layer, "layers", ())))


def changing_variables(model) -> list:
    """What fit can change: every variable of a layer that is not frozen, and the optimizer's (built)."""
    frozen = frozen_variable_ids(model)
    optimizer = model.optimizer.variables if model.optimizer is not None and model.optimizer.built else []
    return [variable for variable in [*model.weights, *optimizer] if id(variable) not in frozen]


def save_variables(variables: list, path: Path) -> None:
    """The variables' values in order, as one .npz file (their paths too, for a reader: Keras numbers the
    names of layers built later in a process, so a restore matches by order and shape, as `load_weights` does)."""
    with open(path, "wb") as handle:
        np.savez(handle, paths=np.array([variable.path for variable in variables]),
                 **{f"v{index}": variable.numpy() for index, variable in enumerate(variables)})


def restore_variables(variables: list, path: Path) -> None:
    """Assign the saved values; ValueError (and nothing assigned) unless the file holds as many variables of the
    same shapes in the same order."""
    try:
        with np.load(path) as saved:
            paths = [str(name) for name in saved["paths"]]
            values = [saved[f"v{index}"] for index in range(len(paths))]
    except (zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise ValueError(f"{path.name} is damaged: {exc}") from None
    if len(values) != len(variables):
        raise ValueError(f"{path.name} holds {len(values)} variables, not this model's {len(variables)}")
    for variable, value in zip(variables, values):
        if tuple(variable.shape) != value.shape:
            raise ValueError(f"{path.name}: {variable.path} has shape {value.shape}, the model's is {variable.shape}")
    for variable, value in zip(variables, values):
        variable.assign(value)


class VerifiedBackupAndRestore(keras.callbacks.BackupAndRestore):
    """`keras.callbacks.BackupAndRestore` (per epoch) with atomic writes and a verified, discardable resume.

    `discard_with` names files that belong to the backup (an epoch log) and go when it is discarded."""

    def __init__(self, backup_dir: str | Path, discard_with: tuple[Path, ...] = ()):
        super().__init__(str(backup_dir), save_freq="epoch", delete_checkpoint=True)
        self._weights_path = str(Path(backup_dir) / CHECKPOINT)
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

    def _load_model(self):
        """Keras' restore, of the changing variables only (the optimizer built first, as Keras does)."""
        if Path(self._weights_path).exists():
            if self.model.optimizer is not None and not self.model.optimizer.built:
                self.model.optimizer.build(self.model.trainable_variables)
            restore_variables(changing_variables(self.model), Path(self._weights_path))
        if Path(self._training_metadata_path).exists():
            self.model._initial_epoch = json.loads(Path(self._training_metadata_path).read_text())["epoch"]

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
        weights_tmp = weights.with_name(f".{weights.name}.tmp-{os.getpid()}")
        metadata_tmp = metadata.with_name(f".{metadata.name}.tmp-{os.getpid()}")
        try:
            save_variables(changing_variables(self.model), weights_tmp)
            metadata_tmp.write_text(json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen}))
            os.replace(weights_tmp, weights)
            os.replace(metadata_tmp, metadata)
        finally:
            weights_tmp.unlink(missing_ok=True)
            metadata_tmp.unlink(missing_ok=True)
