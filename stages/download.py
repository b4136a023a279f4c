"""DVC stage `download`: fetch or import the configured dataset into the raw layout (params data.*)."""

from __future__ import annotations

import logging
import shutil

from transferlab.core.atomic import atomic_dir
from transferlab.core.wording import plural
from transferlab.data.raw_layout import list_raw_images, write_source_info
from transferlab.data.sources import fetch_source
from transferlab.stage_runner import StageContext, main_for

log = logging.getLogger("transferlab.download")


def run(context: StageContext) -> dict:
    scratch = context.path(context.params.paths.scratch) / "download"  # kept for the rerun of a killed download
    with atomic_dir(context.path(context.params.paths.raw)) as target:
        info = fetch_source(context.params.data, context.params.base.seed, context.root, target, scratch)
        write_source_info(target, info)
        count = len(list_raw_images(target))
    shutil.rmtree(scratch, ignore_errors=True)  # what it held is in the raw layout now
    log.info("%s: %s", info.description, plural(count, "file"))
    return {"raw_files": count, "left_out": len(info.left_out)}


if __name__ == "__main__":
    main_for("download", run, ["base", "data"])
