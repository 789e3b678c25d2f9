"""The windowed recorder: percentiles, window rollover, bounded memory, outcomes, merging."""

from __future__ import annotations

import random

import pytest

from agentfleet.loadtest import (
    METRICS,
    WindowedRecorder,
    WindowRow,
    evaluate_thresholds,
    parse_thresholds,
)
from agentfleet.telemetry import LatencyHistogram


def _row(t: float, count: int, errors: int = 0) -> tuple[float, int, int]:
    return (t, count, errors)


class TestPercentiles:
    def test_known_data(self) -> None:
        """1..1000 ms: percentiles within HDR's 0.1%, min, max and mean exact."""
        recorder = WindowedRecorder()
        for ms in range(1, 1001):
            recorder.record(ms / 1000, ms / 1000)
        s = recorder.summary()
        assert (s.requests, s.ok, s.errors, s.error_rate) == (1000, 1000, 0, 0.0)
        assert s.min == 0.001 and s.max == 1.0
        assert s.mean == pytest.approx(0.5005)
        for got, want in ((s.p50, 0.5), (s.p90, 0.9), (s.p95, 0.95), (s.p99, 0.99), (s.p999, 0.999)):
            assert got == pytest.approx(want, rel=1e-3)

    def test_empty(self) -> None:
        """Nothing recorded: zero counts, None for every figure that needs data."""
        s = WindowedRecorder().summary()
        assert (s.requests, s.span, s.rps, s.error_rate, s.p99, s.max, s.max_lag) == (0, 0.0, None, None, None, None,
                                                                                       None)
        assert WindowedRecorder().series() == []


