"""Scoring on a prepared split: predictions, accuracy, top-k, per-class report, confusion, ROC/PR, worst mistakes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics as skm

from transferlab.core.intervals import accuracy_interval
from transferlab.data.prepared import decoded_keys, image_dataset
from transferlab.modeling.outputs import class_probabilities


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
    correct = int((predicted == labels).sum())
    low, high = accuracy_interval(correct, len(labels))
    summary = {"accuracy": float(skm.accuracy_score(labels, predicted)), "accuracy_low": low, "accuracy_high": high,
               "n": int(len(labels))}
    if 2 < len(class_names):
        if top_k < len(class_names):  # top-k of k classes is always 1.0: a number that says nothing
            summary[f"top_{top_k}_accuracy"] = float(skm.top_k_accuracy_score(labels, probabilities, k=top_k,
                                                                               labels=indices))
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


GRADCAM_MOST_RIGHT = 32  # right images in one figure: 200 classes x 2 would be 400 backward passes and a huge PNG


def gradcam_choice(labels: np.ndarray, probabilities: np.ndarray, mistakes: int, per_class: int) -> list[int]:
    """Indices to explain: the worst mistakes, then each class's most confidently right images (classes in label
    order, at most GRADCAM_MOST_RIGHT right images in all)."""
    predicted = probabilities.argmax(axis=1)
    chosen = [int(i) for i in worst_mistakes(labels, probabilities, mistakes)]
    right_total = 0
    for label in range(probabilities.shape[1]):
        right = np.flatnonzero((labels == label) & (predicted == label))
        best = [int(i) for i in right[np.argsort(-probabilities[right, label], kind="stable")][:per_class]]
        best = best[:GRADCAM_MOST_RIGHT - right_total]
        chosen, right_total = chosen + best, right_total + len(best)
    return chosen


def predict_split(model, prepared: Path, split: str, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(raw outputs, labels, keys) of a model over one prepared split, in shard order."""
    import tensorflow as tf

    forward = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
    outputs, labels, keys = [], [], []
    for images, label, key in image_dataset(prepared, split, batch_size, with_keys=True):
        outputs.append(forward(images).numpy())
        labels.append(label.numpy())
        keys.append(key.numpy())
    return np.concatenate(outputs), np.concatenate(labels), decoded_keys(np.concatenate(keys))


def score_model(model, prepared: Path, split: str, batch_size: int, class_names: list[str],
                top_k: int) -> tuple[Evaluation, np.ndarray, np.ndarray]:
    """A model's Evaluation on a split, with the labels and keys it was scored on."""
    outputs, labels, keys = predict_split(model, prepared, split, batch_size)
    return evaluate_predictions(labels, outputs, class_names, top_k), labels, keys
