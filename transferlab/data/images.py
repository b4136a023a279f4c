"""Decode any image file the pipeline meets into RGB pixels, or say in a few words why it cannot.

This module imports nothing of transferlab: the registered model ships it as an artifact and decodes with
it wherever it is served (`transferlab/serving/image_classifier.py`), so served and trained pixels agree.
"""

from __future__ import annotations

import io
import os
import warnings
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

# A small file can declare billions of pixels (a decompression bomb: 437 KB of PNG once took 18 GB to decode; a
# 35-byte GIF declaring a 16000x16000 canvas, 4.4 GB). Each decode is capped by `pixel_limit`, from the model's
# input size and `data.max_image_scale`; Pillow's own guard stays on as a backstop.
DEFAULT_MAX_SCALE = 16  # data.max_image_scale's default (core/params.py; a test checks that they agree)
BACKSTOP_PIXELS = 2**29  # what a caller that names no limit gets
Image.MAX_IMAGE_PIXELS = BACKSTOP_PIXELS  # Pillow refuses at twice this, before reading any pixel
# Truncated files must fail loudly, not be padded with grey.
ImageFile.LOAD_TRUNCATED_IMAGES = False
# Modes with an alpha channel (premultiplied: RGBa, La); a palette image may also name a transparent index.
ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
FLOAT_TOLERANCE = 1 / 512  # half an 8-bit step: a float image in 0..1 may overshoot by rounding

ResizeMode = Literal["squash", "center_crop"]
Source = bytes | BinaryIO  # a file's bytes, or the file opened for reading (read only as far as needed)


class UndecodableImage(Exception):
    """The bytes are not an image Pillow can fully decode; the message is the reason shown to users."""


def pixel_limit(image_size: int, max_scale: int = DEFAULT_MAX_SCALE) -> int:
    """The most pixels one decode may produce for a model of `image_size`: `max_scale` times its side, squared
    (12.8 megapixels for 224 px at 16: a 12-megapixel phone photo fits; JPEGs of any camera decode at a
    reduced scale first). A model sees image_size² pixels; more than this is a bomb or a waste."""
    return (max_scale * image_size) ** 2


def byte_limit(max_pixels: int) -> int:
    """The largest file that can hold an image of `max_pixels`: 8 bytes a pixel (uncompressed 16-bit RGBA) and
    16 MB of metadata. A larger file is refused before it is read."""
    return 8 * max_pixels + 2**24


def decode_rgb(source: Source, draft_size: int | None = None, max_pixels: int = BACKSTOP_PIXELS) -> Image.Image:
    """Decode image bytes (or an open file) of any format Pillow reads (the file name is ignored) into RGB.

    EXIF orientation is applied, every mode becomes 8-bit RGB (`to_rgb`), transparency is composited on white.
    `draft_size` lets JPEG decode at a reduced scale, which keeps huge photos cheap. The header is read first:
    an image that would decode to more than `max_pixels`, or a file larger than `byte_limit(max_pixels)`, is
    refused before any pixel is decoded (a file is read only as far as its header for that).
    """
    size = _byte_size(source)
    if size == 0:
        raise UndecodableImage("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
            if draft_size and image.format == "JPEG":
                image.draft("RGB", (draft_size, draft_size))
            _check_pixels(image, max_pixels)
            _check_bytes(size, max_pixels)
            image.load()
            return to_rgb(ImageOps.exif_transpose(image))
    except UnidentifiedImageError:
        raise UndecodableImage("not an image (unrecognised format)") from None
    except Image.DecompressionBombError as exc:
        raise UndecodableImage(f"too large: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise UndecodableImage(f"cannot decode: {exc}") from None


def _byte_size(source: Source) -> int:
    return len(source) if isinstance(source, bytes) else os.fstat(source.fileno()).st_size


def _check_pixels(image: Image.Image, max_pixels: int) -> None:
    width, height = image.size
    if width * height > max_pixels:
        raise UndecodableImage(f"too large: {width}x{height} pixels is over the limit of {max_pixels / 1e6:.3g} "
                               f"megapixels for this model's input size (data.max_image_scale; a decompression "
                               f"bomb, or far more pixels than the model can use: shrink it first)")


def _check_bytes(size: int, max_pixels: int) -> None:
    if size > byte_limit(max_pixels):
        raise UndecodableImage(f"too large: a {size / 1e6:,.1f} MB file is over the {byte_limit(max_pixels) / 1e6:,.1f}"
                               f" MB an image of {max_pixels / 1e6:.3g} megapixels can need (data.max_image_scale)")


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from an image of any Pillow mode: 16- and 32-bit integer and float grayscale scaled into 8 bits
    (not clipped: a float image in 0..1 would be black), alpha composited on white. UndecodableImage when the
    pixels' scale cannot be known (a float image outside 0..1, NaN, a negative integer)."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        image = _eight_bit_gray(image)
    if image.mode == "La":  # premultiplied gray and alpha (a TIFF's associated alpha): Pillow converts it to LA only
        image = image.convert("LA")
    if image.mode in ALPHA_MODES or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def _eight_bit_gray(image: Image.Image) -> Image.Image:
    """Integer pixels scaled from 0..65535 (16-bit, or 32-bit above 255) or 0..255, float ones from 0..1."""
    array = np.asarray(image, dtype=np.float64)
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    floats = image.mode == "F"
    bits = "32-bit float" if floats else "integer"
    if not np.isfinite([low, high]).all():
        raise UndecodableImage(f"cannot decode: {bits} pixels include NaN or infinity")
    within = -FLOAT_TOLERANCE <= low and high <= 1 + FLOAT_TOLERANCE if floats else 0 <= low and high <= 65535
    if not within:
        raise UndecodableImage(f"cannot decode: {bits} pixels from {low:g} to {high:g} are outside "
                               f"{'0..1' if floats else '0..65535'}, so their brightness is unknown; save the image "
                               f"as 8- or 16-bit")
    peak = 1.0 if floats else 65535.0 if image.mode.startswith("I;16") or high > 255 else 255.0
    return Image.fromarray(np.clip(array / peak * 255.0, 0, 255).astype(np.uint8), mode="L")


def resize(image: Image.Image, size: int, mode: ResizeMode = "squash") -> Image.Image:
    """Resize to size x size: `squash` ignores the aspect ratio (as Keras' loaders do), `center_crop` keeps it."""
    if mode == "center_crop":
        return ImageOps.fit(image, (size, size), method=Image.Resampling.BILINEAR)
    return image.resize((size, size), resample=Image.Resampling.BILINEAR)


def decode_for(source: Source, size: int, max_scale: int = DEFAULT_MAX_SCALE) -> Image.Image:
    """Decode a file for a model of input `size`: JPEGs at a reduced scale no smaller than twice it, and the
    guards of `pixel_limit(size, max_scale)`. Preprocess, predict and the served model all decode through here."""
    return decode_rgb(source, draft_size=2 * size, max_pixels=pixel_limit(size, max_scale))


def model_pixels(source: Source, size: int, mode: ResizeMode = "squash", max_scale: int = DEFAULT_MAX_SCALE
                 ) -> np.ndarray:
    """What a model of input `size` sees of an image file: decoded and resized as preprocess does, as a
    size x size x 3 uint8 array."""
    return np.asarray(resize(decode_for(source, size, max_scale), size, mode), np.uint8)


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()
