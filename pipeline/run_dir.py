"""The output contract: what a run writes under output.dir, reading it back, and the completion marker.

Works on every Beam filesystem (local paths, gs://, s3://).
"""
from __future__ import annotations

import io
from typing import Optional

from apache_beam.io.filesystems import FileSystems

from igaudit.transforms.write import LEDGER_FOLDER

SUCCESS = "_SUCCESS"               # written last: a run without it is incomplete
RUN_JSON = "run.json"
REPORT = "report.html"
RUN_PREFIX = "run="               # an audit's dated runs: <audit root>/run=<UTC timestamp>/
MARKER = ".igaudit/marker.json"   # written first: the folder is an igaudit run folder (pipeline/ownership.py)
# The files and Beam sink shards a run may write, relative to output.dir. Per-image files (masks/,
# overlays/, raw/) are listed one by one in ledgers (transforms/write.py) instead.
OWNED_FILES = (SUCCESS, RUN_JSON, REPORT, "classes.parquet", "skew.parquet", "findings.parquet", "rejected.parquet",
               "clusters.parquet")
OWNED_PATTERNS = ("images/part-*.parquet", "beam-temp-*/*", "images/beam-temp-*/*", "masks/.*.tmp-*",
                  "overlays/.*.tmp-*", "raw/.*.tmp-*", f"{LEDGER_FOLDER}/.*.tmp-*")
OWNED_FOLDERS = ("images", "masks", "overlays", "raw", LEDGER_FOLDER)   # removed when a rerun leaves them empty


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
        paths = [m.path for m in FileSystems.match([FileSystems.join(out_dir, "images", "*.parquet")])[0].metadata_list]
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
