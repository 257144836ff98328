"""transforms/reuse.py: ReuseUnchanged sends on the images whose bytes or label changed, and takes the others' rows
from the reference run (cluster fields cleared, reused_from set), their files copied and listed in the ledger."""
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to

from igaudit.pipeline.config import OutputConfig
from igaudit.transforms.records import LEDGER_FOLDER, ImageBytes, content_hash, images_schema
from igaudit.transforms.reuse import FRESH, REUSED, ReuseUnchanged
from igaudit.transforms.write import read_ledger


def reference_run(root: Path, images: dict) -> Path:
    """A reference run folder: one images row per (image_id, (bytes, label)), its mask and overlay."""
    ref = root / "run=1"
    rows = []
    for image_id, (data, label) in images.items():
        row = dict.fromkeys(images_schema().names)
        row.update(image_id=image_id, uri=f"old/{image_id}.png", label=label, target=0, cluster=2, outlier_score=0.5,
                   content_hash=content_hash(data), mask_path=f"masks/{image_id}.png",
                   overlay_path=f"overlays/{image_id}.png")
        rows.append(row)
        for folder in ("masks", "overlays"):
            (ref / folder).mkdir(parents=True, exist_ok=True)
            (ref / folder / f"{image_id}.png").write_bytes(f"{folder} of {image_id}".encode())
    (ref / "images").mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, images_schema()), ref / "images" / "part-0.parquet")
    return ref


def test_unchanged_images_are_taken_from_the_reference_and_the_rest_sent_on(tmp_path):
    ref = reference_run(tmp_path, {"same": (b"AAA", "ant"), "edited": (b"BBB", "ant"), "moved": (b"CCC", "ant")})
    out = tmp_path / "run=2"
    now = [ImageBytes("new/same.png", "ant", "same", b"AAA"),
           ImageBytes("new/edited.png", "ant", "edited", b"BBX"),       # one byte changed
           ImageBytes("new/moved.png", "bee", "moved", b"CCC"),         # same bytes, another label
           ImageBytes("new/added.png", "bee", "added", b"DDD")]         # not in the reference
    with TestPipeline() as p:
        split = (p | beam.Create(now)
                 | ReuseUnchanged(str(ref), str(out), OutputConfig(dir=str(out)), per_target=False))
        assert_that(split[FRESH] | "FreshIds" >> beam.Map(lambda b: b.image_id),
                    equal_to(["edited", "moved", "added"]), label="fresh")
        assert_that(split[REUSED] | "Reused" >> beam.Map(
            lambda r: (r["image_id"], r["uri"], r["cluster"], r["outlier_score"], r["reused_from"], r["mask_path"])),
            equal_to([("same", "new/same.png", None, None, str(ref), "masks/same.png")]), label="reused")
    assert (out / "masks" / "same.png").read_bytes() == b"masks of same"
    assert (out / "overlays" / "same.png").read_bytes() == b"overlays of same"
    assert not (out / "masks" / "edited.png").exists()
    listed = [p for f in (out / LEDGER_FOLDER).iterdir() for p in read_ledger(f.read_bytes())]
    assert sorted(listed) == ["masks/same.png", "overlays/same.png"]       # what it copied, in the ledger


def test_only_the_files_the_output_asks_for_are_copied(tmp_path):
    ref = reference_run(tmp_path, {"same": (b"AAA", "ant")})
    out = tmp_path / "run=2"
    with TestPipeline() as p:
        split = (p | beam.Create([ImageBytes("same.png", "ant", "same", b"AAA")])
                 | ReuseUnchanged(str(ref), str(out), OutputConfig(dir=str(out), masks=False), per_target=False))
        assert_that(split[REUSED] | beam.Map(lambda r: r["image_id"]), equal_to(["same"]))
    assert (out / "overlays" / "same.png").exists() and not (out / "masks").exists()


def test_an_image_whose_files_the_reference_lost_is_read_again_and_attributed(tmp_path):
    ref = reference_run(tmp_path, {"kept": (b"AAA", "ant"), "lost": (b"BBB", "ant")})
    (ref / "overlays" / "lost.png").unlink()                 # someone cleaned the reference run
    out = tmp_path / "run=2"
    (tmp_path / "now").mkdir()
    (tmp_path / "now" / "lost.png").write_bytes(b"BBB")
    now = [ImageBytes(str(tmp_path / "now" / "kept.png"), "ant", "kept", b"AAA"),
           ImageBytes(str(tmp_path / "now" / "lost.png"), "ant", "lost", b"BBB")]
    with TestPipeline() as p:
        split = p | beam.Create(now) | ReuseUnchanged(str(ref), str(out), OutputConfig(dir=str(out)), per_target=False)
        assert_that(split[FRESH] | "Fresh" >> beam.Map(lambda b: (b.image_id, b.data)), equal_to([("lost", b"BBB")]),
                    label="fresh")
        assert_that(split[REUSED] | "Reused" >> beam.Map(lambda r: r["image_id"]), equal_to(["kept"]), label="reused")
    assert (out / "overlays" / "kept.png").exists()


def test_reused_files_change_layout_to_this_runs_and_back(tmp_path):
    """Files -> shards: the reused images' bytes land in one shard of this run, listed first, its rows naming it;
    shards -> files: a later files run takes them out of that shard into masks/ and overlays/ again."""
    from igaudit.transforms.artifacts import row_artifacts
    ref = reference_run(tmp_path, {"a": (b"AAA", "ant"), "b": (b"BBB", "ant")})
    now = [ImageBytes("new/a.png", "ant", "a", b"AAA"), ImageBytes("new/b.png", "ant", "b", b"BBB")]
    sharded = tmp_path / "run=2"
    with TestPipeline() as p:
        split = p | beam.Create(now) | ReuseUnchanged(
            str(ref), str(sharded), OutputConfig(dir=str(sharded), layout="shards"), per_target=False)
        split[REUSED] | beam.Map(lambda r: r) | beam.io.WriteToParquet(
            str(sharded / "images" / "part"), images_schema(), file_name_suffix=".parquet")
    rows = pq.read_table(sharded / "images").to_pylist()
    shards = list((sharded / "artifacts").iterdir())
    assert len(shards) == 1 and not (sharded / "masks").exists()
    assert {r["artifact_shard"] for r in rows} == {f"artifacts/{shards[0].name}"}
    assert all(r["mask_path"] is None and r["overlay_path"] is None for r in rows)
    listed = [p for f in (sharded / LEDGER_FOLDER).iterdir() for p in read_ledger(f.read_bytes())]
    assert listed == [f"artifacts/{shards[0].name}"]
    row_a = next(r for r in rows if r["image_id"] == "a")
    assert row_artifacts(str(sharded), row_a, kinds=("mask", "overlay")) == {"mask": b"masks of a",
                                                                             "overlay": b"overlays of a"}
    back = tmp_path / "run=3"
    with TestPipeline() as p:
        split = p | beam.Create(now) | ReuseUnchanged(str(sharded), str(back), OutputConfig(dir=str(back)),
                                                      per_target=False)
        assert_that(split[REUSED] | beam.Map(lambda r: (r["image_id"], r["mask_path"], r["artifact_shard"])),
                    equal_to([("a", "masks/a.png", None), ("b", "masks/b.png", None)]))
    assert (back / "overlays" / "b.png").read_bytes() == b"overlays of b"
