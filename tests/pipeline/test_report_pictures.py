"""pipeline/report_pictures.py: the report's pictures are decoded with the run's own decode spec."""
import numpy as np
from PIL import Image

from igaudit.pipeline.config import from_dict
from igaudit.pipeline.report_pictures import image_pair, model_input
from igaudit.transforms.imaging.decode import DecodeSpec


def _colour_file(path):
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[..., 0] = 200                        # red: grey 60 as ITU-R 601 luma
    Image.fromarray(pixels).save(path)
    return str(path)


def test_a_one_channel_models_picture_is_grey_as_the_model_saw_it(tmp_path):
    uri = _colour_file(tmp_path / "red.png")
    cfg = from_dict({"input": {"pattern": str(tmp_path / "*.png")}})
    grey, box = model_input(uri, cfg, DecodeSpec((16, 16), "pad", channels=1))
    assert grey.shape == (16, 16, 3) and (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()
    assert box is not None                      # 2:1 padded into a square: the bars are marked
    colour, _ = model_input(uri, cfg, DecodeSpec((16, 16), "pad", channels=3))
    assert colour[8, 8, 0] > 150 and colour[8, 8, 1] == 0
    assert 50 <= grey[8, 8, 0] <= 70


def test_the_spec_sets_the_pictures_size_and_resize(tmp_path):
    uri = _colour_file(tmp_path / "red.png")
    cfg = from_dict({"input": {"pattern": str(tmp_path / "*.png")}})
    row = {"image_id": "red", "uri": uri, "overlay_path": None, "mask_path": None}
    pair = image_pair(str(tmp_path), row, cfg, DecodeSpec((12, 24), "stretch", channels=1))
    assert pair["size"] == (12, 24) and pair["pixels"]["original"].shape == (12, 24, 3)
