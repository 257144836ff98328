"""Alerts that mean change: each finding's status against the reference run's findings (numpy-free).

Findings are matched on their edit (`findings.same_edit`: the class, the kind, an overlapping region or
the same channel). Against the reference run's shortcut findings:

* `new`          a shortcut now, none in the reference run (or there is no reference run); every flagged
                 drift finding (drift says what changed since *its* reference run, so it alerts once);
* `standing`     a shortcut now and then; it keeps the reference run's id;
* `resolved`     a shortcut then, re-tested in this run (its region was a candidate: `candidates.retest_rows`)
                 and no longer one: the evidence is gone, and the figures say so;
* `not audited`  a shortcut then, and not re-tested now: no image of its class in this run's data, or its
                 test could not run. Never `resolved`: nothing was looked at.
"""
from __future__ import annotations

from typing import Optional, Sequence

from igaudit.transforms.analysis.skew.findings import DRIFT, same_edit

ALERT_ON = ("new", "any")   # analysis.alert_on: which findings make `run` / `audit` exit 3
STATUSES = ("new", "standing", "resolved", "not audited")


def with_status(findings: Sequence[dict], reference: Optional[Sequence[dict]], present: set,
                not_tested: Optional[dict] = None) -> list[dict]:
    """Findings with `status` (and the reference's id where they match a reference shortcut), in their order,
    then a `not audited` copy of each reference shortcut that this run did not re-test. present: the
    classes with images in this run; not_tested: {class_name: why} for re-tests that could not run."""
    before = [f for f in reference or () if f.get("flagged") and f.get("kind") != DRIFT]
    out, matched = [], set()
    for f in findings:
        f = dict(f)
        old = next((i for i, r in enumerate(before) if i not in matched and same_edit(r, f)), None)
        if f["kind"] == DRIFT:
            f["status"] = "new" if f["flagged"] else None
        elif old is not None:
            matched.add(old)
            f.update(finding=before[old]["finding"], status="standing" if f["flagged"] else "resolved")
        else:
            f["status"] = "new" if f["flagged"] else None
        out.append(f)
    for i, old in enumerate(before):
        if i in matched:
            continue
        name = old["class_name"]
        why = (f"no '{name}' image in this run" if name not in present else
               (not_tested or {}).get(name) or "its region could not be re-tested in this run")
        out.append(dict(old, status="not audited", evidence=f"not audited: {why}",
                        detail=f"a shortcut in the reference run ({old.get('detail') or ''}); not audited now: {why}"))
    return out


def counts(findings: Sequence[dict]) -> dict:
    """{status: how many findings have it} for every STATUSES entry."""
    out = dict.fromkeys(STATUSES, 0)
    for f in findings:
        if f.get("status") in out:
            out[f["status"]] += 1
    return out


def _findings(n: int, word: str) -> str:
    return f"{n} {word} finding" + ("" if n == 1 else "s")


def change_line(findings: Sequence[dict], reference: Optional[str]) -> str:
    """'no change since <reference>' or e.g. '2 new findings, 1 resolved, 3 standing, 1 not audited'."""
    c = counts(findings)
    if reference is None:
        return "no reference run: " + ("no findings" if not c["new"] else _findings(c["new"], "new"))
    name = reference.rstrip("/").rsplit("/", 1)[-1]
    unaudited = f", {c['not audited']} not audited" if c["not audited"] else ""
    if not c["new"] and not c["resolved"]:
        standing = f" ({_findings(c['standing'], 'standing')})" if c["standing"] else ""
        return f"no change since {name}{standing}{unaudited}"
    return (f"{_findings(c['new'], 'new')}, {c['resolved']} resolved, {c['standing']} standing{unaudited} "
            f"(since {name})")


def alerting(findings: Sequence[dict], alert_on: str) -> list[dict]:
    """The flagged findings that raise an alert: new ones (alert_on 'new') or every current one ('any')."""
    if alert_on not in ALERT_ON:
        raise ValueError(f"alert_on must be one of {', '.join(ALERT_ON)}")
    return [f for f in findings if f["flagged"] and f.get("status") in ("new", "standing")
            and (alert_on == "any" or f["status"] == "new")]
