"""The train_head stage on planted features: which split its linear probe learns from shows in the probe's figures."""

from __future__ import annotations

import json

import numpy as np

from tests.conftest import PROJECT_ROOT

BACKBONE = "resnet50"
RULES = {"train": "feature 0 > 0", "validation": "feature 1 > 0", "test": "feature 0 < 0"}


def _planted_split(rng: np.random.Generator, split: str, per_class: int) -> dict[str, np.ndarray]:
    """Two well separated features and a label that follows RULES[split]: train's rule is the test split's
    reversed, and validation's is independent of both (exactly half its images agree with train's rule)."""
    quarter = per_class // 2
    signs = np.array([(a, b) for a, b in ((1, 1), (1, -1), (-1, 1), (-1, -1)) for _ in range(quarter)], float)
    # every sign combination equally often: within a split, knowing one feature's sign says nothing of the other's
    features = signs * rng.uniform(1.0, 2.0, signs.shape)  # |feature| >= 1: a margin around each rule's boundary
    column, sign = {"train": (0, 1), "validation": (1, 1), "test": (0, -1)}[split]
    labels = (sign * features[:, column] > 0).astype(np.int64)
    keys = np.array([f"{split}/{index}.jpg" for index in range(len(labels))])
    return {"features": features.astype(np.float32), "labels": labels, "keys": keys}


def _planted_features(root, per_class: int = 20) -> dict[str, dict[str, np.ndarray]]:
    folder = root / "data" / "features" / BACKBONE
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    splits = {split: _planted_split(rng, split, per_class) for split in RULES}
    for split, arrays in splits.items():
        np.savez(folder / f"{split}-00000.npz", **arrays)
    classes = [{"index": 0, "name": "rule_false"}, {"index": 1, "name": "rule_true"}]
    (folder / "meta.json").write_text(json.dumps({"classes": classes, "feature_width": 2}), encoding="utf-8")
    return splits


def test_the_linear_probe_is_fitted_on_the_training_split_only(tmp_path):
    """A probe fitted on train follows train's rule: right on no test image (whose rule is the reverse) and on
    half the validation images; fitted on test it would be right on all test images, on validation all of those."""
    import shutil

    from stages import train_head
    from transferlab.stage_runner import run_stage
    from transferlab.workspace import set_params

    splits = _planted_features(tmp_path)
    for split, arrays in splits.items():  # the premise: each split's rule holds on it, and only there
        assert np.bincount(arrays["labels"]).tolist() == [20, 20], split
    assert (splits["train"]["labels"] == 1 - splits["test"]["labels"]).all()
    assert (splits["validation"]["labels"] == splits["train"]["labels"]).mean() == 0.5
    params = tmp_path / "params.yaml"
    shutil.copy(PROJECT_ROOT / "params.yaml", params)
    set_params(params, {"data.source": "synthetic", "backbone.name": BACKBONE, "compare.backbones": [BACKBONE],
                        "backbone.weights": "none", "head.epochs": 2, "head.l2": "probe"})
    assert run_stage("train_head", train_head.run, ["base", "head", "backbone"],
                     ["--params", str(params), "--no-track"]) == 0
    metrics = json.loads((tmp_path / "metrics" / "train_head" / f"{BACKBONE}.json").read_text())
    assert metrics["probe_c"] is not None  # a probe was fitted ...
    assert metrics["probe_test_accuracy"] <= 0.1  # ... on train's rule, which the test split reverses
    assert abs(metrics["probe_val_accuracy"] - 0.5) <= 0.2  # ... not on validation's rule either
