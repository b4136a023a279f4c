"""Stage `fine_tune`'s library: unfreeze the top of the backbone (BatchNorm stays frozen) and train on augmented images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np

from transferlab.core.digest import file_sha256
from transferlab.core.errors import ParamsError
from transferlab.core.intervals import paired_mean_interval
from transferlab.core.params import BackboneParams, FineTuneParams
from transferlab.core.progress import with_progress
from transferlab.data.prepared import MANIFEST, image_dataset, split_size
from transferlab.modeling.assembly import backbone_of, compile_for, with_flip_tta
from transferlab.modeling.outputs import Output
from transferlab.modeling.resume import VerifiedBackupAndRestore


HISTORY_LOG = "history.csv"


@dataclass
class FineTuneResult:
    model: Any
    history: dict[str, list[float]]
    initial: dict[str, float]  # validation metrics of the head-only starting point
    kept_initial: bool  # fine-tuning was not better than the starting point (see fine_tune), whose weights were kept
    trainable_layers: list[str]
    first_epoch: int  # 1 for a fresh run; later when a killed run's backup was resumed
    # 95 % interval of the fine-tuned minus the head-only mean validation loss (per image, no L2 penalty);
    # None under adversarial fitting, whose validation loss is that of a random adversarial mix
    loss_change: tuple[float, float] | None = None
    val_losses: np.ndarray | None = None  # the kept weights' per-image validation losses, where measured
    selection: "Selection | None" = None  # what is saved, and why (set by `fine_tune`)

    def metrics(self) -> dict[str, float]:
        """The figures of fine_tune.json: the head-only start beside the kept result."""
        history, initial = self.history, self.initial
        best = min(range(len(history["val_loss"])), key=history["val_loss"].__getitem__)
        kept = initial if self.kept_initial else {name: history[name][best] for name in ("val_loss", "val_accuracy")}
        return {"val_accuracy_head_only": initial["val_accuracy"], "val_loss_head_only": initial["val_loss"],
                "val_accuracy": kept["val_accuracy"], "val_loss": kept["val_loss"],
                "epochs_run": len(history["val_loss"]), "kept_head_only_weights": int(self.kept_initial),
                "trainable_layers": len(self.trainable_layers),
                # what fine-tuning reached at its best epoch, kept or not: when the head-only weights win, this
                # says by how much fine-tuning missed
                "best_epoch_tried": best + 1, "val_loss_tried": history["val_loss"][best],
                "val_accuracy_tried": history["val_accuracy"][best],
                **({"val_loss_change_low": self.loss_change[0], "val_loss_change_high": self.loss_change[1]}
                   if self.loss_change else {}),
                **(self.selection.flip.metrics() if self.selection else {})}


def resume_key(cfg: FineTuneParams, backbone: BackboneParams, seed: int, head_file: Path, prepared: Path) -> str:
    """A backup from a killed run is reused only for exactly the same inputs."""
    import hashlib

    parts = [cfg.model_dump_json(), backbone.model_dump_json(), str(seed), file_sha256(head_file),
             file_sha256(Path(prepared) / MANIFEST)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


class _FirstEpoch(keras.callbacks.Callback):
    """Records the epoch fit starts at (BackupAndRestore moves it past the epochs a killed run finished)."""

    first: int | None = None

    def on_epoch_begin(self, epoch, logs=None):
        if self.first is None:
            self.first = epoch + 1


def unfreeze_top(base, count: int) -> list[str]:
    """Make the top `count` layers trainable, except BatchNormalization; returns the trainable names."""
    layers = [layer for layer in base.layers if layer.weights]
    if count > len(layers):
        raise ParamsError(f"fine_tune.unfreeze_top: {count} is larger than {base.name}'s {len(layers)} layers with weights")
    base.trainable = True
    top = set(id(layer) for layer in layers[len(layers) - count:]) if count else set()
    names = []
    for layer in base.layers:
        layer.trainable = id(layer) in top and not isinstance(layer, keras.layers.BatchNormalization)
        if layer.trainable:
            names.append(layer.name)
    return names


def learning_rate(cfg: FineTuneParams, steps_per_epoch: int) -> Any:
    """`cfg.learning_rate`, or a Keras schedule: a linear warm-up from 0 over `warmup_epochs`, then constant or a
    cosine decay to 0 at the last epoch. It counts optimizer steps, so a resumed run (whose optimizer state
    BackupAndRestore restores) goes on where the killed one was."""
    if cfg.schedule == "constant" and not cfg.warmup_epochs:
        return cfg.learning_rate
    warmup = cfg.warmup_epochs * steps_per_epoch
    decay = max(cfg.epochs * steps_per_epoch - warmup, 1)
    return keras.optimizers.schedules.CosineDecay(
        0.0 if warmup else cfg.learning_rate, decay, alpha=1.0 if cfg.schedule == "constant" else 0.0,
        warmup_target=cfg.learning_rate if warmup else None, warmup_steps=warmup)


def augmentation(cfg: FineTuneParams, seed: int):
    layers = []
    if cfg.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if cfg.rotation:
        layers.append(keras.layers.RandomRotation(cfg.rotation, fill_mode="reflect", seed=seed))
    if cfg.zoom:
        layers.append(keras.layers.RandomZoom(cfg.zoom, fill_mode="reflect", seed=seed))
    return keras.Sequential(layers, name="augment") if layers else None


def fine_tune(model, prepared: Path, cfg: FineTuneParams, scratch: Path, seed: int, verbose: int = 2,
              strategy: Any = None, callbacks: tuple = (), fitting: Callable | None = None) -> FineTuneResult:
    """Train the unfrozen top; a killed run resumes from its last epoch (BackupAndRestore in `scratch`).

    The best epoch's weights replace the head-only start only when they are better on validation beyond the
    noise (`cfg.accept`): the 95 % interval of the per-image loss change lies below 0. A tie, or a gain a few
    validation images could make, keeps the simpler model the pipeline already had. With `any_gain`, or under
    adversarial fitting, a best epoch whose validation loss is below the start's is enough.

    `model` must have been built in `strategy`'s scope (default: the current one); `cfg.batch_size` is per replica.
    `fitting`, when given, wraps the model for fit only (adversarial training): it shares the model's variables
    and changes what a training step sees, never what is saved."""
    import tensorflow as tf

    from transferlab.modeling.distribution import global_batch_size
    from transferlab.modeling.multi_worker import is_multi_worker

    strategy = strategy or tf.distribute.get_strategy()
    batch = global_batch_size(cfg.batch_size, strategy)
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        trainable = unfreeze_top(backbone_of(model), cfg.unfreeze_top)
        fitted = fitting(model) if fitting else model
        steps_per_epoch = -(-split_size(prepared, "train") // batch)
        # recompile: trainable flags are read at compile time
        compile_for(fitted, learning_rate(cfg, steps_per_epoch), Output.of(model))
    start_weights = model.get_weights()
    if is_multi_worker(strategy):
        history, initial, first = _fit_across_workers(fitted, prepared, cfg, scratch, seed, strategy, fitting)
    else:
        history, initial, first = _fit_with_keras(fitted, prepared, cfg, scratch, seed, batch, callbacks, verbose)
    validation = image_dataset(prepared, "validation", batch)
    # EarlyStopping restored the best epoch's weights: compare them with the start, image by image
    start, tuned = start_and_tuned_losses(model, start_weights, validation) if fitting is None else (None, None)
    loss_change = paired_mean_interval(tuned - start) if fitting is None else None
    rule, kept_initial, reason = _accept(cfg, history, initial["val_loss"], loss_change)
    if kept_initial:
        model.set_weights(start_weights)
    result = FineTuneResult(model, history, initial, kept_initial, trainable, first, loss_change,
                            start if kept_initial else tuned)
    flip = choose_flip_tta(model, prepared, cfg, result.val_losses)
    result.selection = Selection(with_flip_tta(model) if flip.use else model, kept_initial, rule, reason, flip)
    return result


def _accept(cfg: FineTuneParams, history: dict, initial_loss: float,
            loss_change: tuple[float, float] | None) -> tuple[str, bool, str]:
    """Which rule decides whether the fine-tuned weights replace the head-only start: (rule, kept start, why)."""
    losses = history.get("val_loss") or []
    if loss_change is not None and cfg.accept == "beyond_noise":
        kept, rule = not loss_change[1] < 0, "beyond_noise"
        why = (f"the 95 % interval of the per-image validation loss change is [{loss_change[0]:.4g}, "
               f"{loss_change[1]:.4g}]: {'not ' if kept else ''}below 0")
    else:
        # adversarial fitting has no paired losses (its validation loss is that of a random adversarial mix)
        rule = "any_gain" if cfg.accept == "any_gain" else "any_gain (adversarial fitting)"
        kept = bool(losses) and min(losses) > initial_loss
        why = (f"best validation loss {min(losses):.4g} against {initial_loss:.4g} at the head-only start" if losses
               else "no epoch ran")
    return rule, kept, why


def _fit_with_keras(fitted, prepared: Path, cfg: FineTuneParams, scratch: Path, seed: int, batch: int,
                    callbacks: tuple, verbose: int) -> tuple[dict, dict, int]:
    """One machine: Keras `fit`, resumable through BackupAndRestore; returns (history, start figures, first epoch)."""
    train = image_dataset(prepared, "train", batch, shuffle=True, augment=augmentation(cfg, seed), seed=seed)
    validation = image_dataset(prepared, "validation", batch)
    initial_loss, initial_accuracy = fitted.evaluate(validation, verbose=0)
    first_epoch = _FirstEpoch()
    all_callbacks = [
        first_epoch,
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True),
        VerifiedBackupAndRestore(scratch / "backup", discard_with=(scratch / HISTORY_LOG,)),
        # A resumed fit reports only the epochs it ran; the log on disk keeps the killed run's epochs too.
        keras.callbacks.CSVLogger(str(scratch / HISTORY_LOG), append=True),
        *callbacks,
    ]
    scratch.mkdir(parents=True, exist_ok=True)
    # shuffle=False: the dataset shuffles itself (Keras ignores, with a warning, a shuffle asked of a tf.data input)
    fitted.fit(train, validation_data=validation, epochs=cfg.epochs, callbacks=all_callbacks, verbose=verbose,
               shuffle=False)
    initial = {"val_loss": float(initial_loss), "val_accuracy": float(initial_accuracy)}
    return epoch_history(scratch / HISTORY_LOG), initial, first_epoch.first or cfg.epochs + 1


def _fit_across_workers(fitted, prepared: Path, cfg: FineTuneParams, scratch: Path, seed: int, strategy: Any,
                        fitting: Callable | None) -> tuple[dict, dict, int]:
    """A TF_CONFIG cluster: the custom loop of fine_tune_workers.py (Keras `fit` cannot run there)."""
    import logging

    from transferlab.modeling.fine_tune_workers import fit_across_workers

    if fitting is not None:
        raise ParamsError("fine_tune.adversarial.epsilon: adversarial fine-tuning does not run across workers "
                          "(TF_CONFIG); set it to 0 or unset TF_CONFIG for this stage")
    fit, initial = fit_across_workers(fitted, prepared, cfg, scratch, seed, strategy, augmentation(cfg, seed),
                                      logging.getLogger("transferlab.fine_tune").info)
    return fit.history, initial, fit.first_epoch


def start_and_tuned_losses(model, start_weights: list, validation) -> tuple[np.ndarray, np.ndarray]:
    """Per-image validation losses at `start_weights` and at the model's weights.

    Measured after fitting (the start by setting its weights back for a moment), so that nothing runs between
    seeding and the fit."""
    forward = inference_call(model)  # one trace: the same variables serve both weights
    tuned_weights = model.get_weights()
    model.set_weights(start_weights)
    start = per_image_losses(model, validation, "fine-tune: validation losses of the head-only start (batches)",
                             forward)
    model.set_weights(tuned_weights)
    return start, per_image_losses(model, validation, "fine-tune: validation losses of the best epoch (batches)",
                                   forward)


@dataclass
class FlipChoice:
    use: bool
    val_loss_single_view: float | None = None  # mean per-image validation losses; None when not measured
    val_loss_flip_tta: float | None = None

    def metrics(self) -> dict[str, float]:
        measured = {"val_loss_single_view": self.val_loss_single_view, "val_loss_flip_tta": self.val_loss_flip_tta}
        return {"flip_tta": int(self.use), **{k: v for k, v in measured.items() if v is not None}}


@dataclass(frozen=True)
class Selection:
    """What fine-tuning keeps: the model to save (the kept weights, wrapped in flip TTA when chosen), which rule
    decided between the fine-tuned and the head-only weights, and why; evaluate and the report read the choice
    back from the saved model."""

    model: Any
    kept_head_only: bool
    rule: str  # "beyond_noise", "any_gain", "any_gain (adversarial fitting)"
    reason: str
    flip: FlipChoice

    def message(self) -> str:
        kept = "kept the head-only weights" if self.kept_head_only else "kept the fine-tuned weights"
        return f"{kept} (fine_tune.accept: {self.rule}; {self.reason}); flip TTA {'on' if self.flip.use else 'off'}"


def choose_flip_tta(model, prepared: Path, cfg: FineTuneParams, single_view_losses: np.ndarray | None = None
                    ) -> FlipChoice:
    """Whether the saved model averages each image with its mirror image: as `cfg.flip_tta` says, or (auto) when
    that lowers the mean validation loss. A mirror-symmetric task gains; one whose classes differ by side loses.
    Unlike fine-tuning's weights this needs no margin: it is one yes/no choice, no fitted parameter.
    `single_view_losses`: the model's per-image validation losses, when `fine_tune` measured them already."""
    if cfg.flip_tta != "auto":
        return FlipChoice(bool(cfg.flip_tta))
    validation = image_dataset(prepared, "validation", cfg.batch_size)
    single = (per_image_losses(model, validation, "fine-tune: validation losses (batches)")
              if single_view_losses is None else single_view_losses)
    if not len(single):
        return FlipChoice(False)
    averaged = per_image_losses(with_flip_tta(model), validation, "fine-tune: validation losses, flip TTA (batches)")
    return FlipChoice(bool(averaged.mean() < single.mean()), float(single.mean()), float(averaged.mean()))


