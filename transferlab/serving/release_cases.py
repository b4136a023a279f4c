"""The test images a release posts to the served champion, with the answers evaluate gave for them: logged to the
registering run, so that a release needs nothing but the registry (not the workspace that trained the model)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from transferlab.core.errors import UserError
from transferlab.tracking.tracker import Tracker

ARTIFACT = "release_cases"
INDEX = "cases.json"


@dataclass(frozen=True)
class Case:
    image: bytes
    probabilities: dict[str, float]  # what evaluate's model gave each class for this image


def log_cases(tracker: Tracker, encoded: Sequence[bytes], probabilities, classes: Sequence[str]) -> None:
    """`encoded` test images (as stored: JPEG) and evaluate's probabilities for them, row for row."""
    if not tracker.active or not encoded:
        return
    with tempfile.TemporaryDirectory() as folder:
        index = []
        for number, (image, row) in enumerate(zip(encoded, probabilities)):
            name = f"{number:04d}.jpg"
            Path(folder, name).write_bytes(image)
            index.append({"file": name, "probabilities": dict(zip(classes, map(float, row)))})
        Path(folder, INDEX).write_text(json.dumps({"cases": index}, ensure_ascii=False), encoding="utf-8")
        tracker.log_artifacts(Path(folder), ARTIFACT)


def load_cases(client, run_id: str, folder: Path) -> list[Case]:
    """The cases logged to `run_id`, downloaded into `folder`; [] for a model registered before cases existed."""
    from mlflow.exceptions import MlflowException

    try:
        local = Path(client.download_artifacts(run_id, ARTIFACT, str(folder)))
    except (MlflowException, OSError):
        return []
    try:
        index = json.loads((local / INDEX).read_text(encoding="utf-8"))["cases"]
        return [Case((local / entry["file"]).read_bytes(), dict(entry["probabilities"])) for entry in index]
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged artifact is a failed check, not a crash
        raise UserError(f"run {run_id}: {ARTIFACT}/{INDEX} is unreadable ({type(exc).__name__}: {exc})") from None
