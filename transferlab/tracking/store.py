"""Where runs are tracked (`MLFLOW_TRACKING_URI`, else sqlite:///mlflow.db in the repo) and whether that store opens."""

from __future__ import annotations

import os
from pathlib import Path

from transferlab.core.endpoints import SQLITE, require_server
from transferlab.tracking.permissions import check_may_write
from transferlab.tracking.database import ARTIFACT_FOLDER, check_artifact_location, prepare_database


def tracking_home(project_root: Path) -> Path:
    """Where the default backend lives. A queued or --temp `dvc exp run` works in a throw-away copy of the
    repo; DVC then sets DVC_ROOT to the repo itself, where the runs belong (dvclive reads it the same way)."""
    return Path(os.environ.get("DVC_ROOT") or project_root).resolve()


def tracking_uri(project_root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"{SQLITE}{tracking_home(project_root) / 'mlflow.db'}"


def local_artifact_root(uri: str) -> Path | None:
    """Where a local sqlite backend keeps its artifacts: beside the database, never in the current directory
    (MLflow's own default, ./mlruns). A tracking server decides its own (None)."""
    return Path(uri.removeprefix(SQLITE)).resolve().parent / ARTIFACT_FOLDER if uri.startswith(SQLITE) else None


def check_tracking_store(project_root: Path, experiment: str | None = None,
                         registered_model: str | None = None) -> None:
    """The store the stages will log to takes their runs, before any work: a URI MLflow tracks into, a server that
    answers and accepts this process's credentials and lets its account write to `experiment` (and
    `registered_model`), or a sqlite database that is whole (made here, once, under a lock, when it is new) and
    keeps `experiment`'s artifacts beside it."""
    uri = tracking_uri(project_root)
    require_server(uri)
    if experiment:
        check_may_write(uri, experiment, registered_model)
    if uri.startswith(SQLITE):
        artifact_root = local_artifact_root(uri)
        prepare_database(uri, artifact_root)
        if experiment:
            check_artifact_location(Path(uri.removeprefix(SQLITE)), experiment, artifact_root)
