"""The whole model users get: raw 0-255 RGB in, class probabilities out (preprocessing inside)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import keras

from transferlab.core.backbones import build_base, preprocess_function, spec_for
from transferlab.core.errors import UserError


@keras.saving.register_keras_serializable(package="transferlab")
class BackbonePreprocess(keras.layers.Layer):
    """The backbone's own `preprocess_input`, as a serializable layer (a Lambda would not load in safe mode)."""

    def __init__(self, backbone: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backbone = backbone
        self._function = preprocess_function(spec_for(backbone))

    def call(self, inputs):
        return self._function(keras.ops.cast(inputs, self.compute_dtype))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "backbone": self.backbone}


def assemble(base, head, backbone: str, image_size: int, name: str = "transferlab"):
    """Input -> preprocess -> base (BatchNorm always in inference mode) -> head."""
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    scaled = BackbonePreprocess(backbone, name="preprocess")(inputs)
    features = base(scaled, training=False)
    return keras.Model(inputs, head(features), name=name)


def compile_for(model, learning_rate: float) -> None:
    """Adam, cross-entropy for the output (one sigmoid unit or softmax) and one metric name, `accuracy`,
    for both, so histories, plots and MLflow keys never depend on the class count."""
    sigmoid = model.output_shape[-1] == 1
    loss = "binary_crossentropy" if sigmoid else "sparse_categorical_crossentropy"
    metric = keras.metrics.BinaryAccuracy if sigmoid else keras.metrics.SparseCategoricalAccuracy
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss, metrics=[metric(name="accuracy")])


def load_keras(path: Path):
    """Load a .keras file in safe mode: no arbitrary code runs from a model file."""
    import zipfile

    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        if "safe_mode" in str(exc):
            raise UserError(f"{path}: refused: the model holds Python code (a Lambda layer) that loading would run; "
                            f"only models without it load (Keras safe_mode)") from None
        raise UserError(f"{path}: not a loadable Keras model ({first[:200]})") from None


def full_model(backbone_cfg, image_size: int, head_path: Path, root: Path, seed: int):
    """The head-only model: the frozen pretrained backbone with the trained head on top."""
    keras.utils.set_random_seed(seed)
    base = build_base(backbone_cfg.name, backbone_cfg.alpha, image_size, backbone_cfg.weights, root,
                      pooling=backbone_cfg.pooling)
    base.trainable = False
    return assemble(base, load_keras(head_path), backbone_cfg.name, image_size)


def backbone_of(model):
    """The nested backbone inside an assembled model."""
    return next(layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name != "head")


def predict_labels(probabilities) -> Any:
    """Class indices from sigmoid (one column) or softmax outputs."""
    import numpy as np

    probabilities = np.asarray(probabilities)
    if probabilities.shape[1] == 1:
        return (probabilities[:, 0] >= 0.5).astype(np.int64)
    return probabilities.argmax(axis=1)


def class_probabilities(probabilities) -> Any:
    """Per-class probabilities; a sigmoid's single column p becomes [1 - p, p]."""
    import numpy as np

    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape[1] == 1:
        return np.concatenate([1.0 - probabilities, probabilities], axis=1)
    return probabilities
