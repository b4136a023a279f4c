"""DVC stage `download`: fetch or import the configured dataset into the raw layout (params data.*)."""

from __future__ import annotations

import logging
from pathlib import Path

from transferlab.core.atomic import atomic_dir
from transferlab.data.raw_layout import IMAGES_DIR, UNSPLIT, SourceInfo, list_raw_images, write_source_info
from transferlab.data.sources.folder import import_folder
from transferlab.stage_runner import StageContext, main_for
from transferlab.data.sources.synthetic import write_synthetic_folder

log = logging.getLogger("transferlab.download")


def fetch(context: StageContext, target: Path) -> SourceInfo:
    data, root = context.params.data, context.root
    if data.source == "synthetic":
        cfg = data.synthetic
        write_synthetic_folder(target / IMAGES_DIR / UNSPLIT, cfg.num_classes, cfg.images_per_class,
                               cfg.image_size, context.params.base.seed)
        return SourceInfo("synthetic", f"synthetic: {cfg.num_classes} classes x {cfg.images_per_class} images")
    if data.source == "folder":
        return import_folder(root / data.folder.root, target, data.folder.unlisted)
    from transferlab.data.sources.tfds_source import import_tfds

    tfds_cfg = data.tfds.model_copy(update={"data_dir": str(root / data.tfds.data_dir)})
    return import_tfds(tfds_cfg, target)


def download(context: StageContext) -> dict:
    with atomic_dir(context.path(context.params.paths.raw)) as target:
        info = fetch(context, target)
        write_source_info(target, info)
        count = len(list_raw_images(target))
    log.info("%s: %d files", info.description, count)
    return {"raw_files": count, "left_out": len(info.left_out)}


if __name__ == "__main__":
    main_for("download", download, ["base", "data"])
