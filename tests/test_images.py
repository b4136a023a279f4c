import io

import numpy as np
import pytest
from PIL import Image

from tests.corrupt_files import bad_files, good_files
from transferlab.data.images import (DEFAULT_MAX_SCALE, UndecodableImage, decode_for, decode_rgb, encode_jpeg,
                                     pixel_limit, resize, to_rgb)


@pytest.mark.parametrize("name", sorted(good_files()))
def test_every_good_kind_decodes_to_8_bit_rgb(name):
    image = decode_rgb(good_files()[name])
    assert image.mode == "RGB"
    assert np.asarray(image).dtype == np.uint8


@pytest.mark.parametrize("name", sorted(bad_files()))
def test_every_bad_kind_is_refused_with_a_reason(name):
    data, word = bad_files()[name]
    with pytest.raises(UndecodableImage, match=word):
        decode_rgb(data)


def test_exif_orientation_is_applied():
    assert decode_rgb(good_files()["exif_rotated.jpg"]).size == (20, 40)


def test_transparency_becomes_white_and_opaque_pixels_stay():
    pixels = np.asarray(decode_rgb(good_files()["rgba.png"]))
    assert tuple(pixels[10, 25]) == (255, 255, 255)
    assert tuple(pixels[10, 5]) == (0, 0, 255)


def test_sixteen_bit_is_scaled_not_clipped():
    pixels = np.asarray(decode_rgb(good_files()["sixteen_bit.png"]))[..., 0]
    assert pixels.min() == 0 and pixels.max() == 255
    assert 100 < np.median(pixels) < 155


def test_draft_decodes_huge_jpeg_at_reduced_scale():
    from PIL import Image
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (4000, 3000), (10, 200, 30)).save(buffer, "JPEG")
    image = decode_rgb(buffer.getvalue(), draft_size=448)
    assert 448 <= min(image.size) < 1500


@pytest.mark.parametrize("mode", ["squash", "center_crop"])
def test_resize_gives_square_and_jpeg_round_trips(mode):
    image = resize(decode_rgb(good_files()["plain.jpg"]), 32, mode)
    assert image.size == (32, 32)
    assert decode_rgb(encode_jpeg(image, 90)).size == (32, 32)


