"""Reading inputs: match a glob (label = parent folder) or read a manifest, then fetch bytes.

Works on any Beam filesystem (local paths, gs://, s3://).
"""
from __future__ import annotations

import csv
import io
import json
import re
from typing import Iterable, Optional

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystems import FileSystems

from igaudit.transforms import progress
from igaudit.transforms.records import ImageBytes, ImageFile, Rejected, make_image_id

# fullmatch, not match + "$": "$" also matches before a trailing newline, so "abc\n" would pass.
_SAFE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
# Names Windows reserves whatever the extension; an id like "CON" is hashed instead of kept.
_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}


def is_safe_id(image_id: str) -> bool:
    """Usable as a file name as is: short, plain characters, no '..', not an OS-reserved name."""
    return (bool(_SAFE_ID.fullmatch(image_id)) and ".." not in image_id
            and image_id.split(".")[0].upper() not in _RESERVED)


def label_from_uri(uri: str) -> Optional[str]:
    """The parent folder's name: data/train/cat/1.png -> 'cat'."""
    parts = uri.replace("\\", "/").rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 and parts[-2] else None


def parse_bbox(value) -> Optional[tuple]:
    """A manifest `bbox`: "x0,y0,x1,y1" (or a list of four numbers) in the original image's pixels."""
    if value is None or value == "":
        return None
    parts = value.replace(";", ",").split(",") if isinstance(value, str) else list(value)
    try:
        box = tuple(float(v) for v in parts)
    except (TypeError, ValueError):
        box = ()
    if len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]):
        raise ValueError(f"bbox {value!r} must be x0,y0,x1,y1 with x0 < x1 and y0 < y1")
    return box


def image_file_for(uri: str, label: Optional[str] = None, image_id: Optional[str] = None,
                   bbox: Optional[tuple] = None) -> ImageFile:
    """An ImageFile with a stable, path-safe id: a safe manifest id is kept, anything else hashed."""
    if image_id is not None and is_safe_id(image_id):
        safe_id = image_id
    else:
        safe_id = make_image_id(image_id if image_id is not None else uri)
    return ImageFile(uri=uri, label=label, image_id=safe_id, bbox=bbox)


def _resolve(uri: str, base: str) -> str:
    """Manifest uris may be relative to the manifest's folder."""
    if "://" in uri or uri.startswith("/"):
        return uri
    return FileSystems.join(base, uri)


def read_manifest(path: str) -> list[ImageFile]:
    """Rows of a CSV, JSONL or Parquet manifest with columns uri, label[, image_id].

    Read as data only (no eval, no pickle). Raises ValueError naming the problem.
    """
    with FileSystems.open(path) as f:
        data = f.read()
    lower = path.lower()
    if lower.endswith(".parquet"):
        import pyarrow.parquet as pq
        rows = pq.read_table(io.BytesIO(data)).to_pylist()
    elif lower.endswith((".jsonl", ".json")):
        rows = [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]
    elif lower.endswith((".csv", ".tsv")):
        rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig")),
                                   delimiter="\t" if lower.endswith(".tsv") else ","))
    else:
        raise ValueError(f"manifest '{path}' must end in .csv, .tsv, .jsonl or .parquet")
    base = path.rsplit("/", 1)[0] if "/" in path else "."
    files = []
    seen: dict = {}
    for n, row in enumerate(rows, start=1):
        if not isinstance(row, dict) or not row.get("uri"):
            raise ValueError(f"manifest '{path}' row {n} has no 'uri' value (columns: uri, label[, image_id])")
        label = row.get("label")
        image_id = row.get("image_id")
        try:
            bbox = parse_bbox(row.get("bbox"))
        except ValueError as e:
            raise ValueError(f"manifest '{path}' row {n}: {e}") from None
        f = image_file_for(_resolve(str(row["uri"]), base), None if label in (None, "") else str(label),
                           None if image_id in (None, "") else str(image_id), bbox)
        if f.image_id in seen:
            # two rows would write the same mask file: refuse rather than overwrite silently
            raise ValueError(f"manifest '{path}' rows {seen[f.image_id]} and {n} give the same image_id "
                             f"'{f.image_id}' (same uri or id twice); ids must be unique")
        seen[f.image_id] = n
        files.append(f)
    return files


def match_files(pattern: str) -> list[str]:
    """Every file the glob matches (used up front, to count and to find labels)."""
    result = FileSystems.match([pattern])[0]
    return sorted(m.path for m in result.metadata_list)


class MatchImages(beam.PTransform):
    """PBegin -> PCollection[ImageFile], reshuffled so reading spreads over workers."""

    def __init__(self, pattern: Optional[str] = None, manifest_files: Optional[list[ImageFile]] = None):
        super().__init__()
        self.pattern = pattern
        self.manifest_files = manifest_files

    def expand(self, pbegin):
        if self.pattern:
            files = (pbegin
                     | "MatchFiles" >> fileio.MatchFiles(self.pattern)
                     | "ToImageFile" >> beam.Map(lambda m: image_file_for(m.path, label_from_uri(m.path))))
        else:
            files = pbegin | "Manifest" >> beam.Create(self.manifest_files or [])
        return files | "Reshuffle" >> beam.Reshuffle()


class _ReadBytesFn(beam.DoFn):
    def __init__(self):
        self.read_ok = beam.metrics.Metrics.counter("igaudit", "images_read")
        self.read_failed = beam.metrics.Metrics.counter("igaudit", "rejected_read")

    def process(self, f: ImageFile) -> Iterable:
        try:
            with FileSystems.open(f.uri) as handle:
                data = handle.read()
        except Exception as e:  # any filesystem error is this input's problem, not the run's
            self.read_failed.inc()
            progress.count("rejected")
            yield beam.pvalue.TaggedOutput("rejected", Rejected(
                f.uri, f.image_id, "read", f"cannot read file ({type(e).__name__}: {str(e)[:200]})"))
            return
        self.read_ok.inc()
        yield ImageBytes(uri=f.uri, label=f.label, image_id=f.image_id, data=data, bbox=f.bbox)

    def finish_bundle(self):
        progress.flush()


class ReadImageBytes(beam.PTransform):
    """PCollection[ImageFile] -> main: ImageBytes, 'rejected': Rejected(stage='read')."""

    def expand(self, files):
        return files | "ReadBytes" >> beam.ParDo(_ReadBytesFn()).with_outputs("rejected", main="images")
