"""Where a model is: its format, told from the path, and local copies of models on a Beam filesystem.

Keras reads local files only and TensorFlow reads only the filesystems it has plugins for, so
a model on gs:// or s3:// is copied to local disk through Beam's FileSystems first: any
filesystem the pipeline can read works.
"""
from __future__ import annotations

import os
import shutil
import tempfile

KERAS_SUFFIXES = (".keras", ".h5")
WHAT_TO_POINT_AT = "a .keras file, a SavedModel directory or a TF-Hub handle"


class ModelError(Exception):
    """A model that cannot be used; the message names the path and the fix."""


# --- format detection -------------------------------------------------------

def is_url(path: str) -> bool:
    return path.startswith(("http://", "https://"))


def is_remote(path: str) -> bool:
    """A Beam filesystem path such as gs://bucket/x (not a local path, not a URL)."""
    return "://" in path and not is_url(path) and not path.startswith("file://")


def local_path(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


def exists(path: str) -> bool:
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems
        return FileSystems.exists(path)
    return os.path.exists(local_path(path))


def join(path: str, name: str) -> str:
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems
        return FileSystems.join(path, name)
    return os.path.join(local_path(path), name)


def missing(path: str) -> ModelError:
    shown = path if is_remote(path) else os.path.abspath(local_path(path))
    return ModelError(
        f"model.path {shown!r} does not exist (relative paths are relative to the current directory): build "
        f"it with `igaudit demo` or point model.path at {WHAT_TO_POINT_AT}")


def detect_format(path: str) -> str:
    if is_url(path):
        return "hub"
    if path.lower().endswith(KERAS_SUFFIXES):
        return "keras"
    if not exists(path):
        raise missing(path)
    # A TF1 hub module also holds saved_model.pb, so look for the hub marker first.
    if exists(join(path, "tfhub_module.pb")):
        return "hub"
    if exists(join(path, "saved_model.pb")):
        return "saved_model"
    if is_remote(path) or os.path.isdir(local_path(path)):
        raise ModelError(
            f"model.path {path!r} is a directory without saved_model.pb: "
            f"point model.path at {WHAT_TO_POINT_AT}")
    raise ModelError(
        f"model.path {path!r} is not a .keras/.h5 file or a SavedModel directory: "
        f"point model.path at {WHAT_TO_POINT_AT} (or set model.format)")


# --- copying remote models to local disk ------------------------------------

def copy_file_local(path: str) -> str:
    """Copy a file on a Beam filesystem to a local temp file (Keras reads local files only)."""
    from apache_beam.io.filesystems import FileSystems
    suffix = os.path.splitext(path)[1]
    fd, local = tempfile.mkstemp(prefix="igaudit-model-", suffix=suffix)
    with os.fdopen(fd, "wb") as dst, FileSystems.open(path) as src:
        shutil.copyfileobj(src, dst, length=1 << 20)
    return local


def copy_tree_local(path: str) -> str:
    """Copy a directory on a Beam filesystem (e.g. a SavedModel on gs://) to a local temp dir.

    Going through Beam's FileSystems means any filesystem the pipeline can read
    works, whether or not TensorFlow has a plugin for it.
    """
    from apache_beam.io.filesystems import FileSystems
    root = path.rstrip("/") + "/"
    local_root = tempfile.mkdtemp(prefix="igaudit-model-")
    for match in FileSystems.match([root + "**"]):
        for meta in match.metadata_list:
            rel = meta.path[len(root):]
            if not rel or rel.endswith("/"):
                continue
            dest = os.path.join(local_root, *rel.split("/"))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with open(dest, "wb") as dst, FileSystems.open(meta.path) as src:
                shutil.copyfileobj(src, dst, length=1 << 20)
    return local_root
