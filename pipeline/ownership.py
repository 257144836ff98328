"""Who owns output.dir: igaudit's marker, what a run may write, and the clean-up of an earlier run's files.

Rules (never destroy data igaudit did not write):
  - a run directory is igaudit's only when it holds `.igaudit/marker.json`, which a run writes
    before any other file; the marker lists the names the run may write (`OWNED_FILES`,
    `OWNED_PATTERNS`), and each per-image file is listed in a ledger under `.igaudit/written/`
    before it is written (`transforms/write.py`);
  - a rerun removes exactly those, `_SUCCESS` first: foreign files anywhere in the folder,
    `masks/` included, survive;
  - a non-empty folder without the marker is refused before anything is written, unless
    `--overwrite` (which deletes its contents: destructive, documented);
  - a folder that holds the inputs, or lies inside the folder they are read from, is always refused.
All of it goes through Beam's FileSystems, so it holds on gs:// and s3:// as on local disk.
"""
from __future__ import annotations

import json
import os
import posixpath
import shutil
import uuid
from datetime import datetime, timezone
from importlib import metadata
from typing import Iterable, Optional

from apache_beam.io.filesystems import FileSystems

from igaudit.pipeline.errors import UserError
from igaudit.pipeline.paths import is_remote, normal, parent, shown, within
from igaudit.pipeline.run_dir import MARKER, OWNED_FILES, OWNED_FOLDERS, OWNED_PATTERNS
from igaudit.transforms.records import LEDGER_FOLDER
from igaudit.transforms.write import read_ledger

_WILDCARDS = "*?["


def glob_base(pattern: str) -> str:
    """The folder a glob reads from: its text before the first wildcard, up to the last '/'."""
    cut = min((pattern.index(c) for c in _WILDCARDS if c in pattern), default=len(pattern))
    return parent(pattern[:cut])


def check_not_over_inputs(out_dir: str, pattern: Optional[str], manifest: Optional[str],
                          input_uris: Iterable[str]) -> None:
    """Refuse an output.dir that holds the inputs (the images, or the manifest listing them), or lies inside
    the folder they are read from (a glob's folder before its first wildcard; each listed image's folder):
    a run there could re-read its own outputs, and --overwrite would delete the inputs."""
    out = normal(out_dir)
    if pattern:
        folder = normal(glob_base(pattern))
        if within(out, folder) or within(folder, out):
            raise UserError(f"output.dir '{shown(out_dir)}' overlaps the inputs: input.pattern '{pattern}' reads "
                            f"from '{shown(folder)}'; choose an output.dir outside it (e.g. --set output.dir=out/audit)")
    if manifest and within(normal(manifest), out):
        raise UserError(f"output.dir '{shown(out_dir)}' holds the input manifest '{shown(manifest)}'; choose an "
                        f"output.dir that does not contain it")
    if manifest:
        for uri in input_uris:
            path = normal(uri)
            if within(path, out) or within(out, parent(path)):
                raise UserError(f"output.dir '{shown(out_dir)}' overlaps the inputs: input '{uri}' is in or "
                                f"beside it; choose an output.dir outside the input folders")


def check_overwrite_spares(out_dir: str, named: dict) -> None:
    """--overwrite deletes everything in out_dir: refuse, before anything is touched, an out_dir that holds
    (or lies inside) a file or folder the run reads. named: {'model.path': path, 'the config file': path}
    (globs count by their folder before the first wildcard)."""
    out = normal(out_dir)
    for what, path in named.items():
        if not path:
            continue
        p = normal(glob_base(path) if any(c in path for c in _WILDCARDS) else path)
        if within(p, out) or within(out, p):
            raise UserError(f"output.dir '{shown(out_dir)}' holds {what} '{shown(path)}': --overwrite would delete "
                            f"it; choose an output.dir that holds none of the run's inputs (--set output.dir=...)")


def _join(out_dir: str, rel: str) -> str:
    return FileSystems.join(out_dir, *rel.split("/"))


def _entries(out_dir: str, limit: Optional[int] = None) -> list[str]:
    """Paths of files (and, locally, folders) in out_dir; `limit` caps the listing."""
    if not is_remote(out_dir):
        local = shown(out_dir)
        return [os.path.join(local, name) for name in sorted(os.listdir(local))[:limit]] if os.path.isdir(local) else []
    match = FileSystems.match([_join(out_dir, "**")], limits=[limit] if limit else None)[0]
    return [m.path for m in match.metadata_list]


def _exists_dir(out_dir: str) -> bool:
    return os.path.isdir(shown(out_dir)) if not is_remote(out_dir) else bool(_entries(out_dir, limit=1))


def is_run_dir(out_dir: str) -> bool:
    return FileSystems.exists(_join(out_dir, MARKER))


def _delete(paths: list[str]) -> None:
    """Delete files (never a folder: a local folder may hold foreign files)."""
    files = [p for p in paths if is_remote(p) or os.path.isfile(shown(p))]
    for start in range(0, len(files), 1000):
        FileSystems.delete(files[start:start + 1000])


