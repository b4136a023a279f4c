import numpy as np

from transferlab.quality.outliers import outlier_scores


def test_an_image_far_from_every_class_ranks_first():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 50)
    features = rng.normal(size=(100, 6)) + np.eye(2, 6)[labels] * 5
    stray = np.full((1, 6), 12.0)
    everything = np.concatenate([features, stray])
    keys = np.array([f"img{i:03d}" for i in range(101)])
    scores = outlier_scores(everything, np.append(labels, 0), keys, features, labels)
    assert scores.file.iloc[0] == "img100" and scores.distance.iloc[0] > 3
    assert (scores.distance.iloc[1:] < 3).all()
    assert set(scores.nearest_class) == {0, 1}
