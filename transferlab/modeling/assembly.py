"""The one assembly of backbone + pixel scaling that extraction, training, evaluation and export all use.

Every model takes raw 0-255 RGB pixels: the backbone's own `preprocess_input` runs inside it, built from
Keras' standard layers, so a saved model needs no preprocessing by its caller and loads (in Keras safe mode)
and serves (`mlflow models serve`) in a process that has never imported this package.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import keras

import numpy as np

from transferlab.core.backbones import CAFFE_BGR_MEAN, KERAS_WEIGHTS, check_config, resolve_weights_path, spec_for
from transferlab.core.errors import ParamsError, UserError
from transferlab.modeling.outputs import PROBABILITIES, Output

# Layer names every assembled model shares (Grad-CAM and `backbone_of` find the parts by them)
HEAD, PREPROCESS, SINGLE_VIEW = "head", "preprocess", "single_view"


@keras.saving.register_keras_serializable(package="transferlab")
class BackbonePreprocess(keras.layers.Layer):
    """Kept only so that models saved before `pixel_scaling` still load here; no new model holds it, because
    a custom class makes a model unloadable wherever this package is not imported (MLflow's server)."""

    def __init__(self, backbone: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backbone = backbone
        self._function = getattr(keras.applications, spec_for(backbone).preprocess_module).preprocess_input

    def call(self, inputs):
        return self._function(keras.ops.cast(inputs, self.compute_dtype))

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "backbone": self.backbone}


def _keras_weights(weights: str, root: Path, key: str) -> str | None:
    if weights in KERAS_WEIGHTS:
        return {"imagenet": "imagenet", "none": None}[weights]
    return str(resolve_weights_path(weights, root, key))


def build_base(name: str, alpha: float, image_size: int, weights: str, root: Path, pooling: str | None = "avg") -> Any:
    """The ImageNet CNN without its top; a weights file that does not fit the architecture is a ParamsError."""
    spec = check_config(name, alpha, image_size)
    kwargs: dict[str, Any] = {"include_top": False, "input_shape": (image_size, image_size, 3), "pooling": pooling}
    if spec.takes_alpha:
        kwargs["alpha"] = alpha
    return _construct(spec.application, _keras_weights(weights, root, "backbone.weights"), kwargs, name, alpha,
                      weights, "backbone.weights")


def _construct(application: str, keras_weights: str | None, kwargs: dict, name: str, alpha: float, weights: str,
               key: str) -> Any:
    constructor = getattr(keras.applications, application)
    try:
        return constructor(weights=keras_weights, **kwargs)
    except Exception as exc:  # keras' download raises a bare Exception on a failed fetch
        if weights == "imagenet":
            raise ParamsError(f"{key}: imagenet weights for {name} could not be loaded "
                              f"({_first_line(exc)}); offline, use a weights file path") from None
        if not isinstance(exc, (ValueError, OSError, KeyError, TypeError)):
            raise
        raise ParamsError(f"{key}: {weights} does not fit {name}(alpha={alpha}): {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def pixel_scaling(backbone: str, inputs):
    """The backbone's `preprocess_input` applied to `inputs`, in standard layers only (see the module's note)."""
    scaling = spec_for(backbone).scaling
    if scaling == "tf":  # x / 127.5 - 1
        return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name=PREPROCESS)(inputs)
    if scaling == "none":
        return keras.layers.Identity(name=PREPROCESS)(inputs)
    # caffe: RGB -> BGR minus the mean pixel, as one fixed 1x1 convolution (exact: each output sums one input)
    layer = keras.layers.Conv2D(3, 1, name=PREPROCESS, trainable=False)
    outputs = layer(inputs)
    layer.set_weights([np.eye(3, dtype=np.float32)[::-1].reshape(1, 1, 3, 3), -np.float32(CAFFE_BGR_MEAN)])
    return outputs


def _scaled_pixels(backbone: str, image_size: int):
    inputs = keras.Input((image_size, image_size, 3), name="pixels")
    return inputs, pixel_scaling(backbone, inputs)


@contextlib.contextmanager
def seeded_build(seed: int) -> Iterator[None]:
    """Seed everything, and keep Keras' draws of initializer seeds to a generator of its own while a model is built.

    Keras draws each unseeded initializer's seed from Python's global `random`, which other threads draw from too
    (Prefect's, in a flow or a Ray task): random-init weights then differed from run to run. The private generator
    is seeded as `set_random_seed` seeds the global one, so a build without such threads draws the same seeds."""
    from keras.src.random import seed_generator

    keras.utils.set_random_seed(seed)
    shared = seed_generator.python_random
    seed_generator.python_random = random.Random(seed)
    try:
        yield
    finally:
        seed_generator.python_random = shared


def feature_extractor(cfg, image_size: int, root: Path, seed: int):
    """Raw pixels in, pooled float32 features out; the frozen backbone runs in inference mode."""
    with seeded_build(seed):
        base = build_base(cfg.name, cfg.alpha, image_size, cfg.weights, root, pooling=cfg.pooling)
    base.trainable = False
    inputs, scaled = _scaled_pixels(cfg.name, image_size)
    outputs = keras.layers.Activation("linear", dtype="float32", name="features")(base(scaled, training=False))
    return keras.Model(inputs, outputs, name=f"{cfg.name}_extractor")


def classifier(cfg, image_size: int, head, root: Path, seed: int, name: str = "transferlab", flip_tta: bool = False):
    """The whole model: pixels -> scaling -> frozen backbone (BatchNorm in inference mode) -> head; with
    `flip_tta`, wrapped by `with_flip_tta`.

    `head` is a trained head (features -> probabilities), or the path of its .keras file; its logits part is
    nested as `head` and its `probabilities` layer ends the model, so the output convention holds for the
    whole model too. A head file is loaded after seeding: its Dropout layers draw their seeds as they load,
    so fine-tuning is a pure function of its inputs."""
    with seeded_build(seed):
        base = build_base(cfg.name, cfg.alpha, image_size, cfg.weights, root, pooling=cfg.pooling)
        if not isinstance(head, keras.Model):
            head = load_keras(head)
    base.trainable = False
    head_logits = keras.Model(head.inputs, head.get_layer(PROBABILITIES).input, name=HEAD)
    inputs, scaled = _scaled_pixels(cfg.name, image_size)
    logits = head_logits(base(scaled, training=False))
    outputs = keras.layers.Activation(Output.of(head).activation, dtype="float32", name=PROBABILITIES)(logits)
    model = keras.Model(inputs, outputs, name=name)
    return with_flip_tta(model) if flip_tta else model


def reference_like(saved, cfg, image_size: int, head, root: Path, seed: int):
    """A model to compare with the `saved` classifier: `head` on backbone `cfg`, built the way `saved` was
    (with flip test-time augmentation or without), so that a comparison measures the weights, not the views."""
    return classifier(cfg, image_size, head, root, seed, flip_tta=has_flip_tta(saved))


def with_flip_tta(model):
    """`model` averaged over each image and its mirror image (flip test-time augmentation).

    Both views' logits are averaged before the model's own activation, so the output convention holds (the
    attacks' logits are the average). The single-view classifier is nested as `single_view`."""
    if has_flip_tta(model):
        return model
    single = keras.Model(model.inputs, model.get_layer(PROBABILITIES).input, name=SINGLE_VIEW)
    inputs = keras.Input(model.input_shape[1:], name="pixels")
    logits = keras.layers.Average(name="mean_of_views")([single(inputs), single(mirrored(inputs))])
    outputs = keras.layers.Activation(Output.of(model).activation, dtype="float32", name=PROBABILITIES)(logits)
    return keras.Model(inputs, outputs, name=model.name)


def mirrored(images):
    """Each image mirrored left to right, in standard layers only (see the module's note): the width axis goes
    last and is multiplied by the exchange matrix, which is exact (each output is one input times 1)."""
    width = images.shape[2]
    by_width = keras.layers.Permute((1, 3, 2), name="width_last")(images)
    exchange = keras.layers.Dense(width, use_bias=False, trainable=False, dtype="float32", name="mirror")
    flipped = exchange(by_width)
    exchange.set_weights([np.eye(width, dtype=np.float32)[::-1]])
    return keras.layers.Permute((1, 3, 2), name="width_back")(flipped)


def single_view(model):
    """The classifier without flip test-time augmentation: pixels -> `preprocess` -> backbone -> `head` (logits,
    when `model` has it; `model` itself otherwise)."""
    nested = _nested(model, SINGLE_VIEW)
    return model if nested is None else nested


def has_flip_tta(model) -> bool:
    return _nested(model, SINGLE_VIEW) is not None


def _nested(model, name: str):
    return next((layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name == name), None)


def imagenet_classifier(backbone: str, alpha: float, weights: str, root: Path, key: str = "adversarial.imagenet"):
    """A Keras application with its ImageNet top, following the output convention (logits, then softmax)."""
    spec = spec_for(backbone, f"{key}.backbone")
    kwargs = {"include_top": True, "alpha": alpha, "classifier_activation": None}
    top = _construct(spec.application, _keras_weights(weights, root, f"{key}.weights"), kwargs, backbone, alpha,
                     weights, f"{key}.weights")
    inputs, scaled = _scaled_pixels(backbone, top.input_shape[1])
    outputs = keras.layers.Activation("softmax", dtype="float32", name=PROBABILITIES)(top(scaled))
    return keras.Model(inputs, outputs, name=f"{backbone}_imagenet")


def compile_for(model, learning_rate: Any, output: Output | None = None, steps_per_execution: int = 1) -> None:
    """Adam (at a rate or a Keras schedule), with the loss and the `accuracy` metric of the model's output convention
    (`output`, for a model that wraps a classifier and has no output shape of its own)."""
    output = output or Output.of(model)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=output.loss(), metrics=[output.metric()],
                  steps_per_execution=steps_per_execution)


def backbone_of(model):
    """The nested backbone inside an assembled model (with or without flip test-time augmentation)."""
    return next(layer for layer in single_view(model).layers if isinstance(layer, keras.Model) and layer.name != HEAD)


def load_keras(path: Path):
    """Load a .keras file in safe mode: no arbitrary code runs from a model file."""
    import zipfile

    if not Path(path).is_file():
        raise UserError(f"{path}: no model file (run the stage that writes it, or `dvc checkout`)")
    if not zipfile.is_zipfile(path):  # Keras says "File not found" for a truncated or foreign file
        raise UserError(f"{path}: not a .keras archive (truncated, or another format)")
    try:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        first = (str(exc).strip().splitlines() or [exc.__class__.__name__])[0]
        if "safe_mode" in str(exc):
            raise UserError(f"{path}: refused: the model holds Python code (a Lambda layer) that loading would run; "
                            f"only models without it load (Keras safe_mode)") from None
        raise UserError(f"{path}: not a loadable Keras model ({first[:200]})") from None
