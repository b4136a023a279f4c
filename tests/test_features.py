"""Feature extraction: the cache key, resuming a killed run, and bit-identical results."""

import json
import shutil

import numpy as np

from tests.conftest import STAGES, run_stages
from transferlab.modeling.features import cache_components, cache_key, load_split
from transferlab.core.params import BackboneParams

TINY = {"data.source": "synthetic", "data.synthetic.images_per_class": 10, "data.image_size": 32,
        "data.shard_size": 4, "backbone.name": "resnet50", "compare.backbones": ["resnet50"], "backbone.weights": "none"}


def _key(cfg=BackboneParams(), size=224, manifest="m" * 64, weights="sha256:abc", seed=0):
    return cache_key(cache_components(cfg, size, manifest, weights, seed))


def test_cache_key_changes_with_everything_that_changes_a_feature(monkeypatch):
    key = _key()
    assert _key() == key
    assert _key(BackboneParams(batch_size=7)) == key  # the batch size changes no feature: extraction is reused
    changes = {"manifest": _key(manifest="x" * 64), "backbone": _key(BackboneParams(name="vgg16", alpha=1.0)),
               "weights": _key(weights="sha256:def"), "alpha": _key(BackboneParams(alpha=0.35)),
               "input size": _key(size=160), "pooling": _key(BackboneParams(pooling="max")),
               "dtype": _key(BackboneParams(dtype="float16")),
               "init seed of random weights": _key(weights="none", seed=1) != _key(weights="none", seed=0)}
    for change, changed in changes.items():
        assert changed is True or changed != key, change
    import keras
    import tensorflow as tf

    real_keras = keras.__version__
    monkeypatch.setattr(keras, "__version__", "9.9.9")
    assert _key() != key, "keras version"
    monkeypatch.setattr(keras, "__version__", real_keras)
    monkeypatch.setattr(tf, "__version__", "9.9.9")
    assert _key() != key, "tensorflow version"



def test_a_killed_run_resumes_from_completed_shards_with_identical_results(tmp_path):
    clean = tmp_path / "clean"
    run_stages(clean, TINY, STAGES[:3])
    clean_features = clean / "data" / "features" / "resnet50"
    meta = json.loads((clean_features / "meta.json").read_text())
    assert meta["resumed_shards"] == 0 and sum(meta["counts"].values()) == 30

    # A run killed after two shards: only those two exist in the scratch area of the same cache key.
    resumed = tmp_path / "resumed"
    run_stages(resumed, TINY, STAGES[:2])
    scratch = resumed / ".cache" / "transferlab" / "features" / meta["cache_key"]
    scratch.mkdir(parents=True)
    for name in ("train-00000.npz", "test-00000.npz"):
        shutil.copy(clean_features / name, scratch / name)
    run_stages(resumed, {}, ["extract_features"])
    resumed_features = resumed / "data" / "features" / "resnet50"
    assert json.loads((resumed_features / "meta.json").read_text())["resumed_shards"] == 2
    for path in sorted(clean_features.glob("*.npz")):
        assert path.read_bytes() == (resumed_features / path.name).read_bytes(), path.name
    assert not scratch.exists()  # cleaned up once the output is complete


def test_split_features_line_up_with_labels_and_manifest(tmp_path):
    run_stages(tmp_path, {**TINY, "backbone.dtype": "float16"}, STAGES[:3])
    train = load_split(tmp_path / "data" / "features" / "resnet50", "train")
    assert train.features.dtype == np.float16 and train.features.shape == (len(train.labels), 2048)
    import pandas as pd

    manifest = pd.read_csv(tmp_path / "data" / "prepared" / "manifest.csv").set_index("path")
    assert (manifest.loc[train.keys, "label"].to_numpy() == train.labels).all()
