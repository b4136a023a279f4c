"""DVC stage `train_head@<backbone>`: train the classification head on that backbone's cached features (head.*)."""

from __future__ import annotations

import json
import logging

from transferlab.core.atomic import atomic_dir, atomic_write_text
from transferlab.core.paths import CLASSES_FILE, HEAD_FILE
from transferlab.modeling.devices import configure_devices
from transferlab.modeling.epoch_log import training_progress
from transferlab.modeling.distribution import choose_strategy, is_chief, strategy_tags
from transferlab.modeling.features import load_splits, read_meta
from transferlab.modeling.head import resolved, train_head
from transferlab.modeling.multi_worker import is_multi_worker
from transferlab.modeling.probe import compared_with_probe, equivalent_l2, linear_probe
from transferlab.modeling.history import write_history_tables
from transferlab.stage_runner import StageContext, main_for

log = logging.getLogger("transferlab.train_head")


def run(context: StageContext) -> dict:
    params, paths, backbone = context.params, context.params.paths, context.backbone
    strategy = choose_strategy()
    context.tracker.set_tags({**configure_devices().tags(), **strategy_tags(strategy)})
    features_dir = context.path(paths.features_of(backbone))
    classes = read_meta(features_dir)["classes"]
    splits = load_splits(features_dir)
    probe = linear_probe(splits["train"], params.base.seed)
    cfg = resolved(params.head, equivalent_l2(probe, len(splits["train"].labels)))
    verbose, progress = training_progress(f"{backbone} head")
    result = train_head(cfg, splits["train"], splits["validation"], len(classes), params.base.seed, verbose=verbose,
                        strategy=strategy, callbacks=(*context.tracker.epoch_callbacks(), *progress))
    metrics = {**result.summary(splits["test"]), "l2": cfg.l2}
    metrics.update(compared_with_probe(probe, splits, metrics))
    if not is_chief():
        log.info("trained as one worker of a cluster: the chief writes the outputs")
        return {}
    if backbone == params.backbone.name:  # the pipeline's headline follows the fine-tuned backbone
        context.tracker.headline({"head_val_accuracy": metrics["val_accuracy"]})
    with atomic_dir(context.path(paths.head_of(backbone))) as target:
        result.model.save(target / HEAD_FILE)
        (target / CLASSES_FILE).write_text(json.dumps(classes, indent=2), encoding="utf-8")
    with atomic_dir(context.path(paths.head_plots_of(backbone))) as target:
        write_history_tables(target, result.history)
    atomic_write_text(context.path(paths.head_metrics_of(backbone)), json.dumps(metrics, indent=2))
    if is_multi_worker(strategy):  # the custom loop across workers takes no Keras callbacks: log at the end
        context.tracker.log_history(result.history)
    context.tracker.log_keras_model(result.model, "head", splits["train"].features[:4].astype("float32"))
    log.info("%s head: %s", backbone, metrics)
    return {key: float(value) for key, value in metrics.items() if value is not None}


if __name__ == "__main__":
    main_for("train_head", run, ["base", "head", "backbone"])
