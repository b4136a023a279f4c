"""DVC stage `extract_features@<backbone>`: run a frozen backbone over the prepared shards (params backbone.*)."""

from __future__ import annotations

import logging
import time

from transferlab.core.atomic import atomic_dir
from transferlab.modeling.devices import configure_devices
from transferlab.modeling.extraction_cluster import extract_on_cluster, uses_cluster
from transferlab.modeling.features import collect_features, extract_features, plan_extraction
from transferlab.stage_runner import StageContext, main_for
from transferlab.tracking import mlflow_runs

log = logging.getLogger("transferlab.extract_features")


def run(context: StageContext) -> dict:
    params, paths = context.params, context.params.paths
    device = configure_devices()
    mlflow_runs.set_tags(device.tags())
    log.info("device: %s %s, precision %s", device.device, device.gpu_name, device.precision)
    started = time.perf_counter()
    prepared, cfg = context.path(paths.prepared), params.backbone_named(context.backbone)
    with atomic_dir(context.path(paths.features_of(context.backbone))) as target:
        if uses_cluster(params.extract):
            plan = plan_extraction(prepared, context.path(paths.scratch), cfg, params.data.image_size, context.root,
                                   params.base.seed)
            todo = len(plan.todo)
            if todo:
                extract_on_cluster(plan, cfg, params.data.image_size, context.root, params.base.seed, params.extract,
                                   log.info)
            meta = collect_features(plan, prepared, target, len(plan.shards) - todo)
        else:
            meta = extract_features(prepared, target, context.path(paths.scratch), cfg, params.data.image_size,
                                    context.root, params.base.seed)
    seconds = time.perf_counter() - started
    mlflow_runs.set_tags({"features.cache_key": meta["cache_key"]})
    log.info("%s features for %s images (%d shards reused) in %.1f s", context.backbone, meta["counts"],
             meta["resumed_shards"], seconds)
    return {**{f"features_{split}": n for split, n in meta["counts"].items()},
            "feature_width": meta["feature_width"], "resumed_shards": meta["resumed_shards"],
            "images_per_second": sum(meta["counts"].values()) / seconds if seconds else 0.0}


if __name__ == "__main__":
    main_for("extract_features", run, ["base", "data", "backbone", "extract"])
