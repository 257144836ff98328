"""transforms/imaging/png.py: PNG encoding, read back by Pillow."""
import io

import numpy as np
import pytest
from PIL import Image

from igaudit.transforms.imaging.colormaps import INFERNO
from igaudit.transforms.imaging.png import png_bytes
from igaudit.transforms.imaging.render import mask_image, overlay_image


def decode(data: bytes):
    image = Image.open(io.BytesIO(data))
    assert image.format == "PNG"
    return image


# -- PNG ----------------------------------------------------------------------------------------------
def test_png_round_trip_grayscale():
    m = np.random.default_rng(3).random((17, 29))
    img = mask_image(m)
    decoded = decode(png_bytes(img))
    assert decoded.mode == "L" and decoded.size == (29, 17)
    np.testing.assert_array_equal(np.asarray(decoded), img)


def test_png_round_trip_rgb():
    rng = np.random.default_rng(4)
    img = overlay_image(rng.random((9, 13, 3)), rng.random((9, 13)), 0.4, INFERNO)
    decoded = decode(png_bytes(img))
    assert decoded.mode == "RGB" and decoded.size == (13, 9)
    np.testing.assert_array_equal(np.asarray(decoded), img)


def test_png_round_trip_rgba_and_pillow_reads_every_chunk():
    img = np.random.default_rng(5).integers(0, 256, (7, 11, 4), dtype=np.uint8)
    decoded = decode(png_bytes(img))
    decoded.load()                      # decodes IDAT and checks the zlib stream
    assert decoded.mode == "RGBA" and decoded.size == (11, 7)
    np.testing.assert_array_equal(np.asarray(decoded), img)


@pytest.mark.parametrize("bad", [np.zeros((4, 4), np.float32), np.zeros((4, 4, 2), np.uint8),
                                 np.zeros(4, np.uint8)])
def test_png_bytes_rejects_what_it_cannot_write(bad):
    with pytest.raises(ValueError, match="uint8"):
        png_bytes(bad)


