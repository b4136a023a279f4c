"""The promise of transfer learning, measured on real photos with real ImageNet weights (../shared/assets)."""

import json

import pytest

pytestmark = pytest.mark.slow


def _metrics(root, name):
    return json.loads((root / "metrics" / name).read_text())


def test_cats_vs_dogs_head_reaches_098_validation_accuracy(cats_dogs_pipeline):
    assert _metrics(cats_dogs_pipeline, "train_head/mobilenet_v2.json")["val_accuracy"] >= 0.98
    meta = json.loads((cats_dogs_pipeline / "data" / "features" / "mobilenet_v2" / "meta.json").read_text())
    assert meta["components"]["weights"].startswith("sha256:68fab08a5b4d")
    assert meta["counts"] == {"train": 1000, "validation": 400, "test": 100}


def test_cats_vs_dogs_fine_tuned_reaches_098_and_is_no_worse_than_the_head(cats_dogs_pipeline):
    fine_tuned = _metrics(cats_dogs_pipeline, "fine_tune.json")
    evaluated = _metrics(cats_dogs_pipeline, "evaluate.json")
    assert fine_tuned["val_accuracy"] >= 0.98, fine_tuned
    assert fine_tuned["val_accuracy"] >= fine_tuned["val_accuracy_head_only"] - 0.005, fine_tuned
    assert evaluated["fine_tuned"]["accuracy"] >= 0.98, evaluated
    assert evaluated["fine_tuned"]["accuracy"] >= evaluated["head_only"]["accuracy"] - 0.005, evaluated


def test_head_on_oxford_3_breeds_reaches_095_test_accuracy(oxford_head):
    assert _metrics(oxford_head, "train_head/mobilenet_v2.json")["test_accuracy"] >= 0.95
