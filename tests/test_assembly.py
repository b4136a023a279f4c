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
