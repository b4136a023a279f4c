"""DVC stage `data_report`: class balance, image sizes, near-duplicates and train-test leakage, likely label errors
and outliers, found on the fine-tuned backbone's cached features (params data.gate); stops the pipeline before
training when data.gate is set and leakage exceeds it."""

from __future__ import annotations

import json
import logging

import numpy as np
import pandas as pd

from transferlab.core.atomic import atomic_dir, atomic_write_text
from transferlab.core.report_pages import to_html, to_markdown
from transferlab.core.wording import plural
from transferlab.data.prepared import DATA_REPORT, MANIFEST, SPLITS, first_images, images_by_key
from transferlab.modeling.devices import configure_devices
from transferlab.modeling.features import embedder, load_splits, read_meta
from transferlab.modeling.probe import fit_probe
from transferlab.quality.neighbours import Whitening
from transferlab.quality.report import (CALIBRATION_IMAGES, analyse, calibration_on, check_gate, data_metrics,
                                        pooled, sections)
from transferlab.stage_runner import StageContext, main_for

log = logging.getLogger("transferlab.data_report")
TITLE = "Data report"


def run(context: StageContext) -> dict:
    params, paths = context.params, context.params.paths
    context.tracker.set_tags(configure_devices().tags())
    features_dir, prepared = context.path(paths.features_of(params.backbone.name)), context.path(paths.prepared)
    splits = load_splits(features_dir)
    names = [c["name"] for c in read_meta(features_dir)["classes"]]
    data = pooled(splits)
    probe = fit_probe(splits["train"], params.base.seed)  # its C, as train_head's probe chooses it
    whitening = Whitening.fit(splits["train"].features)
    embed = embedder(params.backbone_named(params.backbone.name), params.data.image_size, context.root,
                     params.base.seed)
    calibration = calibration_on(embed, first_images(prepared, "train", CALIBRATION_IMAGES)[0], whitening,
                                 whitening.unit(data.features))
    quality = analyse(data, pd.read_csv(prepared / MANIFEST, keep_default_na=False), names, whitening, calibration,
                      probe.c, params.base.seed)
    metrics = data_metrics(quality)
    out = context.path(paths.data_report)
    preprocess_report = json.loads((prepared / DATA_REPORT).read_text(encoding="utf-8"))
    with atomic_dir(out) as target:
        (target / "images").mkdir()
        page = sections(quality, lambda wanted: _pixels(prepared, wanted), target / "images", preprocess_report)
        (target / "report.md").write_text(to_markdown(TITLE, page), encoding="utf-8")
        (target / "report.html").write_text(to_html(TITLE, page, target / "images"), encoding="utf-8")
        quality.pairs.to_csv(target / "near_duplicates.csv", index=False)
        quality.outliers.to_csv(target / "outliers.csv", index=False)
        if quality.label_issues is not None:
            quality.label_issues.to_csv(target / "label_issues.csv", index=False)
    atomic_write_text(context.path(paths.data_metrics), json.dumps(metrics, indent=2))
    context.tracker.log_artifacts(out, "data_report")
    log.info("data report: %s (threshold calibrated on %s)", metrics,
             plural(len(calibration.copy_similarities), "copy"))
    check_gate(quality, params.data.gate, f"{paths.data_report}/report.html")
    return {key: float(value) for key, value in metrics.items() if value is not None}


def _pixels(prepared, wanted: set[str]) -> dict[str, np.ndarray]:
    found: dict[str, np.ndarray] = {}
    for split in SPLITS:
        found.update(images_by_key(prepared, split, wanted - found.keys()) if wanted - found.keys() else {})
    return found


if __name__ == "__main__":
    main_for("data_report", run, ["base", "data", "backbone"])
