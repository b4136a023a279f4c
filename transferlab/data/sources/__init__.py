"""Data sources that download or import into the raw layout: folders, TensorFlow Datasets, synthetic."""

from __future__ import annotations

from pathlib import Path

from transferlab.core.params import DataParams
from transferlab.data.raw_layout import IMAGES_DIR, UNSPLIT, SourceInfo


def fetch_source(data: DataParams, seed: int, root: Path, target: Path) -> SourceInfo:
    """Write the configured source into the raw layout at `target`; paths in params are relative to `root`."""
    if data.source == "synthetic":
        from transferlab.data.sources.synthetic import write_synthetic_folder

        cfg = data.synthetic
        write_synthetic_folder(target / IMAGES_DIR / UNSPLIT, cfg.num_classes, cfg.images_per_class, cfg.image_size,
                               seed)
        return SourceInfo("synthetic", f"synthetic: {cfg.num_classes} classes x {cfg.images_per_class} images")
    if data.source == "folder":
        from transferlab.data.sources.folder import import_folder

        return import_folder(root / data.folder.root, target, data.folder.unlisted)
    from transferlab.data.sources.tfds_source import import_tfds

    return import_tfds(data.tfds.model_copy(update={"data_dir": str(root / data.tfds.data_dir)}), target)
