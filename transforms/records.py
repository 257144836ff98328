"""Element types that flow between stages, and the Parquet schemas beside them.

Heavy arrays (pixels, attributions) live only in the elements that stay inside
the fused read -> decode -> attribute -> write stage. What crosses a shuffle is
an `ImageSummary` row (scalars and a G x G grid) or a `Rejected` row.
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
from typing import Optional

import numpy as np
import pyarrow as pa


def make_image_id(key: str) -> str:
    """A stable, file-name-safe id for an image: readable stem + short hash of the key.

    The key is the uri (or a manifest-provided id); the same key always gives the
    same id, on any worker, in any run.
    """
    stem = key.rstrip("/").rsplit("/", 1)[-1]
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    stem = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-")[:40] or "image"
    digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:12]
    return f"{stem}-{digest}"


def content_hash(data: bytes) -> str:
    """An image file's identity by content (SHA-256, 32 hex digits): the same bytes, the same hash, wherever the
    file lives; one changed byte, another hash (an incremental audit reuses an image only on a match)."""
    return hashlib.sha256(data).hexdigest()[:32]


@dataclasses.dataclass(frozen=True)
class ImageFile:
    """A matched input: where it is and what label it carries (no bytes yet)."""
    uri: str
    label: Optional[str]
    image_id: str
    bbox: Optional[tuple] = None   # object box (x0, y0, x1, y1) in the original image's pixels


@dataclasses.dataclass(frozen=True)
class ImageBytes:
    """The raw bytes of one input file."""
    uri: str
    label: Optional[str]
    image_id: str
    data: bytes
    bbox: Optional[tuple] = None

    @property
    def content_hash(self) -> str:
        return content_hash(self.data)


@dataclasses.dataclass(frozen=True, eq=False)
class DecodedImage:
    """A model-ready image: float32 H x W x C in [0, 1] at the model's input size and channels."""
    uri: str
    label: Optional[str]
    image_id: str
    pixels: np.ndarray
    baseline: Optional[np.ndarray] = None     # attribution.baseline: mean (the dataset's mean image)
    references: Optional[np.ndarray] = None   # expected_gradients: the shared reference images
    bbox: Optional[tuple] = None              # object box in model-input pixels (x0, y0, x1, y1)
    content_hash: Optional[str] = None        # of the file's bytes (`content_hash`)


@dataclasses.dataclass(frozen=True)
class Rejected:
    """An input that could not be attributed, with the stage that gave up and why."""
    uri: str
    image_id: str
    stage: str
    reason: str

    def to_row(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, eq=False)
class AttributionResult:
    """One image's IG attribution and the scores around it (stays in the fused stage)."""
    uri: str
    label: Optional[str]
    image_id: str
    pixels: np.ndarray          # H x W x C float32 in [0, 1], what the model saw
    attribution: np.ndarray     # H x W x C float32, IG w.r.t. pixels in [0, 1]
    label_index: int            # -1 when the label is unknown to the model
    predicted: int
    confidence: float           # softmax probability of the predicted class
    target: int
    score_input: float          # F(x)
    score_baseline: float       # F(x')
    completeness_gap: float     # sum(IG) - (F(x) - F(x'))
    steps: int                  # quadrature steps (per image with steps: auto; -1 where not applicable)
    rule: str
    method: str = "integrated_gradients"
    gradient_samples: int = 0   # model gradient evaluations spent on this row
    converged: Optional[bool] = None   # steps: auto: met its tolerances before max_steps; None: no tolerance
    quality: dict = dataclasses.field(default_factory=dict)  # deletion_auc, insertion_auc, infidelity
    bbox: Optional[tuple] = None                             # object box in model-input pixels
    content_hash: Optional[str] = None                       # of the file's bytes


@dataclasses.dataclass(frozen=True)
class InterventionTest:
    """One candidate's intervention: which images (a class under `group_by`; for a region, those of its
    images that look there), what to edit (`kind`: region | outside_box | channel) and where. `test_id`
    names it in the graph; several skew rows that propose the same edit of one class share one test."""
    test_id: str
    group_by: str
    class_name: str
    class_index: int
    kind: str
    region: str                           # the edit in words: "the top-left 2x2 cells", "the red channel"
    cells: Optional[tuple] = None         # region: (r0, r1, c0, c1) of the attribution grid, ends exclusive
    grid: int = 0
    channel: Optional[int] = None         # channel: which one


