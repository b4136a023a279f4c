"""The linear-probe baseline every head is measured against: scikit-learn logistic regression on the same
cached features, standardized, its regularization C chosen by cross-validation on the training split only."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np

from transferlab.modeling.features import SplitFeatures

C_GRID = np.logspace(-4, 2, 13)  # inverse L2 strength, as in sklearn's LogisticRegressionCV
MAX_FOLDS = 5
log = logging.getLogger("transferlab.probe")


@dataclass(frozen=True)
class Probe:
    model: object | None  # a fitted sklearn pipeline; None when the training split cannot be cross-validated
    c: float | None
    seconds: float
    skipped: str | None = None  # why there is no probe


def fit_probe(train: SplitFeatures, seed: int) -> Probe:
    """Standardize, then logistic regression with C picked by stratified k-fold log loss on `train` alone."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = np.bincount(train.labels) if len(train.labels) else np.zeros(0, int)
    present = counts[counts > 0]
    if len(present) < 2 or present.min() < 2:
        return Probe(None, None, 0.0, "the training split needs two images of each of two classes or more")
    started = time.perf_counter()
    folds = StratifiedKFold(int(min(MAX_FOLDS, present.min())), shuffle=True, random_state=seed)
    # l1_ratios 0 (plain L2) and the new fitted attributes, stated as scikit-learn 1.10 will require
    search = LogisticRegressionCV(Cs=C_GRID, l1_ratios=(0.0,), cv=folds, scoring="neg_log_loss", max_iter=2000,
                                  random_state=seed, use_legacy_attributes=False)
    model = make_pipeline(StandardScaler(), search).fit(train.features.astype(np.float64), train.labels)
    return Probe(model, float(np.ravel(search.C_)[0]), time.perf_counter() - started)


def probe_scores(probe: Probe, split: SplitFeatures, prefix: str) -> dict[str, float | None]:
    """Accuracy and log loss of the probe on one split (None where there is no probe or no images)."""
    if probe.model is None or len(split.labels) == 0:
        return {f"{prefix}_accuracy": None, f"{prefix}_loss": None}
    from sklearn.metrics import log_loss

    probabilities = probe.model.predict_proba(split.features.astype(np.float64))
    classes = probe.model.classes_
    accuracy = float((classes[probabilities.argmax(1)] == split.labels).mean())
    unseen = not set(split.labels) <= set(classes)  # a class the training split lacks has no probability column
    loss = None if unseen else float(log_loss(split.labels, probabilities, labels=classes))
    return {f"{prefix}_accuracy": accuracy, f"{prefix}_loss": loss}


def probe_summary(probe: Probe, validation: SplitFeatures, test: SplitFeatures) -> dict[str, float | None]:
    """The probe's figures for metrics/train_head/<backbone>.json, named beside the head's."""
    return {**probe_scores(probe, validation, "probe_val"), **probe_scores(probe, test, "probe_test"),
            "probe_c": probe.c, "probe_seconds": round(probe.seconds, 3)}


def equivalent_l2(probe: Probe, train_size: int) -> float:
    """The Keras L2 factor of the probe's C: sklearn minimizes C * sum(log loss) + |w|^2 / 2, a Keras head
    mean(log loss) + l2 * |w|^2, so l2 = 1 / (2 C n). 0.0 where there is no probe."""
    return 0.0 if probe.c is None or train_size == 0 else 1.0 / (2.0 * probe.c * train_size)


def linear_probe(train, seed: int) -> Probe:
    """The logistic-regression baseline on the same features; its C also sets the head's L2 (head.l2: probe)."""
    log.info("linear probe: fitting on %d x %d features (%d C values x up to %d folds)", *train.features.shape,
             len(C_GRID), MAX_FOLDS)
    probe = fit_probe(train, seed)
    if probe.skipped:
        log.warning("no linear probe (and no L2 from it): %s", probe.skipped)
    return probe


def compared_with_probe(probe: Probe, splits: dict, head: dict) -> dict:
    """The probe's figures beside the head's, and a line per split saying how the two compare."""
    figures = probe_summary(probe, splits["validation"], splits["test"])
    for split in ("val", "test"):
        ours, theirs = head.get(f"{split}_accuracy"), figures[f"probe_{split}_accuracy"]
        if ours is not None and theirs is not None:
            log.info("%s accuracy: head %.4f, linear probe %.4f (C=%.3g, fitted in %.1f s)", split, ours, theirs,
                     probe.c, probe.seconds)
    return figures
