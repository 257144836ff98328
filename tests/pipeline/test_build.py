"""pipeline/build.py: AuditImages, the whole audit as one transform in a Beam pipeline of one's own (TestPipeline,
the tiny model); the CLI's graph goes through it too."""
from pathlib import Path

import apache_beam as beam
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from igaudit.pipeline.build import AuditImages
from igaudit.pipeline.config import from_dict
from igaudit.pipeline.errors import UserError
from igaudit.transforms.read import image_file_for
from tests.conftest import CLASSES, tiny_config


def _files(data: Path, broken: bool = False):
    paths = sorted(p for p in data.glob("*/*") if broken or p.stat().st_size > 100)
    return [image_file_for(str(p), p.parent.name) for p in paths]


@pytest.mark.slow     # a whole run
def test_audit_images_composes_into_a_pipeline_of_ones_own(tiny_assets, tmp_path):
    out = tmp_path / "out"
    cfg = from_dict(tiny_config(tiny_assets, out, model={"class_names": None}))
    files = _files(tiny_assets["data"], broken=True)
    with BeamTestPipeline() as p:
        run = p | "MyImages" >> beam.Create(files) | "Audit" >> AuditImages(cfg)
        assert_that(run | beam.Map(lambda r: (r["status"], r["counts"]["matched"], r["counts"]["attributed"],
                                               r["counts"]["rejected"], r["class_names"])),
                    equal_to([("ok", len(files), tiny_assets["good"], tiny_assets["bad"], sorted(CLASSES))]))
    assert (out / "_SUCCESS").exists() and (out / "report.html").exists() and (out / "run.json").exists()
    images = pq.read_table(out / "images").to_pylist()
    assert sorted(r["image_id"] for r in images) == sorted(f.image_id for f in files if "img" in f.uri)
    assert (out / ".igaudit" / "marker.json").exists()       # the folder was claimed


def test_audit_images_refuses_a_folder_igaudit_did_not_write(tiny_assets, tmp_path):
    out = tmp_path / "theirs"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    cfg = from_dict(tiny_config(tiny_assets, out))
    p = BeamTestPipeline()
    with pytest.raises(UserError, match="not empty"):
        p | beam.Create(_files(tiny_assets["data"])) | AuditImages(cfg)
    assert sorted(x.name for x in out.iterdir()) == ["notes.txt"]