@dataclasses.dataclass(frozen=True, eq=False)
class TestSample:
    """One test's bounded sample, decoded: the candidate's images and other classes' images (float32
    (n, H, W, C) in [0, 1]), with their object boxes (model pixels) when the test edits backgrounds, and
    how many of the class's images look at the region (`attending`) of how many (`class_count`)."""
    test: InterventionTest
    class_pixels: np.ndarray
    other_pixels: np.ndarray
    class_boxes: Optional[list] = None
    other_boxes: Optional[list] = None
    other_classes: Optional[list] = None   # each other image's class (under the test's group_by)
    attending: int = 0
    class_count: int = 0
    __test__ = False   # not a pytest class


# A run folder's tables (one Parquet file each, written by transforms/write.py; images/ is a folder of
# parts) and the folder of per-image file ledgers (ownership: what a rerun may remove).
CLASSES_TABLE, CLUSTERS_TABLE, SKEW_TABLE = "classes.parquet", "clusters.parquet", "skew.parquet"
FINDINGS_TABLE, REJECTED_TABLE, IMAGES_FOLDER = "findings.parquet", "rejected.parquet", "images"
LEDGER_FOLDER = ".igaudit/written"
ARTIFACTS_FOLDER = "artifacts"      # output.layout shards (transforms/artifacts.py)
# output.layout files: each artifact kind's folder and suffix (transforms/artifacts.py, write.py, run_dir's owned paths)
ARTIFACT_FILES = {"mask": ("masks", "png"), "overlay": ("overlays", "png"), "raw": ("raw", "npy")}


REJECTED_SCHEMA = pa.schema([
    ("uri", pa.string()),
    ("image_id", pa.string()),
    ("stage", pa.string()),
    ("reason", pa.string()),
])


def images_schema() -> pa.Schema:
    """One row per attributed image (images/*.parquet)."""
    return pa.schema([
        ("image_id", pa.string()),
        ("uri", pa.string()),
        ("label", pa.string()),
        ("label_index", pa.int64()),
        ("predicted", pa.int64()),
        ("predicted_name", pa.string()),
        ("confidence", pa.float64()),
        ("correct", pa.bool_()),
        ("target", pa.int64()),
        ("target_name", pa.string()),
        ("score_input", pa.float64()),
        ("score_baseline", pa.float64()),
        ("completeness_gap", pa.float64()),
        ("relative_gap", pa.float64()),
        ("gap_of_abs", pa.float64()),
        ("attribution_sum", pa.float64()),
        ("abs_attribution_sum", pa.float64()),
        ("steps", pa.int64()),
        ("rule", pa.string()),
        ("method", pa.string()),
        ("gradient_samples", pa.int64()),
        ("converged", pa.bool_()),
        ("deletion_auc", pa.float64()),
        ("insertion_auc", pa.float64()),
        ("infidelity", pa.float64()),
        ("in_box", pa.float64()),
        ("pointing_hit", pa.float64()),
        ("border_mass", pa.float64()),
        ("concentration", pa.float64()),
        ("entropy", pa.float64()),
        ("positive_share", pa.float64()),
        ("channel_shares", pa.list_(pa.float64())),
        ("grid_size", pa.int64()),
        ("grid", pa.list_(pa.float64())),
        ("mask_path", pa.string()),
        ("overlay_path", pa.string()),
        ("artifact_shard", pa.string()),         # output.layout shards: the artifacts/*.parquet holding its files
        ("bbox", pa.list_(pa.float64())),        # object box in model-input pixels (x0, y0, x1, y1)
        ("cluster", pa.int64()),                 # strategy cluster within its label's class
        ("outlier_score", pa.float64()),         # Hellinger distance of its grid from that cluster's centre
        ("predicted_cluster", pa.int64()),       # ... within its predicted class
        ("predicted_outlier_score", pa.float64()),
        ("content_hash", pa.string()),           # of the image file's bytes (records.content_hash)
        ("reused_from", pa.string()),            # the reference run whose row and files this is (audit.reuse)
    ])


def classes_schema() -> pa.Schema:
    """One row per (group_by, class) (classes.parquet)."""
    return pa.schema([
        ("group_by", pa.string()),
        ("class_name", pa.string()),
        ("count", pa.int64()),
        ("accuracy", pa.float64()),
        ("mean_confidence", pa.float64()),
        ("mean_completeness_gap", pa.float64()),
        ("mean_abs_completeness_gap", pa.float64()),
        ("mean_relative_gap", pa.float64()),
        ("mean_border_mass", pa.float64()),
        ("std_border_mass", pa.float64()),
        ("mean_concentration", pa.float64()),
        ("mean_entropy", pa.float64()),
        ("mean_deletion_auc", pa.float64()),
        ("mean_insertion_auc", pa.float64()),
        ("mean_infidelity", pa.float64()),
        ("mean_in_box", pa.float64()),
        ("mean_pointing_hit", pa.float64()),
        ("mean_channel_shares", pa.list_(pa.float64())),
        ("grid_size", pa.int64()),
        ("mean_grid", pa.list_(pa.float64())),
        ("peak_share", pa.list_(pa.float64())),   # share of its images whose strongest cells include each cell
        ("predicted_counts", pa.map_(pa.string(), pa.int64())),
        ("typical_images", pa.list_(pa.string())),
    ])


