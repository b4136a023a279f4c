"""Drift between two sets of embeddings: a domain classifier (as Evidently's embedding drift does it) and a
kernel two-sample test (MMD with a permutation p-value). Pure computation: arrays in, figures out."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

AUC_THRESHOLD = 0.55  # Evidently's default for its domain classifier on embeddings
ALPHA = 0.05
FOLDS = 5
# Up to this many images in the classifier's sample, 0.55 alone false-alarms often (20 new images of the same
# photos: 47 % of draws; bench/drift_assets.py): as Evidently does for up to 1,000 objects, the AUC must also beat
# what the same classifier reaches on shuffled labels.
SMALL_SAMPLE = 1000
NULL_FITS = 19  # shuffled-label fits: their maximum is the 95th percentile of the null


def _subsample(rows: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` rows drawn without replacement (all of them, in order, when there are no more)."""
    if len(rows) <= count:
        return rows
    return rows[np.sort(rng.choice(len(rows), count, replace=False))]


def classifier_auc(reference: np.ndarray, current: np.ndarray, seed: int) -> float:
    """Out-of-fold ROC AUC of a logistic regression telling current rows (1) from reference rows (0).

    The larger set is subsampled to the smaller's size: with unequal sets the AUC still means "separable or
    not", but the fit would lean to the majority. About 0.5: indistinguishable; near 1: different domains."""
    rows, labels = _classifier_sample(reference, current, seed)
    return _out_of_fold_auc(rows, labels, seed)


