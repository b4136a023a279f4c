"""Adversarial fine-tuning (Madry et al. 2018): part of every training batch is replaced by PGD images made
against the model as it is at that step, so it learns to keep its answer within the L-inf budget.

`AdversarialFitting` wraps the classifier only while it is fitted: Keras' own `train_step` (loss scaling,
metrics, distribution) runs on the mixed batch, validation on the same mix of its images, and the classifier
that is saved afterwards is the plain functional model, loadable without this package. Clean test accuracy is
evaluate's; the adversarial report measures robustness.
"""

from __future__ import annotations

import keras
import tensorflow as tf

from transferlab.adversarial.attacks import pgd_steps, project
from transferlab.core.params import AdversarialTrainingParams
from transferlab.modeling.outputs import logits_function


class AdversarialFitting(keras.Model):
    """Fits `classifier` on batches whose first `fraction` (the batches are shuffled) are untargeted PGD images."""

    def __init__(self, classifier, cfg: AdversarialTrainingParams, seed: int = 0, **kwargs):
        super().__init__(name="adversarial_fitting", **kwargs)
        self.classifier = classifier
        self.cfg = cfg
        self._forward = logits_function(classifier)
        self._noise = keras.random.SeedGenerator(seed)

    def call(self, inputs, training=False):
        return self.classifier(inputs, training=training)

    def adversarial_batch(self, images, labels):
        """The batch with its first round(fraction * n) images replaced by PGD images (random start)."""
        cfg = self.cfg
        images = tf.cast(images, tf.float32)
        count = tf.cast(tf.round(cfg.fraction * tf.cast(tf.shape(images)[0], tf.float32)), tf.int32)
        original, labels = images[:count], tf.reshape(tf.cast(labels[:count], tf.int64), [-1])
        noise = keras.random.uniform(tf.shape(original), -cfg.epsilon, cfg.epsilon, seed=self._noise)
        start = project(original + noise, original, cfg.epsilon)
        attacked = pgd_steps(self._forward, start, original, labels, cfg.epsilon, cfg.steps,
                             cfg.step_factor * cfg.epsilon / cfg.steps)
        return tf.concat([tf.stop_gradient(attacked), images[count:]], axis=0)

    def train_step(self, data):
        return super().train_step(self._mixed(data))

    def test_step(self, data):
        """Validation on the same mix: the loss that early stopping and the "never worse than the head-only start"
        rule compare is the objective being trained, not clean loss alone (which adversarial training trades)."""
        return super().test_step(self._mixed(data))

    def _mixed(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        mixed = self.adversarial_batch(x, y)
        return (mixed, y) if sample_weight is None else (mixed, y, sample_weight)


def adversarial_fitting(cfg: AdversarialTrainingParams, seed: int):
    """fine_tune's `fitting` hook: the classifier as fit should see it (unwrapped when epsilon is 0)."""
    if not cfg.epsilon:
        return None
    return lambda classifier: AdversarialFitting(classifier, cfg, seed)
