"""The assembled model: each backbone's pixel scaling in standard Keras layers, equal to its `preprocess_input`,
so a saved model loads in a process that never imports transferlab."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from tests.conftest import run_without_transferlab
from transferlab.core.backbones import BACKBONES
from transferlab.modeling.assembly import pixel_scaling


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_pixel_scaling_equals_the_backbones_own_preprocess_input(name):
    pixels = np.random.default_rng(0).uniform(0, 255, (2, 5, 7, 3)).astype(np.float32)
    inputs = keras.Input((5, 7, 3))
    scaled = keras.Model(inputs, pixel_scaling(name, inputs)).predict(pixels, verbose=0)
    module = getattr(keras.applications, BACKBONES[name].preprocess_module)
    np.testing.assert_allclose(scaled, module.preprocess_input(pixels.copy()), rtol=0, atol=2e-6)


def test_a_saved_classifier_loads_and_predicts_without_transferlab(tmp_path):
    from transferlab.core.params import BackboneParams
    from transferlab.modeling.assembly import classifier

    head_inputs = keras.Input((2048,))
    logits = keras.layers.Dense(3, name="logits")(head_inputs)
    head = keras.Model(head_inputs, keras.layers.Activation("softmax", name="probabilities")(logits))
    model = classifier(BackboneParams(name="resnet50", weights="none"), 32, head, tmp_path, seed=0)
    model.save(tmp_path / "model.keras")
    pixels = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.save(tmp_path / "pixels.npy", pixels)
    script = """
import keras, numpy as np
model = keras.saving.load_model("model.keras", safe_mode=True, compile=False)
np.save("loaded.npy", model.predict(np.load("pixels.npy"), verbose=0))
print("MODULES:", sorted(name for name in sys.modules if name.split(".")[0] == "transferlab"))
"""
    run_without_transferlab(script, tmp_path)
    np.testing.assert_allclose(np.load(tmp_path / "loaded.npy"), model.predict(pixels, verbose=0), rtol=1e-5, atol=1e-6)


def test_a_model_saved_with_the_former_custom_layer_still_loads(tmp_path):
    """Models saved before pixel scaling became standard layers hold `BackbonePreprocess`; they keep loading here."""
    from transferlab.modeling.assembly import BackbonePreprocess, load_keras

    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.GlobalAveragePooling2D()(BackbonePreprocess("mobilenet_v2")(inputs))
    keras.Model(inputs, outputs).save(tmp_path / "old.keras")
    pixels = np.full((1, 8, 8, 3), 255.0, np.float32)
    np.testing.assert_allclose(load_keras(tmp_path / "old.keras").predict(pixels, verbose=0), [[1.0, 1.0, 1.0]])


def _lopsided_classifier():
    """pixels -> preprocess -> backbone -> head -> probabilities, where the backbone sees only the left half: its
    prediction for an image and for that image's mirror image differ."""
    from transferlab.modeling.outputs import Output, output_layers

    keras.utils.set_random_seed(0)
    pixels = keras.Input((6, 8, 3), name="pixels")
    scaled = keras.layers.Rescaling(1 / 255, name="preprocess")(pixels)
    inner = keras.Input((6, 8, 3))
    left = keras.layers.Cropping2D(((0, 0), (0, 4)))(inner)
    base = keras.Model(inner, keras.layers.GlobalAveragePooling2D()(left), name="backbone")
    features = keras.Input((3,))
    logits, probabilities = output_layers(Output.for_task(3))
    head = keras.Model(features, logits(features), name="head")
    return keras.Model(pixels, probabilities(head(base(scaled))))


def test_flip_tta_averages_the_logits_of_each_image_and_its_mirror_image(tmp_path):
    from transferlab.modeling.assembly import load_keras, with_flip_tta
    from transferlab.modeling.outputs import PROBABILITIES

    model = _lopsided_classifier()
    pixels = np.random.default_rng(2).uniform(0, 255, (4, 6, 8, 3)).astype(np.float32)
    logits = keras.Model(model.inputs, model.get_layer(PROBABILITIES).input)
    single, mirror = logits.predict(pixels, verbose=0), logits.predict(pixels[:, :, ::-1], verbose=0)
    assert np.abs(single - mirror).max() > 0.1, "the model must tell an image from its mirror image"
    expected = keras.ops.convert_to_numpy(keras.ops.softmax((single + mirror) / 2))
    tta = with_flip_tta(model)
    np.testing.assert_allclose(tta.predict(pixels, verbose=0), expected, rtol=1e-5, atol=1e-6)
    # the attacks' logits (the input of `probabilities`) are the average too
    tta_logits = keras.Model(tta.inputs, tta.get_layer(PROBABILITIES).input).predict(pixels, verbose=0)
    np.testing.assert_allclose(tta_logits, (single + mirror) / 2, rtol=1e-5, atol=1e-6)
    tta.save(tmp_path / "tta.keras")  # standard layers only: it loads in safe mode
    np.testing.assert_allclose(load_keras(tmp_path / "tta.keras").predict(pixels, verbose=0), expected, rtol=1e-5,
                               atol=1e-6)


def test_flip_tta_wraps_once_and_its_parts_stay_reachable():
    from transferlab.modeling.assembly import backbone_of, single_view, with_flip_tta

    model = _lopsided_classifier()
    tta = with_flip_tta(model)
    assert with_flip_tta(tta) is tta
    assert backbone_of(tta).name == backbone_of(model).name == "backbone"
    assert single_view(tta).get_layer("head") is model.get_layer("head") and single_view(model) is model


def test_a_seeded_build_draws_the_same_weights_while_another_thread_draws_from_pythons_random():
    import random
    import threading

    import keras

    from transferlab.modeling.assembly import seeded_build

    def weights() -> np.ndarray:
        with seeded_build(7):
            model = keras.Sequential([keras.Input((8,)), *[keras.layers.Dense(8) for _ in range(20)]])
        return np.concatenate([w.reshape(-1) for w in model.get_weights()])

    quiet = weights()
    stop = threading.Event()
    drawing = threading.Thread(target=lambda: [random.random() for _ in iter(stop.is_set, True)])
    drawing.start()  # as Prefect's threads do inside a flow or a Ray task
    try:
        busy = [weights() for _ in range(3)]
    finally:
        stop.set()
        drawing.join()
    for built in busy:
        np.testing.assert_array_equal(built, quiet)
