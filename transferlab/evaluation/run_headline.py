"""The block a run ends with: the headline figures, the registry's decision and why, where to look, and, when the
model stays below the gate, advice drawn from the run's own figures."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from transferlab.core.wording import plural

OVERFIT_GAP = 0.1  # train accuracy above validation accuracy by more than this: the head memorizes
WIDE_INTERVAL = 0.1  # half-width of the test accuracy's interval above which the test split is too small to tell
WEAKEST_SHOWN = 3
IMBALANCED = 3.0  # the largest class this many times the smallest: the head leans toward the large classes


@dataclass(frozen=True)
class RunFigures:
    """What the block is drawn from: metrics/summary.json, the primary head's and fine_tune's metrics, the
    per-class rows of evaluate (class, recall, support), the gate's decision (None: not registered) and the data
    report's figures (metrics/data.json; empty where it has not run)."""

    summary: Mapping[str, Any]
    head: Mapping[str, Any]
    fine_tune: Mapping[str, Any]
    per_class: Sequence[Mapping[str, Any]]
    min_accuracy: float
    registry: Mapping[str, str] | None = None
    data: Mapping[str, Any] = field(default_factory=dict)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def headline_lines(run: RunFigures) -> list[str]:
    """The figures a user reads first, one per line."""
    summary, head = run.summary, run.head
    lines = [f"test accuracy {_pct(summary['test_accuracy'])} (95 % interval {_pct(summary['test_accuracy_low'])}-"
             f"{_pct(summary['test_accuracy_high'])}, {summary['test_images']} test images)"]
    if head.get("probe_test_accuracy") is not None:
        lines.append(f"linear probe on the same features: test accuracy {_pct(head['probe_test_accuracy'])}")
    kept = "kept the head-only weights" if run.fine_tune.get("kept_head_only_weights") else "kept the fine-tuned weights"
    lines.append(f"fine-tuning: {kept} (validation accuracy {_pct(run.fine_tune.get('val_accuracy'))})")
    lines.append(_registry_line(run.registry))
    return lines + ([leaked] if (leaked := _leakage_line(run.data)) else [])


def _leakage_line(data: Mapping[str, Any]) -> str | None:
    """Near-duplicates of test images in training make the test accuracy optimistic, above the gate as below."""
    leaked = data.get("test_images_leaked_from_train")
    if not leaked:
        return None
    return (f"data: {leaked} test images ({data.get('test_leakage_fraction', 0):.1%}) have a near-duplicate in "
            "training, so the test accuracy is optimistic: remove them (data report: near_duplicates.csv) or set "
            "data.gate to stop such a run")


def registry_tags(version: str, decision) -> dict[str, str]:
    """The gate's decision as the evaluate run's `registry.*` tags, which the block reads back after a run."""
    return {"registry.version": str(version), "registry.alias": decision.alias, "registry.reason": decision.reason}


def _registry_line(registry: Mapping[str, str] | None) -> str:
    if not registry:
        return "registry: nothing registered in this run (not tracked, or evaluate was up to date)"
    return (f"registry: version {registry.get('registry.version')} is {registry.get('registry.alias')}: "
            f"{registry.get('registry.reason')}")


def below_gate(run: RunFigures) -> bool:
    """The model did not reach evaluate.min_accuracy, so it cannot become champion whatever else holds."""
    return run.summary["test_accuracy"] is not None and run.summary["test_accuracy"] < run.min_accuracy


def advice(run: RunFigures) -> list[str]:
    """What the figures say to try next, for a model below the gate (empty otherwise)."""
    if not below_gate(run):
        return []
    tips = [tip for tip in (_gap_tip(run.head), _probe_tip(run), _interval_tip(run.summary)) if tip]
    tips += _weakest_classes(run.per_class, run.min_accuracy) + _data_tips(run.data)
    if run.fine_tune.get("kept_head_only_weights"):
        tips.append("fine-tuning did not lower the validation loss beyond the noise: try more fine_tune.epochs, "
                    "a larger fine_tune.unfreeze_top, or fine_tune.learning_rate=0.0001")
    return tips


def _gap_tip(head: Mapping[str, Any]) -> str | None:
    train, val = head.get("train_accuracy"), head.get("val_accuracy")
    if train is None or val is None or train - val <= OVERFIT_GAP:
        return None
    return (f"the head fits the training images ({train:.3f}) far better than validation ({val:.3f}): it memorizes; "
            "more images per class help most, or a stronger head.l2 (e.g. 0.01)")


