"""DVC stage `evaluate`: score the head-only and the fine-tuned model on the test split (params evaluate.*).

The MLflow registry gate runs here too; its decision depends on the registry, not on the stage's
inputs, so it is logged to MLflow and never written into a DVC output.
"""

from __future__ import annotations

import json
import logging

from transferlab.core.atomic import atomic_dir, atomic_write_text
from transferlab.core.progress import with_progress
from transferlab.modeling.assembly import classifier, has_flip_tta, load_keras
from transferlab.modeling.devices import configure_devices
from transferlab.data.prepared import read_classes
from transferlab.evaluation.figures import write_evaluation_plots
from transferlab.evaluation.scoring import score_model
from transferlab.stage_runner import StageContext, main_for
from transferlab.tracking import mlflow_runs
from transferlab.serving.export import log_image_model
from transferlab.tracking.lineage import lineage_tags
from transferlab.tracking.promotion import TEST_DATA_TAG, check_registry_accepts, promote

log = logging.getLogger("transferlab.evaluate")
SPLIT = "test"


def run(context: StageContext) -> dict:
    params, paths, cfg = context.params, context.params.paths, context.params.evaluate
    mlflow_runs.set_tags(configure_devices().tags())
    prepared = context.path(paths.prepared)
    classes = [c["name"] for c in read_classes(prepared)]
    check_registry_accepts(cfg.registered_model, classes)  # before any output is replaced
    head = context.path(paths.head_model_of(params.backbone.name))
    fine_tuned = load_keras(context.path(paths.fine_tuned_model))
    # the head-only model is scored as the fine-tuned one was saved: both with flip test-time augmentation, or neither
    candidates = {"head_only": classifier(params.backbone, params.data.image_size, head, context.root, params.base.seed,
                                          flip_tta=has_flip_tta(fine_tuned)),
                  "fine_tuned": fine_tuned}
    results = {}
    for name, model in with_progress(candidates.items(), len(candidates), f"evaluate: scoring models on {SPLIT}"):
        results[name] = score_model(model, prepared, SPLIT, params.fine_tune.batch_size, classes, cfg.top_k)
    final, labels, keys = results["fine_tuned"]
    with atomic_dir(context.path(paths.evaluate_plots)) as target:
        write_evaluation_plots(target, final, labels, keys, classes, prepared, SPLIT, cfg.gallery_size,
                               candidates["fine_tuned"], cfg.gradcam_per_class)
    summary = {name: result.summary for name, (result, _, _) in results.items()}
    atomic_write_text(context.path(paths.evaluate_per_class), final.per_class.to_csv(index=False))
    atomic_write_text(context.path(paths.evaluate_metrics), json.dumps(summary, indent=2))
    atomic_write_text(context.path(paths.summary_metrics), json.dumps(headline_summary(context, summary), indent=2))
    mlflow_runs.log_artifacts(context.path(paths.evaluate_plots), "evaluate")
    promoted = register(context, candidates["fine_tuned"], final.summary["accuracy"], final.summary["n"], classes)
    if promoted is None:
        log.info("not tracked (--no-track): registry gate skipped")
    else:
        log.info("registry: %s version %s -> %s (%s)", cfg.registered_model, promoted[0], promoted[1].alias,
                 promoted[1].reason)
    log.info("%s: %s", SPLIT, summary)
    return {f"{name}_{key}": value for name, scores in summary.items() for key, value in scores.items()}


def register(context: StageContext, model, accuracy: float, test_images: int, classes: list[str]):
    """Log the model twice (pixels in: Keras; image files in: the pyfunc that `mlflow models serve` serves),
    tag the run with where it came from, register the image model and gate `champion`."""
    import numpy as np

    params, paths = context.params, context.params.paths
    if not mlflow_runs.tracking_active():
        return None
    lineage = lineage_tags(context.root, context.params_file, {
        TEST_DATA_TAG: paths.prepared, "data.features.md5": paths.features_of(params.backbone.name)})
    mlflow_runs.set_tags(lineage)
    size = params.data.image_size
    keras_uri = mlflow_runs.log_keras_model(model, "keras_model", np.zeros((1, size, size, 3), np.float32))
    image_uri = log_image_model(context.path(paths.fine_tuned_model), classes, params.data.resize,
                                params.evaluate.top_k)
    extra = {**lineage, **({"keras_model_uri": keras_uri} if keras_uri else {})}
    return promote(image_uri, accuracy, test_images, classes, params.evaluate, size, extra)


def headline_summary(context: StageContext, summary: dict) -> dict[str, float]:
    """metrics/summary.json: the figures a user compares across runs first, from the head, fine-tune and test."""
    paths, backbone = context.params.paths, context.params.backbone.name
    head = json.loads(context.path(paths.head_metrics_of(backbone)).read_text())
    tuned = json.loads(context.path(paths.fine_tune_metrics).read_text())
    return {"head_val_accuracy": head.get("val_accuracy"), "fine_tuned_val_accuracy": tuned["val_accuracy"],
            "kept_head_only_weights": tuned["kept_head_only_weights"],
            "test_accuracy_head_only": summary["head_only"]["accuracy"],
            "test_accuracy": summary["fine_tuned"]["accuracy"], "test_macro_f1": summary["fine_tuned"]["macro_f1"],
            # the 95 % (Wilson) interval of test_accuracy: how far a rerun on other images of the task could move it
            "test_accuracy_low": summary["fine_tuned"]["accuracy_low"],
            "test_accuracy_high": summary["fine_tuned"]["accuracy_high"], "test_images": summary["fine_tuned"]["n"]}


if __name__ == "__main__":
    main_for("evaluate", run, ["base", "backbone", "evaluate"])
