"""The copies a near-duplicate check must catch, made from an image the way users' data makes them."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

JPEG_QUALITY = 60
# A resized copy of a photo is smaller, but once squashed to the model's input size it loses little; three quarters
# and back is that loss (half and back, a thumbnail blown up, set the threshold so low that look-alikes passed).
RESIZE = 0.75


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def _resized(image: Image.Image) -> Image.Image:
    width, height = image.size
    smaller = (max(int(width * RESIZE), 1), max(int(height * RESIZE), 1))
    return image.resize(smaller, Image.BILINEAR).resize((width, height), Image.BILINEAR)


def copies_of(pixels: np.ndarray) -> list[np.ndarray]:
    """Mirrored, resized to three quarters and back, re-encoded at JPEG quality 60, and all three at once."""
    image = Image.fromarray(np.asarray(pixels, np.uint8))
    mirrored = image.transpose(Image.FLIP_LEFT_RIGHT)
    variants = [mirrored, _resized(image), _jpeg(image, JPEG_QUALITY), _jpeg(_resized(mirrored), JPEG_QUALITY)]
    return [np.asarray(variant, np.uint8) for variant in variants]
