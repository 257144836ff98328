"""transforms/write.py: per-image files written on a background thread, atomically."""
import numpy as np
import pytest

from igaudit.pipeline.config import AnalysisConfig, OutputConfig, RenderConfig
from igaudit.transforms import write
from igaudit.transforms.records import AttributionResult
from igaudit.transforms.write import LEDGER_FOLDER, _WriteArtifactsFn, read_ledger, write_file_atomically


def _result(i, shape=(8, 8, 3)):
    rng = np.random.default_rng(i)
    return AttributionResult(uri=f"u{i}", label="a", image_id=f"id{i}",
                             pixels=rng.uniform(size=shape).astype(np.float32),
                             attribution=rng.normal(size=shape).astype(np.float32), label_index=0,
                             predicted=0, confidence=0.9, target=0, score_input=0.9, score_baseline=0.1,
                             completeness_gap=0.0, steps=8, rule="trapezoid")


def test_background_file_writes_finish_before_the_bundle_and_failures_surface(tmp_path, monkeypatch):
    """WriteArtifacts writes on a background thread: every file exists once finish_bundle
    returns, and a failed write fails the bundle instead of vanishing."""
    monkeypatch.setattr(write, "MAX_PENDING_WRITES", 2)
    monkeypatch.setattr(write, "LEDGER_GROUP", 1)

    def run(out_dir):
        fn = _WriteArtifactsFn(str(out_dir), ["a"], OutputConfig(masks=True, overlays=True, raw=True),
                               AnalysisConfig(grid=4, border=0.1), RenderConfig(), per_target_files=False)
        fn.setup()
        fn.start_bundle()
        rows = []
        try:
            for i in range(5):
                rows += list(fn.process(_result(i)))
                assert sum(n for _, n in fn._pending) <= 2      # bounded: the oldest write is awaited
            fn.finish_bundle()
        finally:
            fn.teardown()
        return rows

    rows = run(tmp_path / "out")
    assert [r["image_id"] for r in rows] == [f"id{i}" for i in range(5)]
    for i in range(5):
        for rel in (f"masks/id{i}.png", f"overlays/id{i}.png", f"raw/id{i}.npy"):
            assert (tmp_path / "out" / rel).is_file(), rel
    blocked = tmp_path / "not-a-dir"
    blocked.write_text("a file where the output dir should be")
    with pytest.raises(Exception):
        run(blocked)


def test_local_files_are_written_atomically_into_new_folders_and_replace_old_ones(tmp_path):
    target = tmp_path / "masks" / "deeper" / "a.png"
    write_file_atomically(str(target), b"first")
    assert target.read_bytes() == b"first"
    write_file_atomically(str(target), b"second")          # a retried bundle rewrites its files
    assert target.read_bytes() == b"second"
    assert [p.name for p in target.parent.iterdir()] == ["a.png"]   # no temporary left behind


def test_every_written_file_is_listed_in_a_ledger_before_it_is_written(tmp_path, monkeypatch):
    """The ledger (what a rerun may delete) lists each per-image file, and is on disk before the file."""
    monkeypatch.setattr(write, "LEDGER_GROUP", 3)
    order = []
    real = write.write_file_atomically
    monkeypatch.setattr(write, "write_file_atomically", lambda path, data: (order.append(path), real(path, data)))
    out = tmp_path / "out"
    fn = _WriteArtifactsFn(str(out), ["a"], OutputConfig(masks=True, overlays=True, raw=False),
                           AnalysisConfig(grid=4, border=0.1), RenderConfig(), per_target_files=False)
    fn.setup()
    fn.start_bundle()
    for i in range(7):                          # 3 + 3 + 1: the last group is written at finish_bundle
        list(fn.process(_result(i)))
    fn.finish_bundle()
    fn.teardown()
    ledgers = sorted((out / LEDGER_FOLDER).glob("*.txt"))
    assert len(ledgers) == 3
    listed = [p for ledger in ledgers for p in read_ledger(ledger.read_bytes())]
    written = sorted(str(p.relative_to(out)) for folder in ("masks", "overlays") for p in (out / folder).iterdir())
    assert sorted(listed) == written and len(written) == 14
    for ledger in ledgers:                      # each ledger precedes the files it lists
        at = order.index(str(ledger))
        assert all(order.index(str(out / p)) > at for p in read_ledger(ledger.read_bytes()))


def test_layout_shards_writes_the_same_bytes_as_rows_of_a_few_parquet_files_listed_first(tmp_path, monkeypatch):
    """output.layout shards: one shard per SHARD_ROWS results (and the bundle's rest), listed in a ledger before it is
    written; each images row names its shard and no file; the shard holds exactly the files layout's bytes."""
    from igaudit.transforms import artifacts
    monkeypatch.setattr(write, "SHARD_ROWS", 4)
    order = []
    real = write.write_file_atomically
    monkeypatch.setattr(write, "write_file_atomically", lambda path, data: (order.append(path), real(path, data)))
    rows = {}
    for layout in ("files", "shards"):
        out = tmp_path / layout
        fn = _WriteArtifactsFn(str(out), ["a"], OutputConfig(masks=True, overlays=True, raw=True, layout=layout),
                               AnalysisConfig(grid=4, border=0.1), RenderConfig(), per_target_files=False)
        fn.setup()
        fn.start_bundle()
        rows[layout] = [row for i in range(6) for row in fn.process(_result(i))]
        fn.finish_bundle()
        fn.teardown()
    shards = sorted((tmp_path / "shards" / "artifacts").glob("*.parquet"))
    assert len(shards) == 2 and not (tmp_path / "shards" / "masks").exists()          # 4 + 2 results
    listed = [p for ledger in (tmp_path / "shards" / LEDGER_FOLDER).glob("*.txt") for p in read_ledger(ledger.read_bytes())]
    assert sorted(listed) == sorted(str(p.relative_to(tmp_path / "shards")) for p in shards)
    for ledger in (tmp_path / "shards" / LEDGER_FOLDER).glob("*.txt"):        # each ledger precedes its shard
        assert all(order.index(str(tmp_path / "shards" / p)) > order.index(str(ledger))
                   for p in read_ledger(ledger.read_bytes()))
    cache = artifacts.ShardCache()
    for files_row, shard_row in zip(rows["files"], rows["shards"]):
        assert shard_row["mask_path"] is None and shard_row["overlay_path"] is None
        assert shard_row["artifact_shard"].startswith("artifacts/") and files_row["artifact_shard"] is None
        got = artifacts.row_artifacts(str(tmp_path / "shards"), shard_row, cache=cache)
        want = artifacts.row_artifacts(str(tmp_path / "files"), files_row, [f"raw/{files_row['image_id']}.npy"])
        assert got == want and all(got[k] for k in artifacts.KINDS)
