"""pipeline/run_dir.py: one typed reader of a run folder: its files by name, its tables (MissingTable when absent), the
images parts as one table, run.json and the config behind it, _SUCCESS, and an audit root's runs oldest first."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from apache_beam.io.filesystems import FileSystems

from igaudit.pipeline.config import from_dict
from igaudit.pipeline.run_dir import (CLASSES_TABLE, FINDINGS_TABLE, MARKER, OWNED_FILES, OWNED_FOLDERS,
                                      REJECTED_TABLE, RUN_JSON, SUCCESS, TABLES, MissingTable, RunDir, completed_runs,
                                      config_of, read_table, runs_holding, write_text)
from igaudit.transforms.records import LEDGER_FOLDER, REJECTED_SCHEMA, images_schema


def rejected_rows(*ids):
    return [{"uri": f"data/x/{i}.png", "image_id": i, "stage": "decode", "reason": "truncated"} for i in ids]


def write_images_part(folder, name, ids):
    """An images/<name> part with only the id, label and confidence set (the other columns null)."""
    schema = images_schema()
    rows = [dict(dict.fromkeys(schema.names), image_id=i, label="ant", confidence=0.5 + n / 10)
            for n, i in enumerate(ids)]
    (folder / "images").mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "images" / name)
    return str(folder / "images" / name)


def make_runs(root, *names, success=()):
    for name in names:
        (root / name).mkdir(parents=True)
        if name in success:
            (root / name / SUCCESS).write_text("done\n")


def test_a_file_is_named_inside_the_run_and_has_follows_the_disk(tmp_path):
    run = RunDir(str(tmp_path))
    assert run.file("masks/x.png") == str(tmp_path / "masks" / "x.png")
    assert run.file(MARKER) == str(tmp_path / ".igaudit" / "marker.json")
    assert not run.has(RUN_JSON)
    write_text(run.file(RUN_JSON), "{}")
    assert run.has(RUN_JSON)


def test_a_run_is_complete_only_with_its_success_marker(tmp_path):
    run = RunDir(str(tmp_path))
    write_text(run.file(RUN_JSON), "{}")
    assert not run.complete                                      # run.json alone: still being finished
    write_text(run.file(SUCCESS), "2026-03-01T00:00:00+00:00\n")
    assert run.complete


def test_a_table_is_read_whole_or_by_columns(tmp_path):
    pq.write_table(pa.Table.from_pylist(rejected_rows("a", "b"), schema=REJECTED_SCHEMA), tmp_path / REJECTED_TABLE)
    run = RunDir(str(tmp_path))
    assert run.table(REJECTED_TABLE).column("image_id").to_pylist() == ["a", "b"]
    assert run.table(REJECTED_TABLE, columns=["stage"]).column_names == ["stage"]
    assert run.rows(REJECTED_TABLE) == rejected_rows("a", "b")
    assert read_table(run.file(REJECTED_TABLE), ["reason"]).to_pylist() == [{"reason": "truncated"}] * 2


def test_a_missing_table_is_missing_table_or_no_rows(tmp_path):
    run = RunDir(str(tmp_path))
    with pytest.raises(MissingTable, match=f"has no {FINDINGS_TABLE}"):
        run.table(FINDINGS_TABLE)
    assert issubclass(MissingTable, LookupError)
    assert run.rows(CLASSES_TABLE) == []
    with pytest.raises(MissingTable):
        run.rows(CLASSES_TABLE, missing_ok=False)


def test_a_name_that_is_not_a_table_is_refused_with_the_known_ones(tmp_path):
    (tmp_path / "run.json").write_text("{}")
    with pytest.raises(ValueError, match="unknown table 'run.json': one of classes.parquet") as err:
        RunDir(str(tmp_path)).table("run.json")
    assert all(t in str(err.value) for t in TABLES)


def test_a_run_owns_its_tables_fixed_files_and_ledgers():
    """What a rerun may remove: every table, _SUCCESS, run.json, report.html, and the ledgers' folder."""
    assert set(TABLES) < set(OWNED_FILES) and {SUCCESS, RUN_JSON, "report.html"} < set(OWNED_FILES)
    assert LEDGER_FOLDER in OWNED_FOLDERS and "images" in OWNED_FOLDERS and MARKER.startswith(".igaudit/")


