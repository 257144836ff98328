"""pipeline/metrics.py: igaudit's Beam counters and distributions summed over steps; attribution's seconds and rate."""
import logging

from apache_beam.metrics.cells import DistributionData, DistributionResult
from apache_beam.metrics.execution import MetricKey, MetricResult
from apache_beam.metrics.metricbase import MetricName

from igaudit.pipeline.metrics import KNOWN_COUNTERS, attribution_phase, query_metrics


def counter(step, name, committed, attempted=None):
    return MetricResult(MetricKey(step, MetricName("igaudit", name)), committed, attempted)


def distribution(step, name, values, attempted_only=False):
    """A distribution result over `values` (None: one with no data at all)."""
    data = None if values is None else DistributionResult(
        DistributionData(sum(values), len(values), min(values, default=0), max(values, default=0)))
    return MetricResult(MetricKey(step, MetricName("igaudit", name)), None if attempted_only else data, data)


class Result:
    """A pipeline result whose metrics() answers `found` and remembers the filter it was given."""

    def __init__(self, found=None, error=None):
        self.found, self.error, self.filters = found, error, []

    def metrics(self):
        return self

    def query(self, metrics_filter):
        self.filters.append(metrics_filter)
        if self.error:
            raise self.error
        return self.found


def test_counters_are_summed_over_steps_committed_first_and_zero_when_they_never_moved():
    result = Result({"counters": [counter("Decode", "decoded", 7), counter("Decode2", "decoded", 3),
                                  counter("Attribute", "attributed", None, attempted=5),
                                  counter("Attribute", "retries", 2, attempted=9),
                                  counter("Read", "images_read", None)]})
    counters = query_metrics(result)["counters"]
    assert counters == {**dict.fromkeys(KNOWN_COUNTERS, 0), "decoded": 10, "attributed": 5, "retries": 2}
    assert list(counters) == sorted(counters)
    assert [f.namespaces for f in result.filters] == [frozenset({"igaudit"})]


def test_distributions_merge_count_sum_min_max_and_get_a_mean():
    result = Result({"distributions": [
        distribution("Attribute", "attribute_clock_ms", [1000, 4000]),
        distribution("Attribute2", "attribute_clock_ms", [2500, 6000, 3500], attempted_only=True),
        distribution("Write", "batch_size", [4]),
        distribution("Write", "empty", []), distribution("Write", "nothing", None)]})
    got = query_metrics(result)
    assert got["distributions"] == {
        "attribute_clock_ms": {"count": 5, "sum": 17000, "min": 1000, "max": 6000, "mean": 3400.0},
        "batch_size": {"count": 1, "sum": 4, "min": 4, "max": 4, "mean": 4.0}}
    assert set(got["counters"]) == set(KNOWN_COUNTERS) and not any(got["counters"].values())


def test_a_runner_that_cannot_report_metrics_gives_nothing_and_one_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="igaudit"):
        assert query_metrics(Result(error=NotImplementedError("no metrics on this runner"))) == {}
    assert caplog.messages == ["cannot query metrics from the runner: NotImplementedError: no metrics on this runner"]


def test_the_attribution_phase_runs_from_the_first_batch_start_to_the_last_batch_end():
    metrics = {"distributions": {"attribute_clock_ms": {"count": 3, "sum": 0, "min": 1_000, "max": 7_000}}}
    assert attribution_phase(metrics, 30) == {"attribution_seconds": 6.0, "attribution_images_per_second": 5.0}
    metrics["distributions"]["attribute_clock_ms"]["max"] = 4_000.4
    assert attribution_phase(metrics, 10) == {"attribution_seconds": 3.0, "attribution_images_per_second": 3.333}


def test_no_attribution_phase_without_a_clock_that_moved():
    assert attribution_phase({}, 10) == {}
    assert attribution_phase({"distributions": {"batch_size": {"min": 1, "max": 9}}}, 10) == {}
    one_batch = {"distributions": {"attribute_clock_ms": {"count": 1, "sum": 5, "min": 5, "max": 5}}}
    assert attribution_phase(one_batch, 10) == {}
