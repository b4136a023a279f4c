"""DVC stage `extract_features@<backbone>`: run a frozen backbone over the prepared shards (params backbone.*)."""

from __future__ import annotations

import logging
import time
from functools import partial

from transferlab.core.atomic import atomic_dir
from transferlab.core.wording import plural
from transferlab.modeling.devices import configure_devices
from transferlab.modeling.extraction_cluster import extract_on_cluster, uses_cluster
from transferlab.modeling.features import extract_features
from transferlab.stage_runner import StageContext, main_for

log = logging.getLogger("transferlab.extract_features")


def run(context: StageContext) -> dict:
    params, paths = context.params, context.params.paths
    device = configure_devices()
    context.tracker.set_tags(device.tags())
    log.info("device: %s %s, precision %s", device.device, device.gpu_name, device.precision)
    started = time.perf_counter()
    cfg = params.backbone_named(context.backbone)
    on_cluster = partial(extract_on_cluster, cfg=cfg, image_size=params.data.image_size, root=context.root,
                         seed=params.base.seed, settings=params.extract, log=log.info)
    with atomic_dir(context.path(paths.features_of(context.backbone))) as target:
        meta = extract_features(context.path(paths.prepared), target, context.path(paths.scratch), cfg,
                                params.data.image_size, context.root, params.base.seed,
                                extract_todo=on_cluster if uses_cluster(params.extract) else None)
    seconds = time.perf_counter() - started
    context.tracker.set_tags({"features.cache_key": meta["cache_key"]})
    log.info("%s features for %s images (%s reused) in %.1f s", context.backbone, meta["counts"],
             plural(meta["resumed_shards"], "shard"), seconds)
    return {**{f"features_{split}": n for split, n in meta["counts"].items()},
            "feature_width": meta["feature_width"], "resumed_shards": meta["resumed_shards"],
            "images_per_second": sum(meta["counts"].values()) / seconds if seconds else 0.0}


if __name__ == "__main__":
    main_for("extract_features", run, ["base", "data", "backbone", "extract"])
