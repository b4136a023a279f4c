"""Figures and the Markdown/HTML report of the adversarial stage (the HTML embeds its images)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from transferlab.adversarial.sweep import Replication, Sweep
from transferlab.core import report_pages
from transferlab.core.report_pages import Block


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def sweep_table(sweep: Sweep) -> pd.DataFrame:
    return pd.DataFrame([row.__dict__ for row in sweep.rows])


def plot_sweep(table: pd.DataFrame, path: Path) -> None:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.plot(table["epsilon"], table["robust_accuracy"], marker="o", label="robust accuracy (untargeted PGD)")
    axis.plot(table["epsilon"], table["targeted_success"], marker="s", label="targeted success rate")
    axis.set(xlabel="epsilon (L-inf, pixels out of 255)", ylabel="rate", ylim=(-0.02, 1.02),
             title="robustness vs. perturbation budget")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_robust_vs_standard(table: pd.DataFrame, standard: str, path: Path) -> None:
    """Robust accuracy and targeted success per epsilon, solid for the pipeline's model, dashed for the standard."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(6.5, 4))
    for column, marker in (("robust_accuracy", "o"), ("targeted_success", "s")):
        line, = axis.plot(table["epsilon"], table[column], marker=marker, label=f"{column}, adversarially fine-tuned")
        axis.plot(table["epsilon"], table[f"{column}_standard"], marker=marker, linestyle="--", color=line.get_color(),
                  label=f"{column}, {standard}")
    axis.set(xlabel="epsilon (L-inf, pixels out of 255)", ylabel="rate", ylim=(-0.02, 1.02),
             title="adversarially fine-tuned vs standard")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def _magnified(delta: np.ndarray) -> np.ndarray:
    scale = max(float(np.abs(delta).max()), 1e-6)
    return np.clip(0.5 + 0.5 * delta / scale, 0, 1)


def plot_attack_grid(originals: np.ndarray, adversarials: np.ndarray, before: np.ndarray, after: np.ndarray,
                     names: list[str], title: str, path: Path) -> None:
    """Rows of original | perturbation (magnified) | adversarial, with labels and confidences."""
    plt = _pyplot()
    rows = max(1, len(originals))
    figure, axes = plt.subplots(rows, 3, figsize=(9, 3.1 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for row, (original, adversarial, p0, p1) in enumerate(zip(originals, adversarials, before, after)):
        delta = adversarial - original
        axes[row, 0].imshow(original.astype(np.uint8))
        axes[row, 0].set_title(f"{names[p0.argmax()]} {p0.max():.3f}", fontsize=9)
        axes[row, 1].imshow(_magnified(delta))
        axes[row, 1].set_title(f"perturbation, max |d| = {np.abs(delta).max():.1f}/255", fontsize=9)
        axes[row, 2].imshow(np.clip(adversarial, 0, 255).astype(np.uint8))
        axes[row, 2].set_title(f"{names[p1.argmax()]} {p1.max():.3f}", fontsize=9)
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def plot_gradcam_pairs(befores: np.ndarray, afters: np.ndarray, before: np.ndarray, after: np.ndarray,
                       names: list[str], labels: list[str], path: Path) -> None:
    """Rows of Grad-CAM overlays: before the attack | after it, each of the class the model predicts there."""
    plt = _pyplot()
    rows = max(1, len(befores))
    figure, axes = plt.subplots(rows, 2, figsize=(6, 3.1 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for row, (first, second, p0, p1, label) in enumerate(zip(befores, afters, before, after, labels)):
        axes[row, 0].imshow(first)
        axes[row, 0].set_title(f"{label} before: {names[p0.argmax()]} {p0.max():.3f}", fontsize=8)
        axes[row, 1].imshow(second)
        axes[row, 1].set_title(f"after: {names[p1.argmax()]} {p1.max():.3f}", fontsize=8)
    figure.suptitle("Grad-CAM of the predicted class, before | after the attack", fontsize=10)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def plot_ideal(runs: dict[str, "object"], path: Path) -> None:
    """Each run's snapshots in a row (label -> IdealImage)."""
    plt = _pyplot()
    columns = max(len(run.snapshots) for run in runs.values())
    figure, axes = plt.subplots(len(runs), columns, figsize=(2.6 * columns, 2.9 * len(runs)), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for row, (label, run) in enumerate(runs.items()):
        for column, (step, image) in enumerate(run.snapshots):
            axes[row, column].imshow(image)
            axes[row, column].set_title(f"{label}\nstep {step}", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)


def replication_lines(replication: Replication, names: list[str], top: int = 3) -> list[str]:
    def ranked(row):
        order = np.argsort(-row)[:top]
        return ", ".join(f"{names[i]} {row[i]:.3f}" for i in order)

    return [f"before: {ranked(replication.before)}", f"after: {ranked(replication.after)}",
            f"largest pixel change: {replication.linf:.1f}/255 (no budget)"]


def to_markdown(sections: list[tuple[str, list[Block]]]) -> str:
    return report_pages.to_markdown("Adversarial report", sections)


def to_html(sections: list[tuple[str, list[Block]]], images_dir: Path) -> str:
    return report_pages.to_html("Adversarial report", sections, images_dir)
