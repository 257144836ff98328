"""report.html: one self-contained file built from a run's outputs with the Jinja2 template
templates/report.html.j2.

Every picture and figure is embedded (data URIs), so the file alone, mailed or attached to a ticket,
shows everything; overlays in the run folder are only linked as extras. Its size is bounded: a few
images per kind per class, and pictures for at most MAX_CLASSES_PICTURED classes per grouping (the
most skewed first); the others get a table row.
"""
from __future__ import annotations

import json
from typing import Optional

import numpy as np
from apache_beam.io.filesystems import FileSystems

from igaudit.pipeline import report_data as data
from igaudit.pipeline.report_pictures import embed, image_pair
from igaudit.transforms.artifacts import ShardCache
from igaudit.transforms.analysis.skew.verdict import DECISIVE
from igaudit.transforms.imaging.decode import DecodeSpec
from igaudit.pipeline.report_plots import CELLS_WRITTEN, confidence_plot, gap_histogram, grid_figure, trend_plot
from igaudit.pipeline.run_dir import (CLASSES_TABLE, CLUSTERS_TABLE, FINDINGS_TABLE, REJECTED_TABLE, RUN_PREFIX,
                                      SKEW_TABLE, RunDir, completed_runs, config_of)
from igaudit.transforms.analysis.skew import DATASET_METRICS, REFERENCE_METRICS, class_skew_scores

MAX_CLASSES_PICTURED = 24
PICTURE_BUDGET = 400      # image pairs in the whole report, at most about this many (sets the images per kind)
SECTIONS = (("summary", "Summary"), ("findings", "Findings"), ("confusion", "Confusion"), ("classes", "Classes"),
            ("clusters", "Clusters"), ("comparison", "Comparison"), ("rejected", "Rejected"),
            ("settings", "Settings"))
GROUP_TITLES = {"label": "by true label", "predicted": "by predicted class"}


def anchor(group_by: str, name, cluster: Optional[int] = None) -> str:
    """A stable, HTML-safe id for a class (or cluster) section."""
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in str(name))
    return f"{group_by}-{safe}" + ("" if cluster is None else f"-c{cluster}")


def peak_cells(grid: np.ndarray, n: int = 3) -> str:
    """The n cells with the most attribution mass, in words: '(1, 2) 17%, (2, 2) 12%, ...' (row, column counted
    from 1 at the top left, as the regions' wording counts them)."""
    order = np.argsort(grid, axis=None, kind="stable")[::-1][:n]
    return ", ".join(f"({r + 1}, {c + 1}) {100 * grid[r, c]:.0f}%"
                     for r, c in zip(*np.unravel_index(order, grid.shape)))


class _Pictures:
    """image_pair with a cache: an image chosen twice (say most typical and a cluster exemplar) is read once."""

    def __init__(self, out_dir: str, cfg, spec):
        self.out_dir, self.cfg, self.spec, self.cache, self.uses = out_dir, cfg, spec, {}, {}
        self.shards = ShardCache()

    def __call__(self, row: dict) -> dict:
        if row["image_id"] not in self.cache:
            self.cache[row["image_id"]] = image_pair(self.out_dir, row, self.cfg, self.spec, self.shards)
        self.uses[row["image_id"]] = self.uses.get(row["image_id"], 0) + 1
        return self.cache[row["image_id"]]

    def embed(self) -> int:
        return embed(list(self.cache.values()), [self.uses[i] for i in self.cache])


