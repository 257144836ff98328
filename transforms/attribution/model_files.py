"""Where a model is: its format, told from the path, and local copies of models on a Beam filesystem.

Keras reads local files only and TensorFlow reads only the filesystems it has plugins for, so
a model on gs:// or s3:// is copied to local disk through Beam's FileSystems first (once per
machine: `local_copy` keeps a cache): any filesystem the pipeline can read works.
"""
from __future__ import annotations

import hashlib
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
    """A file, or a folder: on an object store a folder is only a prefix of other objects' names."""
    if is_remote(path):
        from apache_beam.io.filesystems import FileSystems
        if FileSystems.exists(path):
            return True
        return bool(FileSystems.match([path.rstrip("/") + "/**"], limits=[1])[0].metadata_list)
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


# --- local copies of models on buckets ----------------------------------------

CACHE_ENV = "IGAUDIT_MODEL_CACHE"    # where local copies go; default: <temp dir>/igaudit-models


def cache_root() -> str:
    return os.environ.get(CACHE_ENV) or os.path.join(tempfile.gettempdir(), "igaudit-models")


def local_copy(path: str) -> str:
    """A local copy of a model file or folder on a Beam filesystem (Keras and TensorFlow read local files
    only, or need plugins), cached per machine: the copy is named after the path and the size and time of
    every file in it, so a worker loads the model from local disk and a changed model is fetched again.
    Going through Beam's FileSystems means any filesystem the pipeline can read works."""
    from apache_beam.io.filesystems import FileSystems
    root = path.rstrip("/")
    files = [m for m in FileSystems.match([root])[0].metadata_list if m.path.rstrip("/") == root]
    single = bool(files)
    if not single:
        files = [m for m in FileSystems.match([root + "/**"])[0].metadata_list if not m.path.endswith("/")]
    state = "|".join(f"{m.path}:{m.size_in_bytes}:{m.last_updated_in_seconds}" for m in sorted(files, key=str))
    key = hashlib.sha256(f"{root}|{state}".encode()).hexdigest()[:24]
    name = os.path.basename(root) if single else "model"
    target = os.path.join(cache_root(), key, name)
    if os.path.exists(target):
        return target
    staging = tempfile.mkdtemp(prefix=f"{key}.", dir=_made(cache_root()))
    for meta in files:
        rel = name if single else meta.path[len(root) + 1:]
        dest = os.path.join(staging, *rel.split("/"))
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        with open(dest, "wb") as dst, FileSystems.open(meta.path) as src:
            shutil.copyfileobj(src, dst, length=1 << 20)
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        os.replace(os.path.join(staging, name) if single else staging, target)   # atomic: another worker may race
    except OSError:
        if not os.path.exists(target):
            raise
    shutil.rmtree(staging, ignore_errors=True)
    return target


def content_hash(path: str) -> str:
    """The model's identity by content (SHA-256, 32 hex digits) over every file of it (a SavedModel folder's
    relative names too), read from a local copy for a model on a bucket; a TF-Hub URL is its own identity.
    The same bytes anywhere, the same hash: an incremental audit reuses rows only for the model that made them."""
    if is_url(path):
        return hashlib.sha256(path.encode()).hexdigest()[:32]
    local = local_copy(path) if is_remote(path) else local_path(path)
    digest = hashlib.sha256()
    if os.path.isdir(local):
        files = sorted(os.path.relpath(os.path.join(d, f), local) for d, _, names in os.walk(local) for f in names)
    else:
        files = [""]                   # a single file: its bytes only, whatever its name
    for rel in files:
        if rel:
            digest.update(rel.replace(os.sep, "/").encode() + b"\0")
        with open(os.path.join(local, rel) if rel else local, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:32]


def _made(folder: str) -> str:
    os.makedirs(folder, exist_ok=True)
    return folder
