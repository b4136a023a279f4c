"""Writers for every kind of awkward image file the pipeline must survive (used by several tests)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image


def _rgb(width: int = 40, height: int = 30, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def good_files() -> dict[str, bytes]:
    """Files that must decode (name -> bytes); several lie about their format in the name."""
    rgba = Image.new("RGBA", (30, 20), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 15, 20))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    sixteen = Image.fromarray((np.linspace(0, 65535, 32 * 16).reshape(16, 32)).astype(np.uint16))
    return {
        "plain.jpg": _save(_rgb(), "JPEG"),
        "png_named.jpg": _save(_rgb(seed=1), "PNG"),
        "gif_named.jpg": _save(_rgb(seed=2).convert("P"), "GIF"),
        "grayscale.jpg": _save(_rgb(seed=3).convert("L"), "JPEG"),
        "cmyk.jpg": _save(_rgb(seed=4).convert("CMYK"), "JPEG"),
        "rgba.png": _save(rgba, "PNG"),
        "sixteen_bit.png": _save(sixteen, "PNG"),
        "exif_rotated.jpg": _save(_rgb(40, 20, seed=5), "JPEG", exif=exif),
        "tiny.png": _save(_rgb(1, 1, seed=6), "PNG"),
    }


def bad_files() -> dict[str, tuple[bytes, str]]:
    """Files that must be skipped: name -> (bytes, a word the reason must contain)."""
    jpeg = _save(_rgb(200, 200, seed=7), "JPEG")
    return {
        "empty.jpg": (b"", "empty"),
        "truncated.jpg": (jpeg[: len(jpeg) // 2], "decode"),
        "notes.jpg": (b"this is a text file, not a picture\n" * 4, "not an image"),
        "random.png": (bytes(np.random.default_rng(8).integers(0, 255, 500, dtype=np.uint8)), "not an image"),
    }


def write_corrupt_folder(root: Path) -> None:
    """root/<class>/... with every good and bad kind, spread over two classes."""
    for index, (name, data) in enumerate(good_files().items()):
        target = root / ("cats" if index % 2 else "dogs") / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    for name, (data, _) in bad_files().items():
        (root / "cats" / name).write_bytes(data)
