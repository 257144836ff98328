"""pipeline/preflight.py: the checks before any work: the inputs a pattern or manifest names, the class names, the
model's outputs against them, the reference run, the decode spec and the Plan; each mistake a UserError with the fix."""
import os

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from igaudit.pipeline import preflight
from igaudit.pipeline.config import from_dict
from igaudit.pipeline.errors import NothingToAudit, UserError
from igaudit.pipeline.run_dir import CLASSES_TABLE, FINDINGS_TABLE, SUCCESS
from igaudit.transforms.attribution.targets import TargetSpec
from igaudit.transforms.imaging.decode import DecodeSpec
from igaudit.transforms.records import ImageFile, classes_schema, findings_schema
from tests.conftest import CLASSES, SIZE, tiny_config


def config(**sections):
    """A config with a made-up pattern unless a section says otherwise."""
    sections.setdefault("input", {"pattern": "/nowhere/*/*.png"})
    return from_dict(sections)


def touch(root, *names):
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(b"x")


def lines_file(path, text):
    path.write_text(text)
    return str(path)


def table_file(path, rows, schema):
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), path)


def test_a_pattern_gives_each_file_labelled_by_its_folder(tmp_path):
    touch(tmp_path, "data/cat/2.png", "data/ant/1.png", "data/cat/1.png", "data/notes.txt")
    files, manifest = preflight.find_inputs(config(input={"pattern": str(tmp_path / "data/*/*.png")}))
    assert manifest is None
    assert files == [ImageFile(str(tmp_path / f"data/{n}"), n.split("/")[0], "")
                     for n in ("ant/1.png", "cat/1.png", "cat/2.png")]


def test_a_pattern_under_a_missing_folder_says_so(tmp_path):
    with pytest.raises(UserError, match=f"the folder '{tmp_path}/absent' does not exist") as e:
        preflight.find_inputs(config(input={"pattern": str(tmp_path / "absent/*/*.png")}))
    assert not isinstance(e.value, NothingToAudit)               # a typo, not an empty audit


def test_a_pattern_matching_nothing_is_nothing_to_audit(tmp_path):
    touch(tmp_path, "data/ant/1.jpg")
    with pytest.raises(NothingToAudit, match="matches no files: check the glob"):
        preflight.find_inputs(config(input={"pattern": str(tmp_path / "data/*/*.png")}))


def test_a_pattern_that_cannot_be_listed_names_the_cause():
    with pytest.raises(UserError, match=r"input.pattern 'nosuch://b/\*.png' cannot be listed \(ValueError: "):
        preflight.find_inputs(config(input={"pattern": "nosuch://b/*.png"}))


def test_tfrecord_shards_are_inputs_without_labels(tmp_path):
    touch(tmp_path, "shards/b.tfrecord", "shards/a.tfrecord")
    cfg = config(input={"pattern": str(tmp_path / "shards/*.tfrecord"), "format": "tfrecord"})
    files, manifest = preflight.find_inputs(cfg)
    assert manifest is None and [(os.path.basename(f.uri), f.label) for f in files] == [("a.tfrecord", None),
                                                                                        ("b.tfrecord", None)]
    with pytest.raises(NothingToAudit, match="matches no TFRecord files"):
        preflight.find_inputs(config(input={"pattern": str(tmp_path / "none/*.tfrecord"), "format": "tfrecord"}))


def test_a_manifest_gives_its_rows_twice(tmp_path):
    manifest = lines_file(tmp_path / "m.csv", "uri,label\nimgs/a.png,ant\n/abs/b.png,bee\n")
    files, rows = preflight.find_inputs(config(input={"manifest": manifest}))
    assert files is rows
    assert [(f.uri, f.label) for f in files] == [(str(tmp_path / "imgs/a.png"), "ant"), ("/abs/b.png", "bee")]


