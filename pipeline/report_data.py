"""What the report shows, as plain data: the confusion table, and which images each class section shows.

Works on column arrays (one per images.parquet column), never on one dict per image, so a run of a
million images costs the report a few arrays in memory and a few dozen pictures per class.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

COLUMNS = ["image_id", "uri", "label", "predicted_name", "confidence", "correct", "relative_gap", "overlay_path",
           "mask_path", "artifact_shard", "target", "cluster", "outlier_score", "predicted_cluster", "predicted_outlier_score"]
PER_KIND = 4            # images per kind (typical, least typical, misclassified, lowest confidence) per class
PER_CLUSTER = 3         # exemplars per cluster
MATRIX_CLASSES = 30     # the confusion table is a matrix up to this many classes, a list of confusions beyond
MAX_PAIRS = 300         # confusions (label, predicted) listed when it is a list
MAX_TABLE_ROWS = 300    # rows of the clusters and comparison tables
KINDS = (("typical", "most typical (lowest outlier score)"),
         ("atypical", "least typical (highest outlier score)"),
         ("misclassified", "misclassified (most confident first)"),
         ("unsure", "lowest confidence"))


def image_columns(table) -> dict:
    """images table -> {column: numpy array}, one row per image (an image with several targets keeps its first)."""
    cols = {c: table.column(c).to_numpy(zero_copy_only=False) for c in COLUMNS if c in table.column_names}
    ids = cols.get("image_id", np.array([], object))
    _, first = np.unique(ids.astype(str), return_index=True)
    first = np.sort(first)
    return {c: v[first] for c, v in cols.items()}


def _float(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], np.float64) if values.dtype == object \
        else values.astype(np.float64)


def confusion(classes: list[dict], class_names: list[str]) -> dict:
    """label x predicted counts, from classes.parquet's label rows (their predicted_counts).

    Up to MATRIX_CLASSES classes it is a matrix (`rows` with `cells`); beyond, each label keeps its
    total and accuracy, and the off-diagonal pairs are listed apart (`pairs`, largest first, at most
    MAX_PAIRS), so a thousand classes do not make a million cells."""
    rows = [c for c in classes if c["group_by"] == "label"]
    counts = {c["class_name"]: {p: int(n) for p, n in (c.get("predicted_counts") or [])} for c in rows}
    order = {n: i for i, n in enumerate(class_names)}
    labels = sorted(counts, key=lambda n: (order.get(n, len(order)), n))
    # square where it can be: every label is a column too, so an unpredicted class shows as a 0 column
    predicted = sorted({p for row in counts.values() for p in row} | set(labels),
                       key=lambda n: (order.get(n, len(order)), n))
    matrix = len(predicted) <= MATRIX_CLASSES
    accuracy = {c["class_name"]: c.get("accuracy") for c in rows}
    table = [{"label": n, "total": sum(counts[n].values()), "accuracy": accuracy.get(n), "correct": counts[n].get(n, 0),
              "cells": [{"predicted": p, "count": counts[n].get(p, 0), "diagonal": p == n} for p in predicted]
              if matrix else []} for n in labels]
    totals = {r["label"]: r["total"] for r in table}
    pairs = sorted(((n, p, c) for n in labels for p, c in counts[n].items() if p != n and c > 0),
                   key=lambda t: (-t[2], order.get(t[0], len(order)), order.get(t[1], len(order))))
    # the summary's "largest confusion": only a label the model has as a class can be confused
    worst = next(((n, p, c, totals[n]) for n, p, c in pairs if n in order), None)
    return {"labels": labels, "predicted": predicted, "rows": table, "worst": worst, "matrix": matrix,
            "pairs": [{"label": n, "predicted": p, "count": c, "total": totals[n]} for n, p, c in pairs[:MAX_PAIRS]],
            "pairs_total": len(pairs)}


def _rows(cols: dict, index: np.ndarray, outlier_column: str) -> list[dict]:
    out = []
    for i in index:
        row = {c: (v[i].item() if hasattr(v[i], "item") else v[i]) for c, v in cols.items()}
        row["outlier"] = row.get(outlier_column)
        out.append(row)
    return out


def class_members(cols: dict, group_by: str) -> dict:
    """{class name: row indices} under group_by, in one pass (not one scan of every image per class)."""
    values = cols.get("label" if group_by == "label" else "predicted_name", np.array([], object))
    keys = np.array(["" if v is None else str(v) for v in values], object)
    if keys.size == 0:
        return {}
    names, inverse = np.unique(keys.astype(str), return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    ends = np.cumsum(np.bincount(inverse, minlength=len(names)))
    return {str(n): order[e - c:e] for n, c, e in zip(names, np.bincount(inverse, minlength=len(names)), ends)
            if n != ""}


def pick_images(cols: dict, group_by: str, class_name: str, per_kind: int = PER_KIND,
                members: Optional[dict] = None) -> dict:
    """{kind: [row, ...]} for one class: most and least typical, misclassified, lowest confidence."""
    members = class_members(cols, group_by) if members is None else members
    index = members.get(class_name, np.array([], int))
    if index.size == 0:
        return {kind: [] for kind, _ in KINDS}
    outlier_column = "outlier_score" if group_by == "label" else "predicted_outlier_score"
    outlier = _float(cols[outlier_column])[index] if outlier_column in cols else np.full(index.size, np.nan)
    confidence = _float(cols["confidence"])[index]
    wrong = np.asarray(cols["label"][index] != cols["predicted_name"][index], bool) & \
        np.array([v is not None for v in cols["label"][index]], bool)
    scored = np.isfinite(outlier)
    by_outlier = index[scored][np.argsort(outlier[scored], kind="stable")]
    chosen = {"typical": by_outlier[:per_kind],
              "atypical": by_outlier[::-1][:per_kind] if by_outlier.size > per_kind else by_outlier[:0],
              "misclassified": index[wrong][np.argsort(-confidence[wrong], kind="stable")][:per_kind],
              "unsure": index[np.argsort(confidence, kind="stable")][:per_kind]}
    return {kind: _rows(cols, chosen[kind], outlier_column) for kind, _ in KINDS}


def id_index(cols: dict, wanted: set) -> dict:
    """{image_id: row} for the wanted ids (clusters' exemplars), found in one pass over the images."""
    return {v: i for i, v in enumerate(cols.get("image_id", [])) if v in wanted}


def rows_by_id(cols: dict, image_ids: list[str], index: dict, outlier_column: str = "outlier_score") -> list[dict]:
    """The rows of these images (a cluster's exemplars), in the given order; index: from id_index."""
    return _rows(cols, np.array([index[i] for i in image_ids if i in index], int), outlier_column)


def confidences(cols: dict, class_names: list[str], group_by: str = "label") -> dict:
    """{class: confidence array} for the per-class confidence plot."""
    members = class_members(cols, group_by)
    conf = _float(cols["confidence"])
    return {n: conf[members[n]] for n in class_names if n in members}


def moved(row: dict) -> bool:
    """A comparison row worth showing: flagged, or at least half-way to its threshold."""
    return bool(row.get("flagged")) or (row.get("score") or 0.0) >= 0.5


def relative_gaps(cols: dict) -> np.ndarray:
    gaps = _float(cols.get("relative_gap", np.array([], np.float64)))
    return gaps[np.isfinite(gaps)]


def share(count: Optional[int], total: Optional[int]) -> Optional[float]:
    return None if not total else count / total
