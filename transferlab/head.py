"""The classification head trained on cached bottleneck features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from transferlab.features import SplitFeatures
from transferlab.params import HeadParams


@dataclass
class HeadResult:
    model: Any
    history: dict[str, list[float]]
    best_epoch: int
    metrics: dict[str, float]


def output_activation(cfg: HeadParams, num_classes: int) -> str:
    if cfg.activation == "auto":
        return "sigmoid" if num_classes == 2 else "softmax"
    if cfg.activation == "sigmoid" and num_classes != 2:
        from transferlab.errors import ParamsError

        raise ParamsError(f"head.activation: sigmoid needs exactly 2 classes, the data has {num_classes}")
    return cfg.activation


def build_head(cfg: HeadParams, feature_width: int, num_classes: int, train_features: np.ndarray | None = None):
    """Dropout, an optional hidden layer, then softmax (or sigmoid for two classes); float32 output."""
    import keras

    inputs = keras.Input((feature_width,), name="features")
    x = inputs
    if cfg.normalize:
        normalize = keras.layers.Normalization(name="standardize")
        if train_features is not None:
            normalize.adapt(train_features)
        x = normalize(x)
    x = keras.layers.Dropout(cfg.dropout)(x)
    if cfg.hidden_units:
        x = keras.layers.Dense(cfg.hidden_units, activation="relu", name="hidden")(x)
        x = keras.layers.Dropout(cfg.dropout)(x)
    activation = output_activation(cfg, num_classes)
    units = 1 if activation == "sigmoid" else num_classes
    outputs = keras.layers.Dense(units, activation=activation, dtype="float32", name="predictions")(x)
    model = keras.Model(inputs, outputs, name="head")
    loss = "binary_crossentropy" if activation == "sigmoid" else "sparse_categorical_crossentropy"
    # One metric name for both cases, so histories, plots and MLflow keys never depend on the class count.
    accuracy = keras.metrics.BinaryAccuracy if activation == "sigmoid" else keras.metrics.SparseCategoricalAccuracy
    model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss=loss, metrics=[accuracy(name="accuracy")])
    return model


def train_head(cfg: HeadParams, train: SplitFeatures, validation: SplitFeatures, num_classes: int,
               seed: int, verbose: int = 2) -> HeadResult:
    """Fit with early stopping on validation loss, keeping the best epoch's weights."""
    import keras

    keras.utils.set_random_seed(seed)
    model = build_head(cfg, train.features.shape[1], num_classes, train.features.astype(np.float32))
    has_validation = len(validation.labels) > 0
    monitor = "val_loss" if has_validation else "loss"
    stop = keras.callbacks.EarlyStopping(monitor=monitor, patience=cfg.patience, restore_best_weights=True)
    fit = model.fit(train.features.astype(np.float32), train.labels, batch_size=cfg.batch_size, epochs=cfg.epochs,
                    validation_data=(validation.features.astype(np.float32), validation.labels)
                    if has_validation else None, callbacks=[stop], shuffle=True, verbose=verbose)
    history = {name: [float(v) for v in values] for name, values in fit.history.items()}
    best_epoch = int(np.argmin(history[monitor]))
    metrics = {name: values[best_epoch] for name, values in history.items()}
    metrics["best_epoch"] = best_epoch + 1
    metrics["epochs_run"] = len(history[monitor])
    return HeadResult(model, history, best_epoch + 1, metrics)


def accuracy(model, split: SplitFeatures) -> float:
    """Top-1 accuracy of a head (sigmoid or softmax) on one split's features."""
    if len(split.labels) == 0:
        return float("nan")
    from transferlab.model import predict_labels

    predicted = predict_labels(model.predict(split.features.astype(np.float32), verbose=0))
    return float((predicted == split.labels).mean())