def _probe_tip(run: RunFigures) -> str | None:
    probe, test = run.head.get("probe_test_accuracy"), run.summary["test_accuracy"]
    if probe is None or probe >= run.min_accuracy:
        return None
    return (f"a linear probe reaches only {probe:.3f} on these features (the model {test:.3f}): the backbone's "
            "features are the limit, not the head; compare others (compare.backbones: [mobilenet_v2, resnet50, "
            "efficientnet_b0]), a larger data.image_size, or fine-tune more layers (fine_tune.unfreeze_top)")


def _interval_tip(summary: Mapping[str, Any]) -> str | None:
    low, high = summary.get("test_accuracy_low"), summary.get("test_accuracy_high")
    if low is None or high is None or (high - low) / 2 <= WIDE_INTERVAL:
        return None
    return (f"only {summary['test_images']} test images: the accuracy could be anywhere in {low:.3f}-{high:.3f}; "
            "a larger data.test_fraction or more images make the gate's verdict firmer")


def _weakest_classes(per_class: Sequence[Mapping[str, Any]], min_accuracy: float) -> list[str]:
    weak = sorted((row for row in per_class if float(row["recall"]) < min_accuracy), key=lambda r: float(r["recall"]))
    if not weak:
        return []
    named = ", ".join(f"{row['class']} {float(row['recall']):.2f} ({int(row['support'])} test images)"
                      for row in weak[:WEAKEST_SHOWN])
    more = f" and {len(weak) - WEAKEST_SHOWN} more" if len(weak) > WEAKEST_SHOWN else ""
    return [f"classes below {min_accuracy:g} recall: {named}{more}: see their mistakes in the gallery, and "
            "look for label errors in the data report"]


def _data_tips(data: Mapping[str, Any]) -> list[str]:
    """What the data report found that caps accuracy: likely label errors, classes of very different sizes."""
    tips = []
    if data.get("likely_label_errors"):
        tips.append(f"the data report flags {plural(data['likely_label_errors'], 'image')} as likely label errors "
                    "(label_issues.csv): wrong labels cap the accuracy any model reaches; check and fix them first")
    if (data.get("class_imbalance") or 0) > IMBALANCED:
        tips.append(f"the largest class has {data['class_imbalance']:g} times the images of the smallest: the small "
                    "classes' recall suffers; add images to them")
    return tips


def where_to_look(paths, tracking_uri: str | None = None) -> list[str]:
    """The files and commands that show the rest (`paths`: the params' path catalog); the runs in the tracking
    server's own UI where one is used (MLFLOW_TRACKING_URI), else in `mlflow ui` on the project's database."""
    import os

    from transferlab.core.endpoints import redact

    uri = os.environ.get("MLFLOW_TRACKING_URI", "") if tracking_uri is None else tracking_uri
    runs = f"the runs at {redact(uri)}" if uri.startswith(("http://", "https://")) else \
        "`mlflow ui --backend-store-uri sqlite:///mlflow.db`"
    return [f"look at: {paths.evaluate_plots}/ (confusion matrix, worst mistakes, Grad-CAM), "
            f"{paths.data_report}/report.html, `dvc metrics show`, {runs}"]


def run_block(run: RunFigures, paths) -> list[str]:
    """The whole block, headline first, then advice (below the gate) and where to look."""
    tips = advice(run)
    lines = ["== transferlab run ==", *headline_lines(run)]
    if tips:
        lines.append(f"below the gate (evaluate.min_accuracy {run.min_accuracy:g}); what the figures suggest:")
        lines += [f"  - {tip}" for tip in tips]
    return lines + where_to_look(paths)


def read_run_figures(root, paths, backbone: str, min_accuracy: float,
                     registry: Mapping[str, str] | None = None) -> RunFigures | None:
    """The figures from the run's metric files under `root` (None where evaluate has not written them yet)."""
    import csv
    import json

    files = [root / name for name in (paths.summary_metrics, paths.head_metrics_of(backbone), paths.fine_tune_metrics)]
    table, data = root / paths.evaluate_per_class, root / paths.data_metrics
    if not all(path.is_file() for path in [*files, table]):
        return None
    summary, head, fine_tune = (json.loads(path.read_text(encoding="utf-8")) for path in files)
    with table.open(encoding="utf-8", newline="") as rows:
        per_class = list(csv.DictReader(rows))
    data_figures = json.loads(data.read_text(encoding="utf-8")) if data.is_file() else {}
    return RunFigures(summary, head, fine_tune, per_class, min_accuracy, registry, data_figures)