def _class_entry(c: dict, group_by: str, cols: dict, members: dict, ids: dict, clusters: list[dict], pictures,
                 pictured: bool, flagged: set, scores: dict, per_kind: int) -> dict:
    name = c["class_name"]
    entry = {"name": name, "id": anchor(group_by, name), "flagged": (group_by, name) in flagged, "grid": None,
             "score": scores.get((group_by, name)), "row": c, "pictured": pictured, "kinds": [], "clusters": []}
    if not pictured:
        return entry
    g = int(c["grid_size"] or 0)
    if g and c.get("mean_grid"):
        grid = np.array(c["mean_grid"], np.float64).reshape(g, g)
        entry["grid"] = grid_figure(grid, f"{name}: mean |IG| grid")
        entry["cells_written"] = g <= CELLS_WRITTEN
        entry["peaks"] = peak_cells(grid)
    picked = data.pick_images(cols, group_by, name, per_kind, members)
    entry["kinds"] = [{"kind": kind, "caption": caption, "images": [pictures(r) for r in picked[kind]]}
                      for kind, caption in data.KINDS]
    own = [k for k in clusters if k["group_by"] == group_by and k["class_name"] == name]
    entry["single_cluster"] = own[0] if len(own) == 1 else None
    if len(own) > 1:
        for k in sorted(own, key=lambda k: -(k["size"] or 0)):
            exemplars = data.rows_by_id(cols, list(k["exemplars"] or [])[:min(per_kind, data.PER_CLUSTER)], ids,
                                        "outlier_score" if group_by == "label" else "predicted_outlier_score")
            entry["clusters"].append({"row": k, "id": anchor(group_by, name, k["cluster"]),
                                      "images": [pictures(r) for r in exemplars]})
    return entry


def _cluster_rows(clusters: list[dict]) -> list[dict]:
    """By label first; within each grouping, classes split into several clusters before single-cluster ones."""
    split = {}
    for k in clusters:
        split[(k["group_by"], k["class_name"])] = split.get((k["group_by"], k["class_name"]), 0) + 1
    return sorted(clusters, key=lambda k: (k["group_by"] != "label", split[(k["group_by"], k["class_name"])] < 2,
                                           k["class_name"], k["cluster"]))


def _trends(out_dir: str, findings: list[dict]) -> list[dict]:
    """For an audit's run (run=... under the audit root): for each flagged finding, the share of its class's
    images that look at its region in every stored run (by finding id)."""
    root, _, name = out_dir.rstrip("/").rpartition("/")
    if not name.startswith(RUN_PREFIX):
        return []
    runs = [r for r in completed_runs(root) if r.rstrip("/").rsplit("/", 1)[-1] < name][-11:]
    flagged = [f for f in findings if f["flagged"] and f["kind"] != "drift"][:8]
    if not runs or not flagged:
        return []
    history = []
    for run in runs:
        try:
            history.append({f["finding"]: _looking(f) for f in RunDir(run).rows(FINDINGS_TABLE)})
        except Exception:      # noqa: BLE001 - a run pruned meanwhile: its point is missing
            history.append({})
    names = [r.rstrip("/").rsplit("/", 1)[-1] for r in runs] + [name]
    out = []
    for f in flagged:
        title = f"{f['finding']}: share of {f['class_name']} images looking there"
        values = [h.get(f["finding"]) for h in history] + [_looking(f)]
        out.append({"title": title, "uri": trend_plot(title, names, values), "values": list(zip(names, values))})
    return out


def _looking(finding: dict) -> Optional[float]:
    seen, total = finding.get("attending"), finding.get("class_count")
    return seen / total if seen is not None and total else None


