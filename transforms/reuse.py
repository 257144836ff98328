"""ReuseUnchanged: an incremental audit takes the reference run's row and files for each image whose bytes and
label are unchanged, and sends only the others on to be decoded and attributed.

The launcher has already compared the model and the settings (`pipeline/reuse.py`: the reference run's reuse
key is this run's); here each image's content hash (`records.content_hash`) and label are compared with the
reference run's row for the same image id. A reused image's rows (one per target) come back as they were,
with their cluster fields cleared (this run clusters the whole dataset again) and `reused_from` set; its
mask, overlay and raw array are copied into this run's folder (a server-side copy on an object store; read and
written again between layouts, `output.layout`), listed in the run's ledger first like every file a run writes, so the run stands alone when the reference run is
pruned. An image whose files the reference run no longer has (someone deleted them) is read again and
attributed like a new one.
"""
from __future__ import annotations

import uuid

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.timestamp import MIN_TIMESTAMP
from apache_beam.utils.windowed_value import WindowedValue

from igaudit.transforms.artifacts import SHARD_ROWS, ShardCache, kind_of, new_shard_path, row_artifacts, shard_bytes
from igaudit.transforms.records import IMAGES_FOLDER, LEDGER_FOLDER, ImageBytes
from igaudit.transforms.write import (LEDGER_GROUP, artifact_kinds, artifact_paths, ledger_text, path_columns,
                                     write_file_atomically)

FRESH, REUSED, MISSING = "fresh", "reused", "missing"
CLUSTER_FIELDS = ("cluster", "outlier_score", "predicted_cluster", "predicted_outlier_score")


def _copy(src: str, dst: str) -> None:
    """On an object store the store's own copy; on disk, written whole like every file a run writes."""
    if "://" in dst:
        FileSystems.copy([src], [dst])
        return
    with open(src, "rb") as f:
        write_file_atomically(dst, f.read())


class _SplitFn(beam.DoFn):
    """ImageBytes -> main: changed or new ones; REUSED: (image_id, (uri, label, bbox)) of those whose content
    hash and label match the reference run's."""

    def __init__(self):
        self._reused = Metrics.counter("igaudit", "reused")

    def process(self, image: ImageBytes, known: dict):
        if known.get(image.image_id) == (image.content_hash, image.label):
            self._reused.inc()
            yield beam.pvalue.TaggedOutput(REUSED, (image.image_id, (image.uri, image.label, image.bbox)))
        else:
            yield image


