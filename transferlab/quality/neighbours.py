"""Near-duplicates on the cached embeddings: cosine nearest neighbours, with a threshold calibrated on copies.

The cosine is taken after PCA whitening fitted on the training split (as image retrieval does with CNN
descriptors): pooled activations are all positive and a few directions dominate them, so raw cosines of unrelated
images sit high and close together. On the cats-vs-dogs photos with MobileNetV2, whitening to 512 dimensions put
20 mirrored, resized, re-encoded copies at a median cosine of 0.81 against 0.21 for each photo's nearest other
(0.86 against 0.51 merely centred), which is what keeps false pairs out (bench/data_quality.py)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

NEIGHBOURS = 5  # per image; a group of more near-copies than this still shows as linked pairs


WHITENED_DIMENSIONS = 512
SHRINK = 0.1  # of the mean eigenvalue, added to each: weak directions are not blown up into noise


def unit_rows(features: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """Centred rows scaled to length 1, so a dot product is a cosine."""
    centred = features.astype(np.float64) - centre
    return centred / np.maximum(np.linalg.norm(centred, axis=1, keepdims=True), 1e-12)


@dataclass(frozen=True)
class Whitening:
    """PCA whitening fitted on the training split's features."""

    mean: np.ndarray
    matrix: np.ndarray  # width x dimensions

    @classmethod
    def fit(cls, train: np.ndarray, dimensions: int = WHITENED_DIMENSIONS) -> "Whitening":
        train = train.astype(np.float64)
        mean = train.mean(axis=0)
        values, vectors = np.linalg.eigh(np.cov((train - mean).T) if len(train) > 1 else np.eye(train.shape[1]))
        order = np.argsort(values)[::-1][:max(1, min(dimensions, len(train) - 1))]
        values = np.maximum(values[order], 0.0)
        return cls(mean, vectors[:, order] / np.sqrt(values + SHRINK * max(values.mean(), 1e-12)))

    def unit(self, features: np.ndarray) -> np.ndarray:
        """Whitened rows of length 1: a dot product is the cosine the near-duplicate check uses."""
        return unit_rows((features.astype(np.float64) - self.mean) @ self.matrix, 0.0)


@dataclass(frozen=True)
class Calibration:
    threshold: float
    copy_similarities: np.ndarray  # each calibration image with each of its copies
    distinct_similarities: np.ndarray  # each calibration image with its nearest other image in the data
    quantile: float

    def summary(self) -> dict[str, float]:
        return {"threshold": self.threshold, "copies": int(len(self.copy_similarities)),
                "copy_similarity_min": float(self.copy_similarities.min()),
                "copy_similarity_median": float(np.median(self.copy_similarities)),
                "distinct_similarity_median": float(np.median(self.distinct_similarities)),
                "distinct_similarity_max": float(self.distinct_similarities.max()),
                "copies_above_threshold": float((self.copy_similarities >= self.threshold).mean()),
                "distinct_above_threshold": float((self.distinct_similarities >= self.threshold).mean())}


def calibrate(originals: np.ndarray, copies: np.ndarray, others: np.ndarray, quantile: float = 0.05,
              look_alikes: float = 0.95) -> Calibration:
    """The cosine that `1 - quantile` of the copies reach, or the one `look_alikes` of the originals' nearest other
    images stay below, whichever is higher: a report full of false pairs would hide the real ones.

    `copies[k, i]` is copy k of `originals[i]` (unit rows); `others` the unit rows of the whole data set, the
    originals among them (their own rows, and exact copies of them, are skipped)."""
    copy_similarity = np.einsum("kid,id->ki", copies, originals).ravel()
    similarity = originals @ others.T
    similarity[similarity > 1 - 1e-6] = -1.0
    distinct = similarity.max(axis=1)
    threshold = max(float(np.quantile(copy_similarity, quantile, method="lower")),  # at least 1 - quantile reach it
                    float(np.quantile(distinct, look_alikes, method="higher")))
    return Calibration(threshold, copy_similarity, distinct, quantile)


def near_duplicate_pairs(unit: np.ndarray, keys: np.ndarray, splits: np.ndarray, threshold: float,
                         neighbours: int = NEIGHBOURS) -> pd.DataFrame:
    """Every pair of images whose cosine reaches `threshold`, once each (a, b sorted by key), most similar first."""
    from sklearn.neighbors import NearestNeighbors

    count = min(neighbours + 1, len(unit))
    distances, indices = NearestNeighbors(n_neighbors=count, metric="cosine").fit(unit).kneighbors(unit)
    rows = {}
    for i, (row_distances, row_indices) in enumerate(zip(distances, indices)):
        for distance, j in zip(row_distances, row_indices):
            similarity = 1.0 - float(distance)
            if j != i and similarity >= threshold:
                a, b = sorted((i, int(j)), key=lambda index: keys[index])
                rows[(a, b)] = similarity
    frame = pd.DataFrame([{"a": keys[a], "b": keys[b], "split_a": splits[a], "split_b": splits[b],
                           "similarity": round(similarity, 4)} for (a, b), similarity in rows.items()],
                         columns=["a", "b", "split_a", "split_b", "similarity"])
    return frame.sort_values(["similarity", "a", "b"], ascending=[False, True, True]).reset_index(drop=True)


def leakage(pairs: pd.DataFrame, splits: np.ndarray, into: str = "test", source: str = "train") -> dict[str, float]:
    """How many `into` images have a near-duplicate in `source`, and their fraction of `into`."""
    crossing = pairs[((pairs.split_a == into) & (pairs.split_b == source)) |
                     ((pairs.split_a == source) & (pairs.split_b == into))]
    leaked = set(crossing.a[crossing.split_a == into]) | set(crossing.b[crossing.split_b == into])
    total = int((splits == into).sum())
    return {"images": len(leaked), "of": total, "fraction": len(leaked) / total if total else 0.0}