def render_report(out_dir: str, run_info: dict, images=None) -> str:
    """The report's HTML text. images: the run's images table (its `report_data.COLUMNS` are used), when
    the caller has read it already (Finalize: the parts this job wrote); else it is read here."""
    import jinja2
    import markupsafe
    cfg = config_of(run_info)          # the run's config, read through the schema
    run = RunDir(out_dir)
    if images is None:
        images = run.images(columns=data.COLUMNS)
    cols = data.image_columns(images)
    classes, rejected, skew, findings, clusters = (run.rows(t) for t in (
        CLASSES_TABLE, REJECTED_TABLE, SKEW_TABLE, FINDINGS_TABLE, CLUSTERS_TABLE))
    class_names = list(run_info.get("class_names") or sorted({c["class_name"] for c in classes}))
    scores = class_skew_scores(skew, DATASET_METRICS)
    flagged = {(g, f["class_name"]) for f in findings if f["flagged"] and f["kind"] != "drift"
               for g in f["groupings"] or ()}
    order = {"shortcut": 0, "drift": 1, "review": 2, "cleared": 3}
    shown = sorted((f for f in findings if f["flagged"] or f["outcome"] == "review" or f.get("status")),
                   key=lambda f: (order.get(f["outcome"], 4), f.get("status") != "new", f["class_name"], f["finding"]))
    spec = run_info.get("decode")
    pictures = _Pictures(out_dir, cfg, DecodeSpec(**spec) if spec else None)
    n_classes = max(1, min(len(class_names), MAX_CLASSES_PICTURED))
    # each pictured class shows its kinds and, roughly, one more kind's worth of cluster exemplars
    per_kind = int(np.clip(PICTURE_BUDGET // (2 * n_classes * (len(data.KINDS) + 1)), 1, data.PER_KIND))
    ids = data.id_index(cols, {i for k in clusters for i in (k["exemplars"] or [])[:data.PER_CLUSTER]})
    groups = []
    for group_by in ("label", "predicted"):
        rows = sorted((c for c in classes if c["group_by"] == group_by),
                      key=lambda c: ((group_by, c["class_name"]) not in flagged,
                                     -scores.get((group_by, c["class_name"]), 0.0), c["class_name"]))
        members = data.class_members(cols, group_by)
        groups.append({"group_by": group_by, "title": GROUP_TITLES[group_by], "id": f"classes-{group_by}",
                       "classes": [_class_entry(c, group_by, cols, members, ids, clusters, pictures,
                                                i < MAX_CLASSES_PICTURED, flagged, scores, per_kind)
                                   for i, c in enumerate(rows)]})
    comparison = None
    if run_info.get("reference"):
        ref_rows = [r for r in skew if r["metric"] in REFERENCE_METRICS]
        comparison = {"reference": run_info["reference"], "total": len(ref_rows),
                      "rows": sorted((r for r in ref_rows if data.moved(r)), key=lambda r: -(r["score"] or 0)),
                      "flagged": sum(1 for r in ref_rows if r["flagged"])}
    present = {c["id"] for g in groups for c in g["classes"]}

    def class_link(group_by: str, name):
        """A link to the class's section, or its name alone when the run has no such section (an absent class)."""
        target = anchor(group_by or "label", name)
        if target in present:
            return markupsafe.Markup('<a href="#{}">{}</a>').format(target, name)
        return markupsafe.Markup("{}").format(name)

    reasons = {}
    for r in rejected:
        reasons[(r["stage"], r["reason"])] = reasons.get((r["stage"], r["reason"]), 0) + 1
    context = {
        "run": run_info, "cfg": cfg, "sections": [s for s in SECTIONS if s[0] != "comparison" or comparison],
        "shown": shown, "shortcut_count": sum(f["outcome"] == "shortcut" and f.get("status") != "not audited"
                                              for f in findings),
        "review": [f for f in findings if f["outcome"] == "review"],
        "cleared": [f for f in findings if f["outcome"] == "cleared" and not f.get("status")],
        "trends": _trends(out_dir, findings), "confusion": data.confusion(classes, class_names),
        "gap_plot": gap_histogram(data.relative_gaps(cols)),
        "confidence_plot": confidence_plot(data.confidences(cols, class_names)),
        "groups": groups, "clusters": _cluster_rows(clusters), "max_rows": data.MAX_TABLE_ROWS,
        "anchor": anchor, "class_link": class_link, "comparison": comparison, "rejected": rejected[:200], "rejected_total": len(rejected),
        "reasons": sorted(reasons.items(), key=lambda kv: -kv[1]), "per_kind": per_kind,
        "max_pictured": MAX_CLASSES_PICTURED, "decisive": DECISIVE, "resize": cfg.model.resize,
        "settings": json.dumps({"config": run_info["config"], "beam_args": run_info.get("beam_args"),
                                "versions": run_info.get("versions")}, indent=2, default=str),
    }
    pictures.embed()
    env = jinja2.Environment(loader=jinja2.PackageLoader("igaudit.pipeline", "templates"),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True,
                             undefined=jinja2.StrictUndefined)
    env.filters["num"] = _num
    env.filters["pct"] = lambda v: "–" if v is None or not np.isfinite(v) else f"{100 * v:.0f}%"
    return env.get_template("report.html.j2").render(**context)


def _num(v, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def write_report(out_dir: str, run_info: dict, images=None) -> str:
    path = FileSystems.join(out_dir, "report.html")
    with FileSystems.create(path) as f:
        f.write(render_report(out_dir, run_info, images).encode("utf-8"))
    return path
