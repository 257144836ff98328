"""Incremental audits (`audit.reuse`): whether this run may take images from its reference run as they are.

An image's row and files (mask, overlay, raw array) are reused when all of these match:

* the image file's bytes (`records.content_hash`, compared per image in the graph: `transforms/reuse.py`),
  and its label (a manifest may move an image to another class under the same id);
* the model (`model_files.content_hash`: every byte of the file or folder, wherever it lives);
* every setting that shapes a row or a file: `model` (how inputs are scaled and resized, the output kind,
  the precision; not where the file is), `attribution` (not the batch and chunk sizes, which change only
  the speed), `quality`, `render`, which files `output` writes, the grid and border of `analysis`, the
  classes, the decode spec and the igaudit version.

The last two are one key (`reuse_key`), written to run.json: a reference run reuses nothing unless its key is
this run's. Never reused: runs whose attributions depend on the whole dataset (`baseline: mean`, the
`expected_gradients` references drawn from it), since a new image changes every row. Statistics, clusters,
candidates, interventions and findings are always computed over the whole dataset, reused rows included.
"""
from __future__ import annotations

import hashlib
import json
from importlib import metadata
from typing import Optional

from igaudit.pipeline.paths import shown

# settings that change the speed or where things are, not a row's numbers or a file's pixels
NOT_SHAPING = {"model": ("path", "share_across_processes", "format", "signature"),
               "attribution": ("batch_size", "chunk_size", "memory_mb", "jit_compile")}


def reuse_key(cfg, class_names, decode: dict, model_hash: str) -> str:
    """The model and every setting that shapes an images row or its files, as one hash (32 hex digits)."""
    d = cfg.to_dict()
    for section, names in NOT_SHAPING.items():
        d[section] = {k: v for k, v in d[section].items() if k not in names}
    parts = {"model_hash": model_hash, "model": d["model"], "attribution": d["attribution"],
             "quality": d["quality"], "render": d["render"],
             "output": {k: d["output"][k] for k in ("masks", "overlays", "raw")},
             "analysis": {k: d["analysis"][k] for k in ("grid", "border")},
             "class_names": list(class_names), "decode": decode, "igaudit": _version()}
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _version() -> str:
    try:
        return metadata.version("igaudit")
    except metadata.PackageNotFoundError:       # a checkout on the path, not installed
        return "unknown"


def dataset_wide(cfg) -> Optional[str]:
    """Why this run's attributions depend on the whole dataset (then nothing is reused), else None."""
    a = cfg.attribution
    if a.method == "expected_gradients":
        return "expected_gradients draws its baselines from the dataset"
    if a.baseline == "mean":
        return "attribution.baseline mean is the dataset's mean image"
    return None


def reuse_source(cfg, key: str, reference_info: Optional[dict]) -> tuple[Optional[str], Optional[str]]:
    """(the reference run to take unchanged images from, or None; a line saying why nothing is reused, where
    a reference run was given and audit.reuse is on)."""
    reference = cfg.analysis.reference
    if not (cfg.audit.reuse and reference and reference_info):
        return None, None
    why = dataset_wide(cfg)
    if why:
        return None, f"audit.reuse: nothing reused, {why}"
    theirs = reference_info.get("reuse_key")
    if theirs != key:
        what = "it predates audit.reuse" if theirs is None else "the model or a setting that shapes the rows changed"
        return None, f"audit.reuse: nothing reused from '{shown(reference)}': {what}; every image is attributed"
    return reference, None
