"""A static report.html built from a run's Parquet outputs (opens from disk, no server).

Mean heatmaps are embedded as data URIs; overlays are linked relatively
(overlays/<image_id>.png), so the folder can be copied or served as is.
"""
from __future__ import annotations

import base64
import html

import numpy as np
from apache_beam.io.filesystems import FileSystems

from igaudit.pipeline.run_dir import read_images_table, read_table
from igaudit.transforms.analysis.skew_rows import DATASET_METRICS, class_skew_scores
from igaudit.transforms.imaging.render import grid_heatmap_png

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:.25em .6em;text-align:right}
th{background:#f4f4f4}td.l,th.l{text-align:left}.class{border-top:2px solid #ddd;padding:1em 0}
.class img{margin-right:.4em;vertical-align:top;image-rendering:pixelated}.muted{color:#777}
figure{display:inline-block;margin:0 .6em 0 0}figcaption{font-size:.8em;color:#555;max-width:128px}
.warning{background:#fff4e5;border-left:4px solid #e8a33d;padding:.4em .8em}
.lead{font-size:1.3em;font-weight:600;padding:.4em .6em;background:#f4f4f4;border-left:4px solid #b5367a}
.status{font-weight:600}.status.new{color:#b00}.status.standing{color:#a60}.status.resolved{color:#080}
"""


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt(v, digits=3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return html.escape(str(v))


def _histogram(values: np.ndarray, bins: int = 10) -> str:
    """A small text-free bar chart (inline SVG) of relative completeness gaps."""
    values = values[np.isfinite(values)]   # methods without a completeness identity have none
    if values.size == 0:
        return "<p class=muted>no completeness gaps (none attributed, or the method has no completeness)</p>"
    counts, edges = np.histogram(values, bins=bins)
    top = max(counts.max(), 1)
    bars = "".join(
        f'<rect x="{i * 30}" y="{100 - 100 * c / top:.1f}" width="26" height="{100 * c / top:.1f}" fill="#b5367a">'
        f"<title>{edges[i]:.4f}–{edges[i + 1]:.4f}: {c}</title></rect>" for i, c in enumerate(counts))
    return (f'<svg width="{bins * 30}" height="100" role="img" aria-label="completeness gap histogram">{bars}</svg>'
            f"<p class=muted>relative |gap| from {edges[0]:.4f} to {edges[-1]:.4f}; median "
            f"{np.median(values):.4f}</p>")


def render_report(out_dir: str, run_info: dict) -> str:
    """The report's HTML text."""
    images = read_images_table(out_dir, columns=["image_id", "overlay_path", "relative_gap"]).to_pylist()
    classes = read_table(FileSystems.join(out_dir, "classes.parquet")).to_pylist()
    rejected = read_table(FileSystems.join(out_dir, "rejected.parquet")).to_pylist()
    skew = read_table(FileSystems.join(out_dir, "skew.parquet")).to_pylist()
    clusters_path = FileSystems.join(out_dir, "clusters.parquet")
    clusters = read_table(clusters_path).to_pylist() if FileSystems.exists(clusters_path) else []
    # Classes are ranked by verdict, then by skew within this run; changes against a reference run are listed apart.
    scores = class_skew_scores(skew, DATASET_METRICS)
    flagged_classes = {(r["group_by"], r["class_name"]) for r in skew if r["flagged"] and r["metric"] in DATASET_METRICS}
    flagged = sorted((r for r in skew if r["flagged"] or r.get("status") == "resolved"),
                     key=lambda r: (r["metric"] not in DATASET_METRICS, r.get("status") != "new",
                                    r["group_by"] != "label", r["class_name"], r.get("cluster") or -1,
                                    -(r["score"] or 0)))
    cleared = [r for r in skew if r.get("candidate") and not r["flagged"] and r["metric"] in DATASET_METRICS]
    cfg = run_info["config"]
    counts = run_info["counts"]
    overlays = {r["image_id"]: r["overlay_path"] for r in images if r["overlay_path"]}
    parts = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>igaudit report</title>"
             f"<style>{_STYLE}</style></head><body>",
             "<h1>igaudit report</h1>",
             f"<p class=lead>{html.escape(run_info.get('change') or '')}</p>",
             "<h2>Summary</h2><table>",
             *(f"<tr><th class=l>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in (
                 ("images matched", counts["matched"]), ("attributed", counts["attributed"]),
                 ("rejected", counts["rejected"]), ("accuracy", run_info.get("accuracy")),
                 ("status", run_info.get("status")), ("model", cfg["model"]["path"]),
                 ("steps / rule", f"{cfg['attribution']['steps']} / {cfg['attribution']['rule']}"),
                 ("baseline", cfg["attribution"]["baseline"]), ("target", cfg["attribution"]["target"]),
                 ("score", cfg["attribution"]["score"]),
                 ("wall time (s)", run_info["timings"].get("total_seconds")))),
             "</table>"]
    if run_info.get("status") == "failed":
        parts.append(f"<p class=warning><b>This run failed:</b> {html.escape(run_info.get('reason') or '')}</p>")
    for warning in run_info.get("warnings") or []:
        parts.append(f"<p class=warning><b>Warning:</b> {html.escape(warning)}</p>")

    parts.append(f"<h2>Verdicts ({sum(1 for r in flagged if r['flagged'])} flagged)</h2>"
                 "<p class=muted>A metric only proposes a candidate; a class (or cluster) is flagged when "
                 "interventions show its region is needed, sufficient and stamped (README, \"Verdicts\"). "
                 "Status compares with the reference run.</p>")
    if flagged:
        parts.append("<table class=verdicts><tr><th class=l>status</th><th class=l>class</th><th>cluster</th>"
                     "<th class=l>metric</th><th class=l>evidence</th><th class=l>detail</th></tr>")
        parts.extend(f"<tr><td class='l status {html.escape(r.get('status') or '')}'>{html.escape(r.get('status') or '')}"
                     f"</td><td class=l>{html.escape(r['class_name'])} <span class=muted>by {html.escape(r['group_by'])}"
                     f"</span></td><td>{_fmt(r.get('cluster'))}</td><td class=l>{html.escape(r['metric'])}</td>"
                     f"<td class=l>{html.escape(r.get('evidence') or '')}</td>"
                     f"<td class=l>{html.escape(r['detail'] or '')}</td></tr>" for r in flagged)
        parts.append("</table>")
    else:
        parts.append("<p>Nothing flagged.</p>")
    if cleared:
        parts.append(f"<details><summary>{len(cleared)} candidates the interventions cleared</summary><ul>")
        parts.extend(f"<li>{html.escape(r['class_name'])} ({html.escape(r['group_by'])}"
                     f"{'' if r.get('cluster') is None else ', cluster ' + str(r['cluster'])}), "
                     f"{html.escape(r['metric'])}: {html.escape(r.get('evidence') or '')}. "
                     f"<span class=muted>{html.escape(r['detail'] or '')}</span></li>" for r in cleared)
        parts.append("</ul></details>")

    by_label = sorted((c for c in classes if c["group_by"] == "label"),
                      key=lambda c: (("label", c["class_name"]) not in flagged_classes,
                                     -scores.get(("label", c["class_name"]), 0.0), c["class_name"]))
    parts.append("<h2>Classes (by true label, most skewed first)</h2>"
                 "<p class=muted>Left: where attribution mass falls on average (|IG| pooled to a grid, brighter "
                 "= more). Right: overlays of the class's most confident images.</p>")
    for c in by_label:
        g = int(c["grid_size"])
        grid = np.array(c["mean_grid"], np.float64).reshape(g, g) if g else np.zeros((1, 1))
        heat = _data_uri(grid_heatmap_png(grid, scale=max(1, 128 // max(g, 1))))
        thumbs = "".join(
            f'<figure><img src="{html.escape(overlays[i])}" width=128 height=128 alt="overlay {html.escape(i)}">'
            f"<figcaption>{html.escape(i)}</figcaption></figure>"
            for i in c["typical_images"] if i in overlays)
        parts.append(
            f'<div class=class><h3>{html.escape(c["class_name"])} '
            f'<span class=muted>skew score {_fmt(scores.get(("label", c["class_name"])), 2)}</span></h3>'
            f'<figure><img src="{heat}" width=128 height=128 alt="mean attribution of {html.escape(c["class_name"])}">'
            f"<figcaption>mean |IG| grid</figcaption></figure>{thumbs}"
            f"<table><tr><th>images</th><th>accuracy</th><th>mean confidence</th><th>border mass</th>"
            f"<th>concentration</th><th>mean |gap|</th></tr><tr><td>{c['count']}</td><td>{_fmt(c['accuracy'])}</td>"
            f"<td>{_fmt(c['mean_confidence'])}</td><td>{_fmt(c['mean_border_mass'])}</td>"
            f"<td>{_fmt(c['mean_concentration'])}</td><td>{_fmt(c['mean_abs_completeness_gap'], 4)}</td></tr>"
            f"</table></div>")

    split = [c for c in clusters if c["group_by"] == "label"
             and sum(1 for d in clusters if d["group_by"] == "label" and d["class_name"] == c["class_name"]) > 1]
    if split:
        parts.append("<h2>Strategy clusters (by true label)</h2><p class=muted>Classes whose images fall into "
                     "groups with attribution in different places (SpRAy). Exemplars: the images nearest each "
                     "cluster's centre.</p>")
        for c in split:
            g = int(c["grid_size"])
            heat = _data_uri(grid_heatmap_png(np.array(c["mean_grid"], np.float64).reshape(g, g),
                                              scale=max(1, 96 // max(g, 1))))
            thumbs = "".join(f'<img src="{html.escape(overlays[i])}" width=64 height=64 alt="overlay {html.escape(i)}">'
                             for i in c["exemplars"] if i in overlays)
            parts.append(f"<div class=cluster><h3>{html.escape(c['class_name'])}, cluster {c['cluster']} "
                         f"<span class=muted>{c['size']} images ({_fmt(100 * (c['share'] or 0), 0)}% of the class)"
                         f"</span></h3><img src=\"{heat}\" width=96 height=96 alt=\"mean attribution of cluster\"> "
                         f"{thumbs}<p class=muted>{html.escape(c['region'] or '')}</p></div>")

    if run_info.get("reference"):
        ref_rows = [r for r in skew if r["metric"].startswith("ref_") or r["metric"] == "class_presence"]
        parts.append(f"<h2>Compared with the reference run</h2><p class=muted>{html.escape(run_info['reference'])}"
                     f"</p><table><tr><th class=l>group</th><th class=l>class</th><th class=l>metric</th>"
                     f"<th>value</th><th>reference</th><th>threshold</th><th>flagged</th></tr>")
        parts.extend(f"<tr><td class=l>{html.escape(r['group_by'])}</td><td class=l>{html.escape(r['class_name'])}"
                     f"</td><td class=l>{html.escape(r['metric'])}</td><td>{_fmt(r['value'])}</td>"
                     f"<td>{_fmt(r['reference'])}</td><td>{_fmt(r['threshold'])}</td>"
                     f"<td>{'yes' if r['flagged'] else ''}</td></tr>" for r in ref_rows)
        parts.append("</table>")

    parts.append("<h2>Completeness</h2><p>IG's completeness axiom says the attributions sum to "
                 "F(x) − F(x′); the gap is the quadrature error. Raise <code>attribution.steps</code> if it is "
                 "large.</p>")
    parts.append(_histogram(np.array([r["relative_gap"] for r in images], np.float64)))

    parts.append(f"<h2>Rejected inputs ({len(rejected)})</h2>")
    if rejected:
        parts.append("<table><tr><th class=l>uri</th><th class=l>stage</th><th class=l>reason</th></tr>")
        parts.extend(f"<tr><td class=l>{html.escape(r['uri'])}</td><td class=l>{html.escape(r['stage'])}</td>"
                     f"<td class=l>{html.escape(r['reason'])}</td></tr>" for r in rejected[:200])
        parts.append("</table>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(out_dir: str, run_info: dict) -> str:
    path = FileSystems.join(out_dir, "report.html")
    with FileSystems.create(path) as f:
        f.write(render_report(out_dir, run_info).encode("utf-8"))
    return path
