"""DVC stage `fine_tune`: unfreeze the top of the backbone and train on augmented images (params fine_tune.*)."""

from __future__ import annotations

import hashlib
import json
import logging
import shutil

from transferlab.tracking import mlflow_runs
from transferlab.core.atomic import atomic_dir, atomic_write_text
from transferlab.modeling.devices import configure_devices
from transferlab.modeling.distribution import choose_strategy, cluster_task, strategy_tags
from transferlab.core.errors import UserError
from transferlab.core.digest import file_sha256
from transferlab.modeling.fine_tuning import fine_tune
from transferlab.modeling.history import history_tables
from transferlab.modeling.assembly import full_model
from transferlab.data.preprocess import MANIFEST
from transferlab.stage_runner import StageContext, main_for

log = logging.getLogger("transferlab.fine_tune")
MODEL_DIR, MODEL_FILE, CLASSES_FILE = "fine_tuned", "model.keras", "classes.json"


def resume_key(context: StageContext, head_file) -> str:
    """A backup from a killed run is reused only for exactly the same inputs."""
    params = context.params
    parts = [params.fine_tune.model_dump_json(), params.backbone.model_dump_json(), str(params.base.seed),
             file_sha256(head_file), file_sha256(context.path(params.paths.prepared) / MANIFEST)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]


def tune(context: StageContext) -> dict:
    params, paths = context.params, context.params.paths
    if cluster_task() is not None:
        raise UserError("TF_CONFIG: fine_tune does not run across workers: Keras 3 Model.fit fails under "
                        "MultiWorkerMirroredStrategy (keras-team/keras#20585); unset TF_CONFIG for this stage "
                        "(on one machine MirroredStrategy still uses every GPU)")
    device = configure_devices()
    strategy = choose_strategy()
    mlflow_runs.set_tags({**device.tags(), **strategy_tags(strategy)})
    head_dir = context.path(paths.head_of(params.backbone.name))
    with strategy.scope():
        model = full_model(params.backbone, params.data.image_size, head_dir / "head.keras", context.root,
                           params.base.seed)
    scratch = context.path(paths.scratch) / "fine_tune" / resume_key(context, head_dir / "head.keras")
    result = fine_tune(model, context.path(paths.prepared), params.fine_tune, scratch, params.base.seed,
                       strategy=strategy)
    best = min(range(len(result.history["val_loss"])), key=result.history["val_loss"].__getitem__)
    metrics = {"val_accuracy_head_only": result.initial["val_accuracy"], "val_loss_head_only": result.initial["val_loss"],
               "val_accuracy": result.initial["val_accuracy"] if result.kept_initial else result.history["val_accuracy"][best],
               "val_loss": result.initial["val_loss"] if result.kept_initial else result.history["val_loss"][best],
               "epochs_run": len(result.history["val_loss"]), "kept_head_only_weights": int(result.kept_initial),
               "trainable_layers": len(result.trainable_layers)}
    with atomic_dir(context.path(paths.models) / MODEL_DIR) as target:
        result.model.save(target / MODEL_FILE)
        shutil.copyfile(head_dir / CLASSES_FILE, target / CLASSES_FILE)
    with atomic_dir(context.path(paths.plots) / "fine_tune") as target:
        for name, table in history_tables(result.history).items():
            table.to_csv(target / f"{name}.tsv", sep="\t", index=False)
    atomic_write_text(context.path(paths.metrics) / "fine_tune.json", json.dumps(metrics, indent=2))
    shutil.rmtree(scratch, ignore_errors=True)
    mlflow_runs.log_history(result.history)
    if result.kept_initial:
        log.warning("fine-tuning never beat the head-only validation loss %.4f: kept the head-only weights",
                    result.initial["val_loss"])
    log.info("fine-tune: %s", metrics)
    return {key: float(value) for key, value in metrics.items()}


if __name__ == "__main__":
    main_for("fine_tune", tune, ["base", "backbone", "fine_tune"])
