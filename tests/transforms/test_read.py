"""transforms/read.py: labels from folders, safe ids, manifests and boxes, matching, and the Beam read stages."""
import json
import re

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.testing.test_pipeline import TestPipeline as BeamTestPipeline
from apache_beam.testing.util import assert_that, equal_to

from igaudit.transforms.read import (MatchImages, ReadImageBytes, image_file_for, label_from_uri, match_files,
                                     parse_bbox, read_manifest)
from igaudit.transforms.records import ImageBytes, ImageFile, Rejected, make_image_id

SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def assert_safe(image_id: str):
    assert SAFE.fullmatch(image_id), repr(image_id)
    assert ".." not in image_id
    assert "/" not in image_id and "\\" not in image_id and "\x00" not in image_id and "\n" not in image_id


# -- label_from_uri -----------------------------------------------------------------------------------
@pytest.mark.parametrize("uri, label", [
    ("data/train/cat/1.png", "cat"),
    ("/abs/data/dog/img.jpeg", "dog"),
    ("gs://bucket/train/bird/x.png", "bird"),
    ("s3://bucket/a/b/c/fish/x.png", "fish"),
    ("C:\\data\\train\\ant\\1.png", "ant"),
    ("cat/1.png", "cat"),
    ("1.png", None),
    ("/1.png", None),
])
def test_label_from_uri(uri, label):
    assert label_from_uri(uri) == label


# -- image_file_for -----------------------------------------------------------------------------------
def test_without_manifest_id_the_id_is_the_uri_hash():
    f = image_file_for("data/cat/1.png", "cat")
    assert f == ImageFile(uri="data/cat/1.png", label="cat", image_id=make_image_id("data/cat/1.png"))
    assert_safe(f.image_id)
    assert f.image_id.startswith("1-")


def test_id_is_stable_and_distinct_per_uri():
    assert image_file_for("a/cat/1.png").image_id == image_file_for("a/cat/1.png").image_id
    assert image_file_for("a/cat/1.png").image_id != image_file_for("a/dog/1.png").image_id


@pytest.mark.parametrize("image_id", ["img_001", "A", "cat.0001", "x-y_z.9", "7", "a" * 100])
def test_safe_manifest_id_is_kept(image_id):
    f = image_file_for("data/cat/1.png", "cat", image_id)
    assert f.image_id == image_id


@pytest.mark.parametrize("image_id", [
    "../x", "..", ".", "a/b", "/etc/passwd", "a\\b", "a\x00b", "\x00", "", " ", "   ", "\n",
    "abc\n", "abc\r\n", "a b", "-lead", "_lead", ".hidden", "a..b", "x" * 101, "ünïcode", "a:b", "a*b",
])
def test_unsafe_manifest_id_is_hashed(image_id):
    f = image_file_for("data/cat/1.png", "cat", image_id)
    assert f.image_id != image_id
    assert_safe(f.image_id)
    # derived from the manifest id (not the uri), so it is stable and distinct per id
    assert f.image_id == make_image_id(image_id)
    assert image_file_for("other/uri.png", None, image_id).image_id == f.image_id


def test_unsafe_ids_do_not_collide():
    ids = ["../x", "a/b", "a\x00b", "", " ", "..", "a\\b", "abc\n"]
    hashed = {image_file_for("u.png", None, i).image_id for i in ids}
    assert len(hashed) == len(ids)


# -- read_manifest ------------------------------------------------------------------------------------
def test_csv_manifest_resolves_relative_uris(tmp_path):
    folder = tmp_path / "sets"
    folder.mkdir()
    manifest = folder / "m.csv"
    manifest.write_text("uri,label,image_id\n"
                        "imgs/a.png,cat,a1\n"
                        "/abs/b.png,dog,\n"
                        "gs://bucket/c.png,,../evil\n", encoding="utf-8")
    files = read_manifest(str(manifest))
    assert files == [
        ImageFile(uri=str(folder / "imgs" / "a.png"), label="cat", image_id="a1"),
        ImageFile(uri="/abs/b.png", label="dog", image_id=make_image_id("/abs/b.png")),
        ImageFile(uri="gs://bucket/c.png", label=None, image_id=make_image_id("../evil")),
    ]


