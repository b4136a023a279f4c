"""Feature extraction: the cache key, resuming a killed run, and bit-identical results."""

import json
import re
import shutil

import numpy as np

from tests.conftest import STAGES, run_stages
from transferlab.modeling.features import cache_components, cache_key, load_split, read_meta
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
               "frozen graph": cache_key(cache_components(BackboneParams(), 224, "m" * 64, "sha256:abc", 0, True))}
    for change, changed in changes.items():
        assert changed != key, change
    # random-init weights differ by seed, so their features do; pretrained weights are the same whatever the seed
    assert _key(weights="none", seed=1) != _key(weights="none", seed=0), "init seed of random weights"
    assert _key(seed=1) == key, "init seed of pretrained weights"
    import keras
    import tensorflow as tf

    real_keras = keras.__version__
    monkeypatch.setattr(keras, "__version__", "9.9.9")
    assert _key() != key, "keras version"
    monkeypatch.setattr(keras, "__version__", real_keras)
    monkeypatch.setattr(tf, "__version__", "9.9.9")
    assert _key() != key, "tensorflow version"


def test_backbones_sharing_a_preprocess_function_still_get_their_own_cache_key():
    """vgg16 and vgg19: same scaling, same width, same everything params say but the name."""
    vgg16, vgg19 = _key(BackboneParams(name="vgg16")), _key(BackboneParams(name="vgg19"))
    assert vgg16 != vgg19


def test_cache_key_changes_with_the_backbone_name_alone(monkeypatch):
    """Two backbones whose table entries differ only by name (the same preprocess text) get different keys."""
    from dataclasses import replace

    from transferlab.core.backbones import BACKBONES
    from transferlab.modeling import features

    monkeypatch.setattr(features, "spec_for", lambda name: replace(BACKBONES["vgg16"], name=name))
    assert _key(BackboneParams(name="vgg16")) != _key(BackboneParams(name="vgg19"))


def test_cache_key_changes_with_the_preprocess_function_alone(monkeypatch):
    """The same backbone name with another preprocess_input (or another scaling) computes other features."""
    from dataclasses import replace

    from transferlab.core.backbones import BACKBONES
    from transferlab.modeling import features

    vgg16 = _key(BackboneParams(name="vgg16"))
    for changed in (replace(BACKBONES["vgg16"], preprocess_module="vgg19"), replace(BACKBONES["vgg16"], scaling="tf")):
        monkeypatch.setattr(features, "spec_for", lambda name, spec=changed: spec)
        assert _key(BackboneParams(name="vgg16")) != vgg16, changed



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


def _stream_case(tmp_path):
    """A prepared dataset of 30 images in shards of 4 (10 shards: train, val and test, some short)."""
    from tests.conftest import prepare_with
    from transferlab.data.prepared import shard_files, shard_sizes

    prepared = prepare_with(tmp_path, TINY)
    shards = [path for split in ("train", "val", "test") for path in shard_files(prepared, split)]
    return prepared, shards, shard_sizes(prepared)


def test_one_stream_over_all_shards_gives_each_shard_its_own_rows_with_one_trace(tmp_path):
    import tensorflow as tf

    from transferlab.data.prepared import image_batches
    from transferlab.modeling.features import stream_features

    _, shards, sizes = _stream_case(tmp_path)
    traces = []

    @tf.function(input_signature=[tf.TensorSpec([3, 32, 32, 3], tf.float32)])
    def forward(pixels):  # a stand-in "backbone" whose output identifies each image: its mean and corner pixel
        traces.append(pixels.shape)
        return tf.stack([tf.reduce_mean(pixels, [1, 2, 3]), pixels[:, 0, 0, 0]], axis=1)

    # batches of 3 over shards of 4 read 4 at a time: batches mix shards and every shard's end is mid-batch
    streamed = list(stream_features(forward, shards, sizes, batch_size=3, image_size=32, dtype="float32"))
    assert sorted(path for path, _ in streamed) == sorted(shards)
    assert len(traces) == 1, "the padded last batch must not retrace"
    for path, arrays in streamed:
        pixels, labels, keys = (np.concatenate([b[i].numpy() for b in image_batches([path], 64)]) for i in range(3))
        assert list(arrays["keys"]) == [key.decode() for key in keys], path.name
        assert (arrays["labels"] == labels).all()
        expected = np.stack([pixels.mean((1, 2, 3)), pixels[:, 0, 0, 0]], axis=1)
        np.testing.assert_allclose(arrays["features"], expected, rtol=1e-6, err_msg=path.name)


