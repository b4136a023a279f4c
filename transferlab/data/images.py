"""Decode any image file the pipeline meets into RGB pixels, or say in a few words why it cannot.

This module imports nothing of transferlab: the registered model ships it as an artifact and decodes with
it wherever it is served (`transferlab/serving/image_classifier.py`), so served and trained pixels agree.
"""

from __future__ import annotations

import io
import warnings
from typing import Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# A small file can declare billions of pixels (a decompression bomb: 437 KB of PNG once took 18 GB to decode).
# Each decode is capped by `pixel_limit(image_size)`; Pillow's own guard stays on at the highest cap as a backstop.
MIN_PIXEL_LIMIT, MAX_PIXEL_LIMIT = 2**28, 2**29  # 268 and 537 megapixels: every camera photo fits
Image.MAX_IMAGE_PIXELS = MAX_PIXEL_LIMIT  # Pillow refuses at twice this, before reading any pixel
# Truncated files must fail loudly, not be padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False

ResizeMode = Literal["squash", "center_crop"]


class UndecodableImage(Exception):
    """The bytes are not an image Pillow can fully decode; the message is the reason shown to users."""


def pixel_limit(image_size: int) -> int:
    """The most pixels one decode may produce for a model of `image_size`: 64 times its side, squared, within
    268..537 megapixels (about 0.8..1.6 GB of RGB): a 150-megapixel camera photo always fits, a bomb never does."""
    return min(MAX_PIXEL_LIMIT, max(MIN_PIXEL_LIMIT, (64 * image_size) ** 2))


def decode_rgb(data: bytes, draft_size: int | None = None, max_pixels: int = MAX_PIXEL_LIMIT) -> Image.Image:
    """Decode image bytes of any format Pillow reads (the file name is ignored) into an RGB image.

    EXIF orientation is applied, palettes/grayscale/CMYK/16-bit become 8-bit RGB, and transparency is
    composited on white. `draft_size` lets JPEG decode at a reduced scale, which keeps huge photos cheap.
    An image that would decode to more than `max_pixels` is refused from its header, before any decoding.
    """
    if not data:
        raise UndecodableImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(data))
            if draft_size and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            _check_pixels(image, max_pixels)
            image.load()
            image = ImageOps.exif_transpose(image)
    except UnidentifiedImageError:
        raise UndecodableImage("not an image (unrecognised format)") from None
    except Image.DecompressionBombError as exc:
        raise UndecodableImage(f"too large: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UndecodableImage(f"cannot decode: {exc}") from None
    return _to_rgb(image)


def _check_pixels(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise UndecodableImage(f"too large: {width}x{height} pixels is over the limit of {max_pixels / 1e6:.0f} "
                               f"megapixels for this image size (a decompression bomb, or a scan far larger than "
                               f"the model needs; shrink it first)")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit/32-bit integer grayscale: scale into 8 bits instead of clipping to white.
        array = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0, 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def resize(image: Image.Image, size: int, mode: ResizeMode = "squash") -> Image.Image:
    """Resize to size x size: `squash` ignores the aspect ratio (as Keras' loaders do), `center_crop` keeps it."""
    if mode == "center_crop":
        return ImageOps.fit(image, (size, size), method=Image.Resampling.BILINEAR)
    return image.resize((size, size), resample=Image.Resampling.BILINEAR)


def decode_for(data: bytes, size: int) -> Image.Image:
    """Decode a file for a model of input `size`: JPEGs at a reduced scale no smaller than twice it, and the
    size guard of `pixel_limit(size)`. Preprocess, predict and the served model all decode through here."""
    return decode_rgb(data, draft_size=2 * size, max_pixels=pixel_limit(size))


def model_pixels(data: bytes, size: int, mode: ResizeMode = "squash") -> np.ndarray:
    """What a model of input `size` sees of an image file: decoded and resized as preprocess does, as a
    size x size x 3 uint8 array."""
    return np.asarray(resize(decode_for(data, size), size, mode), np.uint8)


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
