import numpy as np

from transferlab.quality.label_issues import out_of_fold_probabilities, rank_label_issues


def test_flipped_labels_rank_first_and_are_flagged():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 60)
    features = rng.normal(size=(180, 8)) + np.eye(3, 8)[labels] * 6
    given = labels.copy()
    flipped = rng.choice(180, 9, replace=False)
    given[flipped] = (labels[flipped] + 1) % 3
    probabilities = out_of_fold_probabilities(features, given, 1.0, seed=0)
    assert probabilities.shape == (180, 3)
    keys = np.array([f"img{i:03d}" for i in range(180)])
    ranked = rank_label_issues(given, probabilities, keys, ["a b", "ç", "c"])
    assert set(ranked.file[:9]) == set(keys[flipped])
    flagged = set(ranked.file[ranked.flagged])
    assert flagged <= set(keys[flipped]) and len(flagged) >= 6  # cleanlab prunes conservatively
    first = ranked.iloc[0]
    index = int(first.file[3:])
    assert first.given == ["a b", "ç", "c"][given[index]] and first.suggested == ["a b", "ç", "c"][labels[index]]
    assert ranked.quality.is_monotonic_increasing


def test_a_class_of_one_image_cannot_be_cross_validated():
    assert out_of_fold_probabilities(np.zeros((5, 2)), np.array([0, 0, 0, 0, 1]), 1.0, seed=0) is None
