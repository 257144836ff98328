"""transforms/artifacts.py: one image's mask, overlay and raw array, read back by id from either layout."""
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from igaudit.pipeline.config import AnalysisConfig, OutputConfig, RenderConfig
from igaudit.transforms import artifacts
from igaudit.transforms.records import images_schema
from igaudit.transforms.write import _WriteArtifactsFn
from tests.transforms.test_write import _result


def make_run(root, layout: str, n: int = 5, raw: bool = True, drop_shard_column: bool = False):
    """A run folder as WriteArtifacts and the images table leave it: n images, masks, overlays (and raw)."""
    fn = _WriteArtifactsFn(str(root), ["a"], OutputConfig(masks=True, overlays=True, raw=raw, layout=layout),
                           AnalysisConfig(grid=4, border=0.1), RenderConfig(), per_target_files=False)
    fn.setup()
    fn.start_bundle()
    rows = [row for i in range(n) for row in fn.process(_result(i))]
    fn.finish_bundle()
    fn.teardown()
    schema = images_schema()
    if drop_shard_column:                       # a run made before output.layout existed
        schema = schema.remove(schema.get_field_index("artifact_shard"))
        rows = [{k: v for k, v in r.items() if k != "artifact_shard"} for r in rows]
    (root / "images").mkdir()
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), root / "images" / "part-0.parquet")
    return rows


@pytest.mark.parametrize("layout", ["files", "shards"])
def test_read_artifacts_returns_an_images_files_by_id_in_either_layout(tmp_path, layout):
    make_run(tmp_path, layout)
    got = artifacts.read_artifacts(str(tmp_path), "id3")
    assert got["mask"].startswith(b"\x89PNG") and got["overlay"].startswith(b"\x89PNG")
    np.testing.assert_array_equal(got["raw"], _result(3).attribution)
    files = tmp_path.parent / f"{layout}-files"
    files.mkdir()
    make_run(files, "files")                    # the same bytes as the files layout writes
    assert got["overlay"] == (files / "overlays" / "id3.png").read_bytes()
    with pytest.raises(KeyError, match="no image 'nope'"):
        artifacts.read_artifacts(str(tmp_path), "nope")


def test_a_run_without_raw_arrays_or_made_before_layouts_reads_as_files(tmp_path):
    make_run(tmp_path, "files", raw=False, drop_shard_column=True)
    got = artifacts.read_artifacts(str(tmp_path), "id0")
    assert got["raw"] is None and got["overlay"] == (tmp_path / "overlays" / "id0.png").read_bytes()


def test_a_shard_is_read_once_and_the_cache_keeps_the_last_used(tmp_path):
    entries = [{"image_id": f"i{k}", "target": 0, "mask": b"m%d" % k, "overlay": None, "raw": None} for k in range(3)]
    paths = []
    for k in range(3):
        path = tmp_path / f"s{k}.parquet"
        path.write_bytes(artifacts.shard_bytes(entries[k:k + 1]))
        paths.append(str(path))
    cache = artifacts.ShardCache(keep=2)
    assert cache.entry(paths[0], "i0", 0) == {"mask": b"m0", "overlay": None, "raw": None}
    cache.entry(paths[1], "i1", 0)
    cache.entry(paths[0], "i0", 0)              # used again: now the newest
    cache.entry(paths[2], "i2", 0)              # evicts s1, not s0
    assert list(cache._tables) == [paths[0], paths[2]]
    with pytest.raises(KeyError):
        cache.entry(paths[0], "i1", 0)


def test_kind_of_names_the_files_layouts_folders():
    assert [artifacts.kind_of(p) for p in ("masks/a.png", "overlays/a.png", "raw/a.npy")] == list(artifacts.KINDS)
