"""Predict: top-k classes for image files, folders and glob patterns, from a local .keras model or a registered
`models:/` URI; decoding runs in a tf.data pipeline beside the model, in batches."""

from __future__ import annotations

import glob
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from transferlab.core.endpoints import require_server
from transferlab.core.errors import UserError
from transferlab.core.file_kinds import not_opened, special_kind
from transferlab.core.progress import with_progress
from transferlab.core.redaction import scrub
from transferlab.core.paths import CLASSES_FILE, MODEL_FILE
from transferlab.core.wording import plural
from transferlab.modeling.outputs import class_probabilities
from transferlab.data.images import DEFAULT_MAX_SCALE, ResizeMode, UndecodableImage, model_pixels

BATCH_SIZE = 32


@dataclass
class LoadedModel:
    model: Any
    classes: list[str]
    image_size: int
    resize: ResizeMode = "squash"  # how the training images were resized (a registered model records it)
    max_image_scale: int = DEFAULT_MAX_SCALE  # data.max_image_scale (a registered image model records it)


def load_model(reference: str) -> LoadedModel:
    """A path to model.keras (classes.json beside it) or models:/<name>@<alias> / models:/<name>/<version>."""
    if reference.startswith("models:/"):
        return _load_registered(reference)
    path = Path(reference)
    if path.is_dir():
        path = path / MODEL_FILE
    if not path.is_file():
        raise UserError(f"--model: no model file at {reference}")
    # Keras starts only once there is a model to load: a wrong path is answered at once, not after 4 s of imports
    from transferlab.modeling.assembly import load_keras

    model = load_keras(path)
    classes_file = path.parent / CLASSES_FILE
    classes = [c["name"] for c in json.loads(classes_file.read_text(encoding="utf-8"))] if classes_file.is_file() else None
    return LoadedModel(model, _checked(classes, model, str(classes_file)), model.input_shape[1])


def _num_classes(model) -> int:
    return max(2, model.output_shape[-1])


def _checked(classes: list[str] | None, model, source: str) -> list[str]:
    """The class names, if they fit the model's output; a model and names that disagree would mislabel silently."""
    if classes is None:
        return [str(i) for i in range(_num_classes(model))]
    if len(classes) != _num_classes(model):
        raise UserError(f"{source}: names {plural(len(classes), 'class')} but the model predicts "
                        f"{_num_classes(model)}; "
                        f"the model and its class list do not belong together")
    return classes


def _load_registered(uri: str) -> LoadedModel:
    """The Keras model inside a registered image model (or a version registered as plain Keras, before it)."""
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
        if "keras" in mlflow.models.get_model_info(uri).flavors:
            model, resize, max_scale = mlflow.keras.load_model(uri), "squash", DEFAULT_MAX_SCALE
        else:
            served = mlflow.pyfunc.load_model(uri).unwrap_python_model()
            model, resize, max_scale = served.model, served.resize, served.max_image_scale
    except MlflowException as exc:
        raise UserError(f"--model: cannot load {uri}: {scrub(str(exc).splitlines()[0])}") from None
    classes = _checked(json.loads(version.tags.get("classes", "null")), model, f"{uri} (tag 'classes')")
    return LoadedModel(model, classes, model.input_shape[1], resize, max_scale)


def image_suffixes() -> set[str]:
    """File name endings Pillow reads: what a folder walk picks up (a file named on the command line is always read)."""
    from PIL import Image

    return {suffix.lower() for suffix in Image.registered_extensions()}


def expand_inputs(inputs: list[str]) -> tuple[list[Path], list[dict[str, str]]]:
    """Files as given, folders walked (recursively, image files only, no symlinked folders), glob patterns
    expanded; what matches nothing becomes an error entry. Files keep the order given (each folder or pattern
    sorted); the entries for names that match nothing come after them."""
    files: list[Path] = []
    missing: list[dict[str, str]] = []
    suffixes = image_suffixes()
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            files += _walk(path, suffixes, missing)
        elif kind := special_kind(path):
            missing.append({"file": text, "error": not_opened(kind)})
        elif path.is_file():
            files.append(path)
        elif glob.has_magic(text):
            found = [file for match in sorted(glob.glob(text, recursive=True))
                     for file in _walk_or_file(Path(match), suffixes, missing)]
            files += found
            if not found:
                missing.append({"file": text, "error": "no file matches this pattern"})
        else:
            missing.append({"file": text, "error": "no such file or folder"})
    return files, missing