@pytest.mark.parametrize("name, text, error, message", [
    ("absent.csv", None, UserError, "input.manifest '.*absent.csv' not found: point it at a CSV"),
    ("m.txt", "uri,label\n", UserError, "input.manifest '.*m.txt' cannot be read: .*must end in .csv"),
    ("m.csv", "label\nant\n", UserError, "cannot be read: .*row 1 has no 'uri' value"),
    ("m.csv", "uri,label\n", NothingToAudit, "nothing to audit: input.manifest '.*m.csv' has no rows"),
])
def test_a_manifest_that_cannot_serve_is_a_user_error(tmp_path, name, text, error, message):
    if text is not None:
        lines_file(tmp_path / name, text)
    with pytest.raises(error, match=message):
        preflight.find_inputs(config(input={"manifest": str(tmp_path / name)}))


def test_the_classes_are_the_sorted_labels_without_a_names_file():
    files = [ImageFile("a", "cat", ""), ImageFile("b", "ant", ""), ImageFile("c", None, ""), ImageFile("d", "cat", "")]
    assert preflight.resolve_class_names(config(), files) == ["ant", "cat"]


def test_a_names_file_is_the_class_order_blank_lines_aside(tmp_path):
    names = lines_file(tmp_path / "names.txt", "zebra\n\n  ant \nbee\n")
    cfg = config(model={"class_names": names})
    assert preflight.resolve_class_names(cfg, [ImageFile("a", "cat", "")]) == ["zebra", "ant", "bee"]


def test_a_names_file_that_is_missing_or_empty_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="model.class_names '.*absent.txt' cannot be read: give a text file"):
        preflight.resolve_class_names(config(model={"class_names": str(tmp_path / "absent.txt")}), [])
    empty = lines_file(tmp_path / "empty.txt", "\n \n")
    with pytest.raises(UserError, match="model.class_names '.*empty.txt' is empty"):
        preflight.resolve_class_names(config(model={"class_names": empty}), [])


def test_tfrecord_inputs_need_a_names_file():
    cfg = config(input={"pattern": "/nowhere/*.tfrecord", "format": "tfrecord"})
    with pytest.raises(UserError, match="input.format tfrecord: set model.class_names"):
        preflight.resolve_class_names(cfg, [ImageFile("s", None, "")])


def test_the_decode_spec_is_the_models_size_and_channels_with_the_settings():
    cfg = config(model={"resize": "crop"}, input={"pattern": "/nowhere/*/*", "max_pixels": 5000})
    assert preflight.decode_spec(cfg, (32, 48, 1)) == DecodeSpec((32, 48), "crop", 5000, 1)


def complete_run(root, classes=True, findings=True):
    root.mkdir()
    (root / SUCCESS).write_text("done\n")
    if classes:
        table_file(root / CLASSES_TABLE, [{"group_by": "label", "class_name": "ant", "count": 3}], classes_schema())
    if findings:
        table_file(root / FINDINGS_TABLE, [{"finding": "ant/drift", "flagged": True}], findings_schema())
    return str(root)


def test_no_reference_reads_nothing():
    assert preflight.read_reference(None) == (None, None, [])
    assert preflight.read_reference("") == (None, None, [])


def test_a_reference_run_gives_its_class_rows_and_findings(tmp_path):
    classes, findings, warnings = preflight.read_reference(complete_run(tmp_path / "old"))
    assert [(c["class_name"], c["count"]) for c in classes] == [("ant", 3)]
    assert [(f["finding"], f["flagged"]) for f in findings] == [("ant/drift", True)] and warnings == []


def test_a_reference_without_findings_warns_that_every_finding_is_new(tmp_path):
    classes, findings, warnings = preflight.read_reference(complete_run(tmp_path / "old", findings=False))
    assert len(classes) == 1 and findings == []
    assert len(warnings) == 1 and "has no findings.parquet" in warnings[0] and "counts as new" in warnings[0]


