"""The skew chain (numpy only): from class and cluster statistics to findings with evidence and status.

    classes, clusters rows --candidates (class metrics, clusters' excess, drift, re-tests)--> candidate rows
    candidate rows --interventions.plan_tests--> InterventionTests (one per distinct edit of a class)
    a test's sample (the class's images that look at it, other classes') --evidence.measure--> figures
    candidate rows + figures --verdict (needed, sufficient, transplanted, repeating)--> judged rows
    judged rows --findings (one per shortcut)--> findings --status (vs the reference run's)--> final

Modules by role: `rows` (the skew row, thresholds, metric names), `candidates`, `clusters`, `drift`,
`interventions` (tests and which images they use), `edits` (image edits), `repetition` (the stamp
test), `evidence`, `verdict`, `wording`, `findings`, `status`. The Beam stages (transforms/skew.py,
cluster.py, intervene.py, verdicts.py) and the pipeline call only the functions named here.
"""
from __future__ import annotations

from typing import Optional, Sequence

from igaudit.transforms.analysis.skew.candidates import class_rows, retest_rows
from igaudit.transforms.analysis.skew.clusters import (DEFAULT_MAX_CLUSTERS, assign, cluster_rows, cluster_table,
                                                       fit_clusters)
from igaudit.transforms.analysis.skew.drift import drift_rows
from igaudit.transforms.analysis.skew.evidence import measure
from igaudit.transforms.analysis.skew.findings import DRIFT, build_findings
from igaudit.transforms.analysis.skew.interventions import attends, plan_tests
from igaudit.transforms.analysis.skew.rows import (DATASET_METRICS, DEFAULT_THRESHOLDS, REFERENCE_METRICS,
                                                   class_skew_scores, resolve_thresholds)
from igaudit.transforms.analysis.skew.status import ALERT_ON, STATUSES, alerting, change_line, counts, with_status
from igaudit.transforms.analysis.skew.verdict import apply_verdicts

__all__ = ["ALERT_ON", "DATASET_METRICS", "DEFAULT_MAX_CLUSTERS", "DEFAULT_THRESHOLDS", "REFERENCE_METRICS",
           "STATUSES", "alerting", "assign", "attends", "candidate_rows", "change_line", "class_skew_scores",
           "cluster_table", "compare_findings", "counts", "fit_clusters", "judge_all", "measure", "plan_tests",
           "resolve_thresholds"]


def _sort_key(row: dict):
    cluster = row.get("cluster")
    return (str(row["group_by"] or ""), str(row["class_name"] or ""), -1 if cluster is None else cluster,
            row["metric"])


def candidate_rows(classes: list, clusters: list, reference_classes: Optional[list] = None,
                   reference_findings: Optional[list] = None, thresholds: Optional[dict] = None,
                   grid: int = 16, border: float = 0.1) -> list:
    """Every skew row of a run before its interventions: the class metrics, the clusters' excess, drift
    against the reference run's classes, and a re-test of each of the reference run's shortcut findings;
    sorted by (group_by, class_name, cluster, metric)."""
    rows = class_rows(classes, thresholds, border) + cluster_rows(clusters, classes, thresholds)
    if reference_classes is not None:
        rows += drift_rows(classes, reference_classes, thresholds)
    rows += retest_rows(reference_findings, grid)
    return sorted(rows, key=_sort_key)


def judge_all(rows: Sequence[dict], tests: Sequence, figures: dict, class_names: Sequence[str], grid: int,
              reference_findings: Optional[list], present: set, max_tests: Optional[int] = None) -> tuple[list, list]:
    """(skew rows, findings): the candidates judged on their tests' figures, gathered into findings, each
    finding's status against the reference run's findings; every skew row names its finding.
    present: the classes (under either grouping) with images in this run; max_tests: as `plan_tests`."""
    judged = apply_verdicts(rows, tests, figures, class_names, grid, max_tests)
    findings, of = build_findings(judged, grid)
    not_tested = {r["class_name"]: r["evidence"] for r in judged
                  if r["metric"].startswith("retest_") and not r.get("outcome")}
    final = with_status(findings, reference_findings, present, not_tested)
    renamed = {f["finding"]: g["finding"] for f, g in zip(findings, final)}   # a standing finding keeps its id
    rows_out = [dict(r, finding=renamed[of[i]] if of[i] else None) for i, r in enumerate(judged)]
    return rows_out, sorted(final, key=lambda f: f["finding"])


def compare_findings(classes: list, reference_classes: list, findings: list, reference_findings: list,
                     thresholds: Optional[dict] = None) -> list:
    """Two finished runs' findings compared without re-running anything: the current run's own findings (drift
    findings aside) with their status against the reference run's, and drift findings from the two runs'
    class rows."""
    own = [dict(f, status=None) for f in findings if f["kind"] != DRIFT and f.get("status") != "not audited"]
    drift, _ = build_findings(drift_rows(classes, reference_classes, thresholds), 0)
    present = {c["class_name"] for c in classes if c.get("count")}
    return sorted(with_status(own + drift, reference_findings, present), key=lambda f: f["finding"])
