"""What one pipeline execution did not run itself. DVC skips a stage whose inputs did not change (or restores its
outputs from its run-cache), so no stage process starts and nothing is tracked. After the execution, each such stage
gets a run on the pipeline's run marked as restored, the pipeline run gets the headline its outputs hold, and a
registered version whose model file this execution holds follows it (its pipeline run, params and experiment): the
lineage of a resumed experiment names the experiment that finished, not the attempt that failed."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import mlflow

from transferlab.core.digest import file_sha256
from transferlab.tracking.runs import experiment_id_for, find_pipeline_run
from transferlab.tracking.store import check_tracking_store, local_artifact_root, tracking_uri
from transferlab.tracking.tags import PARENT_TAG, PIPELINE_ROLE, PIPELINE_TAG, ROLE_TAG, STAGE_TAG

log = logging.getLogger("transferlab.tracking")

RESTORED_TAG = "transferlab.restored"
MODEL_MD5_TAG = "model.md5"  # dvc.lock's md5 of the registered model's folder: the same bytes, whoever made them
FIRST_RUN_TAG = "lineage.registered_in"  # the pipeline run that registered the version, when another adopted it
RESTORED_NOTE = ("Not run in this pipeline execution: DVC found its outputs up to date (or restored them from its "
                 "run-cache), made by an earlier run with the same inputs.")


def complete_pipeline_run(project_root: Path, experiment: str, pid: str, stages: Sequence[str],
                          headline: Mapping[str, float | None], model: tuple[str, str] | None = None,
                          dvc_experiment: str | None = None) -> list[str]:
    """Record the stages of execution `pid` that did not run as restored; returns their names. `model`: the
    registered model's name and dvc.lock md5 of its folder, for the version this execution adopts."""
    check_tracking_store(project_root)
    uri = tracking_uri(project_root)
    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    experiment_id = experiment_id_for(experiment, local_artifact_root(uri))  # as a stage would make it
    parent = find_pipeline_run(client, experiment_id, pid) or client.create_run(  # none when no stage ran
        experiment_id, run_name=f"pipeline {pid}", tags={PIPELINE_TAG: pid, ROLE_TAG: PIPELINE_ROLE})
    children = client.search_runs([experiment_id], f"tags.`{PARENT_TAG}` = '{parent.info.run_id}'")
    ran = {run.data.tags.get(STAGE_TAG) for run in children}
    restored = [stage for stage in stages if stage not in ran]
    for stage in restored:
        run = client.create_run(experiment_id, run_name=stage, tags={
            PARENT_TAG: parent.info.run_id, PIPELINE_TAG: pid, STAGE_TAG: stage, RESTORED_TAG: "true",
            "mlflow.note.content": RESTORED_NOTE})
        client.set_terminated(run.info.run_id, "FINISHED")
    figures = {name: float(value) for name, value in headline.items() if value is not None}
    missing = {name: value for name, value in figures.items() if name not in parent.data.metrics}
    for name, value in missing.items():
        client.log_metric(parent.info.run_id, name, value)
    client.set_terminated(parent.info.run_id, "FINISHED")  # the execution succeeded, whatever an attempt left
    if model:
        adopt_version(client, *model, parent.info.run_id, project_root / "params.yaml", dvc_experiment)
    return restored


def adopt_version(client, name: str, model_md5: str, pipeline_run: str, params_file: Path,
                  dvc_experiment: str | None) -> list[str]:
    """Point the lineage tags of the versions holding this model file at this execution when the pipeline run
    that registered them did not finish (a failed or killed attempt); that run stays named in
    `lineage.registered_in`. Returns the versions adopted."""
    try:
        versions = client.search_model_versions(f"name = '{name}' and tags.`{MODEL_MD5_TAG}` = '{model_md5}'")
    except mlflow.exceptions.MlflowException:  # no such registered model yet
        return []
    adopted = []
    for version in versions:
        if _finished(client, version.tags.get("pipeline.run_id")):
            continue  # made by this execution, or by an earlier one that finished: its lineage stands
        tags = {"pipeline.run_id": pipeline_run, "params.sha256": file_sha256(params_file),
                FIRST_RUN_TAG: version.tags.get(FIRST_RUN_TAG) or version.tags.get("pipeline.run_id", "")}
        for key, value in tags.items():
            client.set_model_version_tag(name, version.version, key, value)
        if dvc_experiment:
            client.set_model_version_tag(name, version.version, "dvc.experiment", dvc_experiment)
        elif "dvc.experiment" in version.tags:  # made in an experiment, now held by a plain run of the workspace
            client.delete_model_version_tag(name, version.version, "dvc.experiment")
        log.info("registered model %s version %s: its model is this execution's (restored by DVC); lineage now "
                 "names pipeline run %s", name, version.version, pipeline_run)
        adopted.append(str(version.version))
    return adopted


def _finished(client, run_id: str | None) -> bool:
    if not run_id:
        return False
    try:
        return client.get_run(run_id).info.status == "FINISHED"
    except mlflow.exceptions.MlflowException:  # deleted since
        return False
