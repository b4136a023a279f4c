import numpy as np
import pytest

from transferlab.evaluation.scoring import confusion_records, evaluate_predictions, gradcam_choice, worst_mistakes
from transferlab.tracking.promotion import CHALLENGER, CHAMPION, decide


def test_sigmoid_outputs_are_scored_as_two_classes():
    labels = np.array([0, 0, 1, 1])
    result = evaluate_predictions(labels, np.array([[0.1], [0.7], [0.8], [0.9]]), ["cat", "dog"], 3)
    assert result.summary["accuracy"] == 0.75 and result.summary["roc_auc"] == 1.0
    # 3 of 4 right: the 95 % Wilson interval is wide, which is the point of printing it
    assert (result.summary["accuracy_low"], result.summary["accuracy_high"]) == pytest.approx((0.3006, 0.9544), abs=1e-4)
    assert result.confusion.tolist() == [[1, 1], [0, 2]]
    assert result.per_class.set_index("class").loc["dog", "precision"] == 2 / 3


def test_top_k_for_more_than_two_classes():
    labels = np.array([0, 1, 2])
    probabilities = np.array([[0.5, 0.3, 0.2], [0.5, 0.2, 0.3], [0.1, 0.2, 0.7]])
    summary = evaluate_predictions(labels, probabilities, ["a", "b", "c"], 2).summary
    assert summary["accuracy"] == 2 / 3 and summary["top_2_accuracy"] == 2 / 3


def test_a_three_class_task_reports_no_top_3():
    """Top-3 of 3 classes is always 1.0 (and scikit-learn warns): it is not reported."""
    labels = np.array([0, 1, 2])
    probabilities = np.array([[0.5, 0.3, 0.2], [0.5, 0.2, 0.3], [0.1, 0.2, 0.7]])
    summary = evaluate_predictions(labels, probabilities, ["a", "b", "c"], 3).summary
    assert not [key for key in summary if key.startswith("top_")]


def test_worst_mistakes_are_the_most_confidently_wrong():
    labels = np.array([0, 0, 1, 1])
    probabilities = np.array([[0.4, 0.6], [0.05, 0.95], [0.9, 0.1], [0.2, 0.8]])
    assert worst_mistakes(labels, probabilities, 5).tolist() == [1, 2, 0]
    assert confusion_records(labels[:1], np.array([1]), ["cat", "dog"]) == [{"actual": "cat", "predicted": "dog"}]


def test_gradcam_explains_the_worst_mistakes_then_each_class_most_confident_right_images():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probabilities = np.array([[0.6, 0.4], [0.9, 0.1], [0.3, 0.7], [0.2, 0.8], [0.45, 0.55], [0.95, 0.05]])
    # mistakes: 5 (p(true) 0.05), then 2 (0.3); right: class 0 -> 1 (0.9), 0 (0.6); class 1 -> 3 (0.8), 4
    assert gradcam_choice(labels, probabilities, 4, 2) == [5, 2, 1, 0, 3, 4]
    assert gradcam_choice(labels, probabilities, 1, 1) == [5, 1, 3]
    assert gradcam_choice(labels, probabilities, 0, 0) == []


def test_two_hundred_classes_with_any_names_are_scored_and_drawn_within_bounds(tmp_path):
    from PIL import Image

    from transferlab.evaluation.figures import plot_confusion
    from transferlab.evaluation.scoring import GRADCAM_MOST_RIGHT

    names = [f"Klasse {i} – café/ñ" for i in range(200)]
    labels = np.repeat(np.arange(200), 3)
    probabilities = np.full((600, 200), 0.1 / 199)
    probabilities[np.arange(600), labels] = 0.9
    result = evaluate_predictions(labels, probabilities, names, top_k=5)
    assert result.summary["accuracy"] == 1.0 and list(result.per_class["class"]) == names
    chosen = gradcam_choice(labels, probabilities, 4, 2)
    assert len(chosen) == GRADCAM_MOST_RIGHT and len(set(chosen)) == len(chosen)
    plot_confusion(result.confusion, names, "200 classes", tmp_path / "confusion.png")
    assert max(Image.open(tmp_path / "confusion.png").size) <= 4000


def test_gate_decisions():
    assert decide(0.7, None, 0.8, 0.01).alias == CHALLENGER
    assert decide(0.9, None, 0.8, 0.01).alias == CHAMPION
    assert decide(0.9, 0.95, 0.8, 0.01).alias == CHALLENGER
    assert decide(0.945, 0.95, 0.8, 0.01).alias == CHAMPION
    assert "below evaluate.min_accuracy" in decide(0.7, 0.6, 0.8, 0.01).reason