class _CopyReusedFn(beam.DoFn):
    """(image_id, {"now": [(uri, label, bbox)], "then": [rows]}) -> this run's rows for the image, its files
    copied from the reference run in groups (LEDGER_GROUP images, or a shard of up to SHARD_ROWS with
    `output.layout: shards`), each group's ledger file first; MISSING: the image read again (ImageBytes) where
    a file of it is gone from the reference run. Files to files: the store's own copy; any other pair of
    layouts: read and written again (`transforms/artifacts.py`)."""

    def __init__(self, reference: str, out_dir: str, output, per_target: bool):
        self.reference, self.out_dir, self.output, self.per_target = reference, out_dir, output, per_target
        self.shards = output.layout == "shards"
        self._missing = Metrics.counter("igaudit", "reuse_files_missing")

    def start_bundle(self):
        self._group = []
        self._cache = ShardCache()

    def process(self, element):
        image_id, joined = element
        if not joined["now"] or not joined["then"]:
            return
        self._group.append((image_id, joined["now"][0], joined["then"]))
        if len(self._group) >= (SHARD_ROWS if self.shards else LEDGER_GROUP):
            yield from self._flush()

    def _paths(self, row: dict) -> list[str]:
        return artifact_paths(row["image_id"], row["target"], self.per_target, self.output)

    def _again(self, image_id: str, uri: str, label, bbox):
        self._missing.inc()
        with FileSystems.open(uri) as f:
            return beam.pvalue.TaggedOutput(MISSING, ImageBytes(uri, label, image_id, f.read(), bbox))

    def _reused(self, row: dict, uri: str, **where) -> dict:
        return {**row, **dict.fromkeys(CLUSTER_FIELDS), "uri": uri, "reused_from": self.reference, **where}

    def _flush(self) -> list:
        group, self._group = self._group, []
        if not group:
            return []
        if not self.shards and not any(row.get("artifact_shard") for *_, rows in group for row in rows):
            return self._copy_files(group)
        return self._rewrite(group)

    def _copy_files(self, group: list) -> list:
        ledger = FileSystems.join(self.out_dir, LEDGER_FOLDER, f"{uuid.uuid4().hex}.txt")
        paths = {image_id: [p for row in rows for p in self._paths(row)] for image_id, _, rows in group}
        write_file_atomically(ledger, ledger_text([p for ps in paths.values() for p in ps]))   # listed first
        out = []
        for image_id, (uri, label, bbox), rows in group:
            try:
                for rel in paths[image_id]:
                    _copy(FileSystems.join(self.reference, rel), FileSystems.join(self.out_dir, rel))
            except Exception:  # noqa: BLE001 - gone from the reference run (any filesystem's error): attribute it
                out.append(self._again(image_id, uri, label, bbox))
                continue
            out += [self._reused(row, uri, artifact_shard=None) for row in rows]
        return out

    def _rewrite(self, group: list) -> list:
        kinds = artifact_kinds(self.output)
        shard = new_shard_path()
        out, entries, files = [], [], []
        for image_id, (uri, label, bbox), rows in group:
            try:
                found = [row_artifacts(self.reference, row, self._paths(row), self._cache, kinds) for row in rows]
            except Exception:  # noqa: BLE001 - gone from the reference run (any filesystem's error): attribute it
                out.append(self._again(image_id, uri, label, bbox))
                continue
            for row, data in zip(rows, found):
                if self.shards:
                    entries.append({"image_id": row["image_id"], "target": row["target"], **data})
                    out.append(self._reused(row, uri, artifact_shard=shard, mask_path=None, overlay_path=None))
                    continue
                paths = self._paths(row)
                files += [(rel, data[kind_of(rel)]) for rel in paths]
                out.append(self._reused(row, uri, artifact_shard=None, **path_columns(paths)))
        listed = ([shard] if entries else []) if self.shards else [rel for rel, _ in files]
        if listed:
            write_file_atomically(FileSystems.join(self.out_dir, LEDGER_FOLDER, f"{uuid.uuid4().hex}.txt"),
                                  ledger_text(listed))                   # listed first
            for rel, data in ([(shard, shard_bytes(entries))] if self.shards else files):
                write_file_atomically(FileSystems.join(self.out_dir, rel), data)
        return out

    def finish_bundle(self):
        for value in self._flush():
            if isinstance(value, beam.pvalue.TaggedOutput):
                yield beam.pvalue.TaggedOutput(value.tag, WindowedValue(value.value, MIN_TIMESTAMP, [GlobalWindow()]))
            else:
                yield WindowedValue(value, MIN_TIMESTAMP, [GlobalWindow()])


class ReuseUnchanged(beam.PTransform):
    """PCollection[ImageBytes] -> {FRESH: ImageBytes to attribute, REUSED: images rows taken from `reference`}.

    reference: the reference run's folder (its reuse key matched this run's); output: the config's `output`
    section; per_target: files are named per target (several targets per image)."""

    def __init__(self, reference: str, out_dir: str, output, per_target: bool):
        super().__init__()
        self.reference, self.out_dir, self.output, self.per_target = reference, out_dir, output, per_target

    def expand(self, images):
        then = (images.pipeline
                | "ReadReferenceRows" >> beam.io.ReadFromParquet(
                    FileSystems.join(self.reference, IMAGES_FOLDER, "*.parquet"))
                | "ByImage" >> beam.Map(lambda r: (r["image_id"], r)))
        known = then | "Identity" >> beam.Map(lambda kv: (kv[0], (kv[1]["content_hash"], kv[1]["label"])))
        split = images | "Compare" >> beam.ParDo(_SplitFn(), beam.pvalue.AsDict(known)).with_outputs(
            REUSED, main=FRESH)
        copied = ({"now": split[REUSED], "then": then}
                  | "Join" >> beam.CoGroupByKey()
                  | "CopyFiles" >> beam.ParDo(_CopyReusedFn(self.reference, self.out_dir, self.output,
                                                            self.per_target)).with_outputs(MISSING, main=REUSED))
        fresh = (split[FRESH], copied[MISSING]) | "WithFilesGone" >> beam.Flatten()
        return {FRESH: fresh, REUSED: copied[REUSED]}
