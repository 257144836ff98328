"""transforms/intervene.py: Intervene on TestPipeline with the tiny model: the tests arrive as a side input, each
test's bounded sample holds only its own images (the class's images that look at its region, or all of them when
fewer than MIN_ATTENDING do; other classes' images), the files are read again and re-scored, one figures row per
test with its counts."""
import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from igaudit.pipeline.config import InputConfig, ModelConfig
from igaudit.transforms.imaging.decode import DecodeSpec
from igaudit.transforms.intervene import Intervene, InterventionHandler, roles
from igaudit.transforms.records import InterventionTest
from tests.conftest import CLASSES, SIZE


CORNER = [1.0] + [0.0] * 63        # all of an 8 x 8 grid's mass in its top-left cell
CENTRE = [0.0] * 27 + [1.0] + [0.0] * 36


def image_rows(data):
    """Every image: even-numbered ones look at the top-left corner, odd ones at the centre."""
    rows = []
    for name in CLASSES:
        for i, path in enumerate(sorted(p for p in (data / name).glob("img*"))):
            rows.append({"image_id": f"{name}-{i}", "uri": str(path), "label": name, "predicted_name": name,
                         "grid": CORNER if i % 2 == 0 else CENTRE, "grid_size": 8, "bbox": [4.0, 4.0, 20.0, 20.0]})
    return rows


TESTS = [InterventionTest("label/ant/region", "label", "ant", 0, "region", "the top-left 2x2 cells",
                          cells=(0, 2, 0, 2), grid=8),
         InterventionTest("label/bee/region", "label", "bee", 1, "region", "the centre", cells=(3, 5, 3, 5), grid=8),
         InterventionTest("predicted/cat/channel", "predicted", "cat", 2, "channel", "the blue channel", channel=2),
         InterventionTest("label/cat/background", "label", "cat", 2, "outside_box", "the background")]


def test_roles_offer_each_row_to_the_tests_it_can_serve():
    row = {"image_id": "x", "uri": "u", "label": "bee", "predicted_name": "cat", "grid": CENTRE, "grid_size": 8,
           "bbox": None}
    got = {key: item[-1] for key, item in roles(row, TESTS)}
    assert got == {("label/ant/region", "other"): "bee", ("label/bee/region", "class"): "bee",
                   ("label/bee/region", "attending"): "bee",       # it looks at the centre
                   ("predicted/cat/channel", "class"): "cat", ("predicted/cat/channel", "attending"): "cat"}
    corner = dict(row, grid=CORNER)
    assert ("label/bee/region", "attending") not in {key for key, _ in roles(corner, TESTS)}


@pytest.mark.slow
def test_every_test_is_rescored_on_its_own_bounded_sample(tiny_assets):
    rows = image_rows(tiny_assets["data"])
    handler = InterventionHandler(ModelConfig(path=str(tiny_assets["model"]), input_size=(SIZE, SIZE)), border=0.1)

    def check(results):
        by_id = dict(results)
        assert sorted(by_id) == sorted(t.test_id for t in TESTS)
        ant = by_id["label/ant/region"]
        assert ant["sample"] == 3 and ant["other_sample"] == 3       # the bound: 3 per role
        assert (ant["attending"], ant["class_count"]) == (2, 4)      # 2 of ant's 4 images look at the corner:
        bee = by_id["label/bee/region"]                              #   too few, the test takes all of them
        assert (bee["attending"], bee["class_count"], bee["sample"]) == (2, 4, 3)
        for test_id, f in by_id.items():
            assert 0 <= f["accuracy"] <= 1 and np.isfinite(f["drop"]) and np.isfinite(f["kept_class"]), test_id

    with TestPipeline() as p:
        tests = p | "Tests" >> beam.Create([TESTS])
        figures = (p | beam.Create(rows)
                   | Intervene(handler, tests, sample=3, spec=DecodeSpec((SIZE, SIZE), "pad", 10**7, 3),
                               input_config=InputConfig(pattern=str(tiny_assets["data"] / "*" / "*.png"))))
        assert_that(figures | beam.combiners.ToList(), lambda got: check(got[0]))


def test_a_workers_tests_read_each_file_once_and_keep_at_most_the_cache_bound(monkeypatch, tmp_path):
    """The tests' samples overlap (other classes' images serve every test): a file is read once per worker, and
    the cache drops the least recently used past CACHE_BYTES."""
    from igaudit.transforms import intervene
    reads = []
    monkeypatch.setattr(intervene, "input_bytes", lambda uri, cfg: (reads.append(uri), uri.encode() * 10)[1])
    fn = intervene._ReadSampleFn(DecodeSpec((4, 4)), InputConfig(pattern="x/*/*"))
    fn.setup()
    for uri in ("a", "b", "a", "c", "b", "a"):
        assert fn._bytes(uri) == uri.encode() * 10
    assert reads == ["a", "b", "c"]
    monkeypatch.setattr(intervene, "CACHE_BYTES", 25)          # room for two files of 10 bytes
    fn.setup()
    reads.clear()
    for uri in ("a", "b", "a", "c", "b"):                       # c pushes out b (a was used last before it)
        fn._bytes(uri)
    assert reads == ["a", "b", "c", "b"] and list(fn._cache) == ["c", "b"]
