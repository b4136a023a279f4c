"""Sharded TFRecord files of re-encoded images: the compact, streamable form of the prepared dataset."""

from __future__ import annotations

from pathlib import Path

SHARD_PATTERN = "{split}-{index:05d}.tfrecord"


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
        self._writer.write(example.SerializeToString())
        self._in_shard += 1
        return self.current_file

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def shard_files(folder: Path, split: str) -> list[Path]:
    return sorted(Path(folder).glob(f"{split}-*.tfrecord"))


def parse_example(serialized):
    """tf.data map function: serialized Example -> (JPEG bytes, label, key)."""
    import tensorflow as tf

    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "key": tf.io.FixedLenFeature([], tf.string),
    }
    parsed = tf.io.parse_single_example(serialized, spec)
    return parsed["image"], parsed["label"], parsed["key"]
