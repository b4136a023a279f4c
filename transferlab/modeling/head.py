"""The classification head trained on cached bottleneck features."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from transferlab.core.params import HeadParams
from transferlab.modeling.assembly import compile_for
from transferlab.modeling.features import SplitFeatures
from transferlab.modeling.outputs import Output, output_layers, predicted_labels


# A head's step is a few microseconds of arithmetic: run many per call into TensorFlow (the same steps, in order).
MAX_STEPS_PER_EXECUTION = 32
EVALUATION_BATCH = 1024


@dataclass
class HeadResult:
    model: Any
    history: dict[str, list[float]]
    best_epoch: int
    metrics: dict[str, float]

    def summary(self, test: SplitFeatures) -> dict[str, float | None]:
        """The figures of metrics/train_head/<backbone>.json: the best epoch's, and accuracy on the test split."""
        return {"train_accuracy": self.metrics["accuracy"], "train_loss": self.metrics["loss"],
                "val_accuracy": self.metrics.get("val_accuracy"), "val_loss": self.metrics.get("val_loss"),
                "test_accuracy": accuracy(self.model, test), "best_epoch": self.best_epoch,
                "epochs_run": self.metrics["epochs_run"]}


def resolved(cfg: HeadParams, probe_l2: float) -> HeadParams:
    """`cfg` with head.l2 as the number the head trains with: `probe` becomes `probe_l2` (the linear probe's
    equivalent L2), written into the params once so that the head, its metrics and its run all show that number."""
    return cfg.model_copy(update={"l2": probe_l2}) if isinstance(cfg.l2, str) else cfg


def standardization(train_features: np.ndarray) -> dict[str, np.ndarray]:
    """The mean and variance the head standardizes with, as scikit-learn's StandardScaler (the probe's): a feature
    constant on the training images keeps its own units. Dividing it by ~0 instead, as Keras' adapt does, turned a
    ReLU feature that is 0 on every training image and not on a validation image into millions of standard
    deviations (random 32 px ResNet50 features: validation loss 41,455 where the probe's was 0.0004)."""
    features = np.asarray(train_features, np.float64)
    variance = features.var(axis=0)
    constant = np.sqrt(variance) < 10 * np.finfo(np.float64).eps * np.maximum(np.abs(features.mean(axis=0)), 1.0)
    return {"mean": features.mean(axis=0), "variance": np.where(constant, 1.0, variance)}


def build_head(cfg: HeadParams, feature_width: int, num_classes: int, train_features: np.ndarray | None = None,
               steps_per_execution: int = 1):
    """Standardize, dropout, an optional hidden layer, then the output convention's logits (under L2 cfg.l2, which
    `resolved` made a number) and probabilities."""
    import keras

    if isinstance(cfg.l2, str):
        raise ValueError(f"head.l2 is {cfg.l2!r}: resolve it to a number first (modeling.head.resolved)")

    inputs = keras.Input((feature_width,), name="features")
    x = inputs
    if cfg.normalize:
        scaling = {} if train_features is None else standardization(train_features)
        x = keras.layers.Normalization(name="standardize", **scaling)(x)
    x = keras.layers.Dropout(cfg.dropout)(x)
    if cfg.hidden_units:
        x = keras.layers.Dense(cfg.hidden_units, activation="relu", name="hidden")(x)
        x = keras.layers.Dropout(cfg.dropout)(x)
    logits, probabilities = output_layers(Output.for_task(num_classes, cfg.activation), cfg.l2)
    model = keras.Model(inputs, probabilities(logits(x)), name="head")
    compile_for(model, cfg.learning_rate, steps_per_execution=steps_per_execution)
    return model


