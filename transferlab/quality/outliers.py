"""Outliers: the images farthest from every class, in the standardized embedding."""

from __future__ import annotations

import numpy as np
import pandas as pd


def outlier_scores(features: np.ndarray, labels: np.ndarray, keys: np.ndarray, reference: np.ndarray,
                   reference_labels: np.ndarray) -> pd.DataFrame:
    """Each image's distance to the nearest class centre (centres and scale from `reference`, the training split),
    in units of that class's median member distance: above about 2, an image resembles no class. Farthest first."""
    mean, scale = reference.mean(axis=0), reference.std(axis=0) + 1e-6
    standard, reference = (features - mean) / scale, (reference - mean) / scale
    classes = np.unique(reference_labels)
    centres = np.stack([reference[reference_labels == c].mean(axis=0) for c in classes])
    spread = np.array([np.median(np.linalg.norm(reference[reference_labels == c] - centre, axis=1))
                       for c, centre in zip(classes, centres)])
    squared = (standard ** 2).sum(axis=1)[:, None] - 2 * standard @ centres.T + (centres ** 2).sum(axis=1)[None]
    relative = np.sqrt(np.maximum(squared, 0.0)) / np.maximum(spread, 1e-6)  # images x classes, never x width
    frame = pd.DataFrame({"file": keys, "label": labels, "distance": np.round(relative.min(axis=1), 3),
                          "nearest_class": classes[relative.argmin(axis=1)]})
    return frame.sort_values(["distance", "file"], ascending=[False, True]).reset_index(drop=True)