def skew_schema() -> pa.Schema:
    """One row per (group_by, class, cluster, metric) (skew.parquet): a metric's reading; for a candidate that
    was tested, its test's figures, the four tests, the outcome and the finding it belongs to."""
    return pa.schema([
        ("group_by", pa.string()),
        ("class_name", pa.string()),
        ("cluster", pa.int64()),             # null for class-level rows
        ("metric", pa.string()),
        ("value", pa.float64()),
        ("reference", pa.float64()),
        ("score", pa.float64()),
        ("threshold", pa.float64()),
        ("candidate", pa.bool_()),           # score >= 1: the metric proposes it
        ("region", pa.string()),             # what the intervention edits, in words
        ("region_cells", pa.list_(pa.int64())),   # (r0, r1, c0, c1) of the grid, ends exclusive
        ("channel", pa.int64()),             # channel_shift: the channel
        ("test_id", pa.string()),            # the intervention test that decided it
        *_figure_fields(),
        ("evidence", pa.string()),
        ("outcome", pa.string()),            # shortcut | review | cleared (tested candidates)
        ("flagged", pa.bool_()),             # a shortcut, or a drift flag
        ("finding", pa.string()),            # the finding it belongs to (findings.parquet)
        ("detail", pa.string()),
    ])


def _figure_fields() -> list:
    """A test's figures and outcomes, as skew.parquet and findings.parquet both carry them."""
    return [
        ("sample", pa.int64()),              # images of the class re-scored
        ("attending", pa.int64()),           # images of the class that look at the region
        ("class_count", pa.int64()),         # images of the class
        ("other_sample", pa.int64()),        # images of other classes re-scored
        ("relying", pa.int64()),             # re-scored images that lose RELY_DROP without the region
        ("accuracy", pa.float64()),
        ("accuracy_removed", pa.float64()),
        ("accuracy_control", pa.float64()),
        ("confidence", pa.float64()),
        ("drop", pa.float64()),
        ("control_drop", pa.float64()),
        ("kept_class", pa.float64()),
        ("kept_other", pa.float64()),
        ("transplant_flip", pa.float64()),
        ("transplant_control", pa.float64()),
        ("stamp_repeat", pa.float64()),
        ("stamp_others", pa.float64()),
        ("stamp_pixels", pa.int64()),
        ("needed", pa.bool_()),
        ("sufficient", pa.bool_()),
        ("transplanted", pa.bool_()),
        ("repeating", pa.bool_()),
    ]


def findings_schema() -> pa.Schema:
    """One row per finding (findings.parquet): one shortcut (or review, or cleared candidate, or one class's
    drift), whatever the number of metrics and groupings that saw it; its edit, figures and status."""
    return pa.schema([
        ("finding", pa.string()),            # stable id: class/kind/where, kept from the run that first found it
        ("class_name", pa.string()),
        ("kind", pa.string()),               # region | channel | outside_box | drift
        ("region", pa.string()),
        ("region_cells", pa.list_(pa.int64())),
        ("grid_size", pa.int64()),
        ("channel", pa.int64()),
        ("group_by", pa.string()),           # the grouping of its strongest row
        ("groupings", pa.list_(pa.string())),
        ("metrics", pa.list_(pa.string())),
        ("clusters", pa.list_(pa.int64())),
        ("rows", pa.int64()),                # skew rows beneath it
        ("outcome", pa.string()),            # shortcut | review | cleared | drift
        ("flagged", pa.bool_()),             # a shortcut, or a drift flag
        ("status", pa.string()),             # new | standing | resolved | not audited | null
        *[f for f in _figure_fields() if f[0] not in ("other_sample", "accuracy", "accuracy_removed",
                                                      "accuracy_control", "confidence")],
        ("evidence", pa.string()),
        ("detail", pa.string()),
    ])


def clusters_schema() -> pa.Schema:
    """One row per (group_by, class, cluster) (clusters.parquet)."""
    return pa.schema([
        ("group_by", pa.string()),
        ("class_name", pa.string()),
        ("cluster", pa.int64()),
        ("size", pa.int64()),
        ("share", pa.float64()),
        ("mean_outlier_score", pa.float64()),
        ("grid_size", pa.int64()),
        ("mean_grid", pa.list_(pa.float64())),
        ("region", pa.string()),
        ("exemplars", pa.list_(pa.string())),
    ])
