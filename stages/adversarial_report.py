"""DVC stage `adversarial_report`: budgeted attacks with an epsilon sweep, the seed's unbounded dog-to-cat
demo, and "ideal class" images, on the fine-tuned model (params adversarial.*)."""

from __future__ import annotations

import json

import pandas as pd

from transferlab.adversarial.rendering import to_html, to_markdown
from transferlab.adversarial.report import Reference, build_report
from transferlab.core.atomic import atomic_dir, atomic_write_text
from transferlab.data.prepared import read_classes
from transferlab.modeling.assembly import load_keras, reference_like
from transferlab.modeling.devices import configure_devices
from transferlab.stage_runner import StageContext, main_for


def run(context: StageContext) -> dict:
    params, paths = context.params, context.params.paths
    context.tracker.set_tags(configure_devices(mixed_precision=False).tags())  # gradients on inputs want float32
    model = load_keras(context.path(paths.fine_tuned_model))
    classes = read_classes(context.path(paths.prepared))
    out = context.path(paths.adversarial_report)
    with atomic_dir(out / "images") as images_dir:
        report = build_report(model, classes, context.path(paths.prepared), params.adversarial, params.base.seed,
                              context.root, images_dir, standard_model(context, model),
                              other_backbones(context, model))
        markdown, page = to_markdown(report.sections), to_html(report.sections, images_dir)
    atomic_write_text(out / "report.md", markdown)
    atomic_write_text(out / "report.html", page)
    sweep = report.metrics["sweep"]
    atomic_write_text(out / "sweep.tsv", pd.DataFrame(sweep).to_csv(sep="\t", index=False))
    atomic_write_text(out / "metrics.json", json.dumps(report.metrics, indent=2))
    context.tracker.log_artifacts(out, "adversarial_report")
    figures = {"targeted_success_at_max_epsilon": report.metrics["targeted_success_at_max_epsilon"],
               **{f"robust_accuracy_eps_{row['epsilon']:g}": row["robust_accuracy"] for row in sweep}}
    if "standard" in report.metrics:
        figures.update({f"standard_robust_accuracy_eps_{row['epsilon']:g}": row["robust_accuracy"]
                        for row in report.metrics["standard"]["sweep"]})
    atomic_write_text(context.path(context.params.paths.adversarial_metrics), json.dumps(figures, indent=2))
    hardest = max(sweep, key=lambda row: row["epsilon"])
    context.tracker.headline({"robust_accuracy_max_epsilon": hardest["robust_accuracy"]})
    return figures

def standard_model(context: StageContext, saved) -> Reference | None:
    """With adversarial fine-tuning on: the head-only model it started from, which no attack has trained."""
    params = context.params
    if not params.fine_tune.adversarial.epsilon:
        return None
    head = context.path(params.paths.head_model_of(params.backbone.name))
    return Reference("head-only (standard)", reference_like(saved, params.backbone, params.data.image_size, head,
                                                            context.root, params.base.seed))


def other_backbones(context: StageContext, saved) -> list[Reference]:
    """Every other compared backbone with its head: the second models of the transfer check."""
    params = context.params
    return [Reference(f"{name} head", reference_like(saved, params.backbone_named(name), params.data.image_size,
                                                     context.path(params.paths.head_model_of(name)), context.root,
                                                     params.base.seed))
            for name in params.compare.backbones if name != params.backbone.name]


if __name__ == "__main__":
    main_for("adversarial_report", run, ["base", "backbone", "compare", "fine_tune", "adversarial"])
