"""pipeline/ownership.py: the marker, the refusal of foreign and input-holding folders, and a rerun's clean-up
removing exactly what the earlier run recorded (on local disk here; tests/pipeline/test_buckets.py runs the
same on gs:// and s3://)."""
import json
import os

import pytest

from igaudit.pipeline import ownership
from igaudit.pipeline.errors import UserError
from igaudit.pipeline.run_dir import MARKER
from igaudit.transforms.write import LEDGER_FOLDER, ledger_text


def files(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("pattern, base", [
    ("data/demo/audit/*/*.png", "data/demo/audit"), ("*.png", "."), ("/abs/x*.png", "/abs"), ("/x*.png", "/"),
    ("gs://b/d/*/*.png", "gs://b/d"), ("data/a.png", "data"), ("data/[ab]/*.png", "data"),
])
def test_glob_base_is_the_folder_before_the_first_wildcard(pattern, base):
    assert ownership.glob_base(pattern) == base


def test_output_dirs_over_the_inputs_are_refused(tmp_path):
    data = tmp_path / "proj" / "images"
    inputs = [str(data / "cat" / "1.png")]
    pattern = str(data / "*" / "*.png")
    for out in (tmp_path / "proj", data, data / "out", data / "cat" / "out", tmp_path):
        with pytest.raises(UserError, match="overlaps the inputs"):
            ownership.check_not_over_inputs(str(out), pattern, None, inputs)
    for out in (tmp_path / "out", tmp_path / "proj" / "out", tmp_path / "proj" / "imagesX"):
        ownership.check_not_over_inputs(str(out), pattern, None, inputs)
    # a manifest: the manifest itself, and each listed image's folder, count
    manifest = str(tmp_path / "lists" / "m.csv")
    elsewhere = [str(tmp_path / "pics" / "a" / "1.png"), str(tmp_path / "pics" / "b" / "2.png")]
    for out in (tmp_path / "pics" / "b", tmp_path / "pics", tmp_path / "pics" / "a" / "deeper"):
        with pytest.raises(UserError, match="overlaps the inputs"):
            ownership.check_not_over_inputs(str(out), None, manifest, elsewhere)
    for out in (tmp_path / "lists", tmp_path):
        with pytest.raises(UserError, match="holds the input manifest|overlaps the inputs"):
            ownership.check_not_over_inputs(str(out), None, manifest, elsewhere)
    for out in (tmp_path / "out", tmp_path / "lists" / "out"):      # beside the manifest is fine
        ownership.check_not_over_inputs(str(out), None, manifest, elsewhere)
    # relative and absolute spellings of one folder are the same folder
    os.chdir(tmp_path)
    with pytest.raises(UserError):
        ownership.check_not_over_inputs("proj", "proj/images/*/*.png", None, inputs)


def test_claim_refuses_a_foreign_folder_without_writing_and_marks_a_new_one(tmp_path):
    new = tmp_path / "new" / "deeper"
    run_id = ownership.claim(str(new))
    marker = json.loads((new / MARKER).read_text())
    assert marker["tool"] == "igaudit" and marker["run_id"] == run_id and "_SUCCESS" in marker["files"]
    empty = tmp_path / "empty"
    empty.mkdir()
    ownership.claim(str(empty))
    assert ownership.is_run_dir(str(empty))
    foreign = tmp_path / "foreign"
    (foreign / "sub").mkdir(parents=True)
    (foreign / "sub" / "x.txt").write_text("mine")
    with pytest.raises(UserError, match="not an igaudit run folder") as e:
        ownership.claim(str(foreign))
    assert str(foreign) in str(e.value) and "--overwrite" in str(e.value)
    assert files(foreign) == ["sub/x.txt"]
    ownership.claim(str(foreign), overwrite=True)
    assert files(foreign) == [MARKER]
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        ownership.claim(str(tmp_path / "a-file"))


def test_a_rerun_removes_exactly_what_the_earlier_run_recorded(tmp_path):
    out = tmp_path / "out"
    ownership.claim(str(out))
    written = {"_SUCCESS": "x", "run.json": "{}", "report.html": "<p>", "classes.parquet": "p",
               "images/part-00000-of-00002.parquet": "p", "images/part-00001-of-00002.parquet": "p",
               "masks/a-0123.png": "m", "masks/b-4567.png": "m", "overlays/a-0123.png": "o",
               "masks/.c.png.tmp-deadbeef": "half", "beam-temp-classes.parquet-1234/shard": "t",
               "images/beam-temp-part-99/shard": "t"}
    foreign = {"masks/keep.txt": "note", "masks/notes.png": "mine", "overlays/mine.png": "mine", "README": "r",
               "images/extra.csv": "mine", "mine/report.html": "mine"}
    for rel, text in {**written, **foreign}.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    ledger = out / LEDGER_FOLDER / "abc.txt"
    ledger.parent.mkdir(parents=True)
    ledger.write_bytes(ledger_text(["masks/a-0123.png", "masks/b-4567.png", "overlays/a-0123.png",
                                    "masks/never-written.png", "../outside.txt",
                                    "masks/../../outside.txt"]))
    (tmp_path / "outside.txt").write_text("a file beside the run folder")
    ownership.claim(str(out))
    assert files(out) == sorted([*foreign, MARKER])
    assert (tmp_path / "outside.txt").exists()             # a ledger line cannot reach outside output.dir
    assert not (out / "beam-temp-classes.parquet-1234").exists() and not (out / LEDGER_FOLDER).exists()
    # folders igaudit made and left empty are removed; ones holding foreign files stay
    ownership.claim(str(out))
    assert sorted(p.name for p in out.iterdir()) == [".igaudit", "README", "images", "masks", "mine", "overlays"]
