"""The prepared dataset, written by stage `preprocess` and read by every later stage: the one owner of its format.

    <prepared>/<split>-<index>.tfrecord   re-encoded JPEGs with label and key (the raw file's relative path)
    <prepared>/manifest.csv               one row per image: path, label, class_name, split, sha256, size, shard
    <prepared>/classes.json               [{index, name, species}] in label order
    <prepared>/data_report.json           counts per split and class; files skipped or left out, counted by reason
                                          (the first few listed)
    <prepared>/skipped.csv                every raw file that could not be decoded, with its reason
    <prepared>/left_out.csv               every file or table row the source left out, with its reason
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from transferlab.core.resources import usable_cores
from transferlab.data.splits import SPLITS

MANIFEST = "manifest.csv"
CLASSES = "classes.json"
DATA_REPORT = "data_report.json"
SKIPPED = "skipped.csv"
LEFT_OUT = "left_out.csv"
SHARD_PATTERN = "{split}-{index:05d}.tfrecord"

__all__ = ["CLASSES", "DATA_REPORT", "LEFT_OUT", "MANIFEST", "SKIPPED", "SPLITS", "ShardWriter", "decoded_keys",
           "first_images",
           "image_batches", "file_sharded_batches", "first_encoded", "image_dataset", "images_by_key", "read_classes", "shard_files", "shard_sizes", "split_of",
           "tagged_image_batches"]


class ShardWriter:
    """Writes examples of one split into files of at most `shard_size` records each."""

    def __init__(self, folder: Path, split: str, shard_size: int) -> None:
        self.folder, self.split, self.shard_size = Path(folder), split, shard_size
        self._writer = None
        self._index = -1
        self._in_shard = 0

    @property
    def current_file(self) -> str:
        return SHARD_PATTERN.format(split=self.split, index=self._index)

    def write(self, jpeg: bytes, label: int, key: str) -> str:
        """Append one example; returns the shard file name it went into."""
        import tensorflow as tf

        if self._writer is None or self._in_shard == self.shard_size:
            self.close()
            self._index += 1
            self._in_shard = 0
            self._writer = tf.io.TFRecordWriter(str(self.folder / self.current_file))
        example = tf.train.Example(features=tf.train.Features(feature={
            "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[jpeg])),
            "label": tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
            "key": tf.train.Feature(bytes_list=tf.train.BytesList(value=[key.encode("utf-8")])),
        }))
        # deterministic: the map of features in protobuf order, not in a per-process hash order (which made every
        # rerun's shards differ byte for byte, so DVC and the data gate saw other data)
        self._writer.write(example.SerializeToString(deterministic=True))
        self._in_shard += 1
        return self.current_file

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def shard_files(folder: Path, split: str) -> list[Path]:
    return sorted(Path(folder).glob(f"{split}-*.tfrecord"))


def split_of(shard: Path) -> str:
    """The split a shard (or a file named after one, such as its feature file) belongs to."""
    return Path(shard).stem.split("-")[0]


def decoded_keys(keys: np.ndarray) -> np.ndarray:
    """Image keys (paths) from TensorFlow's bytes as text: UTF-8, as preprocess wrote them (numpy's own
    conversion assumes ASCII and fails on a class or file name such as `café`)."""
    return np.array([key.decode("utf-8") if isinstance(key, bytes) else str(key) for key in keys], dtype=str)


def read_classes(prepared: Path) -> list[dict[str, Any]]:
    return json.loads((Path(prepared) / CLASSES).read_text(encoding="utf-8"))


def _parse(serialized):
    import tensorflow as tf

    spec = {"image": tf.io.FixedLenFeature([], tf.string), "label": tf.io.FixedLenFeature([], tf.int64),
            "key": tf.io.FixedLenFeature([], tf.string)}
    parsed = tf.io.parse_single_example(serialized, spec)
    return parsed["image"], parsed["label"], parsed["key"]


def _decode(serialized):
    """Serialized example -> (0-255 float32 pixels, label, key)."""
    import tensorflow as tf

    image, label, key = _parse(serialized)
    return tf.cast(tf.io.decode_jpeg(image, channels=3), tf.float32), label, key


def image_batches(files: list[Path], batch_size: int, shuffle: bool = False, augment=None, seed: int = 0,
                  with_keys: bool = True):
    """tf.data over shard files: parallel JPEG decode, batching, optional shuffle and augmentation, prefetch."""
    import tensorflow as tf

    dataset = tf.data.TFRecordDataset([str(path) for path in files])
    if shuffle:
        dataset = dataset.shuffle(4096, seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.map(_decode, num_parallel_calls=tf.data.AUTOTUNE)
    if not with_keys:
        dataset = dataset.map(lambda pixels, label, key: (pixels, label))
    dataset = dataset.batch(batch_size)
    if augment is not None:
        # one batch at a time: Keras' random layers draw from a seed generator's state, and parallel calls would
        # take its draws in whatever order threads run, so two runs would augment (and train) differently
        dataset = dataset.map(lambda x, y: (augment(x, training=True), y))
    return dataset.prefetch(tf.data.AUTOTUNE)


def file_sharded_batches(files: list[Path], batch_size: int, seed: int, augment=None, with_keys: bool = False):
    """One worker's training input: its shard files read one after the other, each file's examples shuffled
    (seeded), in whole batches only. A worker reads only its own files; every worker, given the same `seed`,
    draws the same order within each file, so the shards that make up a global batch do not depend on how many
    workers read them."""
    import tensorflow as tf

    def shuffled(path):
        return tf.data.TFRecordDataset(path).shuffle(4096, seed=seed)

    records = tf.data.Dataset.from_tensor_slices([str(path) for path in files]).interleave(shuffled, cycle_length=1)
    dataset = records.map(_decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if not with_keys:
        dataset = dataset.map(lambda pixels, label, key: (pixels, label))
    dataset = dataset.batch(batch_size, drop_remainder=True)
    if augment is not None:  # one batch at a time, as in image_batches
        dataset = dataset.map(lambda x, y: (augment(x, training=True), y))
    return dataset.prefetch(tf.data.AUTOTUNE)


def tagged_image_batches(files: list[Path], batch_size: int, image_size: int, parallel_reads: int = 4):
    """All shards as one stream of (pixels, labels, keys, shard index) batches, for one pass in order.

    Each batch holds rows of one shard, at the same positions whichever other shards are read with it: an
    image's features are then the same bit for bit in a whole run, a resumed one or a cluster task's (a convolution
    can round a row differently at another place in its batch). Reads `parallel_reads` shards at a time
    (interleaved batch by batch, deterministically), decodes in parallel, and pads every batch to `batch_size`
    rows so that a compiled forward sees one shape and never retraces; the labels, keys and shard indices of a
    batch are not padded and count its real rows."""
    import tensorflow as tf

    workers = usable_cores()

    def decode(record, index):
        pixels, label, key = _decode(record)
        return tf.ensure_shape(pixels, [image_size, image_size, 3]), label, key, index

    def shard_batches(path, index):
        records = tf.data.TFRecordDataset(path).map(lambda record: (record, index))
        return records.map(decode, num_parallel_calls=workers, deterministic=True).batch(batch_size)

    def pad(pixels, labels, keys, indices):
        missing = batch_size - tf.shape(pixels)[0]
        padded = tf.pad(pixels, [[0, missing], [0, 0], [0, 0], [0, 0]])
        return tf.ensure_shape(padded, [batch_size, image_size, image_size, 3]), labels, keys, indices

    names = tf.data.Dataset.from_tensor_slices(([str(path) for path in files], tf.range(len(files))))
    reads = max(1, min(parallel_reads, len(files)))
    batches = names.interleave(shard_batches, cycle_length=reads, block_length=1, num_parallel_calls=reads,
                               deterministic=True)
    options = tf.data.Options()
    # tf.data's autotuner measures as it runs; on a 2-core machine that took ~8 % of extraction's time from the
    # forward pass (bench/extract_throughput.py), so the parallelism is fixed: one decoder per core
    options.autotune.enabled = False
    return batches.map(pad).prefetch(2).with_options(options)


def image_dataset(prepared: Path, split: str, batch_size: int, shuffle: bool = False, augment=None, seed: int = 0,
                  with_keys: bool = False):
    """Decoded 0-255 float images and labels (and keys) of one split, in shard order unless shuffled.

    Its length in batches is declared (from the manifest): Keras then knows an epoch's end, shows an ETA, and
    does not warn that the input "ran out of data" on the first pass over a TFRecord stream of unknown size."""
    import tensorflow as tf

    batches = -(-split_size(prepared, split) // batch_size)
    dataset = image_batches(shard_files(prepared, split), batch_size, shuffle, augment, seed, with_keys)
    return dataset.apply(tf.data.experimental.assert_cardinality(batches))


def split_size(prepared: Path, split: str) -> int:
    """How many images a split holds, from the manifest."""
    import pandas as pd

    return int((pd.read_csv(Path(prepared) / MANIFEST, usecols=["split"])["split"] == split).sum())


def shard_sizes(prepared: Path) -> dict[str, int]:
    """How many images each shard file holds, from the manifest."""
    import pandas as pd

    return pd.read_csv(Path(prepared) / MANIFEST, usecols=["shard"])["shard"].value_counts().to_dict()


def first_images(prepared: Path, split: str, count: int) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` images and labels of a split in shard order (preprocess shuffled them, seeded)."""
    images, labels = [], []
    for batch_images, batch_labels in image_dataset(prepared, split, 64):
        images.append(batch_images.numpy())
        labels.append(batch_labels.numpy())
        if sum(len(b) for b in labels) >= count:
            break
    return np.concatenate(images)[:count], np.concatenate(labels)[:count]


def first_encoded(prepared: Path, split: str, count: int) -> list[bytes]:
    """The stored JPEG bytes of the first `count` images of a split, in shard order (that of `first_images`)."""
    import tensorflow as tf

    records = tf.data.TFRecordDataset([str(path) for path in shard_files(prepared, split)]).take(count)
    return [bytes(image.numpy()) for image, _, _ in records.map(_parse)]


def images_by_key(prepared: Path, split: str, wanted: set[str]) -> dict[str, np.ndarray]:
    """uint8 pixels of the images whose keys are wanted; only those are decoded."""
    import tensorflow as tf

    found = {}
    for image, _, key in tf.data.TFRecordDataset([str(p) for p in shard_files(prepared, split)]).map(_parse):
        name = key.numpy().decode("utf-8")
        if name in wanted:
            found[name] = tf.io.decode_jpeg(image, channels=3).numpy()
    return found
