"""Log the model that leaves the project: MLflow's pyfunc over image files (`image_classifier.py`), with its
signature, an input example and pinned requirements, so MLflow's own tools load and serve it."""

from __future__ import annotations

import os
from pathlib import Path

from transferlab.data import images
from transferlab.data.images import ResizeMode
from transferlab.tracking.tags import MODEL_URI_TAG
from transferlab.tracking.tracker import Tracker

MODEL_CODE = Path(__file__).with_name("image_classifier.py")
# What the model code imports, pinned to this environment's versions (MLflow's inference would run the model).
REQUIREMENTS = ("mlflow", "tensorflow", "keras", "numpy", "pandas", "pillow")


def signature(top_k: int):
    """Input: a binary column `image` (base64 over REST). Output: class, probability, top-k, error per row."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

    outputs = Schema([ColSpec("string", "class", required=False), ColSpec("double", "probability", required=False),
                      ColSpec(Array("string"), "top_classes"), ColSpec(Array("double"), "top_probabilities"),
                      ColSpec("string", "error", required=False)])
    return ModelSignature(inputs=Schema([ColSpec("binary", "image")]), outputs=outputs,
                          params=ParamSchema([ParamSpec("top_k", "long", top_k)]))


def example_image(size: int = 64) -> bytes:
    """A small gradient JPEG: the logged input example, decoded and predicted when the model is logged."""
    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 255, size, dtype=np.uint8)
    pixels = np.stack(np.broadcast_arrays(ramp[None, :], ramp[:, None], ramp[::-1][None, :]), -1)
    return images.encode_jpeg(Image.fromarray(pixels), 90)


def requirements() -> list[str]:
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in REQUIREMENTS]


def log_image_model(tracker: Tracker, keras_file: Path, classes: list[str], resize: ResizeMode, top_k: int,
                    name: str = "model", max_image_scale: int = images.DEFAULT_MAX_SCALE) -> str | None:
    """Log the pyfunc image model to the stage's run; its URI (models:/<id>), or None when not tracked."""
    if not tracker.active:
        return None
    import mlflow
    import pandas as pd

    # MLflow loads the model back to check the input example; its download bars would be noise in the log
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    config = {"classes": list(classes), "resize": resize, "top_k": min(top_k, len(classes)),
              "max_image_scale": max_image_scale}  # the served model refuses images as preprocess did
    with tracker.tolerant(f"logging the {name} model"):
        info = mlflow.pyfunc.log_model(
            name=name, python_model=str(MODEL_CODE), model_config=config,
            artifacts={"keras_model": str(keras_file), "decoder": images.__file__},
            signature=signature(config["top_k"]), input_example=pd.DataFrame({"image": [example_image()]}),
            pip_requirements=requirements())
        mlflow.set_tag(MODEL_URI_TAG.format(name=name), info.model_uri)
        return info.model_uri
    return None
