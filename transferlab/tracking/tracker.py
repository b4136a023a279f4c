"""What a stage records, as one object passed in its `StageContext`: this null tracker under `--no-track` (and
on a cluster's non-chief workers), `MlflowTracker` when the stage has an MLflow run. Stages call it
unconditionally; it knows no stage's metric names."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any


class Tracker:
    """Records nothing: every call is accepted and dropped."""

    pipeline_run: str | None = None  # the MLflow run of the pipeline execution the stage belongs to
    code: Mapping[str, str] = {}  # the git commit tags taken when the stage's run started

    @property
    def active(self) -> bool:
        """Whether calls are recorded now (false untracked, and once the store stopped answering)."""
        return False

    @property
    def lost(self) -> bool:
        """Whether tracking was given up earlier in this stage."""
        return False

    @contextlib.contextmanager
    def tolerant(self, action: str) -> Iterator[None]:
        """Around a tracking call of the caller's own: see MlflowTracker."""
        yield

    def set_tags(self, tags: Mapping[str, str]) -> None:
        return None

    def log_metrics(self, metrics: Mapping[str, float]) -> None:
        return None

    def headline(self, metrics: Mapping[str, float | None]) -> None:
        """The stage's figures that the pipeline run shows (name -> value), declared by the stage itself."""
        return None

    def log_history(self, history: Mapping[str, list[float]]) -> None:
        """Per-epoch metrics, one step per epoch (epoch 1 is step 1)."""
        return None

    def epoch_callbacks(self) -> tuple:
        """Keras callbacks that record each epoch as it ends."""
        return ()

    def log_artifacts(self, path: Path, artifact_path: str | None = None) -> None:
        return None

    def log_keras_model(self, model: Any, name: str, example_input: Any) -> str | None:
        """Log a Keras model with its signature; its URI (models:/<id>), or None when nothing was logged."""
        return None


NULL_TRACKER = Tracker()
