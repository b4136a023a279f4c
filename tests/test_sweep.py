"""The sweep's comparison table and the transfer check, on models whose behaviour under attack is known."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from transferlab.adversarial.sweep import epsilon_sweep, side_by_side, transfer_rates

SIZE = 8


def brightness(x):
    """Class 1 when the image is bright: PGD's sign steps brighten every pixel, so it is easy to push."""
    z = (tf.reduce_mean(x, axis=[1, 2, 3]) - 128.0) / 2.0
    return tf.stack([tf.zeros_like(z), z], axis=1)


def left_right(x):
    """Class 1 when the left half is brighter than the right: a uniform brightening leaves it unmoved."""
    z = (tf.reduce_mean(x[:, :, : SIZE // 2], axis=[1, 2, 3]) - tf.reduce_mean(x[:, :, SIZE // 2:], axis=[1, 2, 3]))
    return tf.stack([tf.zeros_like(z), z / 2.0], axis=1)


def images_both_models_get_right():
    """Class 0: darker, right half brighter; class 1: brighter, left half brighter."""
    labels = np.array([0, 0, 0, 0, 1, 1])
    images = np.zeros((6, SIZE, SIZE, 3), np.float32)
    for i, label in enumerate(labels):
        base, tilt = (116.0, -20.0) if label == 0 else (140.0, 20.0)
        images[i, :, : SIZE // 2] = base + tilt / 2
        images[i, :, SIZE // 2:] = base - tilt / 2
    return images, labels


def test_attacks_on_one_model_transfer_to_a_model_that_reads_the_same_evidence_only():
    images, labels = images_both_models_get_right()
    sweep = epsilon_sweep(brightness, images, labels, [1], [0, 4, 32], steps=5, step_factor=2.5, seed=0)
    same = {row["epsilon"]: row for row in transfer_rates(brightness, brightness, sweep, images, labels, [1], "same")}
    other = {row["epsilon"]: row for row in transfer_rates(brightness, left_right, sweep, images, labels, [1], "lr")}
    assert same[32.0]["source_success"] == 1.0 and same[32.0]["transfer_targeted"] == 1.0
    assert other[32.0]["source_success"] == 1.0 and other[32.0]["transfer_targeted"] == 0.0
    assert other[32.0]["transfer_fooled"] == 0.0 and other[32.0]["images"] == 4  # the 4 class-0 sources
    assert same[0.0]["transfer_targeted"] == 0.0  # no budget, no attack


def test_transfer_counts_only_images_the_other_model_gets_right():
    images, labels = images_both_models_get_right()
    images[0, :, : SIZE // 2], images[0, :, SIZE // 2:] = 140.0, 100.0  # left_right now calls image 0 class 1
    sweep = epsilon_sweep(brightness, images, labels, [1], [0, 32], steps=5, step_factor=2.5, seed=0)
    rows = transfer_rates(brightness, left_right, sweep, images, labels, [1], "lr")
    assert [row["images"] for row in rows] == [3, 3]


def test_side_by_side_keeps_both_models_figures_per_epsilon():
    ours = pd.DataFrame({"epsilon": [0.0, 1.0], "clean_accuracy": [1.0, 1.0], "robust_accuracy": [1.0, 0.75],
                         "targeted_success": [0.0, 0.1], "linf_max": [0.0, 1.0]})
    theirs = ours.assign(clean_accuracy=[0.98, 0.98], robust_accuracy=[0.98, 0.0], targeted_success=[0.0, 1.0])
    table = side_by_side(ours, theirs)
    assert list(table.columns) == ["epsilon", "clean_accuracy", "robust_accuracy", "targeted_success",
                                   "clean_accuracy_standard", "robust_accuracy_standard", "targeted_success_standard"]
    assert table.set_index("epsilon").loc[1.0, ["robust_accuracy", "robust_accuracy_standard"]].tolist() == \
        pytest.approx([0.75, 0.0])


def test_one_long_epsilon_still_reports_how_far_its_attacks_got(caplog, monkeypatch):
    """A heartbeat inside each epsilon: with every batch taking longer than the log's interval, each says so."""
    import logging

    from transferlab.core import progress

    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    caplog.set_level(logging.INFO, logger="transferlab.progress")
    images, labels = images_both_models_get_right()
    epsilon_sweep(brightness, images, labels, [1], [4], steps=2, step_factor=2.5, seed=0, batch=2)
    beats = [r.getMessage() for r in caplog.records if "untargeted:" in r.getMessage()]
    assert beats[-1].rsplit(" (", 1)[0].endswith("epsilon 4, untargeted: 6/6 images"), beats
    assert len(beats) == 3  # one per batch of 2
