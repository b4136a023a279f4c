"""MLflow tracking: one parent run per pipeline execution, one nested run per stage.

Stages run as separate processes under `dvc repro`, so the parent is found by a pipeline id:
`TRANSFERLAB_PIPELINE_ID` when a flow sets it, else the id of the `dvc` process that launched
the stage (all stages of one `dvc repro` share it), else a fresh id for a stage run by hand.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import socket
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from transferlab.core.atomic import pid_alive
from transferlab.core.endpoints import redact, require_server
from transferlab.core.errors import UserError
from transferlab.core.redaction import scrub

log = logging.getLogger("transferlab.tracking")

PIPELINE_ID_ENV = "TRANSFERLAB_PIPELINE_ID"
PIPELINE_TAG = "transferlab.pipeline_id"
STAGE_TAG = "transferlab.stage"
PROCESS_TAG = "transferlab.process"  # host:pid:start time of the process that owns a RUNNING run
PARENT_TAG = "mlflow.parentRunId"
# What MLflow's tracking and registry stores accept (a bare path is a local file store).
TRACKING_SCHEMES = {"", "file", "http", "https", "sqlite", "postgresql", "mysql", "mssql", "databricks",
                    "databricks-uc", "uc"}


def tracking_home(project_root: Path) -> Path:
    """Where the default backend lives. A queued or --temp `dvc exp run` works in a throw-away copy of the
    repo; DVC then sets DVC_ROOT to the repo itself, where the runs belong (dvclive reads it the same way)."""
    return Path(os.environ.get("DVC_ROOT") or project_root).resolve()


def tracking_uri(project_root: Path) -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{tracking_home(project_root) / 'mlflow.db'}"


def local_artifact_root(uri: str) -> Path | None:
    """Where a local sqlite backend keeps its artifacts: beside the database, never in the current directory
    (MLflow's own default, ./mlruns). A tracking server decides its own (None)."""
    prefix = "sqlite:///"
    return Path(uri.removeprefix(prefix)).resolve().parent / "mlartifacts" if uri.startswith(prefix) else None


def _proc_stat(pid: int) -> tuple[int, str] | None:
    """(parent pid, start time) of a process from /proc; None where /proc is absent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[1]), fields[19]


def _dvc_ancestor_id() -> str | None:
    pid = os.getppid()
    for _ in range(8):
        stat = _proc_stat(pid)
        if stat is None or pid <= 1:
            return None
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            return None
        if any(Path(arg.decode(errors="replace")).name == "dvc" or arg == b"dvc" for arg in argv[:3]):
            return f"dvc-{pid}-{stat[1]}"
        pid = stat[0]
    return None


def shared_pipeline_id() -> str | None:
    """The id of the pipeline execution this stage belongs to (a flow's, or its `dvc` process'); None by hand."""
    return os.environ.get(PIPELINE_ID_ENV) or _dvc_ancestor_id()


def pipeline_id() -> str:
    return shared_pipeline_id() or f"manual-{uuid.uuid4().hex[:12]}"


EXPERIMENT_KIND_TAG, TRAINING = "mlflow.experimentKind", "custom_model_development"
ROLE_TAG, PIPELINE_ROLE = "transferlab.role", "pipeline"
GIT_COMMIT_TAG, LOCK_TAG = "mlflow.source.git.commit", "dvc.lock.sha256"


def _experiment_id(mlflow, name: str, artifact_root: Path | None) -> str:
    """The experiment, tagged as model training so MLflow 3's UI opens on its runs, not on the GenAI overview."""
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is None:
        location = artifact_root.resolve().as_uri() if artifact_root else None
        experiment_id = mlflow.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: TRAINING})
        return experiment_id
    if experiment.tags.get(EXPERIMENT_KIND_TAG) != TRAINING:
        mlflow.MlflowClient().set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, TRAINING)
    return experiment.experiment_id


