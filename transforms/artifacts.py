"""Where a row's mask, overlay and raw array live, in either layout, and how to read them back by image id.

`output.layout`:

* `files` (the default): masks/<id>.png, overlays/<id>.png and raw/<id>.npy, one file each, named in the
  images rows' `mask_path` / `overlay_path`: what a person browses, opens in any viewer, or links to.
* `shards`: the same bytes as rows of a few large Parquet files, artifacts/<uuid>.parquet (SHARD_SCHEMA: one
  row per images row, PNG bytes and .npy bytes), up to SHARD_ROWS rows each, named in the images rows'
  `artifact_shard`: a handful of objects per worker bundle instead of two or three per image, which is what a
  bucket charges for, and lists, at a million images.

`read_artifacts(run_dir, image_id)` returns one image's artifacts from a finished run whatever its layout;
`row_artifacts` does the same for an images row in hand (the report, an incremental audit's copies).
"""
from __future__ import annotations

import io
import uuid
from typing import Optional, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from apache_beam.io.filesystems import FileSystems

from igaudit.transforms.records import ARTIFACT_FILES, ARTIFACTS_FOLDER, IMAGES_FOLDER

KINDS = ("mask", "overlay", "raw")
SHARD_ROWS = 256            # images rows per shard (256 overlays of 224 x 224 px: about 25 MB)
SHARD_SCHEMA = pa.schema([("image_id", pa.string()), ("target", pa.int64()),
                          ("mask", pa.binary()), ("overlay", pa.binary()), ("raw", pa.binary())])


def new_shard_path() -> str:
    """An output-relative path for a new shard."""
    return f"{ARTIFACTS_FOLDER}/{uuid.uuid4().hex}.parquet"


def shard_bytes(entries: Sequence[dict]) -> bytes:
    """A shard's content: entries {image_id, target, mask, overlay, raw} (bytes or None) as Parquet."""
    table = pa.Table.from_pylist([{k: e.get(k) for k in SHARD_SCHEMA.names} for e in entries], schema=SHARD_SCHEMA)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="none")     # PNG and .npy bytes: compressed already, or not worth it
    return buffer.getvalue()


def kind_of(rel: str) -> str:
    """'mask', 'overlay' or 'raw' for a files-layout path (masks/..., overlays/..., raw/...)."""
    folder = rel.split("/", 1)[0]
    return next(kind for kind, (name, _) in ARTIFACT_FILES.items() if name == folder)


def _read(path: str) -> bytes:
    with FileSystems.open(path) as f:
        return f.read()


def _load_npy(data: Optional[bytes]) -> Optional[np.ndarray]:
    return None if data is None else np.load(io.BytesIO(data), allow_pickle=False)


class ShardCache:
    """Shards read whole once and kept (at most `keep`, the last used): many rows of one report or one copy
    group sit in the same few shards."""

    def __init__(self, keep: int = 4):
        self.keep, self._tables = keep, {}

    def entry(self, path: str, image_id: str, target: int) -> dict:
        """{kind: bytes or None} of (image_id, target) in the shard at `path`; KeyError when it is not there."""
        if path not in self._tables:
            if len(self._tables) >= self.keep:
                self._tables.pop(next(iter(self._tables)))
            table = pq.read_table(io.BytesIO(_read(path)))
            self._tables[path] = {(r["image_id"], r["target"]): r for r in table.to_pylist()}
        self._tables[path] = self._tables.pop(path)          # the last used stays longest
        row = self._tables[path][(image_id, int(target))]
        return {k: row[k] for k in KINDS}


def row_artifacts(run_dir: str, row: dict, raw_paths: Sequence[str] = (), cache: Optional[ShardCache] = None,
                  kinds: Sequence[str] = KINDS) -> dict:
    """{kind: bytes or None} of one images row of the run at `run_dir`: from its shard (`artifact_shard`) or
    from its files (`mask_path`, `overlay_path`, and `raw_paths`: the row's raw/ path, which no column
    names). A kind the run did not write is None; a file or shard entry that is gone raises (OSError,
    KeyError, or the filesystem's own error)."""
    shard = row.get("artifact_shard")
    if shard:
        found = (cache or ShardCache(1)).entry(FileSystems.join(run_dir, shard), row["image_id"], row["target"])
        return {k: found[k] for k in kinds}
    paths = {"mask": row.get("mask_path"), "overlay": row.get("overlay_path"),
             "raw": next((p for p in raw_paths if p.startswith(f"{ARTIFACT_FILES['raw'][0]}/")), None)}
    return {k: _read(FileSystems.join(run_dir, paths[k])) if paths[k] else None for k in kinds}


def read_artifacts(run_dir: str, image_id: str, target: Optional[int] = None) -> dict:
    """One image's artifacts from a finished run, local or on a bucket, either layout: {"mask": PNG bytes,
    "overlay": PNG bytes, "raw": float32 H x W x C array}, each None where the run did not write it. target:
    which row when the run explained several targets per image (default: the first). KeyError when the run
    has no such image.

        from igaudit.transforms.artifacts import read_artifacts
        art = read_artifacts("out/demo", "img_0003")
        open("img_0003.png", "wb").write(art["overlay"])
    """
    rows = [r for r in _image_rows(run_dir, image_id) if target is None or r["target"] == target]
    if not rows:
        raise KeyError(f"{run_dir} has no image {image_id!r}" + ("" if target is None else f" with target {target}"))
    row = rows[0]
    folder, suffix = ARTIFACT_FILES["raw"]       # named as write.artifact_paths names it, with several targets or one
    raw = [f"{folder}/{name}.{suffix}" for name in (f"{image_id}-t{row['target']}", image_id)]
    raw = [p for p in raw if not row.get("artifact_shard") and FileSystems.exists(FileSystems.join(run_dir, p))]
    found = row_artifacts(run_dir, row, raw[:1])
    return {"mask": found["mask"], "overlay": found["overlay"], "raw": _load_npy(found["raw"])}


ROW_COLUMNS = ["image_id", "target", "mask_path", "overlay_path", "artifact_shard"]


def _image_rows(run_dir: str, image_id: str) -> list[dict]:
    """The images rows of `image_id` (only the columns that locate its artifacts)."""
    rows = []
    for match in FileSystems.match([FileSystems.join(run_dir, IMAGES_FOLDER, "*.parquet")])[0].metadata_list:
        source = pq.ParquetFile(match.path if "://" not in match.path else io.BytesIO(_read(match.path)))
        columns = [c for c in ROW_COLUMNS if c in source.schema_arrow.names]     # runs before shards: no artifact_shard
        table = source.read(columns=columns)
        rows += [r for r in table.to_pylist() if r["image_id"] == image_id]
    return sorted(rows, key=lambda r: r["target"])
