"""Grad-CAM (Selvaraju et al. 2017) on the backbone's last convolutional block: where the model looks.

The class score's gradient with respect to the last spatial feature maps, averaged over space, weighs those
maps; their weighted sum, through a ReLU and up-sampled to the image, is the heatmap. It works on every model
the pipeline assembles (`assembly.classifier`, and the fine-tuned model loaded from its file): pixels ->
`preprocess` -> backbone -> `head` (logits) -> `probabilities`.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from transferlab.modeling.assembly import HEAD, PREPROCESS, backbone_of, single_view
from transferlab.modeling.outputs import Output


def last_spatial_layer(base) -> Any:
    """The backbone's last layer with a (height, width, channels) output: its last convolutional block."""
    spatial = [layer for layer in base.layers if _output_rank(layer) == 4]
    if not spatial:
        raise ValueError(f"{base.name} has no layer with spatial output for Grad-CAM")
    return spatial[-1]


def _output_rank(layer) -> int:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):  # a layer called more than once has no single output
        return 0


@functools.lru_cache(maxsize=8)
def _compiled(model):
    import keras
    import tensorflow as tf

    base, view = backbone_of(model), single_view(model)  # a flip-TTA model: the unmirrored view is explained
    maps_and_pooled = keras.Model(base.inputs, [last_spatial_layer(base).output, base.output])
    preprocess, head = view.get_layer(PREPROCESS), view.get_layer(HEAD)
    sigmoid = Output.of(model).sigmoid

    @tf.function(reduce_retracing=True)
    def run(pixels, classes):
        with tf.GradientTape() as tape:
            maps, pooled = maps_and_pooled(preprocess(pixels), training=False)
            logits = tf.cast(head(pooled, training=False), tf.float32)
            if sigmoid:  # one logit z: class 1 scores z, class 0 scores -z
                score = tf.where(classes == 1, logits[:, 0], -logits[:, 0])
            else:
                score = tf.gather(logits, classes, axis=1, batch_dims=1)
        # the gradient is taken for the tensor the tape saw; under mixed precision both are float16 until here
        gradients = tf.cast(tape.gradient(score, maps), tf.float32)
        maps = tf.cast(maps, tf.float32)
        weights = tf.reduce_mean(gradients, axis=[1, 2])
        cam = tf.nn.relu(tf.einsum("bhwc,bc->bhw", maps, weights))
        cam = tf.image.resize(cam[..., None], tf.shape(pixels)[1:3], method="bilinear")[..., 0]
        peak = tf.reduce_max(cam, axis=[1, 2], keepdims=True)
        return tf.math.divide_no_nan(cam, peak)

    return run


def gradcam(model, images: np.ndarray, classes: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """(n, h, w) heatmaps in [0, 1] (1 at each image's peak; all 0 when nothing speaks for the class) of
    `classes[i]` on `images[i]` (0-255 pixels)."""
    import tensorflow as tf

    run = _compiled(model)
    images = np.asarray(images, np.float32)
    classes = np.asarray(classes, np.int64)
    parts = [run(tf.constant(images[i:i + batch_size]), tf.constant(classes[i:i + batch_size]))
             for i in range(0, len(images), batch_size)]
    return np.concatenate([p.numpy() for p in parts]) if parts else np.zeros((0, *images.shape[1:3]), np.float32)


def overlay(image: np.ndarray, heatmap: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """The image (0-255) with the heatmap blended over it in the `jet` colormap, as uint8 RGB."""
    from matplotlib import colormaps

    colored = colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255.0
    blended = (1 - opacity) * np.asarray(image, np.float32) + opacity * colored
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


def mass_inside(heatmap: np.ndarray, region: np.ndarray) -> float:
    """The share of a heatmap's total that falls inside a boolean region of the same shape."""
    total = float(heatmap.sum())
    return float(heatmap[region].sum()) / total if total > 0 else 0.0
