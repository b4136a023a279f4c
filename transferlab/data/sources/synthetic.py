"""A seeded generator of small image folders whose classes a CNN can tell apart (colour and stripe angle)."""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np
from PIL import Image


def class_names(num_classes: int) -> list[str]:
    return [f"class_{index}" for index in range(num_classes)]


def synthetic_image(class_index: int, num_classes: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One uint8 RGB image: a class-specific hue and stripe angle, with random phase, jitter and noise."""
    hue = class_index / num_classes
    base = np.array(colorsys.hsv_to_rgb(hue, 0.8, 0.9)) * 255.0
    angle = np.pi * class_index / num_classes + rng.normal(0, 0.05)
    yy, xx = np.mgrid[0:size, 0:size] / size
    stripes = np.sin(2 * np.pi * 4 * (xx * np.cos(angle) + yy * np.sin(angle)) + rng.uniform(0, 2 * np.pi))
    image = base[None, None, :] * (0.65 + 0.35 * stripes[..., None])
    image += rng.normal(0, 12.0, size=image.shape) + rng.normal(0, 10.0, size=(1, 1, 3))
    return np.clip(image, 0, 255).astype(np.uint8)


def write_synthetic_folder(root: Path, num_classes: int, images_per_class: int, size: int, seed: int) -> int:
    """Write root/<class>/<class>_<n>.jpg; the same arguments always give the same bytes. Returns the count."""
    rng = np.random.default_rng(seed)
    for index, name in enumerate(class_names(num_classes)):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for number in range(images_per_class):
            pixels = synthetic_image(index, num_classes, size, rng)
            Image.fromarray(pixels).save(folder / f"{name}_{number:05d}.jpg", format="JPEG", quality=92)
    return num_classes * images_per_class
