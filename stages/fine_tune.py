"""DVC stage `fine_tune`: unfreeze the top of the backbone and train on augmented images (params fine_tune.*)."""

from __future__ import annotations

import json
import logging
import shutil

from transferlab.adversarial.training import adversarial_fitting
from transferlab.core.atomic import atomic_dir, atomic_write_text
from transferlab.core.paths import CLASSES_FILE, MODEL_FILE
from transferlab.modeling.assembly import classifier
from transferlab.modeling.devices import configure_devices
from transferlab.modeling.epoch_log import training_progress
from transferlab.modeling.distribution import choose_strategy, is_chief, strategy_tags
from transferlab.modeling.fine_tuning import fine_tune, resume_key
from transferlab.modeling.history import write_history_tables
from transferlab.modeling.multi_worker import is_multi_worker
from transferlab.stage_runner import StageContext, main_for

log = logging.getLogger("transferlab.fine_tune")


def run(context: StageContext) -> dict:
    params, paths = context.params, context.params.paths
    strategy = choose_strategy()
    context.tracker.set_tags({**configure_devices().tags(), **strategy_tags(strategy)})
    head_file, prepared = context.path(paths.head_model_of(params.backbone.name)), context.path(paths.prepared)
    with strategy.scope():
        model = classifier(params.backbone, params.data.image_size, head_file, context.root, params.base.seed)
    scratch = context.path(paths.scratch) / "fine_tune" / resume_key(params.fine_tune, params.backbone,
                                                                      params.base.seed, head_file, prepared)
    verbose, progress = training_progress("fine-tune")
    result = fine_tune(model, prepared, params.fine_tune, scratch, params.base.seed, verbose=verbose,
                       strategy=strategy, callbacks=(*context.tracker.epoch_callbacks(), *progress),
                       fitting=adversarial_fitting(params.fine_tune.adversarial, params.base.seed))
    if result.first_epoch > 1:
        log.info("resumed a killed run at epoch %d of %d", result.first_epoch, params.fine_tune.epochs)
    if not is_chief():
        log.info("fine-tuned as one worker of a cluster: the chief writes the outputs")
        return {}
    selection, metrics = result.selection, result.metrics()
    with atomic_dir(context.path(paths.fine_tuned)) as target:
        selection.model.save(target / MODEL_FILE)
        shutil.copyfile(head_file.parent / CLASSES_FILE, target / CLASSES_FILE)
    with atomic_dir(context.path(paths.fine_tune_plots)) as target:
        write_history_tables(target, result.history, {"loss": result.initial["val_loss"],
                                                      "accuracy": result.initial["val_accuracy"]})
    atomic_write_text(context.path(paths.fine_tune_metrics), json.dumps(metrics, indent=2))
    shutil.rmtree(scratch, ignore_errors=True)
    if is_multi_worker(strategy):  # the custom loop across workers takes no Keras callbacks: log at the end
        context.tracker.log_history(result.history)
    context.tracker.set_tags({"fine_tune.accept_rule": selection.rule, "fine_tune.flip_tta": str(selection.flip.use)})
    (log.warning if selection.kept_head_only else log.info)("fine-tune: %s", selection.message())
    log.info("fine-tune: %s", metrics)
    return {key: float(value) for key, value in metrics.items()}


if __name__ == "__main__":
    main_for("fine_tune", run, ["base", "backbone", "fine_tune"])
