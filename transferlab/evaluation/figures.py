"""The evaluate stage's plots folder: confusion (JSON for `dvc plots` and PNG), ROC/PR for two classes, and a
gallery of the most confidently wrong test images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from transferlab.data.prepared import images_by_key
from transferlab.evaluation.scoring import (Evaluation, binary_curves, confusion_records, gradcam_choice,
                                            worst_mistakes)
from transferlab.modeling.gradcam import gradcam, overlay

GRADCAM_MISTAKES = 4  # the worst mistakes explained (the gallery shows more, without heatmaps)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_evaluation_plots(target: Path, result: Evaluation, labels: np.ndarray, keys: np.ndarray,
                           class_names: list[str], prepared: Path, split: str, gallery_size: int, model=None,
                           gradcam_per_class: int = 0) -> None:
    (target / "confusion.json").write_text(json.dumps(confusion_records(labels, result.predicted, class_names)))
    plot_confusion(result.confusion, class_names, f"fine-tuned model, {split} split", target / "confusion.png")
    if len(class_names) == 2:
        curves = binary_curves(labels, result.probabilities)
        for curve, table in curves.items():
            table.to_csv(target / f"{curve}.tsv", sep="\t", index=False)
        plot_curves(curves, target / "roc_pr.png")
    worst = worst_mistakes(labels, result.probabilities, gallery_size)
    explained = gradcam_choice(labels, result.probabilities, GRADCAM_MISTAKES, gradcam_per_class) \
        if model is not None and gradcam_per_class else None
    pictures = images_by_key(prepared, split, {keys[i] for i in [*worst, *(explained or [])]})  # one pass
    captions = [f"{keys[i].split('/')[-1]}\ntrue {class_names[labels[i]]}, predicted {class_names[result.predicted[i]]} "
                f"{result.probabilities[i].max():.2f}" for i in worst]
    plot_gallery([pictures[keys[i]] for i in worst], captions, target / "misclassified.png")
    if explained is not None:
        plot_gradcam_gallery(model, result, labels, keys, class_names, explained, pictures, target / "gradcam.png")


def plot_gradcam_gallery(model, result: Evaluation, labels: np.ndarray, keys: np.ndarray, class_names: list[str],
                         chosen: list[int], pictures: dict[str, np.ndarray], path: Path) -> None:
    """Where the model looked: Grad-CAM of the predicted class on the `chosen` test images (`gradcam_choice`: the
    worst mistakes and each class's most confidently right images); `pictures` holds them by key."""
    images = np.stack([pictures[keys[i]] for i in chosen]) if chosen else np.zeros((0, 1, 1, 3))
    heatmaps = gradcam(model, images, result.predicted[chosen])
    captions = [f"{'WRONG' if result.predicted[i] != labels[i] else 'right'}: true {class_names[labels[i]]}\n"
                f"Grad-CAM of {class_names[result.predicted[i]]} {result.probabilities[i].max():.2f}" for i in chosen]
    plot_gallery([overlay(image, heatmap) for image, heatmap in zip(images, heatmaps)], captions, path,
                 empty="no test images to explain")


def plot_confusion(confusion: np.ndarray, class_names: list[str], title: str, path: Path) -> None:
    plt = _pyplot()

    size = min(max(4.0, 0.35 * len(class_names) + 2), 40.0)  # 200 classes: 4,000 px, each name still legible
    figure, axes = plt.subplots(figsize=(size, size))
    skm.ConfusionMatrixDisplay(confusion, display_labels=class_names).plot(
        ax=axes, colorbar=False, xticks_rotation="vertical", include_values=len(class_names) <= 12)
    if len(class_names) > 60:
        axes.tick_params(labelsize=5)
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_curves(curves: dict[str, pd.DataFrame], path: Path) -> None:
    plt = _pyplot()

    figure, (roc, pr) = plt.subplots(1, 2, figsize=(9, 4))
    roc.plot(curves["roc"]["fpr"], curves["roc"]["tpr"])
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    pr.plot(curves["precision_recall"]["recall"], curves["precision_recall"]["precision"])
    pr.set(xlabel="recall", ylabel="precision", title="precision-recall")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_gallery(images: list[np.ndarray], captions: list[str], path: Path, columns: int = 4,
                 empty: str = "no misclassified test images") -> None:
    plt = _pyplot()

    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.3 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, caption in zip(axes.flat, images, captions):
        axis.imshow(image)
        axis.set_title(caption, fontsize=8)
    if not images:
        axes.flat[0].text(0.5, 0.5, empty, ha="center", va="center")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
