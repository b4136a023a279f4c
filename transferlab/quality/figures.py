"""Thumbnail sheets of the data report: near-duplicate pairs, likely label errors, outliers."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_pairs(pairs: list[tuple[np.ndarray, np.ndarray, str]], path: Path, per_row: int = 3) -> None:
    """The two images of each pair side by side, `per_row` pairs a row, the caption above the first."""
    plt = _pyplot()
    rows = max(1, -(-len(pairs) // per_row))
    figure, axes = plt.subplots(rows, 2 * per_row, figsize=(3.2 * per_row, 2.0 * rows), squeeze=False)
    for axis in axes.ravel():
        axis.axis("off")
    for number, (left, right, caption) in enumerate(pairs):
        row, column = divmod(number, per_row)
        for image, axis in zip((left, right), axes[row, 2 * column:2 * column + 2]):
            axis.imshow(image)
        axes[row, 2 * column].set_title(caption, fontsize=6, loc="left")
    figure.tight_layout()
    figure.savefig(path, dpi=90, bbox_inches="tight")
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
    figure.savefig(path, dpi=90, bbox_inches="tight")  # keeps the top row's captions inside the picture
    plt.close(figure)