def test_a_shards_batches_are_the_same_whichever_shards_are_read_with_it(tmp_path):
    """A resumed extraction's train-00007.npz differed from a clean run's in its last bits (CI): batches mixed
    shards, so a resume put an image at another place in its batch, where a convolution may round it otherwise."""
    from transferlab.data.prepared import tagged_image_batches

    _, shards, _ = _stream_case(tmp_path)

    def batches_by_shard(files: list) -> dict:
        found = {}
        for pixels, _, _, indices in tagged_image_batches(files, batch_size=3, image_size=32):
            indices = indices.numpy()
            assert len(set(indices)) == 1, "a batch holds the rows of one shard"
            found.setdefault(files[indices[0]], []).append(pixels.numpy())
        return found

    whole, resumed = batches_by_shard(shards), batches_by_shard(shards[3:])  # as if resumed after three shards
    assert list(resumed) == shards[3:]
    for shard, batches in resumed.items():
        assert len(batches) == len(whole[shard]), shard.name
        for mine, reference in zip(batches, whole[shard]):
            np.testing.assert_array_equal(mine, reference, err_msg=shard.name)  # padded rows included: same places


def test_a_shard_whose_count_differs_from_the_manifest_fails_naming_it(tmp_path):
    import pytest

    from transferlab.core.errors import DataError
    from transferlab.modeling.features import stream_features

    _, shards, sizes = _stream_case(tmp_path)
    def forward(pixels):
        return pixels[:, 0, 0, :]

    short = stream_features(forward, shards, {**sizes, shards[0].name: sizes[shards[0].name] + 1}, 3, 32, "float32")
    with pytest.raises(DataError, match=f"{shards[0].name}: holds fewer images than manifest.csv says"):
        for path, _ in short:
            assert path != shards[0], "a short shard is never yielded"
    long = stream_features(forward, shards, {**sizes, shards[0].name: sizes[shards[0].name] - 1}, 3, 32, "float32")
    with pytest.raises(DataError, match=f"{shards[0].name}: holds more images than manifest.csv says"):
        list(long)


def test_extraction_keeps_no_resumable_shard_of_a_dataset_whose_manifest_disagrees(tmp_path, capsys):
    import pandas as pd
    import pytest

    run_stages(tmp_path, TINY, STAGES[:2])
    manifest_path = tmp_path / "data" / "prepared" / "manifest.csv"
    manifest = pd.read_csv(manifest_path)
    manifest.loc[manifest.index[-1], "shard"] = "train-00000.tfrecord"  # train-00000 now "holds" one more image
    manifest.to_csv(manifest_path, index=False)
    with pytest.raises(AssertionError, match="extract_features exited 1"):
        run_stages(tmp_path, {}, ["extract_features"])
    error = capsys.readouterr().err  # train-00000 or the shard that lost the image, whichever the stream meets first
    assert re.fullmatch(r"extract_features: error: \S+/(train|test)-00000.tfrecord: holds (more|fewer) images "
                        r"than manifest.csv says \(\d+\); run the preprocess stage again\n", error), error
    assert not list((tmp_path / ".cache" / "transferlab" / "features").glob("*/*.npz"))


def test_large_datasets_extract_through_a_frozen_graph_with_the_same_features(tmp_path, monkeypatch):
    from transferlab.modeling import features

    run_stages(tmp_path / "variables", TINY, STAGES[:3])
    monkeypatch.setattr(features, "FREEZE_FROM_IMAGES", 30)  # TINY's 30 images count as a large dataset
    run_stages(tmp_path / "frozen", TINY, STAGES[:3])
    meta = {name: read_meta(tmp_path / name / "data" / "features" / "resnet50") for name in ("variables", "frozen")}
    assert (meta["variables"]["components"]["graph"], meta["frozen"]["components"]["graph"]) == ("variables", "frozen")
    for split in ("train", "test"):  # TINY has no val images
        plain, frozen = (load_split(tmp_path / name / "data" / "features" / "resnet50", split) for name in meta)
        assert len(plain.keys) and (plain.keys == frozen.keys).all()
        np.testing.assert_allclose(frozen.features, plain.features, rtol=1e-4, atol=1e-4 * np.abs(plain.features).max())


def test_prepared_images_of_another_size_than_the_params_say_are_a_one_line_error(tmp_path, capsys):
    import pytest

    from transferlab.workspace import set_params

    params = run_stages(tmp_path, TINY, STAGES[:2])
    set_params(params, {"data.image_size": 48})  # preprocess, which would resize to 48, is not run again
    with pytest.raises(AssertionError, match="extract_features exited 1"):
        run_stages(tmp_path, {}, ["extract_features"])
    error = capsys.readouterr().err
    assert "its images are not 48x48 px (data.image_size); run the preprocess stage again" in error
    assert len(error.strip().splitlines()) == 1, error
