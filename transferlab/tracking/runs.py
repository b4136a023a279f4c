"""MLflow run lifecycle: one parent run per pipeline execution, one nested run per stage, yielding its tracker."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Param

from transferlab.core.digest import file_sha256
from transferlab.core.redaction import scrub, scrubbed
from transferlab.tracking.lineage import git_commit
from transferlab.tracking.mlflow_tracker import MlflowTracker
from transferlab.tracking.processes import end_abandoned_runs, pipeline_id, process_identity
from transferlab.tracking.store import check_tracking_store, local_artifact_root, tracking_uri
from transferlab.tracking.tags import (EXPERIMENT_KIND_TAG, LOCK_TAG, PARENT_TAG, PIPELINE_ROLE, PIPELINE_TAG,
                                       PROCESS_TAG, ROLE_TAG, STAGE_TAG, TRAINING)


def experiment_id_for(name: str, artifact_root: Path | None) -> str:
    """The experiment, tagged as model training so MLflow 3's UI opens on its runs, not on the GenAI overview."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        location = artifact_root.resolve().as_uri() if artifact_root else None
        return mlflow.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: TRAINING})
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != TRAINING:
        mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, TRAINING)
    return experiment.experiment_id


def find_pipeline_run(client, experiment_id: str, pid: str):
    """The pipeline run of execution `pid` (the first, should two stages have raced to make it), or None."""
    found = client.search_runs([experiment_id], max_results=1, order_by=["attributes.start_time ASC"],
                               filter_string=f"tags.`{PIPELINE_TAG}` = '{pid}' and tags.`{ROLE_TAG}` = '{PIPELINE_ROLE}'")
    return found[0] if found else None


def _parent_run_id(client, experiment_id: str, pid: str, name: str, tags: Mapping[str, str],
                   params: Mapping[str, Any]) -> str:
    """The pipeline's run, created by its first stage and RUNNING while any of its stages runs.

    It starts when the first stage starts and each stage that ends sets its end and status, so it spans the
    pipeline and ends FAILED when a stage failed (a later stage that succeeds, a retry, sets it back)."""
    if found := find_pipeline_run(client, experiment_id, pid):
        parent = found.info.run_id
        client.update_run(parent, status="RUNNING")
        client.set_tag(parent, PROCESS_TAG, process_identity())  # a SIGKILLed stage leaves it to the sweep
        return parent
    run = client.create_run(experiment_id, run_name=name, tags=scrubbed(
        {PIPELINE_TAG: pid, ROLE_TAG: PIPELINE_ROLE, PROCESS_TAG: process_identity(), **tags}))
    # the whole params.yaml, once: one pipeline execution reads one snapshot of it, so runs compare in the UI
    client.log_batch(run.info.run_id, params=[Param(key, value) for key, value in scrubbed(flatten(params)).items()])
    return run.info.run_id


def _close_parent(client, parent: str, status: str, project_root: Path) -> None:
    """What the pipeline run shows after each stage: its status, its end, the dvc.lock the stage left."""
    lock = project_root / "dvc.lock"
    if lock.is_file():
        client.set_tag(parent, LOCK_TAG, file_sha256(lock))
    client.set_terminated(parent, status)


def pipeline_name(source: str, backbone: str) -> str:
    """What the pipeline run is called: the DVC experiment's name, else when, on what, with which backbone."""
    if os.environ.get("DVC_EXP_NAME"):
        return f"{os.environ['DVC_EXP_NAME']} ({source}, {backbone})"
    return f"{datetime.datetime.now():%Y-%m-%d %H:%M} {source} {backbone}"


def environment_tags() -> dict[str, str]:
    tags = {"python": platform.python_version(), "host.platform": platform.platform()}
    if os.environ.get("DVC_EXP_NAME"):  # set by `dvc exp run`: links the MLflow run to `dvc exp show`
        tags["dvc.experiment"] = os.environ["DVC_EXP_NAME"]
    return tags


def flatten(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


@contextlib.contextmanager
def stage_run(stage: str, experiment: str, project_root: Path, params: Mapping[str, Any],
              pipeline_name: str = "", generated: Sequence[str] = (),
              pipeline_params: Mapping[str, Any] | None = None,
              registered_model: str | None = None) -> Iterator[MlflowTracker]:
    """Start the stage's nested run under its pipeline's parent; yields the stage's tracker.
    `generated`: the tracked outputs the pipeline rewrites (see `git_commit`); `pipeline_params`: every section of
    params, logged on the pipeline's run when the first stage creates it (default: the stage's own `params`);
    `registered_model`: the model the stage registers versions of (its account must be allowed to).

    A tracking server that does not answer stops the stage here, in seconds and before any work, rather
    than after the work, when results could no longer be recorded (MLflow itself retries for minutes).
    One that stops answering later costs the run, not the stage's outputs: see `MlflowTracker.tolerant`."""
    uri = tracking_uri(project_root)
    check_tracking_store(project_root, experiment, registered_model)
    mlflow.set_tracking_uri(uri)  # note: this also sets MLFLOW_TRACKING_URI
    experiment_id = experiment_id_for(experiment, local_artifact_root(uri))
    client = mlflow.MlflowClient()
    end_abandoned_runs(client, experiment_id)
    pid = pipeline_id()
    code = git_commit(project_root, generated)
    parent = _parent_run_id(client, experiment_id, pid, scrub(pipeline_name) or f"pipeline {pid}",
                            {**code, **environment_tags()}, pipeline_params or params)
    tags = {PARENT_TAG: parent, PIPELINE_TAG: pid, STAGE_TAG: stage, PROCESS_TAG: process_identity(),
            **code, **environment_tags()}
    run = mlflow.start_run(experiment_id=experiment_id, run_name=stage, tags=scrubbed(tags))
    tracker = MlflowTracker(run.info.run_id, parent, code)
    status = "FAILED"
    try:
        mlflow.log_params(scrubbed(flatten(params)))  # a password in a param is a credential all the same
        yield tracker
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        with tracker.tolerant("ending the run"):
            mlflow.end_run(status)  # pops the active run first, so a dead server leaves no run active here
        with tracker.tolerant("ending the pipeline run"):
            _close_parent(client, parent, status, project_root)


def stage_tags(project_root: Path, experiment: str, pid: str, stage: str) -> dict[str, str] | None:
    """The tags of `stage`'s newest run in pipeline execution `pid` (None: it did not run, or nothing was
    tracked). A store that does not open raises UserError (check_tracking_store), for the caller to report."""
    check_tracking_store(project_root)
    mlflow.set_tracking_uri(tracking_uri(project_root))
    found = mlflow.get_experiment_by_name(experiment)
    if found is None:
        return None
    runs = mlflow.MlflowClient().search_runs(
        [found.experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
        filter_string=f"tags.`{PIPELINE_TAG}` = '{pid}' and tags.`{STAGE_TAG}` = '{stage}'")
    return dict(runs[0].data.tags) if runs else None
