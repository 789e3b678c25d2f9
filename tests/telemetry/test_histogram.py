"""Latency histograms against known data, and the registry that keeps them with counters and gauges."""

from __future__ import annotations

import json
import math
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from agentfleet.telemetry import (
    DEFAULT_LATENCY,
    DEFAULT_METRICS,
    HistogramSummary,
    LatencyHistogram,
    LatencySpec,
    MetricSpec,
    MetricsRegistry,
)

PRECISION = 1e-3  # 3 significant digits


def uniform_ms(n: int = 1000) -> LatencyHistogram:
    """1, 2, ..., n milliseconds."""
    histogram = LatencyHistogram()
    for i in range(1, n + 1):
        histogram.record(i / 1000)
    return histogram


def close(actual: float | None, expected: float) -> bool:
    """Within HDR precision: 0.1% of the value, or 1 µs for tiny ones."""
    assert actual is not None
    return abs(actual - expected) <= max(expected * PRECISION, 1e-6)


class TestFigures:
    def test_uniform_milliseconds(self) -> None:
        """1..1000 ms: percentiles within 0.1% of the true ranks; min, max and mean exact."""
        summary = uniform_ms().summary()
        assert summary.count == 1000
        assert summary.min == 0.001
        assert summary.max == 1.0
        assert summary.mean == pytest.approx(0.5005, abs=1e-12)
        assert close(summary.p50, 0.500)
        assert close(summary.p95, 0.950)
        assert close(summary.p99, 0.990)
        assert close(summary.p999, 0.999)
        assert summary.p50 is not None and summary.p99 is not None and summary.p999 is not None
        assert summary.min <= summary.p50 <= summary.p99 <= summary.p999 <= summary.max

    def test_percentile_ends_are_min_and_max(self) -> None:
        """percentile(0) is the exact minimum, percentile(100) the exact maximum (never above it)."""
        histogram = LatencyHistogram()
        for value in (0.0123456, 0.5, 2.718281828):
            histogram.record(value)
        assert histogram.percentile(0) == 0.0123456
        assert histogram.percentile(100) == 2.718281828
        assert histogram.percentiles([0, 100]) == {0: 0.0123456, 100: 2.718281828}

    def test_wide_range_keeps_three_digits(self) -> None:
        """Log-normal latencies from microseconds to minutes: every percentile within 0.1% of
        the exact rank (N = 10,000 makes every rank an integer)."""
        rng = random.Random(5)
        values = [min(math.exp(rng.gauss(-3.0, 3.0)), 3000.0) for _ in range(10_000)]
        histogram = LatencyHistogram()
        for value in values:
            histogram.record(value)
        ordered = sorted(values)
        for p in (1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99):
            expected = ordered[round(p / 100 * len(values)) - 1]
            assert close(histogram.percentile(p), expected), p
        assert histogram.max == ordered[-1]
        assert histogram.min == ordered[0]
        assert histogram.sum == pytest.approx(sum(values))

    def test_microsecond_resolution_below_a_millisecond(self) -> None:
        """Sub-millisecond values keep whole microseconds."""
        histogram = LatencyHistogram()
        for micros in (17, 123, 999):
            histogram.record(micros / 1e6)
        assert histogram.percentile(50) == pytest.approx(123e-6, abs=1e-12)

    def test_empty(self) -> None:
        """An empty histogram has a count of 0 and None for every figure."""
        histogram = LatencyHistogram()
        assert histogram.count == 0
        assert histogram.percentile(99) is None
        assert histogram.min is None and histogram.max is None and histogram.mean is None
        assert histogram.summary() == HistogramSummary(0, None, None, None, None, None, None, None)

    @pytest.mark.parametrize("p", [-0.1, 100.01, math.nan])
    def test_percentile_out_of_range(self, p: float) -> None:
        """Percentiles are 0..100."""
        with pytest.raises(ValueError, match="percentile"):
            uniform_ms(3).percentile(p)