def _parent_run_id(client, experiment_id: str, pid: str, name: str, tags: Mapping[str, str]) -> str:
    """The pipeline's run, created by its first stage and RUNNING while any of its stages runs.

    It starts when the first stage starts and each stage that ends sets its end and status, so it spans the
    pipeline and ends FAILED when a stage failed (a later stage that succeeds, a retry, sets it back)."""
    found = client.search_runs([experiment_id], max_results=1, order_by=["attributes.start_time ASC"],
                               filter_string=f"tags.`{PIPELINE_TAG}` = '{pid}' and tags.`{ROLE_TAG}` = '{PIPELINE_ROLE}'")
    if found:
        parent = found[0].info.run_id
        client.update_run(parent, status="RUNNING")
        client.set_tag(parent, PROCESS_TAG, process_identity())  # a SIGKILLed stage leaves it to the sweep
        return parent
    run = client.create_run(experiment_id, run_name=name,
                            tags={PIPELINE_TAG: pid, ROLE_TAG: PIPELINE_ROLE, PROCESS_TAG: process_identity(), **tags})
    return run.info.run_id


def _close_parent(client, parent: str, status: str, project_root: Path) -> None:
    """What the pipeline run shows after each stage: its status, its end, the dvc.lock the stage left."""
    lock = project_root / "dvc.lock"
    if lock.is_file():
        from transferlab.core.digest import file_sha256

        client.set_tag(parent, LOCK_TAG, file_sha256(lock))
    client.set_terminated(parent, status)


DVC_BOOKKEEPING = ("dvc.lock", "**/.gitignore")  # rewritten by every `dvc repro` (DVC lists its outputs in .gitignore)


def git_commit(project_root: Path, generated: Sequence[str] = ()) -> dict[str, str]:
    """The commit the code came from, and whether the tree had changes (then the commit alone does not say).

    Changes to DVC's bookkeeping and to `generated` (glob patterns of tracked outputs the pipeline rewrites:
    metrics, plots) are not edits to the code or params, so they do not make the tree dirty."""
    import subprocess

    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=project_root, capture_output=True, text=True, timeout=10)
        return result.stdout.strip() if result.returncode == 0 else ""

    try:
        commit = git("rev-parse", "HEAD")
        excluded = [f":(exclude,glob){pattern}" for pattern in (*DVC_BOOKKEEPING, *generated)]
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", ".", *excluded)) if commit else False
    except (OSError, subprocess.TimeoutExpired):  # no git on this machine: the run simply has no commit tag
        return {}
    return {GIT_COMMIT_TAG: commit, "git.dirty": str(dirty).lower()} if commit else {}


def headline_metrics(stage: str, metrics: Mapping[str, float], primary_backbone: str) -> dict[str, float]:
    """The few figures a pipeline run shows: the fine-tuned backbone's head on validation, the fine-tuned model
    on test, and robust accuracy at the largest epsilon of the sweep."""
    if stage in ("train_head", f"train_head@{primary_backbone}") and metrics.get("val_accuracy") is not None:
        return {"head_val_accuracy": metrics["val_accuracy"]}
    if stage == "evaluate" and "fine_tuned_accuracy" in metrics:
        return {"test_accuracy": metrics["fine_tuned_accuracy"]}
    robust = {float(key.removeprefix("robust_accuracy_eps_")): value for key, value in metrics.items()
              if key.startswith("robust_accuracy_eps_")}
    if stage == "adversarial_report" and robust:
        return {"robust_accuracy_max_epsilon": robust[max(robust)]}
    return {}


def pipeline_name(source: str, backbone: str) -> str:
    """What the pipeline run is called: the DVC experiment's name, else when, on what, with which backbone."""
    import datetime

    if os.environ.get("DVC_EXP_NAME"):
        return f"{os.environ['DVC_EXP_NAME']} ({source}, {backbone})"
    return f"{datetime.datetime.now():%Y-%m-%d %H:%M} {source} {backbone}"


def code_identity() -> dict[str, str]:
    """The tracked stage's git commit tags (empty outside a git checkout), computed once when its run started."""
    return dict(_state.code)


def pipeline_run_id() -> str | None:
    """The MLflow run of the pipeline execution the tracked stage belongs to."""
    return _state.parent


def log_to_pipeline(metrics: Mapping[str, float]) -> None:
    """Headline figures onto the pipeline's run, beside the stage's own."""
    if (mlflow := _active()) is not None and metrics and _state.parent:
        with tolerant("logging to the pipeline run"):
            mlflow.MlflowClient().log_batch(_state.parent, metrics=[_metric(k, v) for k, v in metrics.items()])


