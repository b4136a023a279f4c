"""The backbone table: every fact about each pretrained CNN that the pipeline uses, and the checks params can make.

Pure data (no Keras import), so params validation, doctor and the builders in `transferlab.modeling.assembly`
all read the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transferlab.core.digest import file_sha256
from transferlab.core.errors import ParamsError


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    application: str  # attribute of keras.applications
    preprocess_module: str  # keras.applications.<module>.preprocess_input
    scaling: str  # what that function does: "tf" (x / 127.5 - 1), "caffe" (RGB -> BGR, minus CAFFE_BGR_MEAN), "none"
    min_size: int
    takes_alpha: bool
    feature_width: int  # for alpha 1.0
    keras_cache_pattern: str  # how keras.applications names its downloaded no-top weights in $KERAS_HOME/models

    def width(self, alpha: float) -> int:
        if self.name == "mobilenet_v2":
            return 1280 if alpha <= 1.0 else int(1280 * alpha)
        if self.name == "mobilenet":
            return int(1024 * alpha)
        return self.feature_width


BACKBONES: dict[str, BackboneSpec] = {spec.name: spec for spec in (
    BackboneSpec("mobilenet_v2", "MobileNetV2", "mobilenet_v2", "tf", 32, True, 1280, "mobilenet_v2_*no_top.h5"),
    BackboneSpec("mobilenet", "MobileNet", "mobilenet", "tf", 32, True, 1024, "mobilenet_[0-9]*no_top.h5"),
    BackboneSpec("resnet50", "ResNet50", "resnet50", "caffe", 32, False, 2048, "resnet50_*notop.h5"),
    BackboneSpec("vgg16", "VGG16", "vgg16", "caffe", 32, False, 512, "vgg16_*notop.h5"),
    BackboneSpec("vgg19", "VGG19", "vgg19", "caffe", 32, False, 512, "vgg19_*notop.h5"),
    BackboneSpec("efficientnet_b0", "EfficientNetB0", "efficientnet", "none", 32, False, 1280, "efficientnetb0_notop.h5"),
)}
CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)  # ImageNet's mean pixel, blue first, as the caffe models subtract it
ALPHAS = {"mobilenet_v2": (0.35, 0.5, 0.75, 1.0, 1.3, 1.4), "mobilenet": (0.25, 0.5, 0.75, 1.0)}
KERAS_WEIGHTS = ("imagenet", "none")  # the keywords; anything else is a weights file


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
    if weights in KERAS_WEIGHTS:
        return weights
    return f"sha256:{file_sha256(resolve_weights_path(weights, root))}"


def resolve_weights_path(weights: str, root: Path, key: str = "backbone.weights") -> Path:
    path = (root / weights).expanduser()
    if not path.is_file():
        raise ParamsError(f"{key}: file not found: {weights}; allowed: imagenet, none, or a weights file path")
    return path
