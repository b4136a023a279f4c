"""Prefect flow: one task per DVC stage, run in dependency order with `dvc repro --single-item`.

DVC keeps the caching (an unchanged stage is skipped, and the task says so); Prefect adds logs, retries,
schedules and artifacts. Ephemeral run: `python -m flows.pipeline`. Scheduled: see prefect.yaml / `make serve`.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from filelock import FileLock
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from transferlab.core.endpoints import redact, unreachable_reason
from transferlab.core.interrupts import stop_on_interrupts
from transferlab.core.redaction import redacted_output
from flows.orchestration import (CACHED, PARAMS_ERROR_EXIT, RAN, StageResult, failure_message,
                                 flat_metrics, outcomes, override_arguments, pipeline_stages, run_streaming,
                                 stage_exit_code, summary_markdown)
from transferlab.core.params_loader import load_params
from transferlab.execution_record import experiment_name, record_execution
from transferlab.tracking.tags import PIPELINE_ID_ENV
from transferlab.workspace import tool_env

SUMMARY_KEY, METRICS_KEY = "transferlab-summary", "transferlab-metrics"
LOCK_FILE = ".dvc/tmp/transferlab-flow.lock"


class ConfigurationError(RuntimeError):
    """A stage refused its params (exit 2): the flow fails at once instead of retrying."""


def _env(pipeline_id: str) -> dict[str, str]:
    return tool_env({PIPELINE_ID_ENV: pipeline_id})


def _failure(stage: str, output: str) -> RuntimeError:
    kind = ConfigurationError if stage_exit_code(output) == PARAMS_ERROR_EXIT else RuntimeError
    return kind(failure_message(stage, output))


def _worth_retrying(task, task_run, state) -> bool:
    """Retries are for what can pass on its own (a network hiccup), never for a wrong configuration."""
    return not isinstance(state.data, ConfigurationError)


@task(name="dvc-stage", task_run_name="{stage}")
def run_stage(stage: str, workspace: str, pipeline_id: str) -> StageResult:
    """`dvc repro --single-item <stage>`, its output streamed into the Prefect log."""
    logger = get_run_logger()
    started = time.monotonic()
    code, output = run_streaming(["dvc", "repro", "--single-item", stage], Path(workspace), logger.info,
                                 _env(pipeline_id))
    if code != 0:
        raise _failure(stage, output)
    outcome = outcomes(output, [stage]).get(stage, CACHED)
    logger.info("stage %s: %s", stage, "ran" if outcome == RAN else "cached by DVC, skipped")
    return StageResult(stage, outcome, time.monotonic() - started)


@task(name="dvc-exp-run")
def run_experiment(workspace: str, overrides: dict[str, Any], pipeline_id: str, stages: list[str]
                   ) -> tuple[list[StageResult], str | None]:
    """With overrides, the whole pipeline runs as one DVC experiment, so the configuration is recorded."""
    logger = get_run_logger()
    command = ["dvc", "exp", "run", *override_arguments(overrides)]
    code, output = run_streaming(command, Path(workspace), logger.info, _env(pipeline_id))
    if code != 0:
        raise _failure("dvc exp run", output)
    found = outcomes(output, stages)
    return [StageResult(stage, found.get(stage, CACHED), None) for stage in stages], experiment_name(output)


def _registry_note(workspace: Path, pipeline_id: str) -> tuple[str, str]:
    """The MLflow parent run of this flow run and the champion decision its evaluate run recorded."""
    import mlflow

    from transferlab.tracking.store import tracking_uri
    from transferlab.tracking.tags import PIPELINE_TAG

    params = load_params(workspace / "params.yaml")
    mlflow.set_tracking_uri(tracking_uri(workspace))
    runs = mlflow.search_runs(experiment_names=[params.mlflow.experiment],
                              filter_string=f"tags.`{PIPELINE_TAG}` = '{pipeline_id}'")
    if runs.empty:
        return "No MLflow runs: every stage was cached by DVC.", "No evaluation ran."
    parent = runs[runs["tags.mlflow.parentRunId"].isna()]
    where = redact(mlflow.get_tracking_uri())  # an artifact is shared: never a password in it
    note = f"Parent run `{parent['run_id'].iloc[0]}` at `{where}`" if len(parent) else ""
    note += f" (`mlflow ui --backend-store-uri {where}`)"
    evaluate = runs[runs["tags.mlflow.runName"] == "evaluate"]
    if evaluate.empty or "tags.registry.alias" not in evaluate:
        return note, "No evaluation ran in this flow run."
    row = evaluate.iloc[0]
    return note, f"Version {row['tags.registry.version']} -> `{row['tags.registry.alias']}`: {row['tags.registry.reason']}"


@flow(name="transferlab-pipeline", log_prints=True)
def pipeline(workspace: str = ".", overrides: dict[str, Any] | None = None, lock_timeout_s: float = 6 * 3600) -> dict:
    """Run the DVC pipeline of `workspace`; `overrides` (dotted params) run as a recorded DVC experiment."""
    logger = get_run_logger()
    root = Path(workspace).resolve()
    pipeline_id = f"prefect-{flow_run.get_id() or os.getpid()}"
    stages = pipeline_stages(root)
    # DVC refuses a second repro in the same workspace; wait for the first instead of failing.
    with FileLock(str(root / LOCK_FILE), timeout=lock_timeout_s):
        logger.info("workspace %s locked for this flow run", root)
        experiment_ran = None
        if overrides:
            results, experiment_ran = run_experiment(str(root), overrides, pipeline_id, stages)
        else:
            results = []
            for stage in stages:
                runner = run_stage.with_options(retries=3, retry_delay_seconds=[10, 30, 90],
                                                retry_condition_fn=_worth_retrying) if stage == "download" else run_stage
                results.append(runner(stage, str(root), pipeline_id))
    params = load_params(root / "params.yaml")
    files = {f"train_head@{name}": params.paths.head_metrics_of(name) for name in params.compare.backbones}
    files |= {"fine_tune": params.paths.fine_tune_metrics, "evaluate": params.paths.evaluate_metrics}
    metrics = flat_metrics(root, files)
    headline = flat_metrics(root, {"": params.paths.summary_metrics})  # defined once: evaluation/headline.py
    try:  # the stages DVC skipped, on the pipeline run as restored
        record_execution(root, pipeline_id, experiment_ran)
    except Exception as exc:  # noqa: BLE001 - the stages are done and their outputs saved; only the record is short
        logger.warning("the stages DVC skipped were not recorded in MLflow (%s: %s)", type(exc).__name__, exc)
    mlflow_note, registry_note = _registry_note(root, pipeline_id)
    experiment = ", ".join(f"{k}={v}" for k, v in sorted((overrides or {}).items())) or None
    create_markdown_artifact(summary_markdown(results, headline, metrics, mlflow_note, registry_note, experiment),
                             key=SUMMARY_KEY, description="stages run or cached, metrics, MLflow run, champion")
    create_table_artifact([{"metric": k, "value": v} for k, v in metrics.items()], key=METRICS_KEY,
                          description="pipeline metrics")
    return {"stages": {r.stage: r.outcome for r in results}, "metrics": metrics}


def prefect_api_problem() -> str | None:
    """One line when PREFECT_API_URL names a server that does not answer (Prefect would print three tracebacks)."""
    api = os.environ.get("PREFECT_API_URL")
    reason = unreachable_reason(api) if api else None
    if reason is None:
        return None
    return (f"PREFECT_API_URL {redact(api)}: no Prefect server answers ({reason}); start one (`make serve`) or "
            f"unset PREFECT_API_URL to run the flow on a temporary local server")


if __name__ == "__main__":
    stop_on_interrupts()  # Ctrl-C and SIGTERM whatever this process inherited
    # The ephemeral server takes 10-20 s to start on a small machine; Prefect's default wait is tight.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    with redacted_output():
        if problem := prefect_api_problem():
            print(f"flows.pipeline: error: {problem}", file=sys.stderr)
            sys.exit(1)
        result = pipeline(workspace=sys.argv[1] if len(sys.argv) > 1 else ".")
        print(result["stages"])
