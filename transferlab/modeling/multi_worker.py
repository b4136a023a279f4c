"""Training under MultiWorkerMirroredStrategy, where Keras 3's `Model.fit` cannot go.

Keras 3 `fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585, still open for TF 2.21 /
Keras 3.15: it reduces the first batch across workers to build the model, then trips over loss
reduction). This is TensorFlow's documented custom loop for that strategy, with the Keras model,
loss and optimizer: every worker reads its shard of each global batch, gradients are all-reduced, and
early stopping restores the best epoch the way `keras.callbacks.EarlyStopping` does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from transferlab.modeling.outputs import Output


def _correct(output: Output, labels, probabilities):
    import tensorflow as tf

    matches = tf.equal(output.predicted(probabilities), tf.cast(tf.reshape(labels, [-1]), tf.int64))
    return tf.reduce_sum(tf.cast(matches, tf.float32))



def is_multi_worker(strategy: Any) -> bool:
    import tensorflow as tf

    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def fit_multi_worker(model, optimizer, train_fn: Callable[[Any], Any], validation, global_batch: int, epochs: int,
                     patience: int, strategy: Any, log: Callable[[str], None] = print) -> dict[str, list[float]]:
    """Train `model` (built in `strategy.scope()`) for up to `epochs`; returns a Keras-style history.

    `train_fn(input_context)` returns this worker's batched training data; `validation` is a batched dataset
    every worker evaluates whole (or None: early stopping then watches the training loss).
    """
    import tensorflow as tf

    output = Output.of(model)
    loss = output.loss(reduction=None)
    with strategy.scope():
        optimizer.build(model.trainable_variables)
    batches = strategy.distribute_datasets_from_function(train_fn)

    @tf.function
    def train_step(images, labels):
        def replica_step(images, labels):
            with tf.GradientTape() as tape:
                probabilities = model(images, training=True)
                per_example = loss(output.targets(labels), probabilities)
                scaled = tf.nn.compute_average_loss(per_example, global_batch_size=global_batch)
            gradients = tape.gradient(scaled, model.trainable_variables)
            optimizer.apply_gradients(zip(gradients, model.trainable_variables))
            return tf.reduce_sum(per_example), _correct(output, labels, probabilities), tf.cast(tf.size(per_example),
                                                                                     tf.float32)
        totals = strategy.run(replica_step, args=(images, labels))
        return [strategy.reduce("SUM", value, axis=None) for value in totals]

    @tf.function
    def evaluate_step(images, labels):
        probabilities = model(images, training=False)
        per_example = loss(output.targets(labels), probabilities)
        return tf.reduce_sum(per_example), _correct(output, labels, probabilities), tf.cast(tf.size(per_example), tf.float32)

    history: dict[str, list[float]] = {"loss": [], "accuracy": []}
    monitor = "val_loss" if validation is not None else "loss"
    best, best_weights, waited = np.inf, None, 0
    for epoch in range(epochs):
        sums = np.zeros(3)
        for images, labels in batches:
            sums += [float(value) for value in train_step(images, labels)]
        history["loss"].append(sums[0] / sums[2])
        history["accuracy"].append(sums[1] / sums[2])
        if validation is not None:
            val = np.sum([[float(v) for v in evaluate_step(images, labels)] for images, labels in validation], axis=0)
            history.setdefault("val_loss", []).append(val[0] / val[2])
            history.setdefault("val_accuracy", []).append(val[1] / val[2])
        log(f"epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k} {v[-1]:.4f}" for k, v in history.items()))
        if history[monitor][-1] < best:
            best, best_weights, waited = history[monitor][-1], model.get_weights(), 0
        else:
            waited += 1
            if waited >= patience:  # the rule of keras.callbacks.EarlyStopping(patience=...)
                break
    if best_weights is not None:
        model.set_weights(best_weights)
    return history