def _png_header_only(width: int, height: int) -> bytes:
    """A few hundred bytes that declare width x height RGB pixels: the shape of a decompression bomb."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = zlib.compress(b"\0" * (1 + 3 * 64) * 64)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", rows) + chunk(b"IEND", b""))


def test_a_decompression_bomb_is_refused_from_its_header():
    """Issue 14, finding 6: a 437 KB PNG of 60000x60000 pixels once took 18 GB to decode."""
    with pytest.raises(UndecodableImage, match=r"too large: 20000x20000 pixels is over the limit of 12.8 megapixels"):
        decode_for(_png_header_only(20000, 20000), 224)
    with pytest.raises(UndecodableImage, match="too large"):
        decode_rgb(_png_header_only(60000, 60000))  # a caller that names no limit: Pillow's backstop


def _gif_canvas(width: int, height: int) -> bytes:
    """35 bytes: a GIF whose screen is width x height with one 1-pixel frame; Pillow allocates the whole canvas."""
    import struct

    return (b"GIF89a" + struct.pack("<HHBBB", width, height, 0x80, 0, 0) + b"\0\0\0\xff\xff\xff"
            + b"," + struct.pack("<HHHHB", 0, 0, 1, 1, 0) + b"\x02\x02\x44\x01\x00;")


def test_a_gif_declaring_a_huge_canvas_is_refused_at_what_the_model_can_use():
    """Issue 42: 35 bytes declaring 16000x16000 were under the old 268-megapixel floor; predict took 5.5 GB and
    answered a class. The limit is now (data.max_image_scale x image_size)^2: 12.8 megapixels for 224 px."""
    assert len(_gif_canvas(16000, 16000)) == 35
    with pytest.raises(UndecodableImage, match=r"too large: 16000x16000 pixels is over the limit of 12.8 megapixels"):
        decode_for(_gif_canvas(16000, 16000), 224)
    assert pixel_limit(224) == (DEFAULT_MAX_SCALE * 224) ** 2 == 3584**2
    assert decode_for(_gif_canvas(3000, 3000), 224).size == (3000, 3000)  # 9 megapixels: within the limit


def test_the_limit_follows_data_max_image_scale_and_its_default_is_the_decoders():
    from transferlab.core.params import DataParams

    assert DataParams().max_image_scale == DEFAULT_MAX_SCALE  # the served model falls back on the decoder's
    photo = good_files()["png_named.jpg"]  # 40x30 = 1200 pixels
    assert decode_for(photo, 32).size == (40, 30)
    with pytest.raises(UndecodableImage, match="over the limit of 0.0009 megapixels"):
        decode_for(photo, 15, max_scale=2)  # (2 x 15)^2 = 900 pixels


class CountingFile(io.FileIO):
    """A file that counts the bytes read from it."""

    read_bytes = 0

    def read(self, size=-1):
        data = super().read(size)
        self.read_bytes += len(data)
        return data

    def readinto(self, buffer):
        count = super().readinto(buffer)
        self.read_bytes += count or 0
        return count


def test_a_huge_file_is_answered_from_its_header_never_read_whole(tmp_path):
    """Issue 42: a 4 GB file handed to predict was read whole (5.2 GB) before "not an image"."""
    junk, padded = tmp_path / "junk.jpg", tmp_path / "padded.png"
    with open(junk, "wb") as file:
        file.truncate(300 * 2**20)  # sparse: zeros that take no disk
    padded.write_bytes(_png_header_only(64, 64))
    with open(padded, "r+b") as file:
        file.truncate(200 * 10**6)  # over byte_limit(pixel_limit(224)): 8 bytes a pixel and 16 MB of metadata
    with CountingFile(junk) as file, pytest.raises(UndecodableImage, match="not an image"):
        decode_for(file, 224)
    assert file.read_bytes < 2**20
    with CountingFile(padded) as file, pytest.raises(UndecodableImage, match=r"a 200.0 MB file is over the 119.5 MB"):
        decode_for(file, 224)
    assert file.read_bytes < 2**20
    with CountingFile(padded) as file:
        assert decode_for(file, 224, max_scale=64).size == (64, 64)  # a larger limit: the PNG before its padding


RAMP = np.linspace(0, 1, 32 * 16).reshape(16, 32)  # a gray ramp, black to white


def _ramp_in(mode: str) -> tuple[Image.Image, np.ndarray]:
    """RAMP as an image of `mode`, and the 8-bit gray it must become."""
    gray = Image.fromarray((RAMP * 255).astype(np.uint8))
    sixteen = (RAMP * 65535).astype(np.uint16)
    if mode == "F":
        return Image.fromarray(RAMP.astype(np.float32)), np.asarray(gray)
    if mode == "I":
        return Image.fromarray(sixteen.astype(np.int32)), np.asarray(gray)
    if mode.startswith("I;16"):
        order = {"I;16": "<", "I;16L": "<", "I;16B": ">", "I;16N": "="}[mode]
        return Image.frombytes(mode, (32, 16), sixteen.astype(f"{order}u2").tobytes()), np.asarray(gray)
    if mode == "1":  # black or white: the ramp thresholded
        return gray.point(lambda value: 255 * (value >= 128)).convert("1"), (np.asarray(gray) >= 128) * 255
    if mode in ("La", "LA", "PA", "RGBa", "RGBA"):
        opaque = gray.convert("RGBA")
        return (opaque.convert("LA").convert("La") if mode == "La" else opaque.convert(mode)), np.asarray(gray)
    if mode == "P":
        return gray.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE), np.asarray(gray)
    return gray.convert("RGB").convert(mode), np.asarray(gray)


@pytest.mark.parametrize("mode", Image.MODES)
def test_every_pillow_mode_becomes_its_own_gray_in_8_bit_rgb(mode):
    """Issue 42: a float32 TIFF (mode F) in 0..1 became black and trained silently; a TIFF of premultiplied gray
    and alpha (La) raised out of the decoder."""
    image, expected = _ramp_in(mode)
    assert image.mode == mode
    pixels = np.asarray(to_rgb(image)).astype(int)
    assert pixels.shape == (16, 32, 3)
    assert np.abs(pixels - expected[..., None]).max() <= 2, mode


def _float_tiff(values: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(values.astype(np.float32)).save(buffer, "TIFF")
    return buffer.getvalue()


def test_a_float_tiff_decodes_to_its_gray_and_one_of_unknown_scale_is_refused_with_why():
    pixels = np.asarray(decode_rgb(_float_tiff(RAMP)))[..., 0]
    assert pixels.min() == 0 and pixels.max() == 255 and 120 < np.median(pixels) < 135
    with pytest.raises(UndecodableImage, match=r"32-bit float pixels from 0 to 1000 are outside 0..1"):
        decode_rgb(_float_tiff(RAMP * 1000))
    with pytest.raises(UndecodableImage, match="NaN or infinity"):
        decode_rgb(_float_tiff(np.where(RAMP > 0.5, np.nan, RAMP)))
