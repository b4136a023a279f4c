"""Likely label errors: cleanlab on the linear probe's out-of-fold probabilities, over every split pooled."""

from __future__ import annotations

import numpy as np
import pandas as pd

MAX_FOLDS = 5


def out_of_fold_probabilities(features: np.ndarray, labels: np.ndarray, c: float, seed: int) -> np.ndarray | None:
    """Each image's class probabilities from a probe (standardize + logistic regression at C) that never saw it;
    None when some class has fewer than two images."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    counts = np.bincount(labels)
    if counts[counts > 0].min() < 2 or (counts > 0).sum() < 2:
        return None
    folds = StratifiedKFold(int(min(MAX_FOLDS, counts[counts > 0].min())), shuffle=True, random_state=seed)
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000, random_state=seed))
    return cross_val_predict(probe, features.astype(np.float64), labels, cv=folds, method="predict_proba")


def rank_label_issues(labels: np.ndarray, probabilities: np.ndarray, keys: np.ndarray, names: list[str]
                      ) -> pd.DataFrame:
    """Every image, worst label quality first: cleanlab's self-confidence score, whether find_label_issues flags
    it, the given and the suggested (most probable) class."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    quality = get_label_quality_scores(labels, probabilities, method="self_confidence")
    flagged = find_label_issues(labels, probabilities, filter_by="prune_by_noise_rate")
    suggested = probabilities.argmax(axis=1)
    frame = pd.DataFrame({"file": keys, "given": [names[i] for i in labels],
                          "suggested": [names[i] for i in suggested], "quality": np.round(quality, 4),
                          "flagged": flagged})
    return frame.sort_values(["quality", "file"], kind="stable").reset_index(drop=True)
