"""attribution/model_files.py: URL and remote paths, joins, format detection on local files and folders, ModelError."""
import os
from pathlib import Path

import pytest

from igaudit.transforms.attribution import model_files as mf
from igaudit.transforms.attribution.model_files import (WHAT_TO_POINT_AT, ModelError, cache_root, detect_format,
                                                        exists, is_remote, is_url, join, local_path)


@pytest.mark.parametrize("path, url, remote", [
    ("https://tfhub.dev/google/model/1", True, False),
    ("http://example.com/m", True, False),
    ("gs://bucket/models/m.keras", False, True),
    ("s3://bucket/m", False, True),
    ("file:///tmp/m.keras", False, False),
    ("/tmp/m.keras", False, False),
    ("models/m.keras", False, False),
])
def test_is_url_and_is_remote(path, url, remote):
    assert is_url(path) is url
    assert is_remote(path) is remote


def test_local_path_strips_only_the_file_scheme():
    assert local_path("file:///srv/m.keras") == "/srv/m.keras"
    assert local_path("/srv/m.keras") == "/srv/m.keras"
    assert local_path("gs://b/m") == "gs://b/m"


def test_join_local_and_remote():
    assert join("/models/sm", "saved_model.pb") == os.path.join("/models/sm", "saved_model.pb")
    assert join("file:///models/sm", "saved_model.pb") == "/models/sm/saved_model.pb"
    assert join("gs://bucket/sm", "saved_model.pb") == "gs://bucket/sm/saved_model.pb"
    assert join("gs://bucket/sm/", "saved_model.pb") == "gs://bucket/sm/saved_model.pb"


def test_keras_suffixes_and_urls_are_told_by_name_alone(tmp_path):
    """A .keras/.h5 path (any case) or a URL needs no file: the loader reports a missing one."""
    assert detect_format(str(tmp_path / "absent.keras")) == "keras"
    assert detect_format(str(tmp_path / "OLD.H5")) == "keras"
    assert detect_format("https://tfhub.dev/google/model/1") == "hub"


def test_saved_model_and_hub_folders(tmp_path):
    saved = tmp_path / "exported"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"")
    assert detect_format(str(saved)) == "saved_model"
    assert detect_format("file://" + str(saved)) == "saved_model"
    hub = tmp_path / "hub_module"
    hub.mkdir()
    (hub / "saved_model.pb").write_bytes(b"")
    (hub / "tfhub_module.pb").write_bytes(b"")          # a TF1 hub module: the marker wins
    assert detect_format(str(hub)) == "hub"


def test_a_missing_path_names_its_absolute_path_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError) as err:
        detect_format("models/gone")
    message = str(err.value)
    assert repr(str(tmp_path / "models" / "gone")) in message
    assert "does not exist" in message and "igaudit demo" in message and WHAT_TO_POINT_AT in message


def test_a_folder_without_saved_model_pb_is_refused(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    (folder / "variables.index").write_bytes(b"")
    with pytest.raises(ModelError, match="is a directory without saved_model.pb"):
        detect_format(str(folder))


def test_a_file_of_another_kind_is_refused_suggesting_model_format(tmp_path):
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x00")
    with pytest.raises(ModelError) as err:
        detect_format(str(weights))
    assert "weights.bin" in str(err.value) and "model.format" in str(err.value)


def test_exists_on_local_paths(tmp_path):
    (tmp_path / "m.keras").write_bytes(b"")
    assert exists(str(tmp_path / "m.keras")) and exists("file://" + str(tmp_path))
    assert not exists(str(tmp_path / "other.keras"))


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("IGAUDIT_MODEL_CACHE", str(tmp_path))
    assert cache_root() == str(tmp_path)
    monkeypatch.delenv("IGAUDIT_MODEL_CACHE")
    assert cache_root().endswith("igaudit-models")


def test_local_copy_of_a_file_is_cached_until_it_changes(monkeypatch, tmp_path):
    """Through Beam's FileSystems (a local file stands in for an object): the copy keeps the file's name
    under the cache, a second call reuses it, and a changed file (another size) is copied afresh."""
    from igaudit.transforms.attribution.model_files import CACHE_ENV, local_copy
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    model = tmp_path / "src" / "m.keras"
    model.parent.mkdir()
    model.write_bytes(b"weights")
    copy = local_copy(str(model))
    assert os.path.basename(copy) == "m.keras" and copy.startswith(str(tmp_path / "cache"))
    assert Path(copy).read_bytes() == b"weights"
    os.utime(copy, (0, 0))
    assert local_copy(str(model)) == copy and os.stat(copy).st_mtime == 0      # reused, not copied again
    model.write_bytes(b"new weights")
    fresh = local_copy(str(model))
    assert fresh != copy and Path(fresh).read_bytes() == b"new weights"
    assert len(list((tmp_path / "cache").iterdir())) == 2       # one folder per version, no staging left over


def test_a_models_content_hash_follows_its_bytes_not_its_name(tmp_path):
    a, b = tmp_path / "a.keras", tmp_path / "copy" / "b.keras"
    b.parent.mkdir()
    a.write_bytes(b"weights v1")
    b.write_bytes(b"weights v1")
    assert mf.content_hash(str(a)) == mf.content_hash(str(b)) and len(mf.content_hash(str(a))) == 32
    b.write_bytes(b"weights v2")
    assert mf.content_hash(str(a)) != mf.content_hash(str(b))


def test_a_folders_content_hash_covers_every_file_and_its_name(tmp_path):
    saved = tmp_path / "saved"
    (saved / "variables").mkdir(parents=True)
    (saved / "saved_model.pb").write_bytes(b"graph")
    (saved / "variables" / "variables.data").write_bytes(b"numbers")
    first = mf.content_hash(str(saved))
    (saved / "variables" / "variables.data").write_bytes(b"numberz")
    second = mf.content_hash(str(saved))
    (saved / "variables" / "variables.data").rename(saved / "variables" / "other.data")
    assert len({first, second, mf.content_hash(str(saved))}) == 3
    assert mf.content_hash("https://tfhub.dev/x/1") == mf.content_hash("https://tfhub.dev/x/1")
