"""imaging/decode.py: images decoded to the model's channel count (1 grayscale, 3 RGB, 4 RGBA); rendering
them (no shared fixtures needed)."""
import io

import numpy as np
import pytest
from PIL import Image

from igaudit.pipeline.config import RenderConfig
from igaudit.transforms.imaging.decode import decode_image
from igaudit.transforms.imaging.render import render_mask, render_overlay


def encoded(mode, size=(20, 10), colour=None, fmt="PNG"):
    im = Image.new(mode, size, colour)
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def test_rgb_to_one_channel_is_the_luma():
    pixels = decode_image(encoded("RGB", colour=(200, 100, 50)), (10, 20), "stretch", channels=1)
    assert pixels.shape == (10, 20, 1)
    expected = Image.new("RGB", (1, 1), (200, 100, 50)).convert("L").getpixel((0, 0)) / 255
    assert np.allclose(pixels, expected)


def test_gray_stays_exact_in_one_and_three_channels():
    data = encoded("L", colour=137)
    assert np.allclose(decode_image(data, (10, 20), "stretch", channels=1), 137 / 255)
    assert np.allclose(decode_image(data, (10, 20), "stretch", channels=3), 137 / 255)


def test_four_channels_keep_alpha_and_one_channel_composites_it_on_black():
    data = encoded("RGBA", colour=(255, 255, 255, 0))               # transparent white
    rgba = decode_image(data, (10, 20), "stretch", channels=4)
    assert rgba.shape == (10, 20, 4) and np.allclose(rgba[..., 3], 0) and np.allclose(rgba[..., :3], 1)
    assert np.allclose(decode_image(data, (10, 20), "stretch", channels=1), 0)   # black under transparency


@pytest.mark.parametrize("channels", [1, 4])
def test_padding_keeps_the_channel_count(channels):
    pixels = decode_image(encoded("RGB", (40, 10), (255, 255, 255)), (20, 20), "pad", channels=channels)
    assert pixels.shape == (20, 20, channels)
    assert np.allclose(pixels[:5], 0) and np.allclose(pixels[8:12, :, 0], 1)   # black bars above, image in the middle


def test_bad_channel_counts_are_value_errors():
    with pytest.raises(ValueError, match="channels"):
        decode_image(encoded("RGB"), (10, 10), channels=2)


@pytest.mark.parametrize("channels", [1, 4])
def test_masks_and_overlays_of_other_channel_counts(channels):
    rng = np.random.default_rng(0)
    pixels = rng.uniform(size=(8, 8, channels)).astype(np.float32)
    attribution = rng.normal(size=(8, 8, channels)).astype(np.float32)
    options = RenderConfig()
    assert render_mask(attribution, options).shape == (8, 8)
    overlay = render_overlay(pixels, attribution, options)
    assert overlay.shape == (8, 8, 3) and overlay.dtype == np.uint8
    assert render_overlay(pixels, attribution, RenderConfig(overlay="outlines")).shape == (8, 8, 3)