def test_a_reference_that_is_incomplete_or_lacks_classes_is_a_user_error(tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    with pytest.raises(UserError, match="is not a complete igaudit run \\(no _SUCCESS\\)"):
        preflight.read_reference(str(unfinished))
    with pytest.raises(UserError, match="analysis.reference '.*old': classes.parquet cannot be read"):
        preflight.read_reference(complete_run(tmp_path / "old", classes=False))


def test_the_model_is_checked_against_the_labels(tiny_assets, tmp_path):
    cfg = from_dict(tiny_config(tiny_assets, tmp_path / "o"))
    assert preflight.check_model(cfg, list(CLASSES)).num_classes == 3
    with pytest.raises(UserError, match=r"the model has 3 outputs but the input has 2 labels \(ant, bee\): set "
                                        r"model.class_names"):
        preflight.check_model(cfg, ["ant", "bee"])
    many = [f"c{i}" for i in range(10)]
    with pytest.raises(UserError, match=r"10 labels \(c0, c1, c2, c3, c4, c5, c6, c7\.\.\.\)"):
        preflight.check_model(cfg, many)


def test_a_names_file_of_the_wrong_length_or_a_missing_model_is_a_user_error(tiny_assets, tmp_path):
    names = lines_file(tmp_path / "names.txt", "a\nb\nc\nd\n")
    cfg = from_dict(tiny_config(tiny_assets, tmp_path / "o", model={"class_names": names}))
    with pytest.raises(UserError, match="model.class_names '.*names.txt' lists 4 names but the model has 3 outputs"):
        preflight.check_model(cfg, ["a", "b", "c", "d"])
    gone = from_dict(tiny_config(tiny_assets, tmp_path / "o", model={"path": str(tmp_path / "gone.keras")}))
    with pytest.raises(UserError, match="gone.keras"):
        preflight.check_model(gone, list(CLASSES))


def test_check_plans_the_run(tiny_assets, tmp_path):
    old = complete_run(tmp_path / "old", findings=False)
    cfg = from_dict(tiny_config(tiny_assets, tmp_path / "o", analysis={"reference": old},
                                attribution={"target": "bee"}))
    plan = preflight.check(cfg, ["--direct_num_workers=2"])
    good_and_broken = tiny_assets["good"] + tiny_assets["bad"]
    assert len(plan.files) == good_and_broken and plan.manifest_files is None
    assert plan.class_names == list(CLASSES) and plan.input_shape == (SIZE, SIZE, 3)
    assert plan.target == TargetSpec("class", 1) and plan.baseline_image is None
    assert plan.reference_classes[0]["class_name"] == "ant" and plan.reference_findings == []
    assert len(plan.warnings) == 1 and "counts as new" in plan.warnings[0]
    assert plan.decode == DecodeSpec((SIZE, SIZE), "pad", cfg.input.max_pixels, 3)


def test_check_refuses_an_unknown_beam_flag_and_an_output_dir_over_the_inputs(tiny_assets, tmp_path):
    with pytest.raises(UserError, match="unknown Beam flag --no_such_flag"):
        preflight.check(from_dict(tiny_config(tiny_assets, tmp_path / "o")), ["--no_such_flag=1"])
    inside = from_dict(tiny_config(tiny_assets, tiny_assets["data"] / "out"))
    with pytest.raises(UserError, match="overlaps the inputs"):
        preflight.check(inside)


def test_plan_for_lists_the_inputs_only_without_class_names(tiny_assets, tmp_path):
    raw = tiny_config(tiny_assets, tmp_path / "o", input={"pattern": str(tmp_path / "absent/*/*.png")})
    plan = preflight.plan_for(from_dict(raw), class_names=("x", "y", "z"))
    assert plan.files == [] and plan.class_names == ["x", "y", "z"] and plan.warnings == []
    with pytest.raises(UserError, match="does not exist"):
        preflight.plan_for(from_dict(raw))
    assert preflight.plan_for(from_dict(tiny_config(tiny_assets, tmp_path / "o"))).class_names == list(CLASSES)
