"""imaging/decode.py: an object box follows the resize into model-input pixels (no fixtures needed)."""
import pytest

from igaudit.transforms.imaging.decode import box_to_model


@pytest.mark.parametrize("resize, expected", [
    ("stretch", (8.0, 8.0, 16.0, 24.0)),        # x halved, y kept
    ("pad", (8.0, 12.0, 16.0, 20.0)),           # scale 0.5, then centred vertically: +8 on y
    ("crop", (0.0, 8.0, 16.0, 24.0)),           # scale 1, the centre 32 columns (16..48) kept
])
def test_box_follows_the_resize(resize, expected):
    # a 64 x 32 (w x h) image with a box x 16..32, y 8..24, into a 32 x 32 model input
    assert box_to_model((16, 8, 32, 24), (64, 32), (32, 32), resize) == pytest.approx(expected)
