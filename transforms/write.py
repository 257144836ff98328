"""Writing per-image artifacts (in the fused IG stage) and the Parquet tables.

The full-resolution attribution never crosses a shuffle: `WriteArtifacts` writes
the mask, overlay and raw array right where IG computed them, and emits only a
small summary row.
"""
from __future__ import annotations

import io
import os
import uuid
from typing import Optional, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystems import FileSystems

from igaudit.transforms.artifacts import SHARD_ROWS, kind_of, new_shard_path, shard_bytes
from igaudit.transforms.imaging import render
from igaudit.transforms.imaging.png import png_bytes
from igaudit.transforms.records import (ARTIFACT_FILES, CLASSES_TABLE, CLUSTERS_TABLE, FINDINGS_TABLE, IMAGES_FOLDER,
                                       LEDGER_FOLDER, REJECTED_SCHEMA, REJECTED_TABLE, SKEW_TABLE, AttributionResult,
                                       classes_schema, clusters_schema, findings_schema, images_schema, skew_schema)
from igaudit.transforms.analysis.summarize import box_stats, summarize_attribution


def write_file_atomically(path: str, data: bytes) -> None:
    """Write `path` so that it is either absent or complete (a retried bundle rewrites it cleanly).

    Local paths: a temporary name beside it, then a rename into place, with plain os calls (Beam's
    FileSystems layer costs about as much again per small file). Object stores (gs://, s3://, ...): one
    upload, since an object appears only once complete; no temporary object and rename, which cost four
    more requests per file (and each of Beam's S3 calls builds a new client).
    """
    if "://" in path:
        with FileSystems.create(path) as f:
            f.write(data)
        return
    folder, name = path.rsplit("/", 1)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{name}.tmp-{uuid.uuid4().hex[:8]}")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)   # atomic, and replaces a file a failed earlier attempt left


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array.astype(np.float32), allow_pickle=False)
    return buffer.getvalue()


def class_name(index: int, class_names: Sequence[str]) -> Optional[str]:
    return class_names[index] if 0 <= index < len(class_names) else str(index)


def summary_row(r: AttributionResult, class_names: Sequence[str], grid: int, border: float,
                mask_path: Optional[str], overlay_path: Optional[str], shard: Optional[str] = None) -> dict:
    """The images.parquet row for one attribution (shard: its artifacts' shard, layout shards)."""
    stats = summarize_attribution(r.attribution, grid=grid, border=border)
    in_box, pointing_hit = box_stats(r.attribution, r.bbox) if r.bbox is not None else (None, None)
    delta = r.score_input - r.score_baseline
    return {
        "image_id": r.image_id, "uri": r.uri, "label": r.label, "label_index": r.label_index,
        "predicted": r.predicted, "predicted_name": class_name(r.predicted, class_names),
        "confidence": r.confidence, "correct": r.label_index >= 0 and r.label_index == r.predicted,
        "target": r.target, "target_name": class_name(r.target, class_names),
        "score_input": r.score_input, "score_baseline": r.score_baseline,
        "completeness_gap": r.completeness_gap,
        "relative_gap": abs(r.completeness_gap) / max(abs(delta), 1e-12) if np.isfinite(delta) else float("nan"),
        "gap_of_abs": abs(r.completeness_gap) / max(stats.abs_sum, 1e-12),
        "attribution_sum": float(r.attribution.sum(dtype=np.float64)), "abs_attribution_sum": stats.abs_sum,
        "steps": r.steps, "rule": r.rule, "method": r.method, "gradient_samples": r.gradient_samples,
        "converged": r.converged,
        "deletion_auc": r.quality.get("deletion_auc"), "insertion_auc": r.quality.get("insertion_auc"),
        "infidelity": r.quality.get("infidelity"), "in_box": in_box, "pointing_hit": pointing_hit,
        "border_mass": stats.border_mass, "concentration": stats.concentration, "entropy": stats.entropy,
        "positive_share": stats.positive_share,
        "channel_shares": np.asarray(stats.channel_shares, np.float64).tolist(),   # Python floats
        "grid_size": grid, "grid": np.asarray(stats.grid, np.float64).ravel().tolist(),
        "mask_path": mask_path, "overlay_path": overlay_path, "artifact_shard": shard,
        "bbox": None if r.bbox is None else [float(v) for v in r.bbox],
        # filled by ClusterStrategies, before images/*.parquet is written
        "cluster": None, "outlier_score": None, "predicted_cluster": None, "predicted_outlier_score": None,
        "content_hash": r.content_hash, "reused_from": None,
    }