def _matched(out_dir: str, patterns: Iterable[str]) -> list[str]:
    results = FileSystems.match([_join(out_dir, p) for p in patterns])
    return [m.path for r in results for m in r.metadata_list]


def remove_previous_run(out_dir: str) -> None:
    """Remove what the earlier run in out_dir recorded writing: _SUCCESS first (so a half-done clean-up
    never looks complete), then its files, its ledgers' files, Beam's temp folders and the ledgers."""
    marker = read_marker(out_dir)
    files = list(marker.get("files", OWNED_FILES))
    _delete([p for p in (_join(out_dir, f) for f in files) if FileSystems.exists(p)])
    ledgers = _matched(out_dir, [f"{LEDGER_FOLDER}/*.txt"])
    listed = []
    for ledger in ledgers:
        with FileSystems.open(ledger) as f:
            listed += [_join(out_dir, rel) for rel in map(posixpath.normpath, read_ledger(f.read()))
                       if not rel.startswith(("/", ".."))]     # never outside output.dir
    _delete([p for p in listed if FileSystems.exists(p)])
    _delete(_matched(out_dir, marker.get("patterns", OWNED_PATTERNS)))
    _delete(ledgers)
    if not is_remote(out_dir):                      # local folders: Beam's temp folders, then empty owned ones
        root = shown(out_dir)
        for parent in (root, os.path.join(root, "images")):
            if os.path.isdir(parent):
                for name in os.listdir(parent):
                    if name.startswith("beam-temp-") and os.path.isdir(os.path.join(parent, name)):
                        shutil.rmtree(os.path.join(parent, name))
        for folder in OWNED_FOLDERS:
            try:
                os.rmdir(os.path.join(root, *folder.split("/")))
            except OSError:
                pass                                 # absent, or holds foreign files: it stays


def remove_run(out_dir: str) -> None:
    """Delete an igaudit run folder's own files, the marker last, then the folder if nothing else is left."""
    remove_previous_run(out_dir)
    _delete([_join(out_dir, MARKER)])
    if not is_remote(out_dir):
        for folder in (os.path.join(shown(out_dir), ".igaudit"), shown(out_dir)):
            try:
                os.rmdir(folder)
            except OSError:
                pass                                 # holds foreign files: it stays


def clear(out_dir: str) -> None:
    """--overwrite: delete everything in out_dir."""
    if is_remote(out_dir):
        _delete(_entries(out_dir))
        return
    for path in _entries(out_dir):
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)


def read_marker(out_dir: str) -> dict:
    try:
        with FileSystems.open(_join(out_dir, MARKER)) as f:
            return json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError):
        return {}


def _version() -> str:
    try:
        return metadata.version("igaudit")
    except metadata.PackageNotFoundError:
        return "unknown"


def check_claimable(out_dir: str, *, overwrite: bool = False) -> str:
    """What `claim` would do with out_dir, without doing it: "new" (missing or empty), "rerun" (an igaudit run
    folder) or "overwrite"; raises UserError for a file or a foreign non-empty folder (without overwrite)."""
    if not is_remote(out_dir) and os.path.exists(shown(out_dir)) and not os.path.isdir(shown(out_dir)):
        raise UserError(f"output.dir '{shown(out_dir)}' is a file, not a folder: choose a folder")
    if not (_exists_dir(out_dir) and _entries(out_dir, limit=1)):
        return "new"
    if is_run_dir(out_dir):
        return "rerun"
    if overwrite:
        return "overwrite"
    raise UserError(f"output.dir '{shown(out_dir)}' is not empty and is not an igaudit run folder (no "
                    f"{MARKER}): choose a new or empty folder (--set output.dir=...), or pass --overwrite "
                    f"to delete everything in it")


def claim(out_dir: str, *, overwrite: bool = False) -> str:
    """Make out_dir this run's: refuse a foreign non-empty folder (unless overwrite), remove an earlier
    run's files, then write the marker (which also proves the folder writable). Returns the run id."""
    state = check_claimable(out_dir, overwrite=overwrite)
    if state == "rerun":
        remove_previous_run(out_dir)
    elif state == "overwrite":
        clear(out_dir)
    run_id = uuid.uuid4().hex
    marker = {"tool": "igaudit", "version": _version(), "run_id": run_id,
              "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "files": list(OWNED_FILES), "patterns": list(OWNED_PATTERNS), "ledgers": LEDGER_FOLDER}
    try:
        if not is_remote(out_dir):
            os.makedirs(shown(out_dir), exist_ok=True)
        with FileSystems.create(_join(out_dir, MARKER)) as f:
            f.write(json.dumps(marker, indent=1).encode("utf-8"))
    except Exception as e:  # noqa: BLE001 - any failure to write here means the folder cannot be used
        raise UserError(f"output.dir '{shown(out_dir)}' cannot be written ({type(e).__name__}: {e}): choose a "
                        f"writable folder with --set output.dir=...") from None
    return run_id
