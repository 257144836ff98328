"""transforms/tfrecords.py: TFRecord shards of tf.train.Example records, plain and gzip, read like image files;
bad records rejected with a reason. The same images as files and as records give the same predictions and
attributions."""
from __future__ import annotations

import gzip
import io
import struct
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from igaudit.pipeline.config import TFRecordConfig, from_dict
from igaudit.pipeline.job import run_job
from igaudit.pipeline.run_dir import read_images_table, read_table
from igaudit.transforms.tfrecords import CorruptFrame, parse_record, read_frames
from tests.conftest import CLASSES, tiny_config

KEYS = TFRecordConfig()


def example(image: bytes = b"", label=None, index=None, name=None, keys=KEYS) -> bytes:
    feature = {}
    if image:
        feature[keys.image] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))
    if label is not None:
        feature[keys.label_text] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[label.encode()]))
    if index is not None:
        feature[keys.label_index] = tf.train.Feature(int64_list=tf.train.Int64List(value=[index]))
    if name is not None:
        feature[keys.id] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[name.encode()]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_shard(path: Path, records: list[bytes], compression: str = "") -> Path:
    with tf.io.TFRecordWriter(str(path), options=compression or None) as w:
        for r in records:
            w.write(r)
    return path


def test_frames_round_trip_and_corruption_is_caught(tmp_path):
    records = [b"a", b"", b"x" * 1000]
    shard = write_shard(tmp_path / "s.tfrecord", records)
    with open(shard, "rb") as f:
        assert list(read_frames(f)) == records
    data = shard.read_bytes()
    for broken, reason in ((data[:-3], "truncated record"), (data[:5], "truncated frame header"),
                           (data[:12] + bytes([data[12] ^ 1]) + data[13:], "data checksum mismatch"),
                           (struct.pack("<Q", 1 << 40) + data[8:], "length checksum mismatch")):
        with pytest.raises(CorruptFrame, match=reason):
            list(read_frames(io.BytesIO(broken)))


def test_parse_record_reads_the_configured_keys():
    assert parse_record(example(b"img", label="cat", name="c.png"), KEYS, CLASSES) == (b"img", "cat", "c.png")
    assert parse_record(example(b"img", index=1), KEYS, CLASSES) == (b"img", "bee", None)
    keys = TFRecordConfig(image="jpeg", label_text="name", id="key")
    assert parse_record(example(b"img", label="ant", name="k", keys=keys), keys, CLASSES) == (b"img", "ant", "k")
    with pytest.raises(ValueError, match="no image bytes in feature 'image/encoded'"):
        parse_record(example(label="cat"), KEYS, CLASSES)
    with pytest.raises(ValueError, match="label index 7 .* is not a class index"):
        parse_record(example(b"img", index=7), KEYS, CLASSES)
    with pytest.raises(ValueError, match="not a tf.train.Example"):
        parse_record(b"\xff\xff not a protobuf", KEYS, CLASSES)


def good_images(tiny_assets) -> list[Path]:
    from PIL import Image
    good = []
    for p in sorted(tiny_assets["data"].glob("*/*")):
        try:
            with Image.open(p) as im:
                im.load()
            good.append(p)
        except Exception:   # the dataset's broken files
            continue
    return good


@pytest.mark.slow
def test_the_same_images_as_files_and_as_records_give_the_same_results(tiny_assets, tmp_path):
    images = good_images(tiny_assets)
    assert len(images) == tiny_assets["good"]
    shards = tmp_path / "shards"
    shards.mkdir()
    half = len(images) // 2
    records = [example(p.read_bytes(), label=p.parent.name if i % 2 else None,
                       index=None if i % 2 else CLASSES.index(p.parent.name), name=f"{p.parent.name}-{p.stem}")
               for i, p in enumerate(images)]
    write_shard(shards / "part-0.tfrecord", records[:half])
    write_shard(shards / "part-1.tfrecord.gz", records[half:], "GZIP")
    bad = [example(label="cat"), example(b"img", index=9), b"junk", example(b"not an image", label="ant")]
    write_shard(shards / "part-2.tfrecord", bad)
    gzip_named_plain = shards / "part-3.tfrecord"          # gzip is told from the bytes, not the name
    again = example(images[0].read_bytes(), label=images[0].parent.name, name="copy-of-the-first")
    gzip_named_plain.write_bytes(gzip.compress(write_shard(tmp_path / "one", [again]).read_bytes()))
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")

    as_records = tmp_path / "records"
    cfg = tiny_config(tiny_assets, as_records, input={"pattern": str(shards / "*"), "format": "tfrecord"},
                      model={"class_names": str(tmp_path / "classes.txt")})
    summary = run_job(from_dict(cfg))
    assert summary.matched == len(images) + len(bad) + 1 and summary.attributed == len(images) + 1
    reasons = sorted(r["reason"] for r in read_table(str(as_records / "rejected.parquet")).to_pylist())
    assert len(reasons) == 4
    assert any("no image bytes" in r for r in reasons) and any("label index 9" in r for r in reasons)
    assert any("not a tf.train.Example" in r for r in reasons) and any("not an image" in r for r in reasons)

    as_files = tmp_path / "files"
    run_job(from_dict(tiny_config(tiny_assets, as_files)))
    files = {f"{r['label']}-{Path(r['uri']).stem}": r for r in read_images_table(str(as_files)).to_pylist()}
    recs = {}
    for r in read_images_table(str(as_records)).to_pylist():
        recs.setdefault(r["image_id"], r)
    assert recs.pop("copy-of-the-first")["predicted"] == files[f"{images[0].parent.name}-{images[0].stem}"]["predicted"]
    assert recs.keys() == files.keys()                      # ids from image/filename
    for key, a in files.items():
        b = recs[key]
        assert a["label"] == b["label"] and a["predicted"] == b["predicted"]
        for column in ("confidence", "attribution_sum", "completeness_gap", "grid"):
            assert np.allclose(a[column], b[column], rtol=1e-6, atol=1e-9), (key, column)
        assert (as_files / a["mask_path"]).read_bytes() == (as_records / b["mask_path"]).read_bytes()
        assert b["uri"].startswith(str(shards)) and "#" in b["uri"]
    # the report shows each record as the model saw it, read again from its shard
    html = (as_records / "report.html").read_text()
    assert "input not readable" not in html and html.count("as the model saw it") > 10


def test_tfrecord_input_needs_class_names(tiny_assets, tmp_path):
    from igaudit.pipeline.errors import UserError
    (tmp_path / "shards").mkdir()
    write_shard(tmp_path / "shards" / "s.tfrecord", [example(b"x", label="ant")])
    cfg = tiny_config(tiny_assets, tmp_path / "out", input={"pattern": str(tmp_path / "shards" / "*.tfrecord"),
                                                              "format": "tfrecord"})
    with pytest.raises(UserError, match="set model.class_names"):
        run_job(from_dict(cfg))
