"""Fine-tuning: unfreeze the top of the backbone (BatchNorm stays frozen) and train on augmented images."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np

from transferlab.core.errors import ParamsError
from transferlab.modeling.assembly import backbone_of, compile_for
from transferlab.core.params import FineTuneParams
from transferlab.data.prepared import parse_example, shard_files


HISTORY_LOG = "history.csv"


@dataclass
class FineTuneResult:
    model: Any
    history: dict[str, list[float]]
    initial: dict[str, float]  # validation metrics of the head-only starting point
    kept_initial: bool  # fine-tuning never beat the starting point, so its weights were kept
    trainable_layers: list[str]


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


def augmentation(cfg: FineTuneParams, seed: int):
    layers = []
    if cfg.flip:
        layers.append(keras.layers.RandomFlip("horizontal", seed=seed))
    if cfg.rotation:
        layers.append(keras.layers.RandomRotation(cfg.rotation, fill_mode="reflect", seed=seed))
    if cfg.zoom:
        layers.append(keras.layers.RandomZoom(cfg.zoom, fill_mode="reflect", seed=seed))
    return keras.Sequential(layers, name="augment") if layers else None


def image_dataset(prepared: Path, split: str, batch_size: int, shuffle: bool = False, augment=None, seed: int = 0,
                  with_keys: bool = False):
    """Decoded 0-255 float images and labels (and keys) from the prepared shards, in shard order unless shuffled."""
    import tensorflow as tf

    files = [str(path) for path in shard_files(prepared, split)]
    dataset = tf.data.TFRecordDataset(files)
    if shuffle:
        dataset = dataset.shuffle(4096, seed=seed, reshuffle_each_iteration=True)

    def decode(serialized):
        image, label, key = parse_example(serialized)
        pixels = tf.cast(tf.io.decode_jpeg(image, channels=3), tf.float32)
        return (pixels, label, key) if with_keys else (pixels, label)

    dataset = dataset.map(decode, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    if augment is not None:
        dataset = dataset.map(lambda x, y: (augment(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def fine_tune(model, prepared: Path, cfg: FineTuneParams, scratch: Path, seed: int, verbose: int = 2,
              strategy: Any = None) -> FineTuneResult:
    """Train the unfrozen top; a killed run resumes from its last epoch (BackupAndRestore in `scratch`).

    `model` must have been built in `strategy`'s scope (default: the current one); `cfg.batch_size` is per replica."""
    import tensorflow as tf

    from transferlab.modeling.distribution import global_batch_size

    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(seed)
    with strategy.scope():
        trainable = unfreeze_top(backbone_of(model), cfg.unfreeze_top)
        compile_for(model, cfg.learning_rate)  # recompile: trainable flags are read at compile time
    batch = global_batch_size(cfg.batch_size, strategy)
    train = image_dataset(prepared, "train", batch, shuffle=True, augment=augmentation(cfg, seed), seed=seed)
    validation = image_dataset(prepared, "validation", batch)
    initial_loss, initial_accuracy = model.evaluate(validation, verbose=0)
    start_weights = model.get_weights()
    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True),
        keras.callbacks.BackupAndRestore(str(scratch / "backup")),
        # A resumed fit reports only the epochs it ran; the log on disk keeps the killed run's epochs too.
        keras.callbacks.CSVLogger(str(scratch / HISTORY_LOG), append=True),
    ]
    scratch.mkdir(parents=True, exist_ok=True)
    model.fit(train, validation_data=validation, epochs=cfg.epochs, callbacks=callbacks, verbose=verbose)
    history = epoch_history(scratch / HISTORY_LOG)
    kept_initial = bool(history.get("val_loss")) and min(history["val_loss"]) > initial_loss
    if kept_initial:
        model.set_weights(start_weights)
    return FineTuneResult(model, history, {"val_loss": float(initial_loss), "val_accuracy": float(initial_accuracy)},
                          kept_initial, trainable)


def epoch_history(log: Path) -> dict[str, list[float]]:
    """Per-epoch metrics from the CSVLogger file, across resumes: an epoch logged twice (killed after the
    log line, before the backup) counts once, with its last values."""
    import pandas as pd

    table = pd.read_csv(log).drop_duplicates("epoch", keep="last").sort_values("epoch")
    return {name: [float(v) for v in table[name]] for name in table.columns if name != "epoch"}


def weight_snapshot(layers) -> dict[str, list[np.ndarray]]:
    """Copies of every variable (trainable or not, BatchNorm moving statistics included) by layer name."""
    return {layer.name: [np.array(w) for w in layer.weights] for layer in layers}
