"""DVC stage `evaluate`: score the head-only and the fine-tuned model on the test split (params evaluate.*).
Its registry gate depends on the registry, not on the stage's inputs: logged to MLflow, never to a DVC output."""

from __future__ import annotations

import json
import logging

from transferlab.core.atomic import atomic_dir, atomic_write_text
from transferlab.core.progress import with_progress
from transferlab.data.prepared import first_encoded, read_classes
from transferlab.evaluation.figures import write_evaluation_plots
from transferlab.evaluation.headline import headline
from transferlab.evaluation.run_headline import RunFigures, registry_tags, run_block
from transferlab.evaluation.scoring import score_model
from transferlab.modeling.assembly import load_keras, reference_like
from transferlab.modeling.devices import configure_devices
from transferlab.serving.registration import register
from transferlab.serving.release_cases import log_cases
from transferlab.stage_runner import StageContext, main_for
from transferlab.tracking.promotion import check_registry_accepts

log = logging.getLogger("transferlab.evaluate")
SPLIT = "test"


def run(context: StageContext) -> dict:
    params, paths, cfg, tracker = context.params, context.params.paths, context.params.evaluate, context.tracker
    tracker.set_tags(configure_devices().tags())
    prepared = context.path(paths.prepared)
    classes = [c["name"] for c in read_classes(prepared)]
    check_registry_accepts(tracker, cfg.registered_model, classes)  # before any output is replaced
    fine_tuned = load_keras(context.path(paths.fine_tuned_model))
    head = context.path(paths.head_model_of(params.backbone.name))
    candidates = {"head_only": reference_like(fine_tuned, params.backbone, params.data.image_size, head,
                                              context.root, params.base.seed), "fine_tuned": fine_tuned}
    results = {name: score_model(model, prepared, SPLIT, params.fine_tune.batch_size, classes, cfg.top_k)
               for name, model in with_progress(candidates.items(), 2, f"evaluate: scoring models on {SPLIT}")}
    final, labels, keys = results["fine_tuned"]
    with atomic_dir(context.path(paths.evaluate_plots)) as target:
        write_evaluation_plots(target, final, labels, keys, classes, prepared, SPLIT, cfg.gallery_size, fine_tuned,
                               cfg.gradcam_per_class)
    summary = {name: result.summary for name, (result, _, _) in results.items()}
    head_metrics, tuned_metrics = (json.loads(context.path(path).read_text()) for path in
                                   (paths.head_metrics_of(params.backbone.name), paths.fine_tune_metrics))
    figures = headline(head_metrics, tuned_metrics, summary)
    atomic_write_text(context.path(paths.evaluate_per_class), final.per_class.to_csv(index=False))
    atomic_write_text(context.path(paths.evaluate_metrics), json.dumps(summary, indent=2))
    atomic_write_text(context.path(paths.summary_metrics), json.dumps(figures, indent=2))
    tracker.log_artifacts(context.path(paths.evaluate_plots), "evaluate")
    tracker.headline(figures)
    if tracker.active:  # before registering: the release that a promotion starts posts these
        log_cases(tracker, first_encoded(prepared, SPLIT, cfg.release_images), final.probabilities, classes)
    promoted = register(tracker, params, context.root, context.params_file, fine_tuned, final.summary["accuracy"],
                        final.summary["n"], classes, final.confusion)
    run = RunFigures(figures, head_metrics, tuned_metrics, final.per_class.to_dict("records"), cfg.min_accuracy,
                     registry_tags(*promoted) if promoted else None)
    log.info("%s", "\n".join(run_block(run, paths)))
    return {f"{name}_{key}": value for name, scores in summary.items() for key, value in scores.items()}


if __name__ == "__main__":
    main_for("evaluate", run, ["base", "backbone", "evaluate"], registers=True)
