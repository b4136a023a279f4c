"""DVC stage `fine_tune`: unfreeze the top of the backbone and train on augmented images (params fine_tune.*)."""

from __future__ import annotations

import json
import logging
import shutil

from transferlab.adversarial.training import adversarial_fitting
from transferlab.core.progress import keras_verbosity
from transferlab.core.atomic import atomic_dir, atomic_write_text
from transferlab.core.params import CLASSES_FILE, MODEL_FILE
from transferlab.modeling.assembly import classifier, with_flip_tta
from transferlab.modeling.devices import configure_devices
from transferlab.modeling.distribution import choose_strategy, is_chief, strategy_tags
from transferlab.modeling.fine_tuning import choose_flip_tta, fine_tune, resume_key
from transferlab.modeling.history import write_history_tables
from transferlab.modeling.multi_worker import is_multi_worker
from transferlab.stage_runner import StageContext, main_for
from transferlab.tracking import mlflow_runs

log = logging.getLogger("transferlab.fine_tune")


def run(context: StageContext) -> dict:
    params, paths = context.params, context.params.paths
    strategy = choose_strategy()
    mlflow_runs.set_tags({**configure_devices().tags(), **strategy_tags(strategy)})
    head_file, prepared = context.path(paths.head_model_of(params.backbone.name)), context.path(paths.prepared)
    with strategy.scope():
        model = classifier(params.backbone, params.data.image_size, head_file, context.root, params.base.seed)
    scratch = context.path(paths.scratch) / "fine_tune" / resume_key(params.fine_tune, params.backbone,
                                                                      params.base.seed, head_file, prepared)
    result = fine_tune(model, prepared, params.fine_tune, scratch, params.base.seed, verbose=keras_verbosity(),
                       strategy=strategy, callbacks=(mlflow_runs.epoch_callback(),),
                       fitting=adversarial_fitting(params.fine_tune.adversarial, params.base.seed))
    if result.first_epoch > 1:
        log.info("resumed a killed run at epoch %d of %d", result.first_epoch, params.fine_tune.epochs)
    if not is_chief():
        log.info("fine-tuned as one worker of a cluster: the chief writes the outputs")
        return {}
    flip = choose_flip_tta(result.model, prepared, params.fine_tune, result.val_losses)
    metrics = {**result.metrics(), **flip.metrics()}
    # trained on single views (its augmentation flips them); saved as it will be scored and served
    saved = with_flip_tta(result.model) if flip.use else result.model
    with atomic_dir(context.path(paths.fine_tuned)) as target:
        saved.save(target / MODEL_FILE)
        shutil.copyfile(head_file.parent / CLASSES_FILE, target / CLASSES_FILE)
    with atomic_dir(context.path(paths.fine_tune_plots)) as target:
        write_history_tables(target, result.history, {"loss": result.initial["val_loss"],
                                                      "accuracy": result.initial["val_accuracy"]})
    atomic_write_text(context.path(paths.fine_tune_metrics), json.dumps(metrics, indent=2))
    shutil.rmtree(scratch, ignore_errors=True)
    if is_multi_worker(strategy):  # the custom loop across workers takes no Keras callbacks: log at the end
        mlflow_runs.log_history(result.history)
    if result.kept_initial:
        log.warning("fine-tuning was not better than the head-only start on validation%s: kept the head-only weights",
                    " beyond the noise (val_loss_change_low/high in fine_tune.json)"
                    if result.loss_change and params.fine_tune.accept == "beyond_noise" else "")
    log.info("fine-tune: %s", metrics)
    return {key: float(value) for key, value in metrics.items()}


if __name__ == "__main__":
    main_for("fine_tune", run, ["base", "backbone", "fine_tune"])
