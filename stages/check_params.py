"""DVC stage `check_params`: validate params.yaml, its input files and the MLflow store before any other stage.

DVC deletes a stage's outputs before it runs the stage's command, so a stage that rejects its params under
`dvc repro` has already lost them. Every stage descends from this one (download depends on its output), so a
bad value, an adversarial target no class matches, a table without its label column, a corrupt or half-migrated
mlflow.db, an experiment whose artifact folder the project left behind when it moved, or a tracking server that
does not answer or refuses the credentials stops the run here, before DVC touches any other output. A fresh
mlflow.db is made here, once, under a lock (tracking/database.py). Its output holds no params (a constant), so
passing it never reruns anything else.
It records no MLflow run: it is a guard, not a step of the pipeline.
"""

from __future__ import annotations

import json
import logging

from transferlab.adversarial.targets import target_classes
from transferlab.core.atomic import atomic_write_text
from transferlab.core.inputs import check_inputs
from transferlab.core.paths import PARAMS_CHECK_FILE
from transferlab.data.sources import known_classes
from transferlab.stage_runner import StageContext, main_for
from transferlab.tracking.store import check_tracking_store

log = logging.getLogger("transferlab.check_params")


def run(context: StageContext) -> None:
    check_inputs(context.params, context.root)  # a missing folder or file would otherwise cost download's outputs
    for key in type(context.params.paths).model_fields:  # no symlink leads a params path out of the workspace
        context.path(getattr(context.params.paths, key))
    target_classes(context.params.adversarial.target, known_classes(context.params.data, context.root))
    check_tracking_store(context.root, context.params.mlflow.experiment, context.params.evaluate.registered_model)
    atomic_write_text(context.path(PARAMS_CHECK_FILE), json.dumps({"params": "valid"}) + "\n")
    log.info("params.yaml is valid, its input files exist, the tracking store answers")


if __name__ == "__main__":
    main_for("check_params", run, [], track=False)
