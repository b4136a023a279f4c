import numpy as np
import pandas as pd

from transferlab.quality.neighbours import Whitening, calibrate, leakage, near_duplicate_pairs, unit_rows


def _cloud(seed: int, count: int = 60, width: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(count, width))


def test_unit_rows_centre_then_scale_to_length_one():
    rows = unit_rows(np.array([[3.0, 4.0], [1.0, 0.0]]), np.array([1.0, 0.0]))
    np.testing.assert_allclose(np.linalg.norm(rows[:1], axis=1), 1.0)
    np.testing.assert_allclose(rows[0], [0.4472136, 0.8944272], rtol=1e-6)
    assert np.all(rows[1] == 0)  # the centre itself has no direction, and no division by zero


def test_planted_copies_are_paired_across_splits_and_counted_as_leakage():
    features = _cloud(0)
    copies = features[:5] + np.random.default_rng(1).normal(scale=0.05, size=(5, 16))
    everything = np.concatenate([features, copies])
    keys = np.array([f"img{i:03d}" for i in range(len(everything))])
    splits = np.array(["test"] * 5 + ["train"] * 55 + ["train"] * 5)
    unit = unit_rows(everything, everything.mean(axis=0))
    pairs = near_duplicate_pairs(unit, keys, splits, threshold=0.9)
    assert {(a, b) for a, b in zip(pairs.a, pairs.b)} == {(f"img{i:03d}", f"img{60 + i:03d}") for i in range(5)}
    assert pairs.similarity.is_monotonic_decreasing
    assert leakage(pairs, splits) == {"images": 5, "of": 5, "fraction": 1.0}
    within = near_duplicate_pairs(unit, keys, np.array(["train"] * 65), threshold=0.9)
    assert leakage(within, np.array(["train"] * 60 + ["test"] * 5))["images"] == 0  # no test image in any pair


def test_the_threshold_is_the_similarity_most_copies_reach():
    originals = unit_rows(_cloud(2, 40), np.zeros(16))
    noise = np.random.default_rng(3)
    copies = np.stack([unit_rows(originals + noise.normal(scale=s, size=originals.shape), np.zeros(16))
                       for s in (0.05, 0.1)])
    others = unit_rows(_cloud(4, 200), np.zeros(16))
    calibration = calibrate(originals, copies, np.concatenate([others, originals]))
    similarities = np.einsum("kid,id->ki", copies, originals).ravel()
    assert calibration.threshold == np.sort(similarities)[3]  # the 4th lowest of 80: 95 % of them reach it
    assert (similarities >= calibration.threshold).mean() >= 0.95
    # each original's nearest *other* image: never itself
    assert calibration.distinct_similarities.max() < 0.99
    summary = calibration.summary()
    assert summary["copies"] == 80 and summary["distinct_above_threshold"] == 0.0


def test_whitening_evens_out_directions_so_one_loud_feature_no_longer_decides_the_cosine():
    rng = np.random.default_rng(5)
    train = rng.normal(size=(400, 6)) * np.array([5.0, 1, 1, 1, 1, 1])  # one direction dominates
    whitening = Whitening.fit(train, dimensions=6)
    projected = (train - whitening.mean) @ whitening.matrix
    variances = projected.var(axis=0, ddof=1)
    assert variances.max() / variances.min() < 1.8  # 25 to 1 before; shrink keeps weak directions a little lower
    assert abs(np.corrcoef(projected.T)[0, 1]) < 1e-6
    a, b = np.array([[10.0, 1, 0, 0, 0, 0]]), np.array([[10.0, -1, 0, 0, 0, 0]])
    assert (unit_rows(a, 0) @ unit_rows(b, 0).T).item() > 0.97  # raw: the loud feature makes them look alike
    assert (whitening.unit(a) @ whitening.unit(b).T).item() < 0.9
    assert Whitening.fit(train[:3], dimensions=6).matrix.shape == (6, 2)  # no more directions than images - 1


def test_look_alikes_in_the_data_raise_the_threshold_above_them():
    originals = unit_rows(_cloud(2, 40), np.zeros(16))
    noise = np.random.default_rng(3)
    copies = unit_rows(originals + noise.normal(scale=0.4, size=originals.shape), np.zeros(16))[None]
    look_alikes = unit_rows(originals + noise.normal(scale=0.3, size=originals.shape), np.zeros(16))
    calibration = calibrate(originals, copies, np.concatenate([look_alikes, originals]))
    assert calibration.threshold == np.quantile(calibration.distinct_similarities, 0.95, method="higher")
    assert calibration.threshold > np.quantile(calibration.copy_similarities, 0.05)
    assert (calibration.distinct_similarities >= calibration.threshold).mean() <= 0.05


def test_leakage_counts_the_test_images_that_have_a_copy_in_train_not_the_pairs():
    """One test image with two near-duplicates in train is one leaked image (issue 42: pairs were countable too)."""
    pairs = pd.DataFrame({"a": ["t1", "t1", "v1"], "b": ["x1", "x2", "x3"], "split_a": ["test", "test", "validation"],
                          "split_b": ["train", "train", "train"], "similarity": [0.99, 0.98, 0.97]})
    assert leakage(pairs, np.array(["test"] * 4 + ["train"] * 6)) == {"images": 1, "of": 4, "fraction": 0.25}


def test_whitening_shrinks_a_near_constant_direction_instead_of_blowing_it_up():
    """A direction the training images barely vary along (1e-4 of the others' spread) must not decide the cosine:
    without the shrinkage its difference of 1e-3 would be scaled up ten thousand times."""
    train = np.random.default_rng(6).normal(size=(400, 6)) * np.array([5.0, 1, 1, 1, 1, 1e-4])
    whitening = Whitening.fit(train, dimensions=6)
    a = np.array([[3.0, 1, 1, 0, 0, 0]])
    b = a + np.array([[0, 0, 0, 0, 0, 1e-3]])
    assert (whitening.unit(a) @ whitening.unit(b).T).item() > 0.99
