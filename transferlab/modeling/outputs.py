"""The output convention of every classifier the pipeline builds, decided in this one place.

Two classes get one sigmoid unit, more get a softmax (or as `head.activation` says). Every model ends in
a Dense layer of logits followed by an Activation layer named `probabilities`, so the logits the attacks
need are that layer's input: no model is taken apart to find them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from transferlab.core.errors import ParamsError

LOGITS, PROBABILITIES = "logits", "probabilities"


@dataclass(frozen=True)
class Output:
    num_classes: int
    sigmoid: bool

    @classmethod
    def for_task(cls, num_classes: int, activation: str = "auto") -> "Output":
        """`auto`: a sigmoid for two classes, else a softmax."""
        if activation == "sigmoid" and num_classes != 2:
            raise ParamsError(f"head.activation: sigmoid needs exactly 2 classes, the data has {num_classes}")
        sigmoid = activation == "sigmoid" or (activation == "auto" and num_classes == 2)
        return cls(num_classes, sigmoid)

    @classmethod
    def of(cls, model: Any) -> "Output":
        """The convention a built model follows, read from its output width."""
        units = model.output_shape[-1]
        return cls(2, True) if units == 1 else cls(units, False)

    @property
    def units(self) -> int:
        return 1 if self.sigmoid else self.num_classes

    @property
    def activation(self) -> str:
        return "sigmoid" if self.sigmoid else "softmax"

    def loss(self, reduction: str | None = "sum_over_batch_size") -> Any:
        import keras

        kind = keras.losses.BinaryCrossentropy if self.sigmoid else keras.losses.SparseCategoricalCrossentropy
        return kind(reduction=reduction)

    def metric(self) -> Any:
        """One metric name, `accuracy`, for both, so histories, plots and MLflow keys never depend on the class count."""
        import keras

        kind = keras.metrics.BinaryAccuracy if self.sigmoid else keras.metrics.SparseCategoricalAccuracy
        return kind(name="accuracy")

    def targets(self, labels):
        """Labels in the shape the loss takes: a column of floats for the sigmoid, class indices otherwise."""
        import tensorflow as tf

        return tf.reshape(tf.cast(labels, tf.float32), [-1, 1]) if self.sigmoid else labels

    def predicted(self, probabilities):
        """Predicted class indices from model outputs, as a tensor (used inside compiled training steps)."""
        import tensorflow as tf

        if self.sigmoid:
            return tf.cast(probabilities[:, 0] > 0.5, tf.int64)
        return tf.argmax(probabilities, axis=-1)


def class_probabilities(outputs: Any) -> np.ndarray:
    """(n, classes) probabilities from model outputs; a sigmoid's single column p becomes [1 - p, p]."""
    outputs = np.asarray(outputs, dtype=np.float64)
    return np.concatenate([1.0 - outputs, outputs], axis=1) if outputs.shape[1] == 1 else outputs


def predicted_labels(outputs: Any) -> np.ndarray:
    """Class indices from model outputs (a sigmoid column or softmax rows)."""
    outputs = np.asarray(outputs)
    return (outputs[:, 0] >= 0.5).astype(np.int64) if outputs.shape[1] == 1 else outputs.argmax(axis=1)


def output_layers(output: Output, l2: float = 0.0):
    """The two layers every classifier ends in: float32 logits (their kernel under `l2`), then the activation
    named `probabilities`."""
    import keras

    regularizer = keras.regularizers.L2(l2) if l2 else None
    return (keras.layers.Dense(output.units, dtype="float32", name=LOGITS, kernel_regularizer=regularizer),
            keras.layers.Activation(output.activation, dtype="float32", name=PROBABILITIES))


def logits_function(model: Any):
    """x -> (n, classes) float32 logits of a classifier that follows the convention; a sigmoid's logit z
    becomes the two logits [0, z], whose softmax is [1 - p, p]."""
    import keras
    import tensorflow as tf

    inner = keras.Model(model.inputs, model.get_layer(PROBABILITIES).input)

    def forward(x):
        z = tf.cast(inner(x, training=False), tf.float32)
        return tf.concat([tf.zeros_like(z), z], axis=1) if z.shape[-1] == 1 else z

    return forward
