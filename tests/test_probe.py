"""The linear-probe baseline: logistic regression on standardized features, C cross-validated on train alone."""

import numpy as np
import pytest

from tests.test_head import _blobs
from transferlab.modeling.features import SplitFeatures
from transferlab.modeling.probe import C_GRID, fit_probe, probe_summary


def test_the_probe_learns_separable_features_and_scores_each_split():
    probe = fit_probe(_blobs(120, 3), seed=0)
    assert probe.skipped is None and probe.c in C_GRID
    figures = probe_summary(probe, _blobs(60, 3, seed=1), _blobs(60, 3, seed=2))
    assert figures["probe_val_accuracy"] >= 0.95 and figures["probe_test_accuracy"] >= 0.95
    assert 0 < figures["probe_val_loss"] < 0.3
    assert type(probe.model.steps[0][1]).__name__ == "StandardScaler"


def test_c_comes_from_the_training_split_alone():
    """Noise features need strong regularization, separable ones little; the validation split plays no part."""
    rng = np.random.default_rng(0)
    labels = np.arange(80) % 2
    noise = SplitFeatures(rng.normal(size=(80, 64)), labels, labels.astype(str))
    assert fit_probe(noise, seed=0).c < fit_probe(_blobs(80, 2), seed=0).c
    assert fit_probe(_blobs(80, 2), seed=0).c == fit_probe(_blobs(80, 2), seed=0).c  # seeded folds


def test_a_training_split_too_small_to_cross_validate_gives_no_probe_and_says_why():
    tiny = SplitFeatures(np.zeros((3, 4)), np.array([0, 0, 1]), np.array(["a", "b", "c"]))
    probe = fit_probe(tiny, seed=0)
    assert probe.model is None and "two images of each" in probe.skipped
    assert probe_summary(probe, tiny, tiny)["probe_test_accuracy"] is None


def test_a_split_with_a_class_the_training_split_lacks_gets_accuracy_but_no_loss():
    probe = fit_probe(_blobs(60, 2), seed=0)
    other = _blobs(30, 3, seed=1)
    figures = probe_summary(probe, other, other)
    assert figures["probe_test_loss"] is None and 0 <= figures["probe_test_accuracy"] <= 1


@pytest.mark.slow  # 200 epochs of two heads until they converge
def test_a_head_under_the_probes_equivalent_l2_converges_to_the_probe():
    """equivalent_l2 translates sklearn's C into Keras' L2 factor: both then minimize the same objective."""
    from transferlab.core.params import HeadParams
    from transferlab.modeling.head import resolved, train_head
    from transferlab.modeling.probe import equivalent_l2

    rng = np.random.default_rng(0)
    labels = np.arange(90) % 3
    train = SplitFeatures((rng.normal(0, 1.5, (3, 8))[labels] + rng.normal(size=(90, 8))).astype(np.float32), labels,
                          labels.astype(str))
    probe = fit_probe(train, seed=0)
    empty = SplitFeatures(np.zeros((0, 8), np.float32), np.zeros(0, int), np.zeros(0, str))
    cfg = HeadParams(dropout=0.0, learning_rate=0.1, batch_size=90, epochs=200, patience=200)
    head = train_head(resolved(cfg, equivalent_l2(probe, 90)), train, empty, 3, seed=0, verbose=0).model
    ours = head.predict(train.features, verbose=0)
    theirs = probe.model.predict_proba(train.features)
    assert np.abs(ours - theirs).max() < 0.02
    unregularized = train_head(cfg.model_copy(update={"l2": 0.0}), train, empty, 3, seed=0,
                               verbose=0).model.predict(train.features, verbose=0)
    assert np.abs(unregularized - theirs).max() > 0.05  # the L2 is what makes them agree
