"""The backbone registry: every backbone builds; bad names, alphas, sizes and weight files are params errors."""

import pytest

from transferlab.core.backbones import BACKBONES, check_config, weights_identity
from transferlab.modeling.assembly import build_base
from transferlab.core.errors import ParamsError
from transferlab.core.params_loader import parse_params

V1_NO_TOP = "weights/mobilenet_2_5_224_tf_no_top.h5"
V2_035 = "weights/mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_with_its_feature_width(tmp_path, name):
    spec = BACKBONES[name]
    alpha = 0.35 if name == "mobilenet_v2" else (0.25 if name == "mobilenet" else 1.0)
    model = build_base(name, alpha, 32, "none", tmp_path)
    assert model.output_shape == (None, spec.width(alpha))


@pytest.mark.parametrize(("overrides", "key"), [
    ({"backbone": {"name": "alexnet"}}, "backbone.name"),
    ({"backbone": {"name": "mobilenet", "alpha": 0.3}}, "backbone.alpha"),
    ({"backbone": {"name": "resnet50", "alpha": 0.5}}, "backbone.alpha"),
    ({"data": {"image_size": 32}, "backbone": {"name": "vgg16"}, "compare": {"backbones": ["vgg16"]}}, None),
    ({"backbone": {"name": "vgg16"}}, "compare.backbones: must include backbone.name 'vgg16'"),
    ({"compare": {"backbones": ["mobilenet_v2", "alexnet"]}}, "compare.backbones: unknown backbone 'alexnet'"),
    ({"compare": {"backbones": ["mobilenet_v2", "mobilenet_v2"]}}, "compare.backbones: 'mobilenet_v2' is listed twice"),
    ({"compare": {"weights": {"resnet50": "none"}}}, "compare.weights.resnet50: not in compare.backbones"),
    ({"compare": {"weights": {"mobilenet_v2": "none"}}}, "compare.weights.mobilenet_v2: the fine-tuned"),
    ({"backbone": {"weights": "w.h5"}, "compare": {"backbones": ["mobilenet_v2", "resnet50"]}},
     "compare.weights.resnet50: required"),
    ({"data": {"image_size": 64}, "compare": {"backbones": ["mobilenet_v2", "vgg16"]}}, None),
    ({"compare": {"alpha": {"mobilenet": 0.25}}}, "compare.alpha.mobilenet: not in compare.backbones"),
    ({"compare": {"alpha": {"mobilenet_v2": 0.35}}}, "compare.alpha.mobilenet_v2: the fine-tuned"),
    ({"compare": {"backbones": ["mobilenet_v2", "vgg16"], "alpha": {"vgg16": 0.5}}},
     "compare.alpha.vgg16: vgg16 has no width multiplier"),
    ({"compare": {"backbones": ["mobilenet_v2", "mobilenet"], "alpha": {"mobilenet": 0.3}}}, "0.3"),
    ({"backbone": {"pooling": "attention"}}, "backbone.pooling"),
    ({"backbone": {"dtype": "int8"}}, "backbone.dtype"),
    ({"head": {"dropout": 1.0}}, "head.dropout"),
    ({"head": {"epochs": 0}}, "head.epochs"),
    ({"head": {"learning_rate": -1}}, "head.learning_rate"),
    ({"head": {"activation": "relu"}}, "head.activation"),
])
def test_bad_backbone_and_head_params_name_the_key(overrides, key):
    if key is None:
        assert "vgg16" in parse_params(overrides).compare.backbones
        return
    with pytest.raises(ParamsError, match=key):
        parse_params(overrides)


def test_compared_backbones_share_all_but_name_alpha_and_weights():
    params = parse_params({"backbone": {"alpha": 0.35, "weights": "mnv2.h5", "pooling": "max"},
                           "compare": {"backbones": ["mobilenet_v2", "resnet50", "vgg16"], "weights": {"vgg16": "none",
                                                                                                       "resnet50": "r.h5"}}})
    assert params.backbone_named("mobilenet_v2") == params.backbone
    resnet = params.backbone_named("resnet50")
    assert (resnet.name, resnet.alpha, resnet.weights, resnet.pooling) == ("resnet50", 1.0, "r.h5", "max")
    assert params.backbone_named("vgg16").weights == "none"
    with pytest.raises(ParamsError, match="--backbone: 'vgg19' is not in compare.backbones"):
        params.backbone_named("vgg19")


def test_another_mobilenet_can_have_its_own_width():
    """The assets' MobileNet v1 file is alpha 0.25 while the fine-tuned MobileNetV2 is 1.0: compare.alpha says so."""
    params = parse_params({"compare": {"backbones": ["mobilenet_v2", "mobilenet"], "alpha": {"mobilenet": 0.25}}})
    assert params.backbone_named("mobilenet").alpha == 0.25 and params.backbone_named("mobilenet_v2").alpha == 1.0
    shared = parse_params({"backbone": {"alpha": 0.5}, "compare": {"backbones": ["mobilenet_v2", "mobilenet"]}})
    assert shared.backbone_named("mobilenet").alpha == 0.5  # without it, backbone.alpha as before


def test_image_size_below_the_minimum_is_refused():
    with pytest.raises(ParamsError, match="data.image_size: 16 is below"):
        check_config("mobilenet_v2", 1.0, 16)


def test_missing_weights_file_lists_what_is_allowed(tmp_path):
    with pytest.raises(ParamsError, match="backbone.weights: file not found.*allowed: imagenet, none"):
        build_base("mobilenet", 0.25, 224, "missing.h5", tmp_path)


def test_real_weights_load_and_the_wrong_architecture_is_refused(assets):
    assert build_base("mobilenet", 0.25, 224, str(assets / V1_NO_TOP), assets).output_shape == (None, 256)
    with pytest.raises(ParamsError, match="does not fit mobilenet_v2"):
        build_base("mobilenet_v2", 1.0, 224, str(assets / V2_035), assets)
    with pytest.raises(ParamsError, match="does not fit resnet50"):
        build_base("resnet50", 1.0, 224, str(assets / V1_NO_TOP), assets)
    assert weights_identity(str(assets / V1_NO_TOP), assets) == \
        "sha256:dbdb03ee2a22fd895301636cd328b234bb3a9952358f436d82f46b81e0d5b0bf"


def test_imagenet_download_failure_is_one_line(tmp_path, monkeypatch):
    import keras

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")

    monkeypatch.setattr(keras.applications, "MobileNet", offline)
    with pytest.raises(ParamsError, match="imagenet weights for mobilenet could not be loaded"):
        build_base("mobilenet", 0.25, 224, "imagenet", tmp_path)
