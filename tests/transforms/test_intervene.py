"""transforms/intervene.py: Intervene on TestPipeline with the tiny model: the tests arrive as a side input, each
test's bounded sample holds only its own images (a cluster's members, other classes' images), the files are read
again and re-scored, one figures row per test."""
import apache_beam as beam
import numpy as np
import pytest
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that

from igaudit.pipeline.config import ModelConfig
from igaudit.transforms.intervene import Intervene, InterventionHandler, roles
from igaudit.transforms.records import InterventionTest
from tests.conftest import CLASSES, SIZE


def image_rows(data):
    rows = []
    for name in CLASSES:
        for i, path in enumerate(sorted(p for p in (data / name).glob("img*"))):
            rows.append({"image_id": f"{name}-{i}", "uri": str(path), "label": name, "predicted_name": name,
                         "cluster": i % 2, "predicted_cluster": 0, "bbox": [4.0, 4.0, 20.0, 20.0]})
    return rows


TESTS = [InterventionTest("label/ant/region", "label", "ant", 0, "region", "the top-left 2x2 cells",
                          cells=(0, 2, 0, 2), grid=8),
         InterventionTest("label/bee/cluster1/region", "label", "bee", 1, "region", "the centre", cluster=1,
                          cells=(3, 5, 3, 5), grid=8),
         InterventionTest("predicted/cat/channel", "predicted", "cat", 2, "channel", "the blue channel", channel=2),
         InterventionTest("label/cat/background", "label", "cat", 2, "outside_box", "the background")]


def test_roles_offer_each_row_to_the_tests_it_can_serve():
    row = {"image_id": "x", "uri": "u", "label": "bee", "predicted_name": "cat", "cluster": 1,
           "predicted_cluster": 0, "bbox": None}
    got = {key: item[-1] for key, item in roles(row, TESTS)}
    assert got == {("label/ant/region", "other"): "bee", ("label/bee/cluster1/region", "class"): "bee",
                   ("predicted/cat/channel", "class"): "cat"}     # no box: no background test


@pytest.mark.slow
def test_every_test_is_rescored_on_its_own_bounded_sample(tiny_assets):
    rows = image_rows(tiny_assets["data"])
    handler = InterventionHandler(ModelConfig(path=str(tiny_assets["model"]), input_size=(SIZE, SIZE)), border=0.1)

    def check(results):
        by_id = dict(results)
        assert sorted(by_id) == sorted(t.test_id for t in TESTS)
        ant = by_id["label/ant/region"]
        assert ant["sample"] == 3 and ant["other_sample"] == 3       # the bound: 3 per role
        assert by_id["label/bee/cluster1/region"]["sample"] == 2     # bee's cluster-1 images only (of 4)
        for test_id, f in by_id.items():
            assert 0 <= f["accuracy"] <= 1 and np.isfinite(f["drop"]) and np.isfinite(f["kept_class"]), test_id

    with TestPipeline() as p:
        tests = p | "Tests" >> beam.Create([TESTS])
        figures = (p | beam.Create(rows)
                   | Intervene(handler, tests, sample=3, size=(SIZE, SIZE), resize="pad", max_pixels=10**7))
        assert_that(figures | beam.combiners.ToList(), lambda got: check(got[0]))
