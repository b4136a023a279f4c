"""The data report's checks and drift on the real photos and MobileNetV2 weights (../shared/assets), reusing the
session's cats-vs-dogs pipeline: its cached features stand in for a run, so no extra extraction of 1,500 photos."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from transferlab.core.params_loader import load_params
from transferlab.data.prepared import first_images
from transferlab.modeling.features import embedder, load_splits
from transferlab.modeling.probe import fit_probe
from transferlab.quality.drift import compare
from transferlab.quality.drift_check import embed_files
from transferlab.quality.label_issues import out_of_fold_probabilities, rank_label_issues
from transferlab.quality.neighbours import Whitening, near_duplicate_pairs
from transferlab.quality.report import CALIBRATION_IMAGES, calibration_on, pooled


pytestmark = pytest.mark.slow  # the session's whole pipeline on 1,500 real photos, and the 600 Oxford photos' heads


def _planted(source, target) -> None:
    """A test photo copied as users copy: mirrored, resized to 60 %, re-encoded at JPEG quality 60."""
    image = Image.open(source).convert("RGB").transpose(Image.FLIP_LEFT_RIGHT)
    image = image.resize((int(image.width * 0.6), int(image.height * 0.6)), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=60)
    target.write_bytes(buffer.getvalue())


def test_twenty_planted_copies_of_test_photos_are_found_with_few_false_pairs(cats_dogs_pipeline, assets, tmp_path):
    root = cats_dogs_pipeline
    params = load_params(root / "params.yaml")
    splits = load_splits(root / "data" / "features" / "mobilenet_v2")
    data = pooled(splits)
    test_keys = sorted(data.keys[data.splits == "test"])
    chosen = [test_keys[i] for i in np.random.default_rng(0).choice(len(test_keys), 20, replace=False)]
    copies = []
    for key in chosen:
        copies.append(tmp_path / f"copy_{key.replace('/', '_')}")
        _planted(assets / "images" / "cats_vs_dogs" / key, copies[-1])
    planted = embed_files(copies, params, root, params.base.seed).features  # as preprocess + extraction would
    features = np.concatenate([data.features, planted])
    keys = np.concatenate([data.keys, [f"copy/{key}" for key in chosen]])
    split_of = np.concatenate([data.splits, ["train"] * 20])
    whitening = Whitening.fit(splits["train"].features)
    embed = embedder(params.backbone_named("mobilenet_v2"), params.data.image_size, root, params.base.seed)
    pixels = first_images(root / "data" / "prepared", "train", CALIBRATION_IMAGES)[0]
    calibration = calibration_on(embed, pixels, whitening, whitening.unit(features))
    pairs = near_duplicate_pairs(whitening.unit(features), keys, split_of, calibration.threshold)
    found = {frozenset(pair) for pair in zip(pairs.a, pairs.b)}
    hits = sum(frozenset((key, f"copy/{key}")) in found for key in chosen)
    others = [pair for pair in found if not any(str(p).startswith("copy/") for p in pair)]
    assert hits >= 19, (hits, calibration.summary())
    assert len(others) < 5, others


def test_flipped_training_labels_rank_in_the_top_tenth(cats_dogs_pipeline):
    splits = load_splits(cats_dogs_pipeline / "data" / "features" / "mobilenet_v2")
    data = pooled(splits)
    rng = np.random.default_rng(0)
    train = np.flatnonzero(data.splits == "train")
    flipped = rng.choice(train, int(round(0.05 * len(train))), replace=False)
    given = data.labels.copy()
    given[flipped] = 1 - given[flipped]
    train_split = load_splits(cats_dogs_pipeline / "data" / "features" / "mobilenet_v2")["train"]
    c = fit_probe(type(train_split)(train_split.features, given[data.splits == "train"], train_split.keys), 0).c
    probabilities = out_of_fold_probabilities(data.features, given, c, seed=0)
    ranked = rank_label_issues(given, probabilities, data.keys, ["cats", "dogs"])
    top = set(ranked.file[: len(ranked) // 10])
    assert np.mean([key in top for key in data.keys[flipped]]) >= 0.8


def test_oxford_pets_drift_from_cats_and_dogs_and_one_half_does_not_from_the_other(cats_dogs_pipeline, oxford_head):
    """The 600 Oxford photos as the pipeline embeds them (`transferlab drift` embeds a folder the same way:
    tests/test_drift.py), against the cats-and-dogs training features."""
    train = load_splits(cats_dogs_pipeline / "data" / "features" / "mobilenet_v2")["train"].features
    oxford = np.concatenate([split.features for split in
                             load_splits(oxford_head / "data" / "features" / "mobilenet_v2").values()])
    result = compare(train, oxford, seed=load_params(cats_dogs_pipeline / "params.yaml").base.seed)
    assert result.drifted and result.mmd_drifted, result.verdict()
    order = np.random.default_rng(1).permutation(len(train))
    halves = compare(train[order[: len(train) // 2]], train[order[len(train) // 2:]], seed=1)
    assert not halves.drifted and not halves.mmd_drifted, halves.verdict()