# A run records every per-image file it writes in ledger files under this folder of output.dir, each
# written before the files it lists: a rerun (pipeline/ownership.py) removes exactly those files, even
# after a kill, and leaves anything else in masks/, overlays/ or raw/ alone.
LEDGER_GROUP = 16          # results per ledger file
MAX_PENDING_WRITES = 64    # results whose files may wait for the write thread


def artifact_kinds(output) -> list[str]:
    """The artifacts `output` (the config's section) asks for: of 'mask', 'overlay', 'raw', in that order."""
    return [kind for kind, on in (("mask", output.masks), ("overlay", output.overlays), ("raw", output.raw)) if on]


def artifact_paths(image_id: str, target: int, per_target: bool, output) -> list[str]:
    """The output-relative paths of one row's files (layout files) as `output` asks for them: masks/,
    overlays/ (PNG) and raw/ (.npy), named <image_id>, or <image_id>-t<target> with several targets."""
    name = f"{image_id}-t{target}" if per_target else image_id
    return [f"{ARTIFACT_FILES[k][0]}/{name}.{ARTIFACT_FILES[k][1]}" for k in artifact_kinds(output)]


def path_columns(paths: Sequence[str]) -> dict:
    """The images row's `mask_path` and `overlay_path` among a row's `artifact_paths` (None where not written)."""
    return {column: next((p for p in paths if p.startswith(f"{ARTIFACT_FILES[kind][0]}/")), None)
            for column, kind in (("mask_path", "mask"), ("overlay_path", "overlay"))}


def ledger_text(paths: Sequence[str]) -> bytes:
    """A ledger file's content: one output-relative path per line."""
    return "".join(f"{p}\n" for p in paths).encode("utf-8")


def read_ledger(data: bytes) -> list[str]:
    return [line for line in data.decode("utf-8").splitlines() if line]


