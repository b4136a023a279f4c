"""Files and folders that params name as inputs exist, checked before DVC runs (and clears) any stage."""

from __future__ import annotations

from pathlib import Path

from transferlab.core.backbones import KERAS_WEIGHTS, resolve_weights_path
from transferlab.core.errors import ParamsError
from transferlab.core.params import Params


def check_inputs(params: Params, root: Path) -> None:
    """Raise ParamsError naming the first params key whose file or folder is missing."""
    data = params.data
    if data.source == "folder" and not (root / str(data.folder.root)).expanduser().is_dir():
        raise ParamsError(f"data.folder.root: folder not found: {data.folder.root}")
    if data.source == "table":
        table = root / str(data.table.path)
        if table.is_dir():
            raise ParamsError(f"data.table.path: {data.table.path} is a folder; name the labels table in it "
                              f"(a .csv, .tsv or .parquet file)")
        if not table.is_file():
            raise ParamsError(f"data.table.path: file not found: {data.table.path}")
        if data.table.images and not (root / data.table.images).is_dir():
            raise ParamsError(f"data.table.images: folder not found: {data.table.images}")
    if data.source == "tfds" and data.tfds.manual_dir and not (root / data.tfds.manual_dir).expanduser().is_dir():
        raise ParamsError(f"data.tfds.manual_dir: folder not found: {data.tfds.manual_dir}")
    for name in params.compare.backbones:
        weights = params.backbone_named(name).weights
        if weights not in KERAS_WEIGHTS:
            key = "backbone.weights" if name == params.backbone.name else f"compare.weights.{name}"
            resolve_weights_path(weights, root, key)
    adversarial = params.adversarial
    files = {"adversarial.replication_image": adversarial.replication_image,
             "adversarial.imagenet.weights": adversarial.imagenet.weights,
             "adversarial.imagenet.class_index": adversarial.imagenet.class_index}
    for key, value in files.items():
        if value and not (root / value).expanduser().is_file():
            raise ParamsError(f"{key}: file not found: {value}")
