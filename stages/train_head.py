"""DVC stage `train_head@<backbone>`: train the classification head on that backbone's cached features (head.*)."""

from __future__ import annotations

import json
import logging

from transferlab.tracking import mlflow_runs
from transferlab.core.atomic import atomic_dir, atomic_write_text
from transferlab.modeling.devices import configure_devices
from transferlab.modeling.distribution import choose_strategy, is_chief, strategy_tags
from transferlab.modeling.features import load_split, read_meta
from transferlab.modeling.head import accuracy, train_head
from transferlab.modeling.history import history_tables
from transferlab.stage_runner import StageContext, main_for

log = logging.getLogger("transferlab.train_head")
HEAD_FILE = "head.keras"


def train(context: StageContext) -> dict:
    params, paths = context.params, context.params.paths
    device = configure_devices()
    strategy = choose_strategy()
    mlflow_runs.set_tags({**device.tags(), **strategy_tags(strategy)})
    features_dir = context.path(paths.features_of(context.backbone))
    meta = read_meta(features_dir)
    splits = {split: load_split(features_dir, split) for split in ("train", "validation", "test")}
    result = train_head(params.head, splits["train"], splits["validation"], len(meta["classes"]), params.base.seed,
                        strategy=strategy)
    metrics = {"train_accuracy": result.metrics["accuracy"], "train_loss": result.metrics["loss"],
               "val_accuracy": result.metrics.get("val_accuracy"), "val_loss": result.metrics.get("val_loss"),
               "test_accuracy": accuracy(result.model, splits["test"]),
               "best_epoch": result.best_epoch, "epochs_run": result.metrics["epochs_run"]}
    if not is_chief():
        log.info("trained as one worker of a cluster: the chief writes the outputs")
        return {}
    with atomic_dir(context.path(paths.head_of(context.backbone))) as target:
        result.model.save(target / HEAD_FILE)
        (target / "classes.json").write_text(json.dumps(meta["classes"], indent=2), encoding="utf-8")
    with atomic_dir(context.path(paths.head_plots_of(context.backbone))) as target:
        for name, table in history_tables(result.history).items():
            table.to_csv(target / f"{name}.tsv", sep="\t", index=False)
    atomic_write_text(context.path(paths.head_metrics_of(context.backbone)), json.dumps(metrics, indent=2))
    mlflow_runs.log_history(result.history)
    mlflow_runs.log_keras_model(result.model, "head", splits["train"].features[:4].astype("float32"))
    log.info("%s head: %s", context.backbone, metrics)
    return {key: float(value) for key, value in metrics.items() if value is not None}


if __name__ == "__main__":
    main_for("train_head", train, ["base", "head", "backbone"])
