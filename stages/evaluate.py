"""DVC stage `evaluate`: score the head-only and the fine-tuned model on the test split (params evaluate.*).

The MLflow registry gate runs here too; its decision depends on the registry, not on the stage's
inputs, so it is logged to MLflow and never written into a DVC output.
"""

from __future__ import annotations

import json
import logging

import numpy as np

from transferlab.tracking import mlflow_runs
from transferlab.core.atomic import atomic_dir, atomic_write_text
from transferlab.modeling.devices import configure_devices
from transferlab.evaluation.scoring import (binary_curves, confusion_records, evaluate_predictions, plot_confusion,
                                    plot_curves, plot_gallery, worst_mistakes)
from transferlab.modeling.fine_tuning import image_dataset
from transferlab.modeling.assembly import full_model, load_keras
from transferlab.tracking.promotion import register_and_gate
from transferlab.data.prepared import parse_example, shard_files
from transferlab.stage_runner import StageContext, main_for

log = logging.getLogger("transferlab.evaluate")


def predict_split(model, prepared, split: str, batch_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    import tensorflow as tf

    forward = tf.function(lambda images: model(images, training=False), reduce_retracing=True)
    probabilities, labels, keys = [], [], []
    for images, label, key in image_dataset(prepared, split, batch_size, with_keys=True):
        probabilities.append(forward(images).numpy())
        labels.append(label.numpy())
        keys.append(key.numpy())
    return np.concatenate(probabilities), np.concatenate(labels), np.concatenate(keys).astype(str)


def images_by_key(prepared, split: str, wanted: set[str]) -> dict[str, np.ndarray]:
    import tensorflow as tf

    found = {}
    for path in shard_files(prepared, split):
        for serialized in tf.data.TFRecordDataset(str(path)):
            image, _, key = parse_example(serialized)
            if key.numpy().decode() in wanted:
                found[key.numpy().decode()] = tf.io.decode_jpeg(image, channels=3).numpy()
    return found


def evaluate(context: StageContext) -> dict:
    params, paths, cfg = context.params, context.params.paths, context.params.evaluate
    mlflow_runs.set_tags(configure_devices().tags())
    prepared, models = context.path(paths.prepared), context.path(paths.models)
    classes = [c["name"] for c in json.loads((models / "fine_tuned" / "classes.json").read_text(encoding="utf-8"))]
    candidates = {
        "head_only": full_model(params.backbone, params.data.image_size,
                                context.path(paths.head_of(params.backbone.name)) / "head.keras", context.root,
                                params.base.seed),
        "fine_tuned": load_keras(models / "fine_tuned" / "model.keras"),
    }
    results, batch = {}, params.fine_tune.batch_size
    for name, model in candidates.items():
        probabilities, labels, keys = predict_split(model, prepared, "test", batch)
        results[name] = evaluate_predictions(labels, probabilities, classes, cfg.top_k)
    final = results["fine_tuned"]
    with atomic_dir(context.path(paths.plots) / "evaluate") as target:
        (target / "confusion.json").write_text(json.dumps(confusion_records(labels, final.predicted, classes)))
        plot_confusion(final.confusion, classes, "fine-tuned model, test split", target / "confusion.png")
        if len(classes) == 2:
            curves = binary_curves(labels, final.probabilities)
            for curve, table in curves.items():
                table.to_csv(target / f"{curve}.tsv", sep="\t", index=False)
            plot_curves(curves, target / "roc_pr.png")
        worst = worst_mistakes(labels, final.probabilities, cfg.gallery_size)
        pictures = images_by_key(prepared, "test", {keys[i] for i in worst})
        captions = [f"{keys[i].split('/')[-1]}\ntrue {classes[labels[i]]}, predicted {classes[final.predicted[i]]} "
                    f"{final.probabilities[i].max():.2f}" for i in worst]
        plot_gallery([pictures[keys[i]] for i in worst], captions, target / "misclassified.png")
    metrics_dir = context.path(paths.metrics)
    atomic_write_text(metrics_dir / "evaluate_per_class.csv", final.per_class.to_csv(index=False))
    summary = {name: result.summary for name, result in results.items()}
    atomic_write_text(metrics_dir / "evaluate.json", json.dumps(summary, indent=2))
    mlflow_runs.log_artifacts(context.path(paths.plots) / "evaluate", "evaluate")
    gate(context, candidates["fine_tuned"], final.summary["accuracy"], classes)
    log.info("test: %s", summary)
    return {f"{name}_{key}": value for name, result in results.items() for key, value in result.summary.items()}


def gate(context: StageContext, model, accuracy: float, classes: list[str]) -> None:
    """Log and register the fine-tuned model, then move `champion` only if it passes the gate."""
    cfg = context.params.evaluate
    size = context.params.data.image_size
    example = np.zeros((1, size, size, 3), np.float32)
    uri = mlflow_runs.log_keras_model(model, "model", example)
    if uri is None:
        log.info("not tracked (--no-track): registry gate skipped")
        return
    version, decision = register_and_gate(uri, cfg.registered_model, accuracy, cfg.min_accuracy, cfg.max_regression,
                                          {"classes": json.dumps(classes), "image_size": str(size)})
    mlflow_runs.set_tags({"registry.version": version, "registry.alias": decision.alias,
                       "registry.reason": decision.reason})
    log.info("registry: %s version %s -> %s (%s)", cfg.registered_model, version, decision.alias, decision.reason)


if __name__ == "__main__":
    main_for("evaluate", evaluate, ["base", "backbone", "evaluate"])
