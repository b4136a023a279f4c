"""Grad-CAM: on a synthetic task whose evidence sits in a known square, the heatmap's mass falls on it."""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np
import pytest

from transferlab.core.params import BackboneParams, HeadParams
from transferlab.modeling.assembly import classifier, with_flip_tta
from transferlab.modeling.gradcam import gradcam, last_spatial_layer, mass_inside, overlay
from transferlab.modeling.head import build_head
from transferlab.modeling.outputs import Output, output_layers
from transferlab.modeling.assembly import backbone_of

SIZE, SQUARE = 32, 8
COLORS = np.array([[230, 30, 30], [30, 230, 30], [30, 30, 230]], np.float32)


def square_task(num_classes: int, count: int, seed: int):
    """Gray noise with one colored square at a random place; its color is the class, so it is the only evidence."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(90, 160, (count, SIZE, SIZE, 3)).astype(np.float32)
    labels = rng.integers(0, num_classes, count)
    regions = np.zeros((count, SIZE, SIZE), bool)
    for i, label in enumerate(labels):
        top, left = rng.integers(0, SIZE - SQUARE, 2)
        images[i, top:top + SQUARE, left:left + SQUARE] = COLORS[label]
        regions[i, max(0, top - 2):top + SQUARE + 2, max(0, left - 2):left + SQUARE + 2] = True
    return images, labels, regions


def tiny_classifier(num_classes: int):
    """The pipeline's model shape (pixels -> preprocess -> backbone -> head -> probabilities), small enough to train."""
    keras.utils.set_random_seed(0)
    pixels = keras.Input((SIZE, SIZE, 3), name="pixels")
    scaled = keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="preprocess")(pixels)
    inner = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(inner)
    x = keras.layers.MaxPooling2D(2)(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    base = keras.Model(inner, keras.layers.GlobalAveragePooling2D()(x), name="tiny_backbone")
    features = keras.Input((32,))
    logits, probabilities = output_layers(Output.for_task(num_classes))
    head = keras.Model(features, logits(features), name="head")
    model = keras.Model(pixels, probabilities(head(base(scaled))))
    output = Output.of(model)
    model.compile(keras.optimizers.Adam(0.01), loss=output.loss(), metrics=[output.metric()])
    return model


@pytest.fixture(scope="module", params=[2, 3], ids=["sigmoid", "softmax"])
def trained(request):
    num_classes = request.param
    images, labels, _ = square_task(num_classes, 384, seed=1)
    model = tiny_classifier(num_classes)
    output = Output.of(model)
    model.fit(images, output.targets(labels), epochs=15, batch_size=32, verbose=0)
    return model, num_classes


def test_the_heatmap_falls_on_the_evidence(trained):
    model, num_classes = trained
    images, labels, regions = square_task(num_classes, 48, seed=2)
    predicted = np.asarray(model(images)).argmax(1) if num_classes > 2 else (np.asarray(model(images))[:, 0] > .5)
    assert (predicted == labels).mean() > 0.9, "the tiny model must have learned the task for the test to mean much"
    heatmaps = gradcam(model, images, labels)
    assert heatmaps.shape == (48, SIZE, SIZE) and heatmaps.min() >= 0 and heatmaps.max() <= 1
    inside = np.array([mass_inside(h, r) for h, r in zip(heatmaps, regions)])
    area = regions.mean()  # what a heatmap spread evenly would put inside (about 0.14)
    assert np.median(inside) > 0.5 > 3 * area, (np.median(inside), area)


def test_each_class_has_its_own_heatmap(trained):
    """The score is the asked class's: for the other class the evidence square is not what speaks for it."""
    model, num_classes = trained
    images, labels, regions = square_task(num_classes, 32, seed=3)
    own = np.array([mass_inside(h, r) for h, r in zip(gradcam(model, images, labels), regions)])
    other = np.array([mass_inside(h, r) for h, r in zip(gradcam(model, images, (labels + 1) % num_classes), regions)])
    assert np.median(own) > np.median(other) + 0.2, (np.median(own), np.median(other))


def test_gradcam_runs_on_the_assembled_model():
    """The pipeline's own assembly (MobileNetV2, no weights): the last block is out_relu, heatmaps image-sized."""
    backbone = BackboneParams(name="mobilenet_v2", weights="none")
    model = classifier(backbone, 64, build_head(HeadParams(l2=0.0), 1280, 3), Path("."), seed=0)
    assert last_spatial_layer(backbone_of(model)).name == "out_relu"
    images = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    heatmaps = gradcam(model, images, np.array([0, 1, 2]))
    assert heatmaps.shape == (3, 64, 64) and np.isfinite(heatmaps).all()


def test_a_flip_tta_model_shows_the_unmirrored_views_heatmap(trained):
    """With flip test-time augmentation the model is wrapped; Grad-CAM explains its unmirrored view, whose heatmap
    stays on the evidence (mirrored, it would fall on the square's mirror place)."""
    model, num_classes = trained
    images, labels, regions = square_task(num_classes, 16, seed=5)
    wrapped = gradcam(with_flip_tta(model), images, labels)
    np.testing.assert_allclose(wrapped, gradcam(model, images, labels), atol=1e-5)
    assert np.median([mass_inside(h, r) for h, r in zip(wrapped, regions)]) > 0.5


def test_gradcam_runs_under_mixed_precision():
    """GPUs run the pipeline in mixed_float16: the feature maps are float16 and their gradient must still flow."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = tiny_classifier(3)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    images, labels, _ = square_task(3, 4, seed=4)
    heatmaps = gradcam(model, images, labels)
    assert heatmaps.shape == (4, SIZE, SIZE) and heatmaps.dtype == np.float32 and np.isfinite(heatmaps).all()


def test_overlay_keeps_the_image_where_the_heatmap_is_cold():
    image = np.full((4, 4, 3), 200, np.float32)
    cold, hot = overlay(image, np.zeros((4, 4))), overlay(image, np.ones((4, 4)))
    assert cold.dtype == np.uint8 and not np.array_equal(cold, hot)
    assert np.abs(cold.astype(int) - 200).max() < 120 and hot[..., 0].mean() > hot[..., 2].mean()  # jet: hot is red