def _metric(name: str, value: float, step: int = 0):
    import time

    from mlflow.entities import Metric

    return Metric(name, float(value), int(time.time() * 1000), step)


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
              pipeline_name: str = "", generated: Sequence[str] = ()) -> Iterator[Any]:
    """Start the stage's nested run under its pipeline's parent; yields the active mlflow run.
    `generated`: the tracked outputs the pipeline rewrites (see `git_commit`).

    A tracking server that does not answer stops the stage here, in seconds and before any work, rather
    than after the work, when results could no longer be recorded (MLflow itself retries for minutes).
    One that stops answering later costs the run, not the stage's outputs: see `tolerant`."""
    uri = tracking_uri(project_root)
    check_tracking_store(project_root)
    import mlflow

    _state.lost = None
    mlflow.set_tracking_uri(uri)  # note: this also sets MLFLOW_TRACKING_URI
    experiment_id = _experiment_id(mlflow, experiment, local_artifact_root(uri))
    client = mlflow.MlflowClient()
    end_abandoned_runs(client, experiment_id)
    pid = pipeline_id()
    code = _state.code = git_commit(project_root, generated)
    parent = _parent_run_id(client, experiment_id, pid, pipeline_name or f"pipeline {pid}",
                            {**code, **environment_tags()})
    _state.parent = parent
    tags = {PARENT_TAG: parent, PIPELINE_TAG: pid, STAGE_TAG: stage, PROCESS_TAG: process_identity(),
            **code, **environment_tags()}
    run = mlflow.start_run(experiment_id=experiment_id, run_name=stage, tags=tags)
    status = "FAILED"
    try:
        mlflow.log_params(flatten(params))
        yield run
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        with tolerant("ending the run"):
            mlflow.end_run(status)  # pops the active run first, so a dead server leaves no run active here
        with tolerant("ending the pipeline run"):
            _close_parent(client, parent, status, project_root)