def _classifier_sample(reference: np.ndarray, current: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    count = min(len(reference), len(current))
    if count < FOLDS:
        raise ValueError(f"the classifier test needs at least {FOLDS} rows in each set (got {len(reference)} "
                         f"and {len(current)})")
    rng = np.random.default_rng(seed)
    rows = np.concatenate([_subsample(reference, count, rng), _subsample(current, count, rng)]).astype(np.float64)
    return rows, np.repeat([0, 1], count)


def _out_of_fold_auc(rows: np.ndarray, labels: np.ndarray, seed: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    folds = StratifiedKFold(FOLDS, shuffle=True, random_state=seed)
    scores = cross_val_predict(model, rows, labels, cv=folds, method="predict_proba")[:, 1]
    return float(roc_auc_score(labels, scores))


def auc_threshold(reference: np.ndarray, current: np.ndarray, seed: int, fits: int = NULL_FITS) -> float:
    """0.55, or on a small sample the highest AUC the classifier reaches with the labels shuffled (`fits` times:
    the null's 95th percentile for 19), whichever is higher."""
    rows, labels = _classifier_sample(reference, current, seed)
    if len(rows) > SMALL_SAMPLE:
        return AUC_THRESHOLD
    rng = np.random.default_rng(seed + 1)
    null = [_out_of_fold_auc(rows, rng.permutation(labels), seed) for _ in range(fits)]
    return max(AUC_THRESHOLD, float(np.max(null)))


def _standardized(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets in units of the reference's per-feature spread: the kernel then weighs every feature alike, as
    the classifier's scaler does. A feature constant in the reference keeps its raw scale, since dividing by ~0
    would let it alone decide every distance."""
    mean, std = reference.mean(axis=0), reference.std(axis=0)
    scale = np.where(std > 1e-8, std, 1.0)
    return (reference - mean) / scale, (current - mean) / scale


def _squared_distances(rows: np.ndarray) -> np.ndarray:
    norms = (rows ** 2).sum(axis=1)
    return np.maximum(norms[:, None] + norms[None, :] - 2.0 * rows @ rows.T, 0.0)


def _unbiased_mmd2(kernel: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Unbiased squared MMD for each row of `members` (a 0/1 matrix: 1 marks the first set), from one kernel
    matrix of the pooled sample. The RBF kernel's diagonal is 1, so the within-set sums drop n and m."""
    first = members.astype(np.float64)
    second = 1.0 - first
    n, m = first.sum(axis=1), second.sum(axis=1)
    kernel_first = kernel @ first.T  # pooled x permutations
    within_first = (first.T * kernel_first).sum(axis=0)
    across = (second.T * kernel_first).sum(axis=0)
    within_second = kernel.sum() - within_first - 2.0 * across
    return (within_first - n) / (n * (n - 1)) + (within_second - m) / (m * (m - 1)) - 2.0 * across / (n * m)


def mmd_test(reference: np.ndarray, current: np.ndarray, seed: int, permutations: int = 200,
             max_per_set: int = 500) -> tuple[float, float]:
    """Squared MMD (unbiased, RBF kernel, median-distance bandwidth, on features standardized by the reference)
    and its permutation p-value, (permuted statistics >= observed, plus 1) / (permutations + 1)."""
    if min(len(reference), len(current)) < 2:
        raise ValueError(f"the MMD test needs at least 2 rows in each set (got {len(reference)} and {len(current)})")
    rng = np.random.default_rng(seed)
    reference, current = _standardized(np.asarray(reference, np.float64), np.asarray(current, np.float64))
    reference, current = _subsample(reference, max_per_set, rng), _subsample(current, max_per_set, rng)
    distances = _squared_distances(np.concatenate([reference, current]))
    pooled = len(distances)
    median = float(np.median(np.sqrt(distances[np.triu_indices(pooled, k=1)])))
    bandwidth = median if median > 0 else 1.0  # identical rows only: any bandwidth gives MMD 0
    kernel = np.exp(-distances / (2.0 * bandwidth ** 2))
    observed_members = np.zeros((1, pooled), bool)
    observed_members[0, :len(reference)] = True
    permuted_members = np.stack([rng.permutation(observed_members[0]) for _ in range(permutations)])
    observed = float(_unbiased_mmd2(kernel, observed_members)[0])
    permuted = _unbiased_mmd2(kernel, permuted_members)
    # a tolerance, so that permutations equal to the observed split up to rounding count as reaching it
    reached = int((permuted >= observed - 1e-12).sum())
    return observed, (reached + 1) / (permutations + 1)


def _shown(value: float, threshold: float) -> str:
    """`value` with 2 decimals, or up to 4 where fewer would make a value beside `threshold` read as equal to it
    (an AUC of 0.552 shown as "0.55 > 0.55")."""
    for decimals in (2, 3, 4):
        text = f"{value:.{decimals}f}"
        if value == threshold or text != f"{threshold:.{decimals}f}":
            return text
    return f"{value:.4f}"


@dataclass(frozen=True)
class DriftResult:
    auc: float
    mmd: float
    p_value: float
    reference_count: int
    current_count: int
    auc_threshold: float = AUC_THRESHOLD
    alpha: float = ALPHA

    @property
    def drifted(self) -> bool:
        """The verdict: the domain classifier tells the sets apart better than the threshold."""
        return self.auc > self.auc_threshold

    @property
    def mmd_drifted(self) -> bool:
        return self.p_value < self.alpha

    def verdict(self) -> str:
        """One line: the verdict, both tests' figures, and whether MMD disagrees with the classifier."""
        auc = _shown(self.auc, self.auc_threshold)
        auc_part = f"classifier AUC {auc} {'>' if self.drifted else '<='} {self.auc_threshold:.2f}"
        mmd_part = f"p = {self.p_value:.3f} {'<' if self.mmd_drifted else '>='} {self.alpha:.2f}"
        mmd_part = f"MMD {mmd_part}" if self.mmd_drifted == self.drifted else f"MMD disagrees: {mmd_part}"
        counts = f"{self.current_count} new vs {self.reference_count} training images"
        return f"drift: {'yes' if self.drifted else 'no'} ({auc_part}; {mmd_part}; {counts})"

    def as_record(self) -> dict[str, Any]:
        """Every figure, both tests' decisions and the verdict line, for a JSON report."""
        return {**asdict(self), "drifted": self.drifted, "mmd_drifted": self.mmd_drifted, "verdict": self.verdict()}


def compare(reference: np.ndarray, current: np.ndarray, seed: int) -> DriftResult:
    """Both tests of `current` (new embeddings) against `reference` (the training set's)."""
    mmd, p_value = mmd_test(reference, current, seed)
    return DriftResult(classifier_auc(reference, current, seed), mmd, p_value, len(reference), len(current),
                       auc_threshold(reference, current, seed))
