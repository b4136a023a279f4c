"""Gradient attacks on a model that takes raw 0-255 pixels: FGSM, PGD (L-infinity), unbounded steps, ideal images.

Each attack takes `forward`, a function from pixels to logits (`transferlab.modeling.outputs.logits_function`):
losses work on logits, never on clipped probabilities, so saturated predictions still give gradients.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import keras
import numpy as np
import tensorflow as tf

from transferlab.core.progress import with_progress

PIXEL_MAX = 255.0
CHUNK_STEPS = 10  # steps per compiled loop of the ideal image: a progress line can come between two


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
    return pgd_steps(forward, x, original, labels, epsilon, steps, step_size, target_mask)


def pgd_steps(forward, start, original, labels, epsilon, steps, step_size, target_mask=None):
    """PGD's loop from a given start (tensors or numbers; callable inside a compiled function, e.g. a train step)."""
    mask = tf.zeros([0], tf.bool) if target_mask is None else tf.convert_to_tensor(target_mask, tf.bool)
    return _compiled_pgd(forward, target_mask is not None)(
        start, original, tf.convert_to_tensor(labels), mask, tf.cast(epsilon, tf.float32),
        tf.cast(step_size, tf.float32), tf.convert_to_tensor(steps))


# Each attack's whole loop is one compiled graph, traced once per model (and input shape) and reused by every
# call: a Python loop over a compiled step, re-created per call, traced again for each batch and epsilon.
@functools.lru_cache(maxsize=16)
def _compiled_pgd(forward, targeted: bool):
    @tf.function(reduce_retracing=True)
    def run(x, original, labels, target_mask, epsilon, step_size, steps):
        for _ in tf.range(steps):
            gradient = _gradient(forward, x, labels, target_mask if targeted else None)
            x = project(x + step_size * tf.sign(gradient), original, epsilon)
        return x

    return run


def fgsm(forward, images, labels, epsilon: float, target_mask=None):
    return pgd(forward, images, labels, epsilon, 1, epsilon, target_mask, random_start=False)


def unbounded_steps(forward, image, target_mask, steps: int, step_size: float):
    """The seed lesson's attack: plain gradient steps on the target log-probability, no budget, no sign."""
    return _compiled_unbounded(forward)(tf.convert_to_tensor(image, tf.float32),
                                        tf.convert_to_tensor(target_mask, tf.bool),
                                        tf.constant(step_size, tf.float32), tf.constant(steps))


@functools.lru_cache(maxsize=16)
def _compiled_unbounded(forward):
    @tf.function(reduce_retracing=True)
    def run(x, target_mask, step_size, steps):
        for _ in tf.range(steps):
            x = tf.clip_by_value(x + step_size * _gradient(forward, x, None, target_mask), 0.0, PIXEL_MAX)
        return x

    return run


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


def ideal_images(forward, size: int, target_mask, steps: int, learning_rate: float, tv_weights: Sequence[float],
                 snapshot_every: int, seed: int, desc: str = "") -> list[IdealImage]:
    """Optimise inputs from noise to maximise the target class: loss = cross-entropy + tv_weight * TV, one image
    per TV weight, all in one batch (each image's loss, and so its gradient and Adam step, is its own; all start
    from the same noise). Steps run as compiled loops of at most CHUNK_STEPS, ending at each snapshot; progress
    lines under `desc`."""
    rng = np.random.default_rng(seed)
    start = np.clip(127.5 + 20.0 * rng.standard_normal((1, size, size, 3)), 0, 255).astype(np.float32)
    x = tf.Variable(np.repeat(start, len(tv_weights), axis=0))
    weights = tf.constant(list(tv_weights), tf.float32)
    mask = tf.convert_to_tensor(target_mask, tf.bool)
    optimizer = keras.optimizers.Adam(learning_rate)
    optimizer.build([x])  # its slots exist before the graph below first runs

    @tf.function
    def updates(count):
        for _ in tf.range(count):
            with tf.GradientTape() as tape:
                pixels = tf.identity(x)  # the gradient is taken for the variable's value, not through assign
                loss = tf.reduce_sum(-target_log_probability(forward(pixels), mask) + weights * total_variation(pixels))
            optimizer.apply_gradients([(tape.gradient(loss, x), x)])
            x.assign(tf.clip_by_value(x, 0.0, PIXEL_MAX))

    snapshots: list[list[tuple[int, np.ndarray]]] = [[] for _ in tv_weights]
    done = 0
    chunks = step_chunks(steps, snapshot_every)
    for count in with_progress(chunks, len(chunks), desc) if desc else chunks:
        updates(tf.constant(count))
        done += count
        if snapshot_every and (done % snapshot_every == 0 or done == steps):
            for index, pixels in enumerate(np.round(x.numpy()).astype(np.uint8)):
                snapshots[index].append((done, pixels))
    final = tf.identity(x)
    chances = tf.exp(target_log_probability(forward(final), mask)).numpy()
    variation = total_variation(final).numpy()
    return [IdealImage(np.round(pixels).astype(np.uint8), snapshots[index], float(chances[index]),
                       float(variation[index])) for index, pixels in enumerate(final.numpy())]


def step_chunks(steps: int, snapshot_every: int) -> list[int]:
    """The optimisation's steps in compiled loops of at most CHUNK_STEPS, each ending at or before a snapshot."""
    chunks, done = [], 0
    while done < steps:
        boundary = snapshot_every - done % snapshot_every if snapshot_every else steps - done
        chunks.append(min(steps - done, boundary, CHUNK_STEPS))
        done += chunks[-1]
    return chunks


def ideal_image(forward, size: int, target_mask, steps: int, learning_rate: float, tv_weight: float,
                snapshot_every: int, seed: int) -> IdealImage:
    """One ideal image (see `ideal_images`)."""
    return ideal_images(forward, size, target_mask, steps, learning_rate, [tv_weight], snapshot_every, seed)[0]


def class_mask(num_classes: int, targets: Sequence[int]) -> np.ndarray:
    mask = np.zeros(num_classes, dtype=bool)
    mask[list(targets)] = True
    return mask


def probabilities(forward, images) -> np.ndarray:
    return _compiled_probabilities(forward)(tf.convert_to_tensor(images, tf.float32)).numpy()


@functools.lru_cache(maxsize=16)
def _compiled_probabilities(forward):
    return tf.function(lambda x: tf.nn.softmax(forward(x), axis=1), reduce_retracing=True)
