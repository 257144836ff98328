"""ReuseUnchanged: an incremental audit takes the reference run's row and files for each image whose bytes and
label are unchanged, and sends only the others on to be decoded and attributed.

The launcher has already compared the model and the settings (`pipeline/reuse.py`: the reference run's reuse
key is this run's); here each image's content hash (`records.content_hash`) and label are compared with the
reference run's row for the same image id. A reused image's rows (one per target) come back as they were,
with their cluster fields cleared (this run clusters the whole dataset again) and `reused_from` set; its
mask, overlay and raw array are copied into this run's folder (a server-side copy on an object store), listed
in the run's ledger first like every file a run writes, so the run stands alone when the reference run is
pruned.
"""
from __future__ import annotations

import os
import shutil
import uuid

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics

from igaudit.transforms.records import IMAGES_FOLDER, LEDGER_FOLDER, ImageBytes
from igaudit.transforms.write import LEDGER_GROUP, artifact_paths, ledger_text, write_file_atomically

FRESH, REUSED = "fresh", "reused"
CLUSTER_FIELDS = ("cluster", "outlier_score", "predicted_cluster", "predicted_outlier_score")


def _copy(src: str, dst: str) -> None:
    if "://" in dst:
        FileSystems.copy([src], [dst])
        return
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    tmp = f"{dst}.tmp-{uuid.uuid4().hex[:8]}"
    shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


class _SplitFn(beam.DoFn):
    """ImageBytes -> main: changed or new ones; REUSED: (image_id, uri) of those whose content hash and label
    match the reference run's."""

    def __init__(self):
        self._reused = Metrics.counter("igaudit", "reused")

    def process(self, image: ImageBytes, known: dict):
        if known.get(image.image_id) == (image.content_hash, image.label):
            self._reused.inc()
            yield beam.pvalue.TaggedOutput(REUSED, (image.image_id, image.uri))
        else:
            yield image


class _CopyReusedFn(beam.DoFn):
    """(image_id, {"now": [uri], "then": [rows]}) -> this run's rows for the image; its files copied from the
    reference run, in groups of LEDGER_GROUP images, each group's ledger file first."""

    def __init__(self, reference: str, out_dir: str, output, per_target: bool):
        self.reference, self.out_dir, self.output, self.per_target = reference, out_dir, output, per_target

    def start_bundle(self):
        self._group, self._images = [], 0

    def process(self, element):
        _, joined = element
        if not joined["now"] or not joined["then"]:
            return
        uri = joined["now"][0]
        for row in joined["then"]:
            paths = artifact_paths(row["image_id"], row["target"], self.per_target, self.output)
            self._group += paths
            yield {**row, **dict.fromkeys(CLUSTER_FIELDS), "uri": uri, "reused_from": self.reference}
        self._images += 1
        if self._images >= LEDGER_GROUP:
            self._flush()

    def _flush(self):
        if self._group:
            ledger = FileSystems.join(self.out_dir, LEDGER_FOLDER, f"{uuid.uuid4().hex}.txt")
            write_file_atomically(ledger, ledger_text(self._group))     # listed first, then copied
            for rel in self._group:
                _copy(FileSystems.join(self.reference, rel), FileSystems.join(self.out_dir, rel))
        self._group, self._images = [], 0

    def finish_bundle(self):
        self._flush()


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
        rows = ({"now": split[REUSED], "then": then}
                | "Join" >> beam.CoGroupByKey()
                | "CopyFiles" >> beam.ParDo(_CopyReusedFn(self.reference, self.out_dir, self.output, self.per_target)))
        return {FRESH: split[FRESH], REUSED: rows}
