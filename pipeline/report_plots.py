"""The report's figures, drawn with matplotlib (Agg, no display) and embedded as PNG data URIs.

Every figure has labelled axes with units; grids carry their values in the cells (in percent of the
attribution mass) beside the colour scale, so nothing is told by colour alone.
"""
from __future__ import annotations

import io
from typing import Optional

import matplotlib

matplotlib.use("Agg")   # before pyplot: no display, the same on workers and launchers

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from igaudit.pipeline.report_pictures import data_uri  # noqa: E402

DPI = 100
CELLS_WRITTEN = 8           # grids up to 8 x 8 carry each cell's value as text
MAX_CLASSES_PLOTTED = 30     # the confidence plot shows the classes with the lowest median confidence beyond this
plt.rcParams.update({"font.size": 9, "axes.titlesize": 10, "svg.fonttype": "none"})


def _png(fig) -> str:
    """The figure as a 256-colour PNG: a third of the bytes of matplotlib's own, the same to the eye."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    with Image.open(buf) as im:
        small = io.BytesIO()
        im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(small, "PNG", optimize=True)
    return data_uri(small.getvalue() if small.tell() < buf.tell() else buf.getvalue())


def grid_figure(grid: np.ndarray, title: str, size_in: float = 2.6) -> str:
    """A G x G attribution-mass grid (sums to 1) with its colour scale and, up to 8 x 8, its values in %."""
    g = np.asarray(grid, np.float64)
    percent = 100.0 * g
    fig, ax = plt.subplots(figsize=(size_in + 0.7, size_in))
    image = ax.imshow(percent, cmap="inferno", vmin=0.0, vmax=max(float(percent.max()), 1e-9))
    if g.shape[0] <= CELLS_WRITTEN:
        top = percent.max() or 1.0
        for (r, c), v in np.ndenumerate(percent):
            ax.text(c, r, f"{v:.0f}" if v >= 9.5 else f"{v:.1f}", ha="center", va="center", fontsize=7,
                    color="black" if v > 0.6 * top else "white")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    bar = fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    bar.set_label("% of |attribution| per cell")
    return _png(fig)


def gap_histogram(gaps: np.ndarray) -> Optional[str]:
    """Histogram of the relative completeness gaps; None when no image has one."""
    if gaps.size == 0:
        return None
    pct = 100.0 * np.abs(gaps)
    # a few images with a near-zero F(x) - F(x') have huge relative gaps: the axis ends at the 95th
    # percentile (at least 2%) and the last bar holds everything beyond, so the bulk stays readable
    top = max(float(np.percentile(pct, 95)), 2.0)
    beyond = int((pct > top).sum())
    fig, ax = plt.subplots(figsize=(5.5, 2.6))
    ax.hist(np.minimum(pct, top), bins=min(30, max(5, int(np.sqrt(gaps.size)))), range=(0.0, top),
            color="#b5367a", edgecolor="white")
    ax.set_xlabel("relative completeness gap, % of |F(x) − F(x′)|")
    ax.set_ylabel("images")
    title = f"completeness gap, {gaps.size} images (median {np.median(pct):.2f}%)"
    if beyond:
        title += f"\nthe last bar also holds {beyond} images above {top:.1f}% (largest {pct.max():.0f}%)"
    ax.set_title(title, fontsize=9)
    return _png(fig)


def confidence_plot(by_class: dict) -> Optional[str]:
    """One box per class: the distribution of the predicted class's softmax probability."""
    items = [(n, v[np.isfinite(v)]) for n, v in by_class.items()]
    items = [(n, v) for n, v in items if v.size]
    if not items:
        return None
    if len(items) > MAX_CLASSES_PLOTTED:
        items = sorted(items, key=lambda item: float(np.median(item[1])))[:MAX_CLASSES_PLOTTED]
    fig, ax = plt.subplots(figsize=(5.5, 0.9 + 0.32 * len(items)))
    ax.boxplot([v for _, v in items], vert=False, tick_labels=[f"{n} (n={v.size})" for n, v in items],
               widths=0.6, flierprops={"markersize": 3})
    ax.set_xlim(0.0, 1.0)
    ax.invert_yaxis()
    ax.set_xlabel("confidence (softmax probability of the predicted class, 0–1)")
    ax.set_title("confidence per true label")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def trend_plot(title: str, runs: list[str], values: list[Optional[float]]) -> str:
    """One flagged finding's share of its class's images that look at its region, over the stored runs (oldest
    left). No threshold line: a finding is flagged by its intervention tests, not by a level of this share."""
    fig, ax = plt.subplots(figsize=(3.4, 2.1))
    x = np.arange(len(runs))
    y = np.array([np.nan if v is None else v for v in values], np.float64)
    ax.plot(x, y, marker="o", color="#b5367a")
    for xi, yi in zip(x, y):
        if np.isfinite(yi):
            ax.annotate(f"{yi:.2f}", (xi, yi), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=7)
    ax.set_ylim(0, 1.08)
    ax.set_xticks(x, [_run_time(r) for r in runs], rotation=30, ha="right", fontsize=7)
    ax.set_xlabel("run (UTC)")
    ax.set_ylabel("share looking there")
    ax.set_title(title, fontsize=9)
    return _png(fig)


def _run_time(run: str) -> str:
    """run=20260301T120501.123Z -> '2026-03-01 12:05:01' (other names as they are)."""
    stamp = run.removeprefix("run=")
    if len(stamp) >= 15 and stamp[8] == "T" and stamp[:8].isdigit() and stamp[9:15].isdigit():
        return f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]} {stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}"
    return run
