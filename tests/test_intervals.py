"""Accuracy intervals: Wilson on known cases, Newcombe for the difference of two accuracies."""

import math

import pytest

from transferlab.core.intervals import accuracy_interval, difference_interval


def test_wilson_interval_matches_the_textbook_cases():
    # Newcombe (1998), table I: 81/263 -> 0.2553 to 0.3662; 0/10 -> 0 to 0.2775 (Wilson, no continuity correction)
    assert accuracy_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert accuracy_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    low, high = accuracy_interval(100, 100)  # "1.000 on 100 test images"
    assert high == pytest.approx(1.0) and low == pytest.approx(0.9630, abs=1e-4)
    assert all(math.isnan(v) for v in accuracy_interval(0, 0))


def test_difference_interval_matches_newcombes_worked_example_and_contains_zero_only_when_it_should():
    # Newcombe (1998), example (a): 56/70 - 48/80 = 0.2 -> 0.0524 to 0.3339 (method 10)
    low, high = difference_interval(56 / 70, 70, 48 / 80, 80)
    assert (low, high) == pytest.approx((0.0524, 0.3339), abs=1e-4)
    low, high = difference_interval(0.96, 298, 0.956, 298)  # the head vs probe: inside the noise
    assert low < 0 < high
    low, high = difference_interval(0.99, 1000, 0.90, 1000)
    assert low > 0


def test_paired_mean_interval_of_a_constant_difference_is_that_difference():
    from transferlab.core.intervals import paired_mean_interval

    assert paired_mean_interval([-0.5] * 20) == (-0.5, -0.5)


def test_paired_mean_interval_covers_zero_for_noise_and_excludes_it_for_a_clear_change():
    import numpy as np

    from transferlab.core.intervals import paired_mean_interval

    noise = np.random.default_rng(0).normal(0.0, 1.0, 60)
    low, high = paired_mean_interval(noise)
    assert low < 0 < high and high - low < 4 * 1.96 / np.sqrt(60)
    shifted_low, shifted_high = paired_mean_interval(noise - 1.0)  # a change of one standard deviation
    assert shifted_high < 0 and np.isclose(shifted_high - shifted_low, high - low, rtol=0.2)


def test_paired_mean_interval_is_a_95_percent_interval_as_wide_as_the_normal_one_on_a_large_sample():
    """On 400 normal differences the mean's bootstrap distribution is normal: the default interval must have the
    width of mean +- z(0.975) standard errors, within the Monte Carlo error of its percentile endpoints."""
    import numpy as np
    from scipy.stats import norm

    from transferlab.core.intervals import paired_mean_interval

    differences = np.random.default_rng(3).normal(-0.2, 1.0, 400)
    resamples = 2000
    low, high = paired_mean_interval(differences, resamples=resamples)  # the default confidence
    standard_error = differences.std() / np.sqrt(len(differences))  # the bootstrap's own (plug-in) spread
    z = norm.ppf(0.5 + 0.95 / 2)
    tail = (1 - 0.95) / 2
    # standard error of a percentile estimated from `resamples` draws, for each of the two endpoints
    endpoint_error = np.sqrt(tail * (1 - tail) / resamples) / norm.pdf(z) * standard_error
    tolerance = 4 * np.sqrt(2) * endpoint_error
    assert abs((high - low) - 2 * z * standard_error) < tolerance, (high - low, 2 * z * standard_error, tolerance)
    assert abs((low + high) / 2 - differences.mean()) < 4 * endpoint_error


def test_paired_mean_interval_needs_two_differences():
    import math

    from transferlab.core.intervals import paired_mean_interval

    assert all(math.isnan(v) for v in paired_mean_interval([0.3]))