def train_head(cfg: HeadParams, train: SplitFeatures, validation: SplitFeatures, num_classes: int,
               seed: int, verbose: int = 2, strategy: Any = None,
               callbacks: tuple = ()) -> HeadResult:
    """Fit with early stopping on validation loss, keeping the best epoch's weights.

    The model is built in `strategy`'s scope (default: the current one) and `cfg.batch_size` is per replica."""
    import keras
    import tensorflow as tf

    from transferlab.modeling.distribution import global_batch_size
    from transferlab.modeling.multi_worker import is_multi_worker

    strategy = strategy or tf.distribute.get_strategy()
    keras.utils.set_random_seed(seed)
    features = train.features.astype(np.float32)
    batch = global_batch_size(cfg.batch_size, strategy)
    steps_per_epoch = -(-len(train.labels) // batch)
    per_call = steps_per_execution(steps_per_epoch, strategy)
    with strategy.scope():
        model = build_head(cfg, features.shape[1], num_classes, features, per_call)
    has_validation = len(validation.labels) > 0
    monitor = "val_loss" if has_validation else "loss"
    validation_data = (validation.features.astype(np.float32), validation.labels) if has_validation else None
    if is_multi_worker(strategy):
        history = _fit_across_workers(model, cfg, (features, train.labels), validation_data, batch, strategy, seed)
    else:
        stop = keras.callbacks.EarlyStopping(monitor=monitor, patience=cfg.patience, restore_best_weights=True)
        examples, validation_examples = input_pipelines((features, train.labels), validation_data, batch, seed,
                                                         cfg.epochs)
        # shuffle=False: the pipeline shuffles itself (Keras ignores, with a warning, a shuffle asked of tf.data)
        fit = model.fit(examples, steps_per_epoch=steps_per_epoch, epochs=cfg.epochs,
                        validation_data=validation_examples, callbacks=[stop, *callbacks], shuffle=False,
                        verbose=verbose)
        history = {name: [float(v) for v in values] for name, values in fit.history.items()}
    best_epoch = int(np.argmin(history[monitor]))
    metrics = {name: values[best_epoch] for name, values in history.items()}
    metrics["best_epoch"] = best_epoch + 1
    metrics["epochs_run"] = len(history[monitor])
    return HeadResult(model, history, best_epoch + 1, metrics)


def steps_per_execution(steps_per_epoch: int, strategy: Any) -> int:
    """The most steps a call, up to MAX_STEPS_PER_EXECUTION, that divide an epoch (a call across an epoch's end
    would take the next epoch's batches into this one); one across replicas, where Keras 3.15 fails several steps
    a call on a distributed dataset (an unfed placeholder)."""
    if strategy.num_replicas_in_sync > 1:
        return 1
    return max((n for n in range(1, min(MAX_STEPS_PER_EXECUTION, steps_per_epoch) + 1) if steps_per_epoch % n == 0),
               default=1)


def input_pipelines(train: tuple, validation: tuple | None, batch: int, seed: int, epochs: int) -> tuple[Any, Any]:
    """tf.data pipelines built once for the whole fit: given arrays, Keras builds its input pipeline again every
    epoch, which made most of a 300-epoch head's time (1,000 x 1280 features: 87 -> 20 ms an epoch with several
    steps a call). Every epoch's order is a stateless shuffle of (seed, epoch), so one device and MirroredStrategy
    see the same batches (a reshuffling dataset gave each its own order). Validation figures do not depend on its
    batch size."""
    import tensorflow as tf

    features, labels = (tf.constant(array) for array in train)

    def epoch_batches(epoch):
        order = tf.random.experimental.stateless_shuffle(tf.range(tf.shape(labels)[0]), tf.stack([seed, epoch]))
        return tf.data.Dataset.from_tensor_slices(order).batch(batch)

    examples = tf.data.Dataset.range(epochs).flat_map(epoch_batches)
    examples = examples.map(lambda rows: (tf.gather(features, rows), tf.gather(labels, rows)))
    examples = examples.prefetch(tf.data.AUTOTUNE)
    if validation is None:
        return examples, None
    return examples, tf.data.Dataset.from_tensor_slices(validation).batch(max(batch, EVALUATION_BATCH)).cache()


def _fit_across_workers(model, cfg: HeadParams, train: tuple, validation: tuple | None, batch: int, strategy: Any,
                        seed: int) -> dict[str, list[float]]:
    """Each epoch reshuffles (the same seed on every worker) and uses whole global batches only, so every
    worker runs the same number of steps; each worker then reads its shard of every global batch."""
    import logging

    import tensorflow as tf

    from transferlab.core.errors import ParamsError
    from transferlab.modeling.multi_worker import WorkerPlan, fit_multi_worker

    steps = len(train[1]) // batch
    if steps == 0:
        raise ParamsError(f"head.batch_size: {cfg.batch_size} per replica x {strategy.num_replicas_in_sync} replicas "
                          f"is more than the {len(train[1])} training examples")

    def train_for_epoch(epoch: int):
        def train_fn(context):
            examples = tf.data.Dataset.from_tensor_slices(train).shuffle(len(train[1]), seed=seed + epoch)
            examples = examples.take(steps * batch).shard(context.num_input_pipelines, context.input_pipeline_id)
            return examples.batch(context.get_per_replica_batch_size(batch))
        return train_fn

    def validation_fn(context):
        examples = tf.data.Dataset.from_tensor_slices(validation)
        return examples.shard(context.num_input_pipelines, context.input_pipeline_id).batch(batch)

    plan = WorkerPlan(train_for_epoch, validation_fn if validation is not None else None, batch, cfg.epochs,
                      cfg.patience)
    return fit_multi_worker(model, model.optimizer, plan, strategy,
                            logging.getLogger("transferlab.modeling.head").info).history


def accuracy(model, split: SplitFeatures) -> float:
    """Top-1 accuracy of a head (sigmoid or softmax) on one split's features."""
    if len(split.labels) == 0:
        return float("nan")
    predicted = predicted_labels(model.predict(split.features.astype(np.float32), verbose=0))
    return float((predicted == split.labels).mean())
