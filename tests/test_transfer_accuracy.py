"""The promise of transfer learning, measured on real photos with real ImageNet weights (../shared/assets)."""

import json

import pytest

from tests.conftest import HEAD_STAGES, STAGES, run_stages

MOBILENET_V2 = "weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"


def _run(tmp_path, assets, dataset, stages):
    overrides = {"data.source": "folder", "data.folder.root": str(assets / "images" / dataset),
                 "data.image_size": 224, "backbone.name": "mobilenet_v2", "backbone.alpha": 1.0,
                 "backbone.weights": str(assets / MOBILENET_V2)}
    run_stages(tmp_path, overrides, stages)
    return json.loads((tmp_path / "metrics" / "train_head.json").read_text())


def test_cats_vs_dogs_head_and_fine_tuned_model_reach_098(tmp_path, assets):
    metrics = _run(tmp_path, assets, "cats_vs_dogs", STAGES)
    assert metrics["val_accuracy"] >= 0.98, metrics
    meta = json.loads((tmp_path / "data" / "features" / "meta.json").read_text())
    assert meta["components"]["weights"].startswith("sha256:68fab08a5b4d")
    assert meta["counts"] == {"train": 1000, "validation": 400, "test": 100}
    fine_tuned = json.loads((tmp_path / "metrics" / "fine_tune.json").read_text())
    evaluated = json.loads((tmp_path / "metrics" / "evaluate.json").read_text())
    assert fine_tuned["val_accuracy"] >= 0.98, fine_tuned
    assert fine_tuned["val_accuracy"] >= fine_tuned["val_accuracy_head_only"] - 0.005, fine_tuned
    assert evaluated["fine_tuned"]["accuracy"] >= 0.98, evaluated
    assert evaluated["fine_tuned"]["accuracy"] >= evaluated["head_only"]["accuracy"] - 0.005, evaluated


def test_head_on_oxford_3_breeds_reaches_095_test_accuracy(tmp_path, assets):
    metrics = _run(tmp_path, assets, "oxford_pets_3breeds", HEAD_STAGES)
    assert metrics["test_accuracy"] >= 0.95, metrics
