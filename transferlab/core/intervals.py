"""95 % intervals for accuracies and their differences: a test split of a few hundred images cannot tell
0.99 from 1.00, and a figure without its interval invites reading noise as progress."""

from __future__ import annotations

import math

CONFIDENCE = 0.95


def accuracy_interval(correct: int, total: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Wilson score interval (scipy's), which stays inside [0, 1] and is right at 0 % and 100 %; NaNs for no images."""
    if total == 0:
        return math.nan, math.nan
    from scipy.stats import binomtest

    interval = binomtest(int(correct), int(total)).proportion_ci(confidence, method="wilson")
    return float(interval.low), float(interval.high)


def difference_interval(accuracy: float, total: int, other: float, other_total: int,
                        confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Interval of accuracy - other from the two Wilson intervals (Newcombe's hybrid score method, his no. 10).

    It treats the two as independent samples; on the same test images it is conservative (wider than a paired
    test would give), so "inside the noise" errs on the side of not claiming a difference."""
    low, high = accuracy_interval(round(accuracy * total), total, confidence)
    other_low, other_high = accuracy_interval(round(other * other_total), other_total, confidence)
    difference = accuracy - other
    return (difference - math.hypot(accuracy - low, other_high - other),
            difference + math.hypot(high - accuracy, other - other_low))


def paired_mean_interval(differences, confidence: float = CONFIDENCE, resamples: int = 2000,
                         seed: int = 0) -> tuple[float, float]:
    """Bootstrap (percentile) interval of the mean of paired differences, such as one model's per-image loss
    minus another's on the same images; NaNs for fewer than two."""
    import numpy as np
    from scipy.stats import bootstrap

    differences = np.asarray(differences, np.float64)
    if len(differences) < 2:
        return math.nan, math.nan
    result = bootstrap((differences,), np.mean, confidence_level=confidence, n_resamples=resamples,
                       method="percentile", random_state=seed)
    return float(result.confidence_interval.low), float(result.confidence_interval.high)