def test_csv_manifest_with_bom_and_without_image_id(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_bytes("\ufeffuri,label\nx.png,ant\n".encode("utf-8"))
    assert read_manifest(str(manifest)) == [
        ImageFile(uri=str(tmp_path / "x.png"), label="ant", image_id=make_image_id(str(tmp_path / "x.png")))]


def test_tsv_manifest(tmp_path):
    manifest = tmp_path / "m.tsv"
    manifest.write_text("uri\tlabel\nx.png\tant\n", encoding="utf-8")
    [f] = read_manifest(str(manifest))
    assert f.uri == str(tmp_path / "x.png") and f.label == "ant"


def test_jsonl_manifest(tmp_path):
    manifest = tmp_path / "m.jsonl"
    lines = [{"uri": "sub/a.png", "label": "cat", "image_id": "keep-me"},
             {"uri": "/abs/b.png", "label": 3},
             {"uri": "c.png", "label": None, "image_id": "a/b"}]
    manifest.write_text("\n".join(json.dumps(r) for r in lines) + "\n\n", encoding="utf-8")
    assert read_manifest(str(manifest)) == [
        ImageFile(uri=str(tmp_path / "sub" / "a.png"), label="cat", image_id="keep-me"),
        ImageFile(uri="/abs/b.png", label="3", image_id=make_image_id("/abs/b.png")),
        ImageFile(uri=str(tmp_path / "c.png"), label=None, image_id=make_image_id("a/b")),
    ]


def test_parquet_manifest(tmp_path):
    manifest = tmp_path / "m.parquet"
    pq.write_table(pa.table({"uri": ["a.png", "/abs/b.png"], "label": ["cat", None],
                             "image_id": ["id1", None]}), manifest)
    assert read_manifest(str(manifest)) == [
        ImageFile(uri=str(tmp_path / "a.png"), label="cat", image_id="id1"),
        ImageFile(uri="/abs/b.png", label=None, image_id=make_image_id("/abs/b.png")),
    ]


def test_missing_uri_column_names_the_row(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\na.png,cat\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"row 1\b.*'uri'"):
        read_manifest(str(manifest))


def test_empty_uri_names_the_row(tmp_path):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"uri": "a.png"}\n{"uri": "b.png"}\n{"label": "cat"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"row 3\b"):
        read_manifest(str(manifest))


def test_parquet_without_uri_column(tmp_path):
    manifest = tmp_path / "m.parquet"
    pq.write_table(pa.table({"path": ["a.png"], "label": ["cat"]}), manifest)
    with pytest.raises(ValueError, match=r"row 1\b"):
        read_manifest(str(manifest))


def test_unknown_manifest_extension(tmp_path):
    manifest = tmp_path / "m.txt"
    manifest.write_text("uri\na.png\n")
    with pytest.raises(ValueError, match=r"\.csv"):
        read_manifest(str(manifest))


def test_parse_bbox():
    assert parse_bbox("1,2,3,4") == (1.0, 2.0, 3.0, 4.0)
    assert parse_bbox([0, 0, 5, 5]) == (0.0, 0.0, 5.0, 5.0)
    assert parse_bbox("") is None
    for bad in ("1,2,3", "3,2,1,4", "a,b,c,d"):
        with pytest.raises(ValueError, match="bbox"):
            parse_bbox(bad)


# -- match_files --------------------------------------------------------------------------------------
def make_tree(root):
    paths = []
    for label in ("ant", "bee"):
        (root / label).mkdir(parents=True)
        for i in range(2):
            p = root / label / f"{i}.png"
            p.write_bytes(f"{label}-{i}".encode())
            paths.append(str(p))
    (root / "bee" / "notes.txt").write_text("not an image")
    return sorted(paths)


def test_match_files(tmp_path):
    paths = make_tree(tmp_path)
    assert match_files(str(tmp_path / "*" / "*.png")) == paths
    assert match_files(str(tmp_path / "ant" / "*.png")) == [p for p in paths if "/ant/" in p]
    assert match_files(str(tmp_path / "*" / "*.jpg")) == []


# -- Beam stages --------------------------------------------------------------------------------------
def test_match_images_glob(tmp_path):
    paths = make_tree(tmp_path)
    expected = [ImageFile(uri=p, label=p.split("/")[-2], image_id=make_image_id(p)) for p in paths]
    with BeamTestPipeline() as p:
        files = p | MatchImages(pattern=str(tmp_path / "*" / "*.png"))
        assert_that(files, equal_to(expected))


def test_match_images_manifest():
    given = [image_file_for("/x/a.png", "cat", "a"), image_file_for("/x/b.png", None)]
    with BeamTestPipeline() as p:
        assert_that(p | MatchImages(manifest_files=given), equal_to(given))


def test_read_image_bytes(tmp_path):
    paths = make_tree(tmp_path)
    missing = str(tmp_path / "ant" / "gone.png")
    inputs = [image_file_for(path, label_from_uri(path)) for path in paths]
    lost = image_file_for(missing, "ant")
    expected = [ImageBytes(uri=f.uri, label=f.label, image_id=f.image_id,
                           data=f"{f.label}-{f.uri[-5]}".encode()) for f in inputs]

    def check_rejected(rows):
        assert len(rows) == 1, rows
        [r] = rows
        assert isinstance(r, Rejected)
        assert (r.uri, r.image_id, r.stage) == (missing, lost.image_id, "read")
        assert r.reason

    with BeamTestPipeline() as p:
        out = p | beam.Create(inputs + [lost]) | ReadImageBytes()
        assert_that(out.images, equal_to(expected), label="images")
        assert_that(out.rejected, check_rejected, label="rejected")
