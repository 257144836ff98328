"""transforms/records.py: make_image_id stable, safe and distinct; the dataclasses' contracts; the Parquet schemas' fields."""
import dataclasses
import hashlib
import re

import numpy as np
import pyarrow as pa
import pytest

from igaudit.transforms import records
from igaudit.transforms.records import (REJECTED_SCHEMA, AttributionResult, DecodedImage, ImageBytes, ImageFile,
                                        Rejected, TestSample, content_hash, make_image_id)

SAFE = re.compile(r"^[A-Za-z0-9_-]+-[0-9a-f]{12}$")
SCHEMAS = {"images": records.images_schema(), "classes": records.classes_schema(), "skew": records.skew_schema(),
           "findings": records.findings_schema(), "clusters": records.clusters_schema(), "rejected": REJECTED_SCHEMA}


def test_image_id_is_the_stem_and_the_keys_sha1():
    key = "data/cat/1.png"
    assert make_image_id(key) == "1-" + hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]


@pytest.mark.parametrize("key, stem", [
    ("gs://bucket/train/My Photo (2).JPG", "My_Photo_2"),
    ("s3://b/archive.tar.gz", "archive_tar"),
    ("folder/no_suffix", "no_suffix"),
    ("folder/sub/", "sub"),
    ("a/.hidden", "image"),
    ("../evil", "evil"),
    ("x/" + "long" * 20 + ".png", ("long" * 20)[:40]),
    ("x/été.png", "t"),
    ("", "image"),
])
def test_image_id_stems_are_file_name_safe(key, stem):
    image_id = make_image_id(key)
    assert image_id.rsplit("-", 1)[0] == stem
    assert SAFE.match(image_id)


def test_image_ids_are_stable_and_distinct():
    keys = [f"{root}/{cls}/img{i}.png" for root in ("data", "gs://b/data") for cls in ("ant", "bee") for i in range(50)]
    ids = [make_image_id(k) for k in keys]
    assert ids == [make_image_id(k) for k in keys]                     # same key, same id
    assert len(set(ids)) == len(keys)                                 # same stem in other folders: other ids
    assert make_image_id("data/ant/img0.png") != make_image_id("data/ant/img0.png/")


def test_value_records_are_frozen_and_compared_by_value():
    f = ImageFile(uri="data/cat/1.png", label="cat", image_id="1-x")
    assert f == ImageFile("data/cat/1.png", "cat", "1-x", None) and f.bbox is None
    assert f != dataclasses.replace(f, label="dog")
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.label = "dog"
    assert len({f, ImageFile("data/cat/1.png", "cat", "1-x")}) == 1       # hashable


def test_array_records_are_compared_by_identity():
    """Records holding arrays (eq=False) never compare arrays elementwise."""
    pixels = np.zeros((2, 2, 3), np.float32)
    image = DecodedImage(uri="u", label=None, image_id="i", pixels=pixels)
    assert image != DecodedImage(uri="u", label=None, image_id="i", pixels=pixels)
    assert image.baseline is None and image.references is None and image.bbox is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        image.baseline = pixels


def test_attribution_result_defaults_and_its_own_quality_dict():
    fields = dict(uri="u", label="ant", image_id="i", pixels=np.zeros(1), attribution=np.zeros(1), label_index=0,
                  predicted=0, confidence=0.9, target=0, score_input=0.9, score_baseline=0.1,
                  completeness_gap=0.0, steps=-1, rule="trapezoid")
    first, second = AttributionResult(**fields), AttributionResult(**fields)
    assert (first.method, first.gradient_samples, first.converged, first.bbox) == ("integrated_gradients", 0, None, None)
    first.quality["deletion_auc"] = 0.5
    assert second.quality == {}                                       # not one dict shared by every row


def test_rejected_rows_fit_the_rejected_schema():
    row = Rejected(uri="data/x.png", image_id="x-1", stage="decode", reason="truncated").to_row()
    assert list(row) == REJECTED_SCHEMA.names
    table = pa.Table.from_pylist([row], schema=REJECTED_SCHEMA)
    assert table.to_pylist() == [row]


def test_test_sample_is_not_collected_by_pytest():
    assert TestSample.__test__ is False


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schema_field_names_are_unique(name):
    names = SCHEMAS[name].names
    assert len(names) == len(set(names)), [n for n in names if names.count(n) > 1]


def test_key_fields_and_types():
    images, skew, findings = SCHEMAS["images"], SCHEMAS["skew"], SCHEMAS["findings"]
    assert images.field("image_id").type == pa.string() and images.names[0] == "image_id"
    assert images.field("grid").type == pa.list_(pa.float64())
    assert images.field("converged").type == pa.bool_()
    assert SCHEMAS["classes"].field("predicted_counts").type == pa.map_(pa.string(), pa.int64())
    assert skew.field("region_cells").type == pa.list_(pa.int64())
    assert findings.names[0] == "finding" and findings.field("groupings").type == pa.list_(pa.string())


def test_findings_carry_the_test_figures_but_the_per_class_accuracy_ones():
    """skew.parquet carries every test figure; findings.parquet all but five, in the same order."""
    figures = [name for name, _ in records._figure_fields()]
    dropped = {"other_sample", "accuracy", "accuracy_removed", "accuracy_control", "confidence"}
    skew, findings = SCHEMAS["skew"].names, SCHEMAS["findings"].names
    assert [n for n in skew if n in figures] == figures
    assert [n for n in findings if n in figures] == [n for n in figures if n not in dropped]
    for name in figures:
        assert SCHEMAS["skew"].field(name).type == dict(records._figure_fields())[name]


def test_every_table_has_a_file_name():
    assert {records.CLASSES_TABLE, records.CLUSTERS_TABLE, records.SKEW_TABLE, records.FINDINGS_TABLE,
            records.REJECTED_TABLE} == {f"{name}.parquet" for name in SCHEMAS if name != "images"}


def test_an_image_files_content_hash_changes_with_one_byte():
    one = ImageBytes("a/x.png", "ant", "x", b"\x89PNG....")
    assert one.content_hash == content_hash(b"\x89PNG....") and len(one.content_hash) == 32
    assert ImageBytes("elsewhere/y.png", "bee", "y", b"\x89PNG....").content_hash == one.content_hash
    assert ImageBytes("a/x.png", "ant", "x", b"\x89PNG...,").content_hash != one.content_hash
