"""The run's Beam metrics (namespace igaudit), read back from the runner, and the attribution phase's clock."""
from __future__ import annotations

import logging

log = logging.getLogger("igaudit")

METRICS_NAMESPACE = "igaudit"
KNOWN_COUNTERS = ("images_read", "decoded", "attributed", "rejected_read", "rejected_decode",
                  "rejected_attribute", "gradient_samples")


def query_metrics(result) -> dict:
    """The run's counters and distributions in namespace igaudit, summed over steps.

    {"counters": {name: int}, "distributions": {name: {count, sum, min, max, mean}}}; counters that
    never moved are 0. Empty when the runner cannot report metrics.
    """
    from apache_beam.metrics.metric import MetricsFilter
    try:
        found = result.metrics().query(MetricsFilter().with_namespace(METRICS_NAMESPACE))
    except Exception as e:  # noqa: BLE001 - metrics are a report, never a reason to fail the run
        log.warning("cannot query metrics from the runner: %s: %s", type(e).__name__, e)
        return {}

    def value(r):
        return r.committed if r.committed is not None else r.attempted

    counters = {name: 0 for name in KNOWN_COUNTERS}
    for r in found.get("counters", []):
        counters[r.key.metric.name] = counters.get(r.key.metric.name, 0) + int(value(r) or 0)
    distributions: dict = {}
    for r in found.get("distributions", []):
        d = value(r)
        if d is None or not d.count:
            continue
        acc = distributions.setdefault(r.key.metric.name, {"count": 0, "sum": 0, "min": d.min, "max": d.max})
        acc["count"] += d.count
        acc["sum"] += d.sum
        acc["min"], acc["max"] = min(acc["min"], d.min), max(acc["max"], d.max)
    for acc in distributions.values():
        acc["mean"] = acc["sum"] / acc["count"]
    return {"counters": dict(sorted(counters.items())), "distributions": dict(sorted(distributions.items()))}


def attribution_phase(metrics: dict, attributed: int) -> dict:
    """From the first batch's start to the last batch's end (the `attribute_clock_ms` metric): the
    seconds and images/s of attribution alone, without the run's startup (imports, model load,
    graph) and wind-down (tables, report). Empty when the runner reported no such metric."""
    clock = metrics.get("distributions", {}).get("attribute_clock_ms")
    if not clock or clock["max"] <= clock["min"]:
        return {}
    seconds = (clock["max"] - clock["min"]) / 1000.0
    return {"attribution_seconds": round(seconds, 3),
            "attribution_images_per_second": round(attributed / seconds, 3)}
