"""Attacks on a tiny model: budgets hold, epsilon 0 changes nothing, targets resolve, the sweep is monotone."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from transferlab.adversarial.sweep import epsilon_sweep
from transferlab.adversarial.attacks import (class_mask, fgsm, ideal_image, ideal_images, pgd, probabilities,
                                             total_variation, unbounded_steps)
from transferlab.modeling.assembly import pixel_scaling
from transferlab.modeling.outputs import Output, logits_function, output_layers


def _tiny(units: int, seed: int = 0):
    """pixels -> preprocess -> (a 'backbone') -> logits -> probabilities, as the pipeline's models end."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 3))
    features = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(pixel_scaling("mobilenet_v2", inputs)))
    logits, probabilities = output_layers(Output(2, True) if units == 1 else Output(units, False))
    return keras.Model(inputs, probabilities(logits(features)))


def _images(n=6, seed=1):
    return np.random.default_rng(seed).uniform(0, 255, (n, 8, 8, 3)).astype(np.float32)


@pytest.mark.parametrize("units", [1, 3])
def test_logits_reproduce_the_models_probabilities(units):
    model = _tiny(units)
    expected = model.predict(_images(), verbose=0)
    got = probabilities(logits_function(model), _images())
    if units == 1:
        expected = np.concatenate([1 - expected, expected], axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-5)


@pytest.mark.parametrize("epsilon", [0.0, 0.5, 8.0])
def test_pgd_and_fgsm_respect_the_budget_and_the_pixel_range(epsilon):
    forward, images = logits_function(_tiny(3)), _images()
    labels = np.zeros(len(images), np.int64)
    for adversarial in (pgd(forward, images, labels, epsilon, 5, epsilon / 2, seed=3), fgsm(forward, images, labels, epsilon),
                        pgd(forward, images, labels, epsilon, 5, epsilon / 2, class_mask(3, [2]))):
        adversarial = adversarial.numpy()
        assert np.abs(adversarial - images).max() <= epsilon + 1e-4
        assert adversarial.min() >= 0 and adversarial.max() <= 255
    if epsilon == 0:
        np.testing.assert_array_equal(pgd(forward, images, labels, 0.0, 5, 1.0).numpy(), images)


def test_targeted_pgd_raises_the_target_probability():
    forward, images = logits_function(_tiny(3)), _images()
    labels = np.zeros(len(images), np.int64)
    before = probabilities(forward, images)[:, 2]
    after = probabilities(forward, pgd(forward, images, labels, 16.0, 10, 4.0, class_mask(3, [2])))[:, 2]
    assert (after > before).all()


def test_unbounded_steps_and_ideal_image_reach_the_target():
    forward = logits_function(_tiny(3))
    moved = unbounded_steps(forward, _images(1), class_mask(3, [1]), 50, 2000.0)
    assert probabilities(forward, moved)[0, 1] > probabilities(forward, _images(1))[0, 1]
    smooth = ideal_image(forward, 8, class_mask(3, [1]), 60, 5.0, 0.5, 20, seed=0)
    rough = ideal_image(forward, 8, class_mask(3, [1]), 60, 5.0, 0.0, 20, seed=0)
    assert smooth.total_variation < rough.total_variation
    assert [step for step, _ in smooth.snapshots] == [20, 40, 60]


def test_ideal_images_in_one_batch_are_the_separate_runs():
    """Both TV weights optimised together give each image exactly what its own run gives (its own loss,
    gradient and Adam step), snapshots included."""
    forward, mask = logits_function(_tiny(3)), class_mask(3, [1])
    together = ideal_images(forward, 8, mask, 25, 5.0, [0.5, 0.0], 10, seed=0)
    for run, weight in zip(together, [0.5, 0.0]):
        alone = ideal_image(forward, 8, mask, 25, 5.0, weight, 10, seed=0)
        np.testing.assert_allclose(run.image, alone.image, atol=1)  # uint8 rounding of float-equal values
        assert run.probability == pytest.approx(alone.probability, rel=1e-4)
        assert [step for step, _ in run.snapshots] == [step for step, _ in alone.snapshots] == [10, 20, 25]


def test_total_variation_of_flat_and_striped_images():
    flat = tf.fill((1, 4, 4, 3), 100.0)
    stripes = tf.constant(np.tile([0.0, 255.0], (1, 4, 2, 3 * 1)).reshape(1, 4, 4, 3), tf.float32)
    assert float(total_variation(flat)[0]) == 0.0
    assert float(total_variation(stripes)[0]) > 50


def test_sweep_is_monotone_and_starts_with_no_success():
    model = _tiny(3)
    forward, images = logits_function(model), _images(12)
    labels = probabilities(forward, images).argmax(1)  # every image "correct" by construction
    targets = [int(np.bincount(labels, minlength=3).argmin())]
    sweep = epsilon_sweep(forward, images, labels, targets, [8.0, 0.0, 2.0, 32.0], 5, 2.5, seed=0, batch=5)
    rows = sweep.rows
    assert [r.epsilon for r in rows] == [0.0, 2.0, 8.0, 32.0]
    assert rows[0].targeted_success == 0.0 and rows[0].robust_accuracy == 1.0
    robust = [r.robust_accuracy for r in rows]
    assert robust == sorted(robust, reverse=True)
    assert all(r.linf_max <= r.epsilon + 1e-3 for r in rows)


def test_the_ideal_images_steps_run_in_short_compiled_loops_that_end_at_each_snapshot():
    from transferlab.adversarial.attacks import CHUNK_STEPS, step_chunks

    assert step_chunks(150, 50) == [CHUNK_STEPS] * 15  # a progress line can come every 10 steps
    assert step_chunks(12, 5) == [5, 5, 2] and step_chunks(25, 0) == [10, 10, 5] and step_chunks(0, 5) == []
