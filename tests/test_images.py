import numpy as np
import pytest

from tests.corrupt_files import bad_files, good_files
from transferlab.data.images import UndecodableImage, decode_rgb, encode_jpeg, resize


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
    from transferlab.data.images import pixel_limit

    with pytest.raises(UndecodableImage, match=r"too large: 20000x20000 pixels is over the limit of 268 megapixels"):
        decode_rgb(_png_header_only(20000, 20000), max_pixels=pixel_limit(224))
    with pytest.raises(UndecodableImage, match="too large"):
        decode_rgb(_png_header_only(60000, 60000))  # the default cap too
    assert pixel_limit(32) == 2**28 and pixel_limit(1024) == 2**29  # small models still take camera photos
