"""pipeline/paths.py: local and remote paths told apart, shown, normalised and nested."""
import os

import pytest

from igaudit.pipeline.paths import is_remote, normal, parent, shown, within


@pytest.mark.parametrize("path, remote", [
    ("gs://bucket/run", True), ("s3://bucket/a/b.png", True), ("hdfs://host/x", True),
    ("file:///tmp/run", False), ("/tmp/run", False), ("out/run", False), ("run", False)])
def test_a_scheme_makes_a_path_remote_but_file_urls_are_local(path, remote):
    assert is_remote(path) is remote


def test_local_paths_are_shown_absolute_from_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert shown("out/run") == str(tmp_path / "out" / "run")
    assert shown("out/../models/m.keras") == str(tmp_path / "models" / "m.keras")
    assert shown("file://rel/x") == str(tmp_path / "rel" / "x")          # file:// stripped, then made absolute
    assert shown("file:///srv/data") == "/srv/data"
    assert shown("gs://bucket/a/../b/") == "gs://bucket/a/../b/"          # remote paths are text, untouched


def test_normal_resolves_links_and_drops_trailing_slashes(tmp_path, monkeypatch):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "link")
    monkeypatch.chdir(tmp_path)
    real = os.path.realpath(tmp_path / "real")
    assert normal("link") == real and normal("link/") == real
    assert normal(f"file://{tmp_path}/link/x.png") == os.path.join(real, "x.png")
    assert normal("gs://bucket/out//") == "gs://bucket/out"
    assert normal("s3://bucket/out") == "s3://bucket/out"


@pytest.mark.parametrize("path, folder, inside", [
    ("/data/cats", "/data/cats", True), ("/data/cats/img.png", "/data/cats", True),
    ("/data/cats/img.png", "/data/cats/", True), ("/data/catsup/img.png", "/data/cats", False),
    ("/data", "/data/cats", False), ("/anything", "/", True),
    ("gs://b/out/run=1", "gs://b/out", True), ("gs://b/output", "gs://b/out", False)])
def test_within_is_the_folder_itself_or_under_it_never_a_sibling_with_the_same_prefix(path, folder, inside):
    assert within(path, folder) is inside


@pytest.mark.parametrize("path, folder", [
    ("data/*/*.png", "data/*"), ("x.png", "."), ("/x.png", "/"), ("/a/b/", "/a/b"),
    ("gs://bucket/images/*.png", "gs://bucket/images"), ("s3://bucket/list.csv", "s3://bucket")])
def test_parent_is_the_folder_part_of_a_path_or_glob(path, folder):
    assert parent(path) == folder
