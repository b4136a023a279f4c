"""DVC stage `preprocess`: decode, resize, split and shard the raw images (params data.*, base.seed)."""

from __future__ import annotations

import logging

from transferlab.core.atomic import atomic_dir
from transferlab.data.preprocess import prepare_dataset
from transferlab.stage_runner import StageContext, main_for

log = logging.getLogger("transferlab.preprocess")


def run(context: StageContext) -> dict:
    params = context.params
    with atomic_dir(context.path(params.paths.prepared)) as target:
        report = prepare_dataset(context.path(params.paths.raw), target, params.data, params.base.seed)
    log.info("prepared %s images (%d skipped)", report["totals"], report["num_skipped"])
    for warning in report["warnings"]:
        log.warning(warning)
    return {**{f"images_{split}": n for split, n in report["totals"].items()},
            "skipped": report["num_skipped"], "num_classes": report["num_classes"]}


if __name__ == "__main__":
    main_for("preprocess", run, ["base", "data"])
