"""DVC stage `train_head@<backbone>`: train the classification head on that backbone's cached features (head.*)."""

from __future__ import annotations

import json
import logging

from transferlab.core.atomic import atomic_dir, atomic_write_text
from transferlab.core.params import CLASSES_FILE, HEAD_FILE
from transferlab.core.progress import keras_verbosity
from transferlab.modeling.devices import configure_devices
from transferlab.modeling.distribution import choose_strategy, is_chief, strategy_tags
from transferlab.modeling.features import load_splits, read_meta
from transferlab.modeling.head import train_head
from transferlab.modeling.multi_worker import is_multi_worker
from transferlab.modeling.probe import C_GRID, MAX_FOLDS, Probe, equivalent_l2, fit_probe, probe_summary
from transferlab.modeling.history import write_history_tables
from transferlab.stage_runner import StageContext, main_for
from transferlab.tracking import mlflow_runs

log = logging.getLogger("transferlab.train_head")


def run(context: StageContext) -> dict:
    params, paths, backbone = context.params, context.params.paths, context.backbone
    strategy = choose_strategy()
    mlflow_runs.set_tags({**configure_devices().tags(), **strategy_tags(strategy)})
    features_dir = context.path(paths.features_of(backbone))
    classes = read_meta(features_dir)["classes"]
    splits = load_splits(features_dir)
    probe = linear_probe(splits["train"], params.base.seed)
    l2 = params.head.l2 if not isinstance(params.head.l2, str) else equivalent_l2(probe, len(splits["train"].labels))
    result = train_head(params.head, splits["train"], splits["validation"], len(classes), params.base.seed,
                        verbose=keras_verbosity(), strategy=strategy, callbacks=(mlflow_runs.epoch_callback(),),
                        l2=l2)
    metrics = {**result.summary(splits["test"]), "l2": l2}
    metrics.update(compared_with_probe(probe, splits, metrics))
    if not is_chief():
        log.info("trained as one worker of a cluster: the chief writes the outputs")
        return {}
    with atomic_dir(context.path(paths.head_of(backbone))) as target:
        result.model.save(target / HEAD_FILE)
        (target / CLASSES_FILE).write_text(json.dumps(classes, indent=2), encoding="utf-8")
    with atomic_dir(context.path(paths.head_plots_of(backbone))) as target:
        write_history_tables(target, result.history)
    atomic_write_text(context.path(paths.head_metrics_of(backbone)), json.dumps(metrics, indent=2))
    if is_multi_worker(strategy):  # the custom loop across workers takes no Keras callbacks: log at the end
        mlflow_runs.log_history(result.history)
    mlflow_runs.log_keras_model(result.model, "head", splits["train"].features[:4].astype("float32"))
    log.info("%s head: %s", backbone, metrics)
    return {key: float(value) for key, value in metrics.items() if value is not None}


def linear_probe(train, seed: int) -> Probe:
    """The logistic-regression baseline on the same features; its C also sets the head's L2 (head.l2: probe)."""
    log.info("linear probe: fitting on %d x %d features (%d C values x up to %d folds)", *train.features.shape,
             len(C_GRID), MAX_FOLDS)
    probe = fit_probe(train, seed)
    if probe.skipped:
        log.warning("no linear probe (and no L2 from it): %s", probe.skipped)
    return probe


def compared_with_probe(probe: Probe, splits: dict, head: dict) -> dict:
    """The probe's figures beside the head's, and a line per split saying how the two compare."""
    figures = probe_summary(probe, splits["validation"], splits["test"])
    for split in ("val", "test"):
        ours, theirs = head.get(f"{split}_accuracy"), figures[f"probe_{split}_accuracy"]
        if ours is not None and theirs is not None:
            log.info("%s accuracy: head %.4f, linear probe %.4f (C=%.3g, fitted in %.1f s)", split, ours, theirs,
                     probe.c, probe.seconds)
    return figures


if __name__ == "__main__":
    main_for("train_head", run, ["base", "head", "backbone"])
