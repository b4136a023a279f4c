"""Predict: top-k classes for image files, from a local .keras model or a registered `models:/` URI."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transferlab.core.endpoints import require_server
from transferlab.core.errors import UserError
from transferlab.core.redaction import scrub
from transferlab.core.params import CLASSES_FILE, MODEL_FILE
from transferlab.modeling.assembly import load_keras  # also registers the pixel-scaling layer that models hold
from transferlab.modeling.outputs import class_probabilities
from transferlab.data.images import UndecodableImage, decode_rgb, pixel_limit, resize


@dataclass
class LoadedModel:
    model: Any
    classes: list[str]
    image_size: int


def load_model(reference: str) -> LoadedModel:
    """A path to model.keras (classes.json beside it) or models:/<name>@<alias> / models:/<name>/<version>."""
    if reference.startswith("models:/"):
        return _load_registered(reference)
    path = Path(reference)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise UserError(f"--model: no model file at {reference}")
    model = load_keras(path)
    classes_file = path.parent / CLASSES_FILE
    classes = [c["name"] for c in json.loads(classes_file.read_text())] if classes_file.is_file() else None
    return LoadedModel(model, _checked(classes, model, str(classes_file)), model.input_shape[1])


def _num_classes(model) -> int:
    return max(2, model.output_shape[-1])


def _checked(classes: list[str] | None, model, source: str) -> list[str]:
    """The class names, if they fit the model's output; a model and names that disagree would mislabel silently."""
    if classes is None:
        return [str(i) for i in range(_num_classes(model))]
    if len(classes) != _num_classes(model):
        raise UserError(f"{source}: names {len(classes)} classes but the model predicts {_num_classes(model)}; "
                        f"the model and its class list do not belong together")
    return classes


def _load_registered(uri: str) -> LoadedModel:
    import mlflow
    from mlflow.exceptions import MlflowException

    # seconds, not MLflow's minutes of retries, when the server is down
    require_server(mlflow.get_tracking_uri(), otherwise="give --model a local model.keras")
    name, _, selector = uri.removeprefix("models:/").partition("@")
    client = mlflow.MlflowClient()
    try:
        if selector:
            version = client.get_model_version_by_alias(name, selector)
        else:
            name, _, number = name.partition("/")
            version = client.get_model_version(name, number)
        model = mlflow.keras.load_model(uri)
    except MlflowException as exc:
        raise UserError(f"--model: cannot load {uri}: {scrub(str(exc).splitlines()[0])}") from None
    classes = _checked(json.loads(version.tags.get("classes", "null")), model, f"{uri} (tag 'classes')")
    return LoadedModel(model, classes, model.input_shape[1])


def predict_files(loaded: LoadedModel, paths: list[Path], top_k: int) -> list[dict[str, Any]]:
    """One result per file: its top-k classes, or the reason it could not be read."""
    results = []
    for path in paths:
        try:
            data = Path(path).read_bytes()
            image = resize(decode_rgb(data, 2 * loaded.image_size, pixel_limit(loaded.image_size)), loaded.image_size)
        except (OSError, UndecodableImage) as exc:
            results.append({"file": str(path), "error": str(exc)})
            continue
        batch = np.asarray(image, dtype=np.float32)[None]
        probabilities = class_probabilities(loaded.model.predict(batch, verbose=0))[0]
        order = np.argsort(-probabilities)[:top_k]
        results.append({"file": str(path), "top": [{"class": loaded.classes[i], "probability": float(probabilities[i])}
                                                   for i in order]})
    return results
