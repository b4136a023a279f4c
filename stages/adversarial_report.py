"""DVC stage `adversarial_report`: budgeted attacks with an epsilon sweep, the seed's unbounded dog-to-cat
demo, and "ideal class" images, on the fine-tuned model (params adversarial.*)."""

from __future__ import annotations

import json

import pandas as pd

from transferlab.adversarial.rendering import to_html, to_markdown
from transferlab.adversarial.report import build_report
from transferlab.core.atomic import atomic_dir, atomic_write_text
from transferlab.data.prepared import read_classes
from transferlab.modeling.assembly import load_keras
from transferlab.modeling.devices import configure_devices
from transferlab.stage_runner import StageContext, main_for
from transferlab.tracking import mlflow_runs


def run(context: StageContext) -> dict:
    params, paths = context.params, context.params.paths
    mlflow_runs.set_tags(configure_devices(mixed_precision=False).tags())  # gradients on inputs want float32
    model = load_keras(context.path(paths.fine_tuned_model))
    classes = read_classes(context.path(paths.prepared))
    out = context.path(paths.adversarial_report)
    with atomic_dir(out / "images") as images_dir:
        report = build_report(model, classes, context.path(paths.prepared), params.adversarial, params.base.seed,
                              context.root, images_dir)
        markdown, page = to_markdown(report.sections), to_html(report.sections, images_dir)
    atomic_write_text(out / "report.md", markdown)
    atomic_write_text(out / "report.html", page)
    sweep = report.metrics["sweep"]
    atomic_write_text(out / "sweep.tsv", pd.DataFrame(sweep).to_csv(sep="\t", index=False))
    atomic_write_text(out / "metrics.json", json.dumps(report.metrics, indent=2))
    mlflow_runs.log_artifacts(out, "adversarial_report")
    headline = {"targeted_success_at_max_epsilon": report.metrics["targeted_success_at_max_epsilon"],
                **{f"robust_accuracy_eps_{row['epsilon']:g}": row["robust_accuracy"] for row in sweep}}
    atomic_write_text(context.path(context.params.paths.adversarial_metrics), json.dumps(headline, indent=2))
    return headline


if __name__ == "__main__":
    main_for("adversarial_report", run, ["base", "adversarial"])
