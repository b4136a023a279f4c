"""Test-set evaluation: accuracy, top-k, per-class report, confusion matrix, ROC/PR, worst mistakes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from transferlab.modeling.assembly import class_probabilities


@dataclass
class Evaluation:
    summary: dict[str, float]
    per_class: pd.DataFrame
    confusion: np.ndarray
    probabilities: np.ndarray  # (n, classes)
    predicted: np.ndarray


def evaluate_predictions(labels: np.ndarray, raw_probabilities: np.ndarray, class_names: list[str],
                         top_k: int) -> Evaluation:
    probabilities = class_probabilities(raw_probabilities)
    predicted = probabilities.argmax(axis=1)
    indices = list(range(len(class_names)))
    summary = {"accuracy": float(skm.accuracy_score(labels, predicted)), "n": int(len(labels))}
    if len(class_names) > 2:
        k = min(top_k, len(class_names))
        summary[f"top_{k}_accuracy"] = float(skm.top_k_accuracy_score(labels, probabilities, k=k, labels=indices))
    else:
        summary["roc_auc"] = float(skm.roc_auc_score(labels, probabilities[:, 1])) if len(set(labels)) == 2 else float("nan")
    precision, recall, f1, support = skm.precision_recall_fscore_support(labels, predicted, labels=indices,
                                                                         zero_division=0)
    per_class = pd.DataFrame({"class": class_names, "precision": precision, "recall": recall, "f1": f1,
                              "support": support})
    summary["macro_f1"] = float(f1.mean())
    confusion = skm.confusion_matrix(labels, predicted, labels=indices)
    return Evaluation(summary, per_class, confusion, probabilities, predicted)


def confusion_records(labels: np.ndarray, predicted: np.ndarray, class_names: list[str]) -> list[dict[str, str]]:
    """The form DVC's confusion template reads: one {actual, predicted} record per image."""
    return [{"actual": class_names[a], "predicted": class_names[p]} for a, p in zip(labels, predicted)]


def binary_curves(labels: np.ndarray, probabilities: np.ndarray) -> dict[str, pd.DataFrame]:
    fpr, tpr, _ = skm.roc_curve(labels, probabilities[:, 1])
    precision, recall, _ = skm.precision_recall_curve(labels, probabilities[:, 1])
    return {"roc": pd.DataFrame({"fpr": fpr, "tpr": tpr}),
            "precision_recall": pd.DataFrame({"recall": recall, "precision": precision})}


def worst_mistakes(labels: np.ndarray, probabilities: np.ndarray, count: int) -> np.ndarray:
    """Indices of misclassified images, most confidently wrong first."""
    wrong = np.flatnonzero(probabilities.argmax(axis=1) != labels)
    true_probability = probabilities[wrong, labels[wrong]]
    return wrong[np.argsort(true_probability, kind="stable")][:count]


def plot_confusion(confusion: np.ndarray, class_names: list[str], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    size = max(4.0, 0.35 * len(class_names) + 2)
    figure, axes = plt.subplots(figsize=(size, size))
    skm.ConfusionMatrixDisplay(confusion, display_labels=class_names).plot(
        ax=axes, colorbar=False, xticks_rotation="vertical", include_values=len(class_names) <= 12)
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_curves(curves: dict[str, pd.DataFrame], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (roc, pr) = plt.subplots(1, 2, figsize=(9, 4))
    roc.plot(curves["roc"]["fpr"], curves["roc"]["tpr"])
    roc.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC")
    pr.plot(curves["precision_recall"]["recall"], curves["precision_recall"]["precision"])
    pr.set(xlabel="recall", ylabel="precision", title="precision-recall")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_gallery(images: list[np.ndarray], captions: list[str], path: Path, columns: int = 4) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.3 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, caption in zip(axes.flat, images, captions):
        axis.imshow(image)
        axis.set_title(caption, fontsize=8)
    if not images:
        axes.flat[0].text(0.5, 0.5, "no misclassified test images", ha="center", va="center")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
