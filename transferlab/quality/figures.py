"""Thumbnail sheets of the data report: near-duplicate pairs, likely label errors, outliers."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pairs(pairs: list[tuple[np.ndarray, np.ndarray, str]], path: Path) -> None:
    """One row per pair: the two images side by side, the caption above the first."""
    plt = _pyplot()
    figure, axes = plt.subplots(len(pairs), 2, figsize=(4.4, 2.3 * len(pairs)), squeeze=False)
    for (left, right, caption), row in zip(pairs, axes):
        for image, axis in zip((left, right), row):
            axis.imshow(image)
            axis.axis("off")
        row[0].set_title(caption, fontsize=7, loc="left")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


def plot_gallery(images: list[np.ndarray], captions: list[str], path: Path, columns: int = 4) -> None:
    plt = _pyplot()
    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(2.4 * columns, 2.6 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for image, caption, axis in zip(images, captions, axes.ravel()):
        axis.imshow(image)
        axis.set_title(caption, fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