class TestClamping:
    def test_above_an_hour_is_clamped_and_counted(self) -> None:
        """A value above one hour counts as one hour and in ``clamped``; one hour itself is not clamped."""
        histogram = LatencyHistogram()
        histogram.record(3600.0)
        histogram.record(7200.0)
        histogram.record(math.inf)
        assert histogram.count == 3
        assert histogram.clamped == 2
        assert histogram.max == 3600.0
        assert histogram.sum == 3 * 3600.0
        assert histogram.percentile(100) == 3600.0

    @pytest.mark.parametrize("value", [-1e-9, -1.0, math.nan])
    def test_negative_and_nan_are_rejected(self, value: float) -> None:
        """Negative durations and NaN are errors, and record nothing."""
        histogram = LatencyHistogram()
        with pytest.raises(ValueError, match="non-negative"):
            histogram.record(value)
        assert histogram.count == 0

    def test_zero_and_sub_microsecond(self) -> None:
        """0 and values under half a microsecond are recorded (in the zero bucket); min stays exact."""
        histogram = LatencyHistogram()
        histogram.record(0.0)
        histogram.record(4e-7)
        assert histogram.count == 2
        assert histogram.min == 0.0
        assert histogram.max == 4e-7


class TestMergeAndEncoding:
    def _random(self, seed: int, n: int) -> list[float]:
        rng = random.Random(seed)
        return [rng.expovariate(1 / 0.3) for _ in range(n)] + [5000.0]  # one clamped

    def test_merge_equals_recording_both(self) -> None:
        """Merging b into a gives the histogram of a's and b's values together."""
        xs, ys = self._random(1, 500), self._random(2, 300)
        a, b, both = LatencyHistogram(), LatencyHistogram(), LatencyHistogram()
        for x in xs:
            a.record(x)
            both.record(x)
        for y in ys:
            b.record(y)
            both.record(y)
        b_before = b.encode()
        a.merge(b)
        merged, expected = a.summary(), both.summary()
        assert merged.mean == pytest.approx(expected.mean)
        assert (merged.p50, merged.p95, merged.p99) == (expected.p50, expected.p95, expected.p99)
        assert merged.p999 == expected.p999
        assert a.count == both.count == 802
        assert a.clamped == both.clamped == 2
        assert a.min == both.min and a.max == both.max
        assert a.sum == pytest.approx(both.sum)
        for p in (0, 50, 90, 99, 99.9, 100):
            assert a.percentile(p) == both.percentile(p)
        assert a.encode().split(":")[-1] == both.encode().split(":")[-1]  # identical counts
        assert b.encode() == b_before  # the other side is unchanged

    def test_merge_with_empty_sides_keeps_min(self) -> None:
        """Merging into or from an empty histogram keeps the true minimum (hdrhistogram's add does not)."""
        full = uniform_ms(10)
        into_empty = LatencyHistogram()
        into_empty.merge(full)
        assert into_empty.summary() == full.summary()
        full.merge(LatencyHistogram())
        assert full.min == 0.001 and full.count == 10

    def test_merge_with_itself_doubles(self) -> None:
        """h.merge(h) counts every value twice."""
        histogram = uniform_ms(10)
        histogram.merge(histogram)
        assert histogram.count == 20
        assert histogram.sum == pytest.approx(2 * 0.055)

    def test_round_trip(self) -> None:
        """decode(encode(h)) has the same figures, clamped count and encoding; the text is compact ASCII."""
        histogram = LatencyHistogram()
        for x in self._random(3, 1000):
            histogram.record(x)
        text = histogram.encode()
        assert text.isascii() and len(text) < 4000
        restored = LatencyHistogram.decode(text)
        assert restored.summary() == histogram.summary()
        assert restored.clamped == histogram.clamped == 1
        assert restored.sum == histogram.sum
        assert restored.encode() == text
        assert len(uniform_ms().encode()) < 400

    def test_empty_round_trip(self) -> None:
        """An empty histogram survives encoding as empty."""
        restored = LatencyHistogram.decode(LatencyHistogram().encode())
        assert restored.count == 0 and restored.min is None
        restored.record(0.25)
        assert restored.min == 0.25

    @pytest.mark.parametrize(
        "text",
        ["", "garbage", "v1:0:0.0:::not-base64!", "v2:0:0.0:::HISTFAAAABx4nJNpmSzMgADMUJoRRFybvITB/gNEAABQ2gSH",
         "v1:5:0.0:::HISTFAAAABx4nJNpmSzMgADMUJoRRFybvITB/gNEAABQ2gSH"],
    )
    def test_decode_rejects_garbage(self, text: str) -> None:
        """Anything that is not an encoded histogram raises ValueError (here: bad, wrong version, 5 clamped of 0)."""
        with pytest.raises(ValueError):
            LatencyHistogram.decode(text)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class TestMetricsRegistry:
    def test_snapshot(self) -> None:
        """The snapshot holds every histogram, counter and gauge as plain JSON-able data."""
        clock = Clock()
        registry = MetricsRegistry(clock=clock)
        for i in range(1, 1001):
            registry.observe("agent", "developer", i / 1000)
        registry.observe("provider", "openai/gpt-4o", 0.8)
        registry.observe("task_kind", "implement", 9000.0)
        registry.inc("tasks_total", state="failed")
        registry.inc("tasks_total", 3, state="done")
        registry.inc("tokens_total", 1200, direction="input")
        registry.inc("tokens_total", 300, direction="output")
        registry.inc("cost_usd_total", 0.125)
        registry.inc("cache_hits_total", level="memory")
        registry.set_gauge("queue_depth", 7)
        registry.set_gauge("queue_depth", 2)
        registry.add_gauge("in_flight", 3)
        registry.add_gauge("in_flight", -1)
        registry.set_gauge("pool_size", 4, agent="reviewer")
        registry.set_gauge("pool_size", 2, agent="developer")
        clock.t = 112.5

        snap = registry.snapshot()
        assert json.loads(json.dumps(snap)) == snap
        assert snap["at"] == 112.5 and snap["uptime_s"] == 12.5
        developer = snap["latency"]["agent"]["developer"]
        assert developer["count"] == 1000 and developer["max"] == 1.0 and developer["clamped"] == 0
        assert close(developer["p95"], 0.95)
        assert snap["latency"]["task_kind"]["implement"]["clamped"] == 1
        assert snap["latency"]["provider"]["openai/gpt-4o"]["p50"] == 0.8
        assert snap["counters"]["tasks_total"] == [
            {"labels": {"state": "done"}, "value": 3},
            {"labels": {"state": "failed"}, "value": 1},
        ]
        assert snap["counters"]["tokens_total"][0] == {"labels": {"direction": "input"}, "value": 1200}
        assert snap["counters"]["cost_usd_total"] == [{"labels": {}, "value": 0.125}]
        assert snap["counters"]["retries_total"] == [{"labels": {}, "value": 0}]  # unlabelled: 0 from the start
        assert snap["counters"]["cache_hits_total"] == [{"labels": {"level": "memory"}, "value": 1}]
        assert snap["gauges"]["queue_depth"] == [{"labels": {}, "value": 2, "peak": 7}]
        assert snap["gauges"]["in_flight"] == [{"labels": {}, "value": 2, "peak": 3}]
        assert [row["labels"]["agent"] for row in snap["gauges"]["pool_size"]] == ["developer", "reviewer"]

    def test_empty_snapshot_lists_every_declared_family(self) -> None:
        """A fresh registry has every default kind and metric, labelled ones without series."""
        snap = MetricsRegistry(clock=Clock()).snapshot()
        assert set(snap["latency"]) == {spec.kind for spec in DEFAULT_LATENCY} == {"agent", "provider", "task_kind"}
        names = set(snap["counters"]) | set(snap["gauges"])
        assert names == {spec.name for spec in DEFAULT_METRICS}
        assert snap["counters"]["tasks_total"] == [] and snap["gauges"]["in_flight"][0]["value"] == 0

    def test_readers(self) -> None:
        """counter, gauge, series and histogram read single values; histogram() is a copy."""
        registry = MetricsRegistry()
        registry.inc("tokens_total", 5, direction="output")
        registry.add_gauge("pool_size", 2, agent="a")
        registry.observe("agent", "a", 0.5)
        assert registry.counter("tokens_total", direction="output") == 5
        assert registry.counter("tokens_total", direction="input") == 0
        assert registry.gauge("pool_size", agent="a") == 2
        assert registry.series("tokens_total") == [({"direction": "output"}, 5)]
        copy = registry.histogram("agent", "a")
        assert copy is not None and copy.count == 1
        copy.record(1.0)
        assert registry.histograms("agent")["a"].count == 1
        assert registry.histogram("agent", "nobody") is None

    def test_merge_histogram(self) -> None:
        """A decoded histogram (another process, a stored run) merges into a registry's."""
        registry = MetricsRegistry()
        registry.observe("agent", "a", 0.001)
        registry.merge_histogram("agent", "a", LatencyHistogram.decode(uniform_ms(10).encode()))
        registry.merge_histogram("agent", "b", uniform_ms(2))
        a = registry.histogram("agent", "a")
        assert a is not None and a.count == 11 and a.max == 0.01
        assert registry.snapshot()["latency"]["agent"]["b"]["count"] == 2

    def test_mistakes_fail_fast(self) -> None:
        """Undeclared names and kinds, wrong labels, wrong types and bad amounts raise."""
        registry = MetricsRegistry()
        with pytest.raises(KeyError):
            registry.inc("task_total", state="done")
        with pytest.raises(KeyError):
            registry.observe("agnet", "x", 1.0)
        with pytest.raises(ValueError, match="labels"):
            registry.inc("tasks_total", status="done")
        with pytest.raises(ValueError, match="labels"):
            registry.inc("cost_usd_total", 1, currency="usd")
        with pytest.raises(TypeError, match="gauge"):
            registry.inc("queue_depth")
        with pytest.raises(TypeError, match="counter"):
            registry.set_gauge("retries_total", 1)
        with pytest.raises(ValueError, match="only goes up"):
            registry.inc("retries_total", -1)
        with pytest.raises(ValueError, match="finite"):
            registry.set_gauge("queue_depth", math.nan)
        with pytest.raises(ValueError, match="non-negative"):
            registry.observe("agent", "a", -0.5)
        assert registry.counter("retries_total") == 0

    def test_declare(self) -> None:
        """declare adds metrics and latency kinds; redeclaring the same is a no-op, a different one raises."""
        registry = MetricsRegistry(latency=(), metrics=())
        spec = MetricSpec("hedges_total", "counter", "Hedged provider calls.", ("provider",))
        registry.declare(spec)
        registry.declare(spec)
        registry.declare(LatencySpec("tool", "tool_call_duration_seconds", "Tool call latency."))
        registry.inc("hedges_total", provider="p")
        registry.observe("tool", "grep", 0.01)
        assert registry.counter("hedges_total", provider="p") == 1
        with pytest.raises(ValueError, match="already declared"):
            registry.declare(MetricSpec("hedges_total", "counter", "Other help."))
        with pytest.raises(ValueError, match="in use"):
            registry.declare(MetricSpec("tool_call_duration_seconds_count", "gauge", "Clash."))
        assert [s.name for s in registry.metric_specs()] == ["hedges_total"]
        assert [s.kind for s in registry.latency_specs()] == ["tool"]

    @pytest.mark.parametrize(
        "make",
        [
            lambda: MetricSpec("tasks", "counter", "no _total"),
            lambda: MetricSpec("depth_total", "gauge", "a gauge named like a counter"),
            lambda: MetricSpec("Tasks_total", "counter", "not snake case"),
            lambda: MetricSpec("x_total", "counter", "reserved label", ("quantile",)),
            lambda: MetricSpec("x_total", "counter", "repeated label", ("a", "a")),
            lambda: LatencySpec("le", "x_seconds", "reserved label"),
            lambda: LatencySpec("agent", "duration_ms", "no unit"),
        ],
    )
    def test_spec_validation(self, make: object) -> None:
        """Names follow Prometheus conventions: counters end in _total, latency in _seconds, no reserved labels."""
        assert callable(make)
        with pytest.raises(ValueError):
            make()

    def test_reading_while_writing_from_another_thread(self) -> None:
        """A scraper thread reading snapshots while the writer records sees no errors and no lost values."""
        registry = MetricsRegistry()
        done = threading.Event()

        def scrape() -> int:
            scrapes = 0
            while not done.is_set():
                registry.snapshot()
                scrapes += 1
            return scrapes

        with ThreadPoolExecutor(1) as pool:
            reader = pool.submit(scrape)
            try:
                for i in range(2000):
                    registry.observe("agent", f"a{i % 10}", i / 1000)
                    registry.inc("tasks_total", state=f"s{i % 7}")
            finally:
                done.set()
            assert reader.result() > 0  # re-raises anything the reader hit
        snap = registry.snapshot()
        assert sum(h["count"] for h in snap["latency"]["agent"].values()) == 2000
        assert sum(row["value"] for row in snap["counters"]["tasks_total"]) == 2000