def _walk_or_file(path: Path, suffixes: set[str], missing: list[dict[str, str]]) -> list[Path]:
    if path.is_dir():
        return _walk(path, suffixes, missing)
    if kind := special_kind(path):
        missing.append({"file": str(path), "error": not_opened(kind)})
        return []
    return [path]


def _walk(folder: Path, suffixes: set[str], missing: list[dict[str, str]]) -> list[Path]:
    """Image files below `folder`; special files (FIFO, device, socket, or a link to one) go to `missing`."""
    found = []
    for current, folders, names in os.walk(folder):  # os.walk does not follow symlinked folders: no loops
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in names:
            path = Path(current) / name
            if name.startswith(".") or Path(name).suffix.lower() not in suffixes:
                continue
            if kind := special_kind(path):
                missing.append({"file": str(path), "error": not_opened(kind)})
            else:
                found.append(path)
    return sorted(found)


def decoded_batches(paths: list[Path], image_size: int, resize: ResizeMode, batch_size: int,
                    errors: dict[int, str], max_image_scale: int = DEFAULT_MAX_SCALE):
    """A tf.data stream of float32 pixel batches, decoded in parallel threads while the model runs (PIL frees
    the GIL as it decodes). An unreadable file becomes zeros and its reason lands in `errors[index]`. Each file
    is decoded from disk as far as needed: a 4 GB file is answered from its header, never read whole."""
    import tensorflow as tf

    def decode(index) -> np.ndarray:
        try:
            with paths[int(index)].open("rb") as file:
                return model_pixels(file, image_size, resize, max_image_scale)
        except (OSError, UndecodableImage) as exc:
            errors[int(index)] = str(exc)
            return np.zeros((image_size, image_size, 3), np.uint8)

    def pixels(index):
        decoded = tf.numpy_function(decode, [index], tf.uint8, stateful=False)
        return tf.ensure_shape(decoded, (image_size, image_size, 3))

    dataset = tf.data.Dataset.range(len(paths)).map(pixels, num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.batch(batch_size).map(lambda batch: tf.cast(batch, tf.float32)).prefetch(tf.data.AUTOTUNE)


def predict_probabilities(loaded: LoadedModel, paths: list[Path], batch_size: int = BATCH_SIZE
                          ) -> tuple[np.ndarray, dict[int, str]]:
    """Per-class probabilities for every file (rows of unreadable files are meaningless) and the errors."""
    errors: dict[int, str] = {}
    batches = decoded_batches(paths, loaded.image_size, loaded.resize, batch_size, errors, loaded.max_image_scale)
    total = math.ceil(len(paths) / batch_size)
    desc = f"predict: {plural(len(paths), 'image')} in batches of {batch_size}"
    outputs = [loaded.model.predict_on_batch(batch) for batch in with_progress(batches, total, desc)]
    if not outputs:
        return np.zeros((0, len(loaded.classes))), errors
    return class_probabilities(np.concatenate(outputs)), errors


def predict_files(loaded: LoadedModel, inputs: list[str], top_k: int, batch_size: int = BATCH_SIZE
                  ) -> list[dict[str, Any]]:
    """One result per file: its top-k classes, or the reason it could not be read."""
    paths, missing = expand_inputs(inputs)
    probabilities, errors = predict_probabilities(loaded, paths, batch_size) if paths else (None, {})
    results = []
    for index, path in enumerate(paths):
        if index in errors:
            results.append({"file": str(path), "error": errors[index]})
            continue
        order = np.argsort(-probabilities[index], kind="stable")[:top_k]
        results.append({"file": str(path), "top": [{"class": loaded.classes[i],
                                                    "probability": float(probabilities[index][i])} for i in order]})
    return results + missing


def as_table(results: list[dict[str, Any]], top_k: int):
    """The results as one row per file: file, class, probability, class_2, probability_2, ..., error."""
    import pandas as pd

    rows = []
    for result in results:
        row: dict[str, Any] = {"file": result["file"]}
        for rank, entry in enumerate(result.get("top", []), start=1):
            suffix = "" if rank == 1 else f"_{rank}"
            row[f"class{suffix}"], row[f"probability{suffix}"] = entry["class"], entry["probability"]
        row["error"] = result.get("error", "")
        rows.append(row)
    ranked = [name for rank in range(1, top_k + 1)
              for name in ((f"class_{rank}", f"probability_{rank}") if rank > 1 else ("class", "probability"))]
    return pd.DataFrame(rows, columns=["file", *ranked, "error"])
