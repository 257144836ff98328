"""Drift: each class of this run against the same class in a reference run (numpy only).

Rows matched on (group_by, class_name), one per metric (`rows.skew_row`); facts about change that no
intervention can confirm, so a candidate is flagged as it is:

* `ref_grid_js`           JS (bits) between the class mean grid now and then.
* `ref_border_shift`      mean border mass now - then (score uses |value|).
* `ref_confidence_shift`  mean confidence now - then (score uses |value|).
* `ref_accuracy_drop`     accuracy then - now; 'label' rows with both accuracies finite.
* `ref_predicted_linf`    L-inf distance (TFDV style) between the predicted-class distributions of the
                          label's images now and then; 'label' rows.
* `ref_predicted_js`      JS (bits) between the same two distributions; 'label' rows.
* `class_presence`        a class present in only one of the two runs: nothing can be compared for it,
                          and a class appearing in or vanishing from the audited data (or from the
                          model's predictions) is itself worth a look, so the row is always flagged
                          (value = count now, reference = count then, threshold = score = 1).

Column `reference`: the reference run's value of the underlying quantity (border mass, confidence,
accuracy), so that now = reference + value (reference - value for the accuracy drop); for
class_presence the reference count; None for divergences and distances.
"""
from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from igaudit.transforms.analysis.distances import aligned, counts_of, js_divergence, linf_distance
from igaudit.transforms.analysis.regions import describe_region, percent, plural
from igaudit.transforms.analysis.skew.rows import finite, grid_of, resolve_thresholds, skew_row, skipped, subject_of


def drift_rows(classes: list[dict], reference: list[dict], thresholds: Optional[Mapping] = None) -> list[dict]:
    """This run's class rows against the reference run's: the rows above, for every (group_by, class)
    in either run."""
    t = resolve_thresholds(thresholds)
    cur = {(r["group_by"], r["class_name"]): r for r in classes}
    ref = {(r["group_by"], r["class_name"]): r for r in reference}
    out = []
    for key in sorted(set(cur) | set(ref), key=lambda k: (str(k[0]), str(k[1]))):
        group_by, name = key
        if key in cur and key in ref:
            out.extend(_reference_rows(group_by, name, cur[key], ref[key], t))
        else:
            out.append(_presence_row(group_by, name, cur.get(key), ref.get(key)))
    return out


def _reference_rows(group_by: str, name, cur: dict, ref: dict, t: dict) -> list[dict]:
    out = []
    subject = subject_of(group_by, name)

    g, size, why = grid_of(cur)
    rg, rsize, rwhy = grid_of(ref)
    if g is None or rg is None:
        out.append(skipped(group_by, name, "ref_grid_js", t["ref_grid_js"],
                            why if g is None else f"{rwhy} in the reference run"))
    elif size != rsize:
        out.append(skipped(group_by, name, "ref_grid_js", t["ref_grid_js"],
                            f"grid {size}x{size} in this run vs {rsize}x{rsize} in the reference run"))
    else:
        js = js_divergence(g, rg)
        where = describe_region(g.reshape(size, size), rg.reshape(size, size), against="in the reference run")
        out.append(skew_row(group_by, name, "ref_grid_js", js, None, js / t["ref_grid_js"], t["ref_grid_js"],
                        f"{subject}: {where} (JS {js:.3f} bits)"))

    b, rb = finite(cur.get("mean_border_mass")), finite(ref.get("mean_border_mass"))
    if b is not None and rb is not None:
        shift = b - rb
        out.append(skew_row(group_by, name, "ref_border_shift", shift, rb, abs(shift) / t["ref_border_shift"],
                        t["ref_border_shift"],
                        f"{subject}: mean border mass {b:.2f} vs {rb:.2f} in the reference run ({shift:+.2f})"))

    if group_by == "label":
        a, ra = finite(cur.get("accuracy")), finite(ref.get("accuracy"))
        if a is not None and ra is not None:
            drop = ra - a
            out.append(skew_row(group_by, name, "ref_accuracy_drop", drop, ra, drop / t["ref_accuracy_drop"],
                            t["ref_accuracy_drop"],
                            f"{subject}: accuracy {percent(a)} vs {percent(ra)} in the reference run "
                            f"({-100 * drop:+.0f} points)"))

    c, rc = finite(cur.get("mean_confidence")), finite(ref.get("mean_confidence"))
    if c is not None and rc is not None:
        shift = c - rc
        out.append(skew_row(group_by, name, "ref_confidence_shift", shift, rc,
                        abs(shift) / t["ref_confidence_shift"], t["ref_confidence_shift"],
                        f"{subject}: mean confidence {c:.2f} vs {rc:.2f} in the reference run ({shift:+.2f})"))

    if group_by == "label":
        p, rp = counts_of(cur.get("predicted_counts")), counts_of(ref.get("predicted_counts"))
        if sum(p.values()) > 0 and sum(rp.values()) > 0:
            keys, pa_, pb_ = aligned(p, rp)
            sa, sb = pa_ / pa_.sum(), pb_ / pb_.sum()
            change = _prediction_change(keys, sa, sb)
            linf = linf_distance(p, rp)
            out.append(skew_row(group_by, name, "ref_predicted_linf", linf, None, linf / t["ref_predicted_linf"],
                            t["ref_predicted_linf"], f"{subject}: {change}"))
            js = js_divergence(pa_, pb_)
            out.append(skew_row(group_by, name, "ref_predicted_js", js, None, js / t["ref_predicted_js"],
                            t["ref_predicted_js"],
                            f"{subject}: predicted-class distribution {js:.3f} bits from the reference run; "
                            f"{change}"))
    return out


def _prediction_change(keys: list, now: np.ndarray, then: np.ndarray) -> str:
    """The largest gain and the largest loss of a predicted class's share, e.g.
    "now predicted 'square' for 30% of its images (0% in the reference run), 'triangle' for 60% (90%)"."""
    diff = np.round(now - then, 12)        # rounding: ties go to the first key in sorted order
    parts = []
    for i in (int(np.argmax(diff)), int(np.argmin(diff))):
        if diff[i] != 0 and (not parts or parts[0][0] != i):
            parts.append((i, now[i], then[i]))
    if not parts:
        return "same predicted-class shares as in the reference run"
    (i, a, b), rest = parts[0], parts[1:]
    text = f"now predicted '{keys[i]}' for {percent(a)} of its images ({percent(b)} in the reference run)"
    for i, a, b in rest:
        text += f", '{keys[i]}' for {percent(a)} ({percent(b)})"
    return text


def _presence_row(group_by: str, name, cur: Optional[dict], ref: Optional[dict]) -> dict:
    n = int((cur or {}).get("count") or 0)
    rn = int((ref or {}).get("count") or 0)
    subject = subject_of(group_by, name)
    if cur is not None:
        detail = f"{subject}: {plural(n, 'image')} in this run, none in the reference run; not compared"
    else:
        detail = f"{subject}: none in this run, {plural(rn, 'image')} in the reference run; not compared"
    return skew_row(group_by, name, "class_presence", n, rn, 1.0, 1.0, detail)
