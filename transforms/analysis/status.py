"""Alerts that mean change: each flag's status against the reference run, and the one-line summary (numpy-free).

Rows are matched on (group_by, class_name, metric, cluster). `new`: flagged now and not in the
reference run (or there is no reference run); `standing`: flagged in both; `resolved`: flagged
in the reference run only (a row is added when this run has none for that key); null otherwise.
Drift flags (the reference-run metrics) say what changed since *their* reference run: they are
not carried into the next comparison, so a drift flag is always new, alerts once, and an
unchanged next run has nothing to resolve.
Cluster ids are numbered by size within a class, so the same data and model give the same ids;
a cluster that changes size rank between runs shows as one resolved and one new row.
"""
from __future__ import annotations

from typing import Optional, Sequence

from igaudit.transforms.analysis.skew_rows import REFERENCE_METRICS
from igaudit.transforms.records import skew_schema

ALERT_ON = ("new", "any")   # analysis.alert_on: which flags make `run` / `audit` exit 3
GONE = "no such finding in this run"   # the evidence of a resolved row added for a vanished finding


def key(row: dict) -> tuple:
    return (row["group_by"], row["class_name"], row["metric"], row.get("cluster"))


def with_status(rows: Sequence[dict], reference: Optional[Sequence[dict]]) -> list[dict]:
    """Rows with `status`, plus a `resolved` row for each reference flag this run has no row for."""
    before = {key(r): r for r in reference or () if r.get("flagged") and r["metric"] not in REFERENCE_METRICS}
    out, seen = [], set()
    for r in rows:
        r = dict(r)
        seen.add(key(r))
        if r["flagged"]:
            r["status"] = "standing" if key(r) in before else "new"
        elif key(r) in before:
            r["status"] = "resolved"
        else:
            r["status"] = None
        out.append(r)
    for k, old in sorted(before.items(), key=lambda kv: str(kv[0])):
        if k in seen:
            continue
        row = dict.fromkeys(skew_schema().names)
        row.update(group_by=old["group_by"], class_name=old["class_name"], metric=old["metric"],
                   cluster=old.get("cluster"), score=0.0, threshold=old.get("threshold"), candidate=False,
                   flagged=False, status="resolved", evidence=GONE,
                   detail=f"flagged in the reference run ({old.get('detail') or ''}); no such finding now")
        out.append(row)
    return out


def counts(rows: Sequence[dict]) -> dict:
    """{'new', 'standing', 'resolved'}: how many rows have each status."""
    out = {"new": 0, "standing": 0, "resolved": 0}
    for r in rows:
        if r.get("status") in out:
            out[r["status"]] += 1
    return out


def _flags(n: int, word: str) -> str:
    return f"{n} {word} flag" + ("" if n == 1 else "s")


def change_line(rows: Sequence[dict], reference: Optional[str]) -> str:
    """'no change since <reference>' or e.g. '2 new flags, 1 resolved, 3 standing'."""
    c = counts(rows)
    if reference is None:
        return "no reference run: " + ("no flags" if not c["new"] else _flags(c["new"], "new"))
    name = reference.rstrip("/").rsplit("/", 1)[-1]
    if not c["new"] and not c["resolved"]:
        standing = f" ({_flags(c['standing'], 'standing')})" if c["standing"] else ""
        return f"no change since {name}{standing}"
    return f"{_flags(c['new'], 'new')}, {c['resolved']} resolved, {c['standing']} standing (since {name})"


def alerting(rows: Sequence[dict], alert_on: str) -> list[dict]:
    """The flagged rows that raise an alert: new ones (alert_on 'new') or every one ('any')."""
    if alert_on not in ALERT_ON:
        raise ValueError(f"alert_on must be one of {', '.join(ALERT_ON)}")
    return [r for r in rows if r["flagged"] and (alert_on == "any" or r.get("status") == "new")]
