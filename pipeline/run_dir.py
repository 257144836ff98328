"""The output contract: what a run writes under output.dir, reading it back (`RunDir`), and the completion marker.

Works on every Beam filesystem (local paths, gs://, s3://).
"""
from __future__ import annotations

import io
from typing import Optional

from apache_beam.io.filesystems import FileSystems

from igaudit.transforms.records import (ARTIFACT_FILES, ARTIFACTS_FOLDER, CLASSES_TABLE, CLUSTERS_TABLE,
                                       FINDINGS_TABLE, IMAGES_FOLDER, LEDGER_FOLDER, REJECTED_TABLE, SKEW_TABLE)

SUCCESS = "_SUCCESS"               # written last: a run without it is incomplete
RUN_JSON = "run.json"
REPORT = "report.html"
RUN_PREFIX = "run="               # an audit's dated runs: <audit root>/run=<UTC timestamp>/
MARKER = ".igaudit/marker.json"   # written first: the folder is an igaudit run folder (pipeline/ownership.py)
# The files and Beam sink shards a run may write, relative to output.dir. Per-image files (masks/,
# overlays/, raw/, or artifacts/ shards) are listed one by one in ledgers (transforms/write.py) instead.
TABLES = (CLASSES_TABLE, SKEW_TABLE, FINDINGS_TABLE, REJECTED_TABLE, CLUSTERS_TABLE)
OWNED_FILES = (SUCCESS, RUN_JSON, REPORT) + TABLES
FILE_FOLDERS = tuple(folder for folder, _ in ARTIFACT_FILES.values())      # masks, overlays, raw
OWNED_PATTERNS = (("images/part-*.parquet", "beam-temp-*/*", "images/beam-temp-*/*")
                  + tuple(f"{folder}/.*.tmp-*" for folder in FILE_FOLDERS + (ARTIFACTS_FOLDER, LEDGER_FOLDER)))
OWNED_FOLDERS = (IMAGES_FOLDER,) + FILE_FOLDERS + (ARTIFACTS_FOLDER, LEDGER_FOLDER)   # removed when left empty


def read_table(path: str, columns: Optional[list[str]] = None):
    """A Parquet file on any Beam filesystem (only `columns`, when given)."""
    import pyarrow.parquet as pq
    with FileSystems.open(path) as f:
        return pq.read_table(io.BytesIO(f.read()), columns=columns)


def read_images_table(out_dir: str, columns: Optional[list[str]] = None, paths: Optional[list[str]] = None):
    """All images/*.parquet parts (or exactly `paths`) as one table; pass `columns` to keep big runs small in
    memory."""
    import pyarrow as pa

    from igaudit.transforms.records import images_schema
    if paths is None:
        paths = [m.path for m in FileSystems.match([FileSystems.join(out_dir, IMAGES_FOLDER, "*.parquet")])[0]
                 .metadata_list]
    tables = [read_table(p, columns) for p in sorted(paths)]
    if tables:
        return pa.concat_tables(tables)
    schema = images_schema()
    return (schema if columns is None else pa.schema([schema.field(c) for c in columns])).empty_table()


def write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as f:
        f.write(text.encode("utf-8"))


def runs_holding(root: str, name: str) -> list[str]:
    """An audit root's run dirs (run=...) that hold the file `name` (a path inside the run), oldest first."""
    pattern = FileSystems.join(root, RUN_PREFIX + "*", *name.split("/"))
    try:
        matches = FileSystems.match([pattern])[0].metadata_list
    except Exception:
        return []
    return sorted(m.path[: -len(name) - 1] for m in matches)


def completed_runs(root: str) -> list[str]:
    """An audit root's run dirs (run=...) that have _SUCCESS, oldest first."""
    return runs_holding(root, SUCCESS)


class MissingTable(LookupError):
    """A run folder lacks a table (a run made by an older igaudit, or not a run folder)."""


class RunDir:
    """One run folder, read: its files by name, its tables (TABLES; the images parts), run.json (`info`, and
    its config through the config schema, `config`) and whether it is complete (`complete`: _SUCCESS).
    Every module that reads a run folder reads it through this."""

    def __init__(self, path: str):
        self.path = path

    def file(self, name: str) -> str:
        """The path of `name` (e.g. RUN_JSON, 'masks/x.png') inside the run."""
        return FileSystems.join(self.path, *name.split("/"))

    def has(self, name: str) -> bool:
        return FileSystems.exists(self.file(name))

    @property
    def complete(self) -> bool:
        return self.has(SUCCESS)

    def table(self, name: str, columns: Optional[list[str]] = None):
        """One of TABLES as a pyarrow Table; MissingTable when the run has none."""
        if name not in TABLES:
            raise ValueError(f"unknown table {name!r}: one of {', '.join(TABLES)}")
        if not self.has(name):
            raise MissingTable(f"'{self.path}' has no {name}")
        return read_table(self.file(name), columns)

    def rows(self, name: str, missing_ok: bool = True) -> list[dict]:
        """One of TABLES as row dicts ([] when the run has none, with missing_ok)."""
        try:
            return self.table(name).to_pylist()
        except MissingTable:
            if missing_ok:
                return []
            raise

    def images(self, columns: Optional[list[str]] = None, paths: Optional[list[str]] = None):
        """The images table (`read_images_table`)."""
        return read_images_table(self.path, columns, paths)

    def info(self) -> Optional[dict]:
        """run.json's content; None when there is none. ValueError when it is not JSON (being written)."""
        import json
        if not self.has(RUN_JSON):
            return None
        with FileSystems.open(self.file(RUN_JSON)) as f:
            return json.loads(f.read().decode("utf-8"))

    def config(self):
        """The config the run was made with (run.json's `config`, read through the config schema: every
        default filled in, as the run saw it); None without run.json."""
        info = self.info()
        return None if info is None else config_of(info)


def config_of(run_info: dict):
    """run.json's `config` as a `Config` (secrets in it stay redacted)."""
    from igaudit.pipeline.config import from_dict
    return from_dict(run_info["config"])
