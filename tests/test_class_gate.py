"""The per-class rules of the registry gate, as pure functions of [right, test images] per class."""

import numpy as np

from transferlab.core.params import EvaluateParams
from transferlab.tracking.class_gate import class_counts, class_refusal

DEFAULTS = EvaluateParams()


def test_counts_are_the_confusion_diagonal_and_row_sums():
    confusion = np.array([[8, 2], [1, 9]])
    assert class_counts(["a cat", "Škoda"], confusion) == {"a cat": [8, 10], "Škoda": [9, 10]}


def test_a_drop_counts_only_beyond_the_limit_and_beyond_the_noise():
    champion = {"cat": [90, 100], "dog": [90, 100]}
    real = class_refusal({"cat": [90, 100], "dog": [70, 100]}, champion, DEFAULTS.max_class_regression, None)
    assert real is not None and real.startswith("recall on class 'dog' fell from the champion's 0.900 to 0.700")
    within_limit = {"cat": [90, 100], "dog": [82, 100]}  # 0.08 down: under the 0.1 limit
    assert class_refusal(within_limit, champion, DEFAULTS.max_class_regression, None) is None
    noisy = {"cat": [90, 100], "dog": [7, 10]}  # 0.2 down, on ten images
    assert class_refusal(noisy, champion, DEFAULTS.max_class_regression, None) is None
    assert class_refusal({"cat": [90, 100], "dog": [70, 100]}, champion, None, None) is None  # null: off


def test_min_class_recall_holds_without_a_champion_and_names_the_class():
    reason = class_refusal({"café crème": [3, 10], "dog": [10, 10]}, None, DEFAULTS.max_class_regression, 0.5)
    assert reason == "recall on class 'café crème' is 0.300 (3/10 test images), below evaluate.min_class_recall 0.5"
    assert class_refusal({"café crème": [5, 10]}, None, None, 0.5) is None


def test_a_damaged_champion_record_is_read_as_none_not_a_crash(tmp_path):
    """Issue 31: the gate then compares overall only, and its reason says the champion's classes are unrecorded."""
    from transferlab.tracking.class_gate import champion_counts

    class Client:
        def __init__(self, text):
            self.text = text

        def download_artifacts(self, run_id, path):
            (tmp_path / "counts.json").write_text(self.text, encoding="utf-8")
            return str(tmp_path / "counts.json")

    assert champion_counts(Client('{"cat": [3, 4]}'), "run") == {"cat": [3, 4]}
    assert champion_counts(Client('{"cat": [3, '), "run") is None
    assert champion_counts(Client('{"cat": "three"}'), "run") is None
    assert champion_counts(Client("[1, 2]"), "run") is None


def test_a_class_without_test_images_is_skipped_on_either_side_not_divided_by():
    """Issue 42: a class absent from the test split (0 of 0) in the challenger or in the champion's record."""
    champion = {"cat": [9, 10], "dog": [0, 0]}
    assert class_refusal({"cat": [9, 10], "dog": [0, 0]}, champion, DEFAULTS.max_class_regression, 0.5) is None
    assert class_refusal({"cat": [9, 10], "dog": [1, 10]}, champion, DEFAULTS.max_class_regression, None) is None
    assert class_refusal({"cat": [0, 0], "dog": [1, 10]}, {"cat": [9, 10]}, DEFAULTS.max_class_regression,
                         0.5).startswith("recall on class 'dog' is 0.100")
