"""The backbone registry: each pretrained CNN with its own preprocess_input, input size and feature width."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from transferlab.core.digest import file_sha256
from transferlab.core.errors import ParamsError


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    application: str  # attribute of keras.applications
    preprocess_module: str  # keras.applications.<module>.preprocess_input
    default_size: int
    min_size: int
    takes_alpha: bool
    feature_width: int  # for alpha 1.0

    def width(self, alpha: float) -> int:
        if self.name == "mobilenet_v2":
            return 1280 if alpha <= 1.0 else int(1280 * alpha)
        if self.name == "mobilenet":
            return int(1024 * alpha)
        return self.feature_width


BACKBONES: dict[str, BackboneSpec] = {spec.name: spec for spec in (
    BackboneSpec("mobilenet_v2", "MobileNetV2", "mobilenet_v2", 224, 32, True, 1280),
    BackboneSpec("mobilenet", "MobileNet", "mobilenet", 224, 32, True, 1024),
    BackboneSpec("resnet50", "ResNet50", "resnet50", 224, 32, False, 2048),
    BackboneSpec("vgg16", "VGG16", "vgg16", 224, 32, False, 512),
    BackboneSpec("vgg19", "VGG19", "vgg19", 224, 32, False, 512),
    BackboneSpec("efficientnet_b0", "EfficientNetB0", "efficientnet", 224, 32, False, 1280),
)}
ALPHAS = {"mobilenet_v2": (0.35, 0.5, 0.75, 1.0, 1.3, 1.4), "mobilenet": (0.25, 0.5, 0.75, 1.0)}


def spec_for(name: str, key: str = "backbone.name") -> BackboneSpec:
    if name not in BACKBONES:
        raise ParamsError(f"{key}: unknown backbone {name!r}; allowed: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def check_config(name: str, alpha: float, image_size: int, key: str = "backbone.name") -> BackboneSpec:
    """Validate what params alone can tell: the name, the alpha for that family and the input size."""
    spec = spec_for(name, key)
    if spec.takes_alpha and alpha not in ALPHAS[name]:
        raise ParamsError(f"backbone.alpha: {alpha} is not available for {name}; allowed: {ALPHAS[name]}")
    if not spec.takes_alpha and alpha != 1.0:
        raise ParamsError(f"backbone.alpha: {name} has no width multiplier; use 1.0")
    if image_size < spec.min_size:
        raise ParamsError(f"data.image_size: {image_size} is below {name}'s minimum input size {spec.min_size}")
    return spec


def weights_identity(weights: str, root: Path) -> str:
    """What the cache key records for the weights: the file's sha256, or the keyword."""
    if weights in ("imagenet", "none"):
        return weights
    return f"sha256:{file_sha256(resolve_weights_path(weights, root))}"


def resolve_weights_path(weights: str, root: Path) -> Path:
    path = (root / weights).expanduser()
    if not path.is_file():
        raise ParamsError(f"backbone.weights: file not found: {weights}; allowed: imagenet, none, or a weights file path")
    return path


def preprocess_function(spec: BackboneSpec):
    import keras

    return getattr(keras.applications, spec.preprocess_module).preprocess_input


def build_base(name: str, alpha: float, image_size: int, weights: str, root: Path, pooling: str | None = "avg") -> Any:
    """The ImageNet CNN without its top; a weights file that does not fit the architecture is a ParamsError."""
    import keras

    spec = check_config(name, alpha, image_size)
    keras_weights: str | None = {"imagenet": "imagenet", "none": None}.get(weights)
    if weights not in ("imagenet", "none"):
        keras_weights = str(resolve_weights_path(weights, root))
    kwargs: dict[str, Any] = {"include_top": False, "input_shape": (image_size, image_size, 3), "pooling": pooling}
    if spec.takes_alpha:
        kwargs["alpha"] = alpha
    constructor = getattr(keras.applications, spec.application)
    try:
        return constructor(weights=keras_weights, **kwargs)
    except Exception as exc:  # keras' download raises a bare Exception on a failed fetch
        if weights == "imagenet":
            raise ParamsError(f"backbone.weights: imagenet weights for {name} could not be loaded "
                              f"({_first_line(exc)}); offline, use a weights file path") from None
        if not isinstance(exc, (ValueError, OSError, KeyError, TypeError)):
            raise
        raise ParamsError(f"backbone.weights: {weights} does not fit {name}(alpha={alpha}): {_first_line(exc)}") from None


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
