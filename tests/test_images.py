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
