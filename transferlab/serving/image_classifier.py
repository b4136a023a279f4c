"""The registered model as MLflow serves it: encoded image files in; class, probability and top-k out.

MLflow logs this file as the model's code ("models from code", `serving/export.py`) and runs it wherever the
model is loaded (`mlflow models serve`, `mlflow.pyfunc.load_model`, a Docker image), so it imports nothing
of transferlab. What it needs travels with the model: the Keras model (standard layers only), the image
decoder (`transferlab/data/images.py`, the decode and size guard preprocess uses) as artifacts, and the
class names, resize mode and default top-k in the model config.
"""

import base64
import binascii
import importlib.util
import sys

import mlflow
import numpy as np
import pandas as pd

IMAGE_COLUMN = "image"  # encoded image files (JPEG, PNG, ...); base64 over REST, bytes in Python
OUTPUT_COLUMNS = ("class", "probability", "top_classes", "top_probabilities", "error")
BATCH_SIZE = 32
DECODER_MODULE = "_image_classifier_decoder"  # a private name, apart from any installed package


def load_decoder(path: str):
    """The shipped images.py, imported from its file under a private name (never as transferlab's)."""
    if DECODER_MODULE in sys.modules and sys.modules[DECODER_MODULE].__file__ == path:
        return sys.modules[DECODER_MODULE]
    spec = importlib.util.spec_from_file_location(DECODER_MODULE, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[DECODER_MODULE] = module
    spec.loader.exec_module(module)
    return module


def per_class(probabilities: np.ndarray) -> np.ndarray:
    """One probability per class: a single sigmoid unit p is the two classes [1 - p, p]."""
    probabilities = np.asarray(probabilities, np.float64)
    return np.concatenate([1 - probabilities, probabilities], -1) if probabilities.shape[-1] == 1 else probabilities


def _as_bytes(value) -> bytes:
    """The encoded file's bytes. A str is taken as base64 (what a client that skips MLflow's decoding sends),
    and so are bytes that are nothing but base64: MLflow's server decodes the base64 of a binary column for
    `dataframe_split` and `dataframe_records` but hands `instances` and `inputs` over as the base64 text. No
    image format begins with only base64 characters (PNG's, JPEG's, GIF's ... first bytes are not), so the two
    cannot be confused."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value)
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return value
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=False)
        except (binascii.Error, ValueError):
            raise ValueError("not base64") from None
    raise ValueError(f"expected the encoded file's bytes, got {type(value).__name__}")


class ImageClassifier(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        import keras

        self.model = keras.saving.load_model(context.artifacts["keras_model"], safe_mode=True, compile=False)
        self.decoder = load_decoder(context.artifacts["decoder"])
        config = context.model_config
        self.classes = list(config["classes"])
        self.resize = config.get("resize", "squash")
        self.top_k = int(config.get("top_k", 3))
        # data.max_image_scale when it was logged (a model logged before it existed: the decoder's default)
        self.max_image_scale = int(config.get("max_image_scale", self.decoder.DEFAULT_MAX_SCALE))
        self.image_size = int(self.model.input_shape[1])

    def _pixels(self, value):
        """The image's pixels, or the reason it cannot be read (one bad file does not fail the others)."""
        try:
            return self.decoder.model_pixels(_as_bytes(value), self.image_size, self.resize,
                                             self.max_image_scale), None
        except (ValueError, self.decoder.UndecodableImage) as exc:
            return None, str(exc)

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        if IMAGE_COLUMN not in model_input:
            raise ValueError(f"the input needs a column {IMAGE_COLUMN!r} of encoded image files")
        top_k = max(1, min(int((params or {}).get("top_k", self.top_k)), len(self.classes)))
        decoded = [self._pixels(value) for value in model_input[IMAGE_COLUMN]]
        good = [pixels for pixels, error in decoded if error is None]
        probabilities = iter(self._probabilities(np.stack(good)) if good else [])
        rows = [self._row(next(probabilities), top_k) if error is None else _error_row(error)
                for _, error in decoded]
        return pd.DataFrame(rows, columns=list(OUTPUT_COLUMNS), dtype=object)

    def _probabilities(self, pixels: np.ndarray) -> np.ndarray:
        batches = [self.model.predict_on_batch(pixels[i:i + BATCH_SIZE].astype(np.float32))
                   for i in range(0, len(pixels), BATCH_SIZE)]
        return per_class(np.concatenate(batches))

    def _row(self, probabilities: np.ndarray, top_k: int) -> dict:
        order = np.argsort(-probabilities, kind="stable")[:top_k]
        top = [float(probabilities[i]) for i in order]
        return {"class": self.classes[order[0]], "probability": top[0],
                "top_classes": [self.classes[i] for i in order], "top_probabilities": top, "error": None}


def _error_row(error: str) -> dict:
    return {"class": None, "probability": None, "top_classes": [], "top_probabilities": [], "error": error}


mlflow.models.set_model(ImageClassifier())