def per_image_losses(model, dataset, desc: str = "", forward=None) -> np.ndarray:
    """Each image's loss under `model`, without regularization penalties (the head's L2, which fine-tuning's
    validation loss includes and which says nothing about the images); progress lines under `desc`. `forward`:
    the model's call already traced, for a caller that measures one model at several weights."""
    output = Output.of(model)
    loss = output.loss(reduction=None)
    forward = forward or inference_call(model)
    parts = [np.asarray(loss(output.targets(labels), forward(images)), np.float64).reshape(-1)
             for images, labels in (with_progress(dataset, None, desc) if desc else dataset)]
    return np.concatenate(parts) if parts else np.zeros(0)


def inference_call(model):
    """`model` called in inference mode, traced: a direct call, not predict_on_batch, because under
    MultiWorkerMirroredStrategy Keras' predict concatenates the replicas' outputs of one local batch (twice the
    rows on two workers)."""
    import tensorflow as tf

    return tf.function(lambda images: model(images, training=False))


def epoch_history(log: Path) -> dict[str, list[float]]:
    """Per-epoch metrics from the CSVLogger file, across resumes: an epoch logged twice (killed after the
    log line, before the backup) counts once, with its last values."""
    import pandas as pd

    table = pd.read_csv(log).drop_duplicates("epoch", keep="last").sort_values("epoch")
    return {name: [float(v) for v in table[name]] for name in table.columns if name != "epoch"}