class TestWindows:
    def test_rollover_by_completion_time(self) -> None:
        """A request counts in the window it completed in; a window retires keep_windows windows later."""
        recorder = WindowedRecorder(1.0, keep_windows=2)
        recorder.record(0.0, 0.5)  # completes 0.5  -> window 0
        recorder.record(0.5, 0.7)  # completes 1.2  -> window 1
        recorder.record(1.0, 0.1, ok=False, error_kind="timeout")  # 1.1 -> window 1
        assert recorder.statistics().live_windows == 2 and recorder.statistics().retired_windows == 0
        recorder.record(2.5, 0.2)  # completes 2.7 -> window 2: window 0 retires
        stats = recorder.statistics()
        assert (stats.live_windows, stats.retired_windows) == (2, 1)
        recorder.record(5.9, 0.2)  # completes 6.1 -> window 6: windows 1 and 2 retire, 3 and 4 are gaps
        assert [(r.t, r.count, r.errors) for r in recorder.series()] == [
            _row(0.0, 1), _row(1.0, 2, 1), _row(2.0, 1), _row(3.0, 0), _row(4.0, 0), _row(5.0, 0), _row(6.0, 1),
        ]
        rows = recorder.series(fill_gaps=False)
        assert [r.t for r in rows] == [0.0, 1.0, 2.0, 6.0]
        assert rows[1] == WindowRow(t=1.0, count=2, ok=1, errors=1, rps=2.0, p50=0.7, p95=0.7, p99=0.7, max=0.7)
        assert recorder.statistics().live_windows == 1

    def test_rows_for_sub_second_windows(self) -> None:
        """Window starts are origin + i * window_s, computed afresh (no drift), rps per second."""
        recorder = WindowedRecorder(0.25, keep_windows=1, origin=100.0)
        for i in range(8):
            recorder.record(100.0 + i * 0.125, 0.0)
        recorder.flush()
        rows = recorder.series()
        assert [r.t for r in rows] == [100.0 + i * 0.25 for i in range(4)]
        assert [(r.count, r.rps) for r in rows] == [(2, 8.0)] * 4
        assert recorder.statistics().live_windows == 0

    @pytest.mark.parametrize("limit", [1000, 10])
    def test_row_percentiles_exact_then_hdr_past_the_limit(self, limit: int) -> None:
        """Rows rank the window's raw latencies exactly; past exact_row_limit they use its HDR histogram."""
        recorder = WindowedRecorder(10.0, exact_row_limit=limit)
        for ms in range(1, 101):
            recorder.record(0.0, ms / 1000)
        row = recorder.series()[0]
        assert (row.count, row.max) == (100, 0.1)
        if limit > 100:
            assert (row.p50, row.p95, row.p99) == (0.05, 0.095, 0.099)
        else:
            assert (row.p50, row.p95, row.p99) == pytest.approx((0.05, 0.095, 0.099), rel=1e-3)

    def test_window_by_intended_start(self) -> None:
        """window_by='intended' files a slow request under the second it was meant to be sent."""
        recorder = WindowedRecorder(1.0, window_by="intended")
        recorder.record(0.2, 3.0)
        recorder.record(3.1, 0.1)
        recorder.flush()
        assert [(r.t, r.count, r.max) for r in recorder.series(fill_gaps=False)] == [(0.0, 1, 3.0), (3.0, 1, 0.1)]

    def test_advance_retires_idle_windows(self) -> None:
        """With no completions, advance(now) still moves windows into rows (a stall shows as zeros)."""
        recorder = WindowedRecorder(1.0, keep_windows=2)
        recorder.record(0.0, 0.1)
        recorder.advance(1.5)
        assert recorder.statistics().retired_windows == 0
        recorder.advance(2.0)
        assert recorder.statistics().retired_windows == 1
        recorder.advance(0.5)  # time never goes back
        assert recorder.statistics().retired_windows == 1

    def test_stragglers_count_in_totals_not_rows(self) -> None:
        """A record for an already-retired window joins the totals and is counted as a straggler."""
        recorder = WindowedRecorder(1.0, keep_windows=1)
        recorder.record(0.0, 0.1)
        recorder.record(5.0, 0.1)
        recorder.record(0.3, 0.2)  # completes at 0.5: window 0 is gone
        recorder.record(0.3, 0.2, ok=False, error_kind="reset")
        s = recorder.summary()
        assert (s.requests, s.ok, s.errors, s.stragglers) == (4, 3, 1, 2)
        assert s.max == 0.2 and s.errors_by_kind == {"reset": 1}
        assert sum(r.count for r in recorder.series()) == 2

    def test_bounded_windows_over_a_long_soak(self) -> None:
        """100k records over 10 simulated hours hold at most keep_windows + 1 histograms at any time."""
        rng = random.Random(11)
        keep = 3
        recorder = WindowedRecorder(60.0, keep_windows=keep)
        n, span = 100_000, 10 * 3600.0
        latencies = [rng.uniform(0.001, 0.2) for _ in range(n)]
        most = 0
        for i, latency in enumerate(latencies):
            recorder.record(i * span / n, latency)
            if i % 1000 == 0:
                most = max(most, recorder.statistics().live_windows)
        stats = recorder.statistics()
        assert most <= keep + 1 and stats.live_windows <= keep + 1
        assert stats.records == n and stats.stragglers == 0
        assert stats.retired_windows + stats.live_windows == 600
        s = recorder.summary()
        single = LatencyHistogram()
        single.record_many(latencies)
        assert s.requests == n
        assert (s.p50, s.p99, s.max) == (single.percentile(50), single.percentile(99), single.max)
        assert s.rps == pytest.approx(n / span, rel=1e-3)
        assert len(recorder.series()) == 600


class TestMerging:
    def test_running_total_equals_one_histogram(self) -> None:
        """Windows merged into the total give exactly the histogram of recording everything once."""
        rng = random.Random(5)
        recorder = WindowedRecorder(0.5, keep_windows=2)
        single = LatencyHistogram()
        t = 0.0
        for _ in range(5000):
            t += rng.expovariate(200)
            latency = rng.lognormvariate(-3, 1)
            recorder.record(t, latency)
            single.record(latency)
        stats = recorder.statistics()
        assert stats.retired_windows > 40 and stats.stragglers > 0  # both ways into the total are taken
        merged = recorder.histogram()
        assert (merged.count, merged.min, merged.max, merged.clamped) == (single.count, single.min, single.max, 0)
        assert merged.sum == pytest.approx(single.sum)
        ps = [0.0, 1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9, 99.99, 100.0]
        assert merged.percentiles(ps) == single.percentiles(ps)

    def test_histogram_is_encodable_and_independent(self) -> None:
        """histogram() is a fresh LatencyHistogram: encode/decode round-trips; the recorder is untouched."""
        recorder = WindowedRecorder(1.0, keep_windows=1)
        for i in range(100):
            recorder.record(i * 0.1, 0.01 * (i % 7 + 1))
        merged = recorder.histogram()
        restored = LatencyHistogram.decode(merged.encode())
        assert restored.count == 100 and restored.percentile(99) == merged.percentile(99)
        merged.record(100.0)
        assert recorder.summary().max == 0.07