def test_the_images_parts_are_one_table_in_part_order(tmp_path):
    for n in (3, 0, 4, 1, 2):                                     # written out of order
        write_images_part(tmp_path, f"part-0000{n}.parquet", [f"id{n}"])
    run = RunDir(str(tmp_path))
    table = run.images(columns=["image_id", "confidence"])
    assert table.column_names == ["image_id", "confidence"]
    assert table.to_pylist() == [{"image_id": f"id{n}", "confidence": 0.5} for n in range(5)]
    assert run.images().schema == images_schema()


def test_only_the_parts_named_are_read(tmp_path):
    """Finalize passes the parts its own job wrote: a stale part beside them is not counted."""
    write_images_part(tmp_path, "part-old.parquet", ["stale"])
    mine = write_images_part(tmp_path, "part-new.parquet", ["fresh"])
    assert RunDir(str(tmp_path)).images(columns=["image_id"], paths=[mine]).to_pylist() == [{"image_id": "fresh"}]


def test_no_images_parts_is_an_empty_table_with_the_schema(tmp_path):
    run = RunDir(str(tmp_path))
    empty = run.images()
    assert empty.num_rows == 0 and empty.schema == images_schema()
    some = run.images(columns=["image_id", "grid"])
    assert some.num_rows == 0
    assert some.schema == pa.schema([("image_id", pa.string()), ("grid", pa.list_(pa.float64()))])


def test_info_is_run_json_none_without_it_and_value_error_while_half_written(tmp_path):
    run = RunDir(str(tmp_path))
    assert run.info() is None and run.config() is None
    write_text(run.file(RUN_JSON), json.dumps({"status": "ok", "note": "café"}))
    assert run.info() == {"status": "ok", "note": "café"}
    write_text(run.file(RUN_JSON), '{"status": "o')
    with pytest.raises(ValueError):
        run.info()


def test_the_config_is_read_through_the_schema_with_every_default(tmp_path):
    given = {"input": {"pattern": "data/*/*.png"}, "analysis": {"grid": 4}, "beam": {"api_token": "***"}}
    run = RunDir(str(tmp_path))
    write_text(run.file(RUN_JSON), json.dumps({"status": "ok", "config": given}))
    cfg = run.config()
    assert cfg == from_dict(given) == config_of(run.info())
    assert cfg.analysis.grid == 4 and cfg.analysis.border == 0.1 and cfg.model.resize == "pad"
    assert cfg.beam == {"api_token": "***"}                      # a redacted secret stays redacted


def test_a_written_config_reads_back_equal(tmp_path):
    cfg = from_dict({"input": {"manifest": "m.csv"}, "attribution": {"steps": 8, "rule": "trapezoid"}})
    assert config_of(json.loads(json.dumps({"config": cfg.to_dict()}))) == cfg


def test_runs_holding_a_file_are_the_run_folders_oldest_first(tmp_path):
    done = [f"run=2026030{d}T000000.000Z" for d in (4, 1, 6, 3, 5, 2)]       # made out of order
    make_runs(tmp_path, *done, "run=20260307T000000.000Z", "other", success=done + ["other"])
    assert completed_runs(str(tmp_path)) == [str(tmp_path / r) for r in sorted(done)]   # not the unfinished run
    (tmp_path / "run=20260307T000000.000Z" / ".igaudit").mkdir()
    (tmp_path / "run=20260307T000000.000Z" / ".igaudit" / "marker.json").write_text("{}")
    assert runs_holding(str(tmp_path), MARKER) == [str(tmp_path / "run=20260307T000000.000Z")]


def test_a_root_without_runs_or_that_cannot_be_listed_has_none(tmp_path, monkeypatch):
    assert completed_runs(str(tmp_path / "absent")) == []
    make_runs(tmp_path, "run=1", success=("run=1",))

    def refused(patterns):
        raise PermissionError("403: the bucket refuses listing")
    monkeypatch.setattr(FileSystems, "match", refused)
    assert completed_runs(str(tmp_path)) == []
