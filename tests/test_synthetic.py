import numpy as np
from PIL import Image

from transferlab.data.sources.synthetic import class_names, write_synthetic_folder


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.jpg"))}


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        write_synthetic_folder(tmp_path / name, 3, 4, 32, seed)
    assert _files(tmp_path / "a") == _files(tmp_path / "b")
    assert _files(tmp_path / "a") != _files(tmp_path / "c")
    assert len(_files(tmp_path / "a")) == 12


def test_classes_are_separable_by_a_nearest_centroid_rule(tmp_path):
    write_synthetic_folder(tmp_path, 4, 30, 32, seed=0)
    features, labels = [], []
    for label, name in enumerate(class_names(4)):
        for path in sorted((tmp_path / name).glob("*.jpg")):
            pixels = np.asarray(Image.open(path), dtype=np.float32)
            features.append(pixels.mean(axis=(0, 1)))
            labels.append(label)
    features, labels = np.array(features), np.array(labels)
    train = np.arange(len(labels)) % 2 == 0
    centroids = np.stack([features[train & (labels == k)].mean(0) for k in range(4)])
    predicted = np.argmin(((features[~train, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    assert (predicted == labels[~train]).mean() >= 0.9
