"""The output contract: what a run writes under output.dir, reading it back, and the completion marker.

Works on every Beam filesystem (local paths, gs://, s3://).
"""
from __future__ import annotations

import glob
import io
import os
from typing import Optional

from apache_beam.io.filesystems import FileSystems

from igaudit.pipeline.errors import UserError

# Everything a run writes; a rerun into the same directory removes these first.
OUTPUT_ENTRIES = ("_SUCCESS", "images", "masks", "overlays", "raw", "classes.parquet", "clusters.parquet",
                  "skew.parquet", "rejected.parquet", "report.html", "run.json")
SUCCESS = "_SUCCESS"


def prepare_output_dir(out_dir: str) -> None:
    """Make the dir, prove it is writable, and remove an earlier run's outputs (_SUCCESS first)."""
    try:
        FileSystems.mkdirs(out_dir)
    except OSError:
        pass  # exists already
    probe = FileSystems.join(out_dir, ".igaudit-write-test")
    try:
        with FileSystems.create(probe) as f:
            f.write(b"ok")
        FileSystems.delete([probe])
    except Exception as e:
        raise UserError(f"output.dir '{out_dir}' cannot be written ({type(e).__name__}): choose a writable "
                        f"directory with --set output.dir=...") from None
    # _SUCCESS goes first, so an interrupted clean-up never leaves a run that looks complete.
    success = FileSystems.join(out_dir, "_SUCCESS")
    if FileSystems.exists(success):
        FileSystems.delete([success])
    stale = [FileSystems.join(out_dir, name) for name in OUTPUT_ENTRIES]
    present = [p for p in stale if FileSystems.exists(p)]
    # Beam's sinks stage into beam-temp-* folders; a killed run leaves them behind.
    # Their files are matched (folders are not, locally); deleting a local folder removes it whole.
    leftovers = FileSystems.match([FileSystems.join(out_dir, "beam-temp-*"),
                                   FileSystems.join(out_dir, "beam-temp-*", "*")])
    present += [m.path for m in leftovers[0].metadata_list]
    present += [m.path.rsplit("/", 1)[0] for m in leftovers[1].metadata_list]
    if "://" not in out_dir:  # empty local folders match nothing above
        present += glob.glob(os.path.join(out_dir, "beam-temp-*"))
    present = sorted(set(present))
    outermost = [p for p in present if not any(p.startswith(q + "/") for q in present)]
    if outermost:
        FileSystems.delete(outermost)


def read_table(path: str, columns: Optional[list[str]] = None):
    """A Parquet file on any Beam filesystem (only `columns`, when given)."""
    import pyarrow.parquet as pq
    with FileSystems.open(path) as f:
        return pq.read_table(io.BytesIO(f.read()), columns=columns)


def read_images_table(out_dir: str, columns: Optional[list[str]] = None):
    """All images/*.parquet parts as one table; pass `columns` to keep big runs small in memory."""
    import pyarrow as pa

    from igaudit.transforms.records import images_schema
    paths = [m.path for m in FileSystems.match([FileSystems.join(out_dir, "images", "*.parquet")])[0].metadata_list]
    tables = [read_table(p, columns) for p in sorted(paths)]
    if tables:
        return pa.concat_tables(tables)
    schema = images_schema()
    return (schema if columns is None else pa.schema([schema.field(c) for c in columns])).empty_table()


def write_text(path: str, text: str) -> None:
    with FileSystems.create(path) as f:
        f.write(text.encode("utf-8"))