class _WriteArtifactsFn(beam.DoFn):
    """Renders each result's files here and writes them on one background thread; the summary row
    is emitted at once.

    Rendering and PNG encoding (CPU) stay on the calling thread, between IG batches: on a
    background thread they ran while TensorFlow computed the next batch and slowed it by more
    than their own cost (measured: `benchmarks/pipeline_bench.py`). Writing (I/O, which releases
    the GIL, and slow on a remote bucket) overlaps the next batch. Files go out in groups, of
    LEDGER_GROUP results (layout files) or one shard of up to SHARD_ROWS (layout shards,
    `transforms/artifacts.py`), each group's ledger file first (the single write thread keeps that
    order), so a file igaudit wrote is always listed before it exists. At most MAX_PENDING_WRITES
    results' files (two shards' worth with shards) wait for the thread, so memory stays bounded when
    writes are slower than attribution. finish_bundle writes the last group, waits for every pending
    file and re-raises the first failure, so a bundle only commits once its files are in place."""

    def __init__(self, out_dir: str, class_names: Sequence[str], output, analysis, options,
                 per_target_files: bool):
        self.out_dir = out_dir
        self.per_target_files = per_target_files
        self.options = options
        self.class_names = list(class_names)
        self.output = output
        self.shards = output.layout == "shards"
        self.grid, self.border = analysis.grid, analysis.border
        self._pool = None
        self._pending = []

    def setup(self):
        from concurrent.futures import ThreadPoolExecutor
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="igaudit-write")

    def teardown(self):
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def encode(self, r: AttributionResult) -> dict:
        """{kind: bytes} of the mask, overlay and raw array asked for (`artifact_kinds`)."""
        kinds = artifact_kinds(self.output)
        # the mask's map, reused by a heat overlay (other overlays do not draw it)
        shown = render.shown_map(r.attribution, self.options) if "mask" in kinds else None
        out = {}
        if "mask" in kinds:
            out["mask"] = png_bytes(render.render_mask(r.attribution, self.options, shown))
        if "overlay" in kinds:
            out["overlay"] = png_bytes(render.render_overlay(r.pixels, r.attribution, self.options, shown))
        if "raw" in kinds:
            out["raw"] = npy_bytes(r.attribution)
        return out

    @staticmethod
    def _write_files(ledger: str, paths: list[str], files: list[tuple[str, bytes]]) -> None:
        write_file_atomically(ledger, ledger_text(paths))     # listed first, then written
        for path, data in files:
            write_file_atomically(path, data)

    def start_bundle(self):
        self._pending = []
        self._group, self._group_results = [], 0
        self._shard = new_shard_path()

    def _flush(self):
        if self._group:
            ledger = FileSystems.join(self.out_dir, LEDGER_FOLDER, f"{uuid.uuid4().hex}.txt")
            if self.shards:
                paths = [self._shard]
                files = [(FileSystems.join(self.out_dir, self._shard), shard_bytes(self._group))]
                self._shard = new_shard_path()
            else:
                paths = [path[len(self.out_dir.rstrip("/")) + 1:] for path, _ in self._group]
                files = self._group
            self._pending.append((self._pool.submit(self._write_files, ledger, paths, files), self._group_results))
        self._group, self._group_results = [], 0
        limit = max(MAX_PENDING_WRITES, SHARD_ROWS) if self.shards else MAX_PENDING_WRITES
        while sum(n for _, n in self._pending) > limit:   # a slow filesystem holds back IG
            self._pending.pop(0)[0].result()

    def process(self, r: AttributionResult):
        data = self.encode(r)
        named, shard = path_columns(()), None
        if data and self.shards:
            self._group.append({"image_id": r.image_id, "target": r.target, **data})
            shard = self._shard
        elif data:
            paths = artifact_paths(r.image_id, r.target, self.per_target_files, self.output)
            named = path_columns(paths)
            self._group.extend((FileSystems.join(self.out_dir, rel), data[kind_of(rel)]) for rel in paths)
        if data:
            self._group_results += 1
            if self._group_results >= (SHARD_ROWS if self.shards else LEDGER_GROUP):
                self._flush()
        yield summary_row(r, self.class_names, self.grid, self.border, named["mask_path"], named["overlay_path"], shard)

    def finish_bundle(self):
        self._flush()
        pending, self._pending = self._pending, []
        for future, _ in pending:
            future.result()   # re-raises a failed write


class WriteArtifacts(beam.PTransform):
    """PCollection[AttributionResult] -> PCollection[dict] (images.parquet rows); writes masks/overlays/raw.

    output, analysis, options: the config's `output`, `analysis` and `render` sections.
    per_target_files: name files <image_id>-t<target> (several targets per image).
    """

    def __init__(self, out_dir: str, class_names: Sequence[str], *, output, analysis, options,
                 per_target_files: bool = False):
        super().__init__()
        self.fn = _WriteArtifactsFn(out_dir, class_names, output, analysis, options, per_target_files)

    def expand(self, results):
        return results | "WriteArtifacts" >> beam.ParDo(self.fn)


def write_images_table(rows, out_dir: str):
    """images/part-*.parquet, one row per attributed image."""
    return rows | "WriteImages" >> beam.io.WriteToParquet(
        FileSystems.join(out_dir, IMAGES_FOLDER, "part"), images_schema(), file_name_suffix=".parquet")


def write_single_table(rows, out_dir: str, name: str, schema, label: str):
    """One Parquet file `name` (an empty table when there are no rows)."""
    return rows | label >> beam.io.WriteToParquet(
        FileSystems.join(out_dir, name), schema, num_shards=1, shard_name_template="")


def write_classes_table(rows, out_dir: str):
    return write_single_table(rows, out_dir, CLASSES_TABLE, classes_schema(), "WriteClasses")


def write_rejected_table(rows, out_dir: str):
    return write_single_table(rows, out_dir, REJECTED_TABLE, REJECTED_SCHEMA, "WriteRejected")


def write_clusters_table(rows, out_dir: str):
    return write_single_table(rows, out_dir, CLUSTERS_TABLE, clusters_schema(), "WriteClusters")


def write_skew_table(rows, out_dir: str):
    return write_single_table(rows, out_dir, SKEW_TABLE, skew_schema(), "WriteSkew")


def write_findings_table(rows, out_dir: str):
    return write_single_table(rows, out_dir, FINDINGS_TABLE, findings_schema(), "WriteFindings")
