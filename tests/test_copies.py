import io

import numpy as np
from PIL import Image

from transferlab.quality.copies import copies_of


def test_four_copies_mirrored_resized_reencoded_and_all_three():
    pixels = np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    pixels[:, :24] = 0  # a dark left half: the mirror moves it right
    mirrored, resized, reencoded, everything = copies_of(pixels)
    assert all(copy.shape == pixels.shape and copy.dtype == np.uint8 for copy in copies_of(pixels))
    np.testing.assert_array_equal(mirrored, pixels[:, ::-1])
    assert 0 < np.abs(resized.astype(int) - pixels).mean() < 80  # blurred, not another image
    assert not np.array_equal(reencoded, pixels) and everything[:, 30:].mean() < 40 < everything[:, :18].mean()
