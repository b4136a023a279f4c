"""Gradient attacks on a model that takes raw 0-255 pixels: FGSM, PGD (L-infinity), unbounded steps, ideal images.

Each attack takes `forward`, a function from pixels to logits (`transferlab.modeling.outputs.logits_function`):
losses work on logits, never on clipped probabilities, so saturated predictions still give gradients.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

PIXEL_MAX = 255.0


def target_log_probability(logits, target_mask):
    """log of the total probability of the target classes (a mask over classes: one class or a set)."""
    log_probs = tf.nn.log_softmax(logits, axis=1)
    masked = tf.where(tf.cast(target_mask, tf.bool)[None, :], log_probs, tf.fill(tf.shape(log_probs), -1e9))
    return tf.reduce_logsumexp(masked, axis=1)


def _loss(forward, x, labels, target_mask):
    """What the attacker maximises: target log-probability (targeted) or the true class's loss (untargeted)."""
    logits = forward(x)
    if target_mask is not None:
        return target_log_probability(logits, target_mask)
    return tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)


def _gradient(forward, x, labels, target_mask):
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = _loss(forward, x, labels, target_mask)
    return tape.gradient(loss, x)


def project(adversarial, original, epsilon: float):
    """Back into the L-infinity ball around the original and into the valid pixel range."""
    delta = tf.clip_by_value(adversarial - original, -epsilon, epsilon)
    return tf.clip_by_value(original + delta, 0.0, PIXEL_MAX)


def pgd(forward, images, labels, epsilon: float, steps: int, step_size: float, target_mask=None,
        random_start: bool = True, seed: int = 0):
    """Projected gradient ascent under ||delta||_inf <= epsilon; one step with step_size=epsilon and no random
    start is FGSM. Targeted when target_mask is given."""
    original = tf.convert_to_tensor(images, tf.float32)
    if epsilon == 0:
        return original
    x = original
    if random_start:
        noise = tf.random.stateless_uniform(tf.shape(original), seed=[seed, 0], minval=-epsilon, maxval=epsilon)
        x = project(original + noise, original, epsilon)
    labels = tf.convert_to_tensor(labels)

    @tf.function(reduce_retracing=True)  # a graph step: about twice as fast as eager on CPU
    def step(x):
        return project(x + step_size * tf.sign(_gradient(forward, x, labels, target_mask)), original, epsilon)

    for _ in range(steps):
        x = step(x)
    return x


def fgsm(forward, images, labels, epsilon: float, target_mask=None):
    return pgd(forward, images, labels, epsilon, 1, epsilon, target_mask, random_start=False)


def unbounded_steps(forward, image, target_mask, steps: int, step_size: float):
    """The seed lesson's attack: plain gradient steps on the target log-probability, no budget, no sign."""
    x = tf.convert_to_tensor(image, tf.float32)

    @tf.function(reduce_retracing=True)  # a graph step, as in pgd
    def step(x):
        return tf.clip_by_value(x + step_size * _gradient(forward, x, None, target_mask), 0.0, PIXEL_MAX)

    for _ in range(steps):
        x = step(x)
    return x


def total_variation(images) -> tf.Tensor:
    """Mean absolute difference between neighbouring pixels, per image (0-255 units)."""
    dy = tf.abs(images[:, 1:, :, :] - images[:, :-1, :, :])
    dx = tf.abs(images[:, :, 1:, :] - images[:, :, :-1, :])
    return (tf.reduce_mean(dy, axis=[1, 2, 3]) + tf.reduce_mean(dx, axis=[1, 2, 3])) / 2.0


@dataclass
class IdealImage:
    image: np.ndarray  # uint8 (h, w, 3)
    snapshots: list[tuple[int, np.ndarray]]
    probability: float
    total_variation: float


def ideal_image(forward, size: int, target_mask, steps: int, learning_rate: float, tv_weight: float,
                snapshot_every: int, seed: int) -> IdealImage:
    """Optimise an input from noise to maximise the target class: loss = cross-entropy + tv_weight * TV."""
    rng = np.random.default_rng(seed)
    x = tf.Variable(np.clip(127.5 + 20.0 * rng.standard_normal((1, size, size, 3)), 0, 255).astype(np.float32))
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build([x])  # its slots exist before the graph step below first runs

    @tf.function
    def update():
        with tf.GradientTape() as tape:
            pixels = tf.identity(x)  # preprocess_input divides in place, which a variable refuses
            loss = -target_log_probability(forward(pixels), target_mask) + tv_weight * total_variation(pixels)
        optimizer.apply_gradients([(tape.gradient(loss, x), x)])
        x.assign(tf.clip_by_value(x, 0.0, PIXEL_MAX))

    snapshots = []
    for step in range(1, steps + 1):
        update()
        if snapshot_every and (step % snapshot_every == 0 or step == steps):
            snapshots.append((step, np.round(x.numpy()[0]).astype(np.uint8)))
    probability = float(tf.exp(target_log_probability(forward(tf.identity(x)), target_mask))[0])
    return IdealImage(np.round(x.numpy()[0]).astype(np.uint8), snapshots, probability,
                      float(total_variation(x)[0]))


def class_mask(num_classes: int, targets: Sequence[int]) -> np.ndarray:
    mask = np.zeros(num_classes, dtype=bool)
    mask[list(targets)] = True
    return mask


def probabilities(forward, images) -> np.ndarray:
    return tf.nn.softmax(forward(tf.convert_to_tensor(images, tf.float32)), axis=1).numpy()