def check_tracking_store(project_root: Path) -> None:
    """The store the stages will log to opens: a sqlite file is a database, a server answers (seconds, no MLflow)."""
    uri = tracking_uri(project_root)
    scheme = uri.split(":", 1)[0] if ":" in uri else ""
    if scheme not in TRACKING_SCHEMES:
        raise UserError(f"MLFLOW_TRACKING_URI {redact(uri)}: MLflow cannot track into a {scheme!r} URI; use "
                        f"http(s)://host:port for a server, sqlite:///path.db, or unset it for sqlite:///mlflow.db")
    if not uri.startswith("sqlite:///"):
        require_server(uri)
        return
    import sqlite3

    database = Path(uri.removeprefix("sqlite:///"))
    if not database.exists():
        return  # MLflow creates it on the first run
    try:
        with contextlib.closing(sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)) as connection:
            connection.execute("SELECT name FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.DatabaseError as exc:
        raise UserError(f"{database}: the MLflow tracking database cannot be read ({exc}); restore it from a backup, "
                        f"move it aside to start a new one, or set MLFLOW_TRACKING_URI") from None


class _State:
    lost: str | None = None  # why tracking stopped for the rest of this stage, once a call failed
    parent: str | None = None  # the pipeline run of the stage being tracked
    code: dict[str, str] = {}  # its git commit tags, as `git_commit` gave them when the run started


_state = _State()


def _tracking_errors() -> tuple[type[BaseException], ...]:
    import requests
    from mlflow.exceptions import MlflowException

    return MlflowException, requests.RequestException, ConnectionError, TimeoutError


def _is_unavailable(exc: BaseException) -> bool:
    """A server or store that stopped answering, as opposed to a request our code got wrong (a bug)."""
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return True
    return exc.error_code in ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE") or "API request to" in exc.message


@contextlib.contextmanager
def tolerant(action: str) -> Iterator[None]:
    """Run one tracking call; if the tracking server is gone, warn once and skip every later call of the stage.

    The stage's outputs are still written and recorded by DVC: losing the MLflow server must not cost the work."""
    try:
        yield
    except _tracking_errors() as exc:
        if not _is_unavailable(exc):
            raise
        if _state.lost is None:
            reason = scrub(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)[:300]
            log.warning("MLflow stopped answering while %s (%s); the stage's outputs are complete, its MLflow run "
                        "is not: rerun the stage with `dvc repro -f <stage>` once the server is back", action, reason)
        _state.lost = action


def lost() -> bool:
    """Whether tracking was given up earlier in this stage."""
    return _state.lost is not None


def process_identity(pid: int | None = None) -> str:
    pid = pid or os.getpid()
    stat = _proc_stat(pid)
    return f"{socket.gethostname()}:{pid}:{stat[1] if stat else ''}"


def _is_alive(identity: str) -> bool:
    host, _, rest = identity.partition(":")
    pid_text, _, started = rest.partition(":")
    if host != socket.gethostname() or not pid_text.isdigit():
        return True  # another machine's process: not ours to judge
    pid = int(pid_text)
    stat = _proc_stat(pid)
    if stat is not None:
        return not started or stat[1] == started  # same pid, same start time: the same process
    return pid_alive(pid)  # no /proc (macOS): the pid alone, which the OS may have reused; then the run stays RUNNING


def end_abandoned_runs(client, experiment_id: str) -> list[str]:
    """Mark KILLED the RUNNING stage runs whose process on this host is gone (SIGKILL, power loss)."""
    running = client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'", max_results=1000)
    ended = []
    for run in running:
        identity = run.data.tags.get(PROCESS_TAG)
        if identity and not _is_alive(identity):
            client.set_terminated(run.info.run_id, "KILLED")
            ended.append(run.info.run_id)
            log.info("MLflow run %s (%s) was left RUNNING by a process that no longer exists; marked KILLED",
                     run.info.run_id, run.data.tags.get(STAGE_TAG, "?"))
    return ended


def _active():
    """The active MLflow module when a stage run is being tracked, else None (--no-track, or tracking lost)."""
    import sys

    mlflow = sys.modules.get("mlflow")
    return mlflow if mlflow is not None and not lost() and mlflow.active_run() is not None else None


def tracking_active() -> bool:
    return _active() is not None


def set_tags(tags: Mapping[str, str]) -> None:
    if (mlflow := _active()) is not None:
        with tolerant("setting tags"):
            mlflow.set_tags(dict(tags))


def log_metrics(metrics: Mapping[str, float]) -> None:
    if (mlflow := _active()) is not None and metrics:
        with tolerant("logging metrics"):
            mlflow.log_metrics(dict(metrics))


def log_history(history: Mapping[str, list[float]]) -> None:
    """Per-epoch metrics, one step per epoch (epoch 1 is step 1)."""
    if (mlflow := _active()) is None:
        return
    metrics = [_metric(f"epoch_{name}", value, epoch)
               for name, values in history.items() for epoch, value in enumerate(values, start=1)]
    with tolerant("logging the epoch history"):
        for start in range(0, len(metrics), 1000):  # MLflow's limit per batch
            mlflow.MlflowClient().log_batch(mlflow.active_run().info.run_id, metrics=metrics[start:start + 1000])


def epoch_callback():
    """A Keras callback that logs each epoch's metrics as it ends (`epoch_<name>`, step = epoch number), so a
    run's curves grow in MLflow's UI during training; the same names and steps as `log_history`."""
    import keras

    class LiveEpochs(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if (mlflow := _active()) is not None and logs:
                with tolerant("logging an epoch"):
                    mlflow.log_metrics({f"epoch_{name}": float(value) for name, value in logs.items()}, step=epoch + 1)

    return LiveEpochs()


def log_artifacts(path: Path, artifact_path: str | None = None) -> None:
    if (mlflow := _active()) is not None:
        with tolerant("uploading artifacts"):
            if Path(path).is_dir():
                mlflow.log_artifacts(str(path), artifact_path)
            else:
                mlflow.log_artifact(str(path), artifact_path)


def log_keras_model(model: Any, name: str, example_input: Any) -> str | None:
    """Log with the mlflow.keras flavour and an inferred signature; returns the model URI (models:/<id>)."""
    if (mlflow := _active()) is None:
        return None
    from mlflow.models import infer_signature

    import keras
    import tensorflow as tf

    signature = infer_signature(example_input, model.predict(example_input, verbose=0))
    # pinned to this environment; MLflow's own inference would load the model again in a subprocess
    requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
    with tolerant(f"logging the {name} model"):
        info = mlflow.keras.log_model(model, name=name, signature=signature, pip_requirements=requirements)
        mlflow.set_tag(f"transferlab.model_uri.{name}", info.model_uri)
        return info.model_uri
    return None
