"""The tracker of a stage with an MLflow run: every call tolerates a store that stops answering."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import mlflow
import requests
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from transferlab.core.redaction import scrub, scrubbed
from transferlab.tracking.tags import MODEL_URI_TAG
from transferlab.tracking.tracker import Tracker

log = logging.getLogger("transferlab.tracking")
TRACKING_ERRORS = (MlflowException, requests.RequestException, ConnectionError, TimeoutError)
BATCH = 1000  # MLflow's limit of metrics per log_batch


def _metric(name: str, value: float, step: int = 0) -> Metric:
    return Metric(name, float(value), int(time.time() * 1000), step)


def is_unavailable(exc: BaseException) -> bool:
    """A server or store that stopped answering, as opposed to a request our code got wrong (a bug)."""
    if not isinstance(exc, MlflowException):
        return True
    return exc.error_code in ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE") or "API request to" in exc.message


class MlflowTracker(Tracker):
    """Logs to the stage's active MLflow run (`run_id`) and headlines to its pipeline's run."""

    def __init__(self, run_id: str, pipeline_run: str, code: Mapping[str, str]):
        self.run_id, self.pipeline_run, self.code = run_id, pipeline_run, dict(code)
        self._lost: str | None = None  # why tracking stopped for the rest of this stage, once a call failed

    @property
    def active(self) -> bool:
        return self._lost is None

    @property
    def lost(self) -> bool:
        return self._lost is not None

    @contextlib.contextmanager
    def tolerant(self, action: str) -> Iterator[None]:
        """Run one tracking call; if the tracking server is gone, warn once and skip every later call of the stage.

        The stage's outputs are still written and recorded by DVC: losing the MLflow server must not cost the work."""
        try:
            yield
        except TRACKING_ERRORS as exc:
            if not is_unavailable(exc):
                raise
            if self._lost is None:
                reason = scrub(str(exc).splitlines()[0] if str(exc) else type(exc).__name__)[:300]
                log.warning("MLflow stopped answering while %s (%s); the stage's outputs are complete, its MLflow "
                            "run is not: rerun the stage with `dvc repro -f <stage>` once the server is back",
                            action, reason)
            self._lost = action

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self.active:
            with self.tolerant("setting tags"):
                mlflow.set_tags(scrubbed(tags))

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        if self.active and metrics:
            with self.tolerant("logging metrics"):
                mlflow.log_metrics(dict(metrics))

    def headline(self, metrics: Mapping[str, float | None]) -> None:
        figures = [_metric(name, value) for name, value in metrics.items() if value is not None]
        if self.active and figures:
            with self.tolerant("logging to the pipeline run"):
                mlflow.MlflowClient().log_batch(self.pipeline_run, metrics=figures)

    def log_history(self, history: Mapping[str, list[float]]) -> None:
        metrics = [_metric(f"epoch_{name}", value, epoch)
                   for name, values in history.items() for epoch, value in enumerate(values, start=1)]
        if not self.active:
            return
        with self.tolerant("logging the epoch history"):
            for start in range(0, len(metrics), BATCH):
                mlflow.MlflowClient().log_batch(self.run_id, metrics=metrics[start:start + BATCH])

    def epoch_callbacks(self) -> tuple:
        """Each epoch's metrics as it ends (`epoch_<name>`, step = epoch number), so a run's curves grow in MLflow's
        UI during training; the same names and steps as `log_history`."""
        import keras  # only stages that train need Keras; the others start faster without it

        tracker = self

        class LiveEpochs(keras.callbacks.Callback):
            def on_epoch_end(self, epoch, logs=None):
                if tracker.active and logs:
                    with tracker.tolerant("logging an epoch"):
                        mlflow.log_metrics({f"epoch_{k}": float(v) for k, v in logs.items()}, step=epoch + 1)

        return (LiveEpochs(),)

    def log_artifacts(self, path: Path, artifact_path: str | None = None) -> None:
        if self.active:
            with self.tolerant("uploading artifacts"):
                if Path(path).is_dir():
                    mlflow.log_artifacts(str(path), artifact_path)
                else:
                    mlflow.log_artifact(str(path), artifact_path)

    def log_keras_model(self, model: Any, name: str, example_input: Any) -> str | None:
        """With the mlflow.keras flavour and an inferred signature; returns the model URI (models:/<id>)."""
        if not self.active:
            return None
        import keras  # see epoch_callbacks
        import tensorflow as tf

        signature = infer_signature(example_input, model.predict(example_input, verbose=0))
        # pinned to this environment; MLflow's own inference would load the model again in a subprocess
        requirements = [f"tensorflow=={tf.__version__}", f"keras=={keras.__version__}"]
        with self.tolerant(f"logging the {name} model"):
            info = mlflow.keras.log_model(model, name=name, signature=signature, pip_requirements=requirements)
            mlflow.set_tag(MODEL_URI_TAG.format(name=name), info.model_uri)
            return info.model_uri
        return None