class TestOutcomes:
    def test_errors_by_kind_and_rate(self) -> None:
        """Failures are counted by kind (default 'error') and give the error rate; latencies are successes only."""
        recorder = WindowedRecorder()
        for i in range(90):
            recorder.record(i * 0.01, 0.05)
        for i in range(6):
            recorder.record(1.0 + i * 0.01, 30.0, ok=False, error_kind="timeout")
        for _ in range(3):
            recorder.record(1.1, 0.001, ok=False, error_kind="http_503")
        recorder.record(1.2, 0.002, ok=False)
        s = recorder.summary()
        assert (s.requests, s.ok, s.errors) == (100, 90, 10)
        assert s.error_rate == pytest.approx(0.1)
        assert s.errors_by_kind == {"error": 1, "http_503": 3, "timeout": 6}
        assert s.max == 0.05  # the 30 s timeouts are counted, not timed

    def test_late_and_dropped(self) -> None:
        """note_late counts late sends and keeps the worst lag; note_dropped counts sends never made."""
        recorder = WindowedRecorder()
        for lag in (0.006, 0.2, 0.01):
            recorder.note_late(lag)
        recorder.note_dropped()
        recorder.note_dropped(4)
        s = recorder.summary()
        assert (s.late, s.max_lag, s.dropped) == (3, 0.2, 5)

    def test_throughput_over_the_span(self) -> None:
        """rps runs from the first intended send to the last completion, or over span_s when given."""
        recorder = WindowedRecorder()
        for k in range(20):
            recorder.record(k / 10, 0.1, ok=k % 4 != 0, error_kind=None if k % 4 else "boom")
        s = recorder.summary()
        assert s.span == pytest.approx(2.0)
        assert s.rps == pytest.approx(10.0) and s.ok_rps == pytest.approx(7.5)
        assert recorder.summary(span_s=4.0).rps == 5.0
        assert recorder.summary(span_s=0.0).rps is None

    @pytest.mark.parametrize(("args", "kwargs", "message"), [
        ((-1.0, 0.1), {}, "t_intended_start must be"),
        ((0.0, -0.1), {}, "latency must be"),
        ((0.0, float("nan")), {}, "latency must be"),
        ((0.0, 0.1), {"error_kind": "timeout"}, "successful request has no error kind"),
    ])
    def test_bad_records(self, args: tuple[float, float], kwargs: dict[str, str], message: str) -> None:
        """Impossible records are programming errors and change nothing."""
        recorder = WindowedRecorder()
        with pytest.raises(ValueError, match=message):
            recorder.record(*args, **kwargs)  # type: ignore[arg-type]
        assert recorder.statistics().records == 0

    def test_bad_construction(self) -> None:
        """Window width, retention and bucketing are checked up front."""
        with pytest.raises(ValueError, match="window_s"):
            WindowedRecorder(0)
        with pytest.raises(ValueError, match="keep_windows"):
            WindowedRecorder(keep_windows=0)
        with pytest.raises(ValueError, match="window_by"):
            WindowedRecorder(window_by="start")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="lag_s"):
            WindowedRecorder().note_late(-1)


class TestThresholdIntegration:
    def test_summary_metrics_feed_thresholds(self) -> None:
        """summary().metrics() uses the threshold names; a TTFT recorder's figures take the ttft_ prefix."""
        latency, ttft = WindowedRecorder(), WindowedRecorder()
        for ms in range(1, 101):
            latency.record(ms / 100, ms / 1000)
            ttft.record(ms / 100, ms / 4000)
        results = latency.summary().metrics() | ttft.summary().metrics(prefix="ttft_")
        assert set(latency.summary().metrics()) <= set(METRICS)
        verdicts = evaluate_thresholds(
            parse_thresholds(["p95 < 100ms", "ttft_p95 < 30ms", "error_rate < 0.1%", "rps >= 200", "p99.9 <= 100ms"]),
            results,
        )
        assert [v.passed for v in verdicts] == [True, True, True, False, True]
