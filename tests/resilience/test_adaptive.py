"""The AIMD concurrency limit and its windowed no-load latency, on exact samples."""

from __future__ import annotations

import pytest

from agentfleet.resilience import AIMDLimit, WindowedMin


def after_first_drop(limit: int = 20) -> AIMDLimit:
    """A limiter out of slow start: limit ``limit`` halved once, at t=0."""
    aimd = AIMDLimit(limit, max_limit=100)
    aimd.on_sample(1.0, dropped=True, inflight=limit, now=0.0)
    return aimd


class TestSlowStart:
    def test_grows_by_one_per_saturated_sample(self) -> None:
        """Before the first drop each saturated success adds one (doubling per window)."""
        aimd = AIMDLimit(4)
        limits = [aimd.on_sample(1.0, dropped=False, inflight=aimd.limit, now=float(t)) for t in range(4)]
        assert limits == [5, 6, 7, 8]
        assert aimd.statistics(4.0).slow_start

    def test_ends_at_the_first_drop(self) -> None:
        """The first drop halves the limit and ends slow start."""
        aimd = AIMDLimit(16)
        assert aimd.on_sample(1.0, dropped=True, inflight=16, now=0.0) == 8
        assert not aimd.statistics(0.0).slow_start


class TestDecrease:
    def test_halves_on_drop(self) -> None:
        """A drop multiplies the limit by ``backoff_ratio`` (0.5), rounding down."""
        aimd = after_first_drop(21)
        assert aimd.limit == 10
        assert aimd.on_sample(1.0, dropped=True, inflight=10, now=5.0) == 5

    def test_once_per_congestion_episode(self) -> None:
        """Drops of calls sent before the last decrease do not halve again."""
        aimd = after_first_drop(20)
        assert aimd.on_sample(2.0, dropped=True, inflight=10, now=1.0) == 10  # sent at -1.0
        assert aimd.on_sample(0.5, dropped=True, inflight=10, now=1.0) == 5  # sent at 0.5

    def test_never_below_min_limit(self) -> None:
        """The limit stays at or above ``min_limit``."""
        aimd = AIMDLimit(4, min_limit=3)
        aimd.on_sample(1.0, dropped=True, inflight=4, now=0.0)
        aimd.on_sample(1.0, dropped=True, inflight=3, now=10.0)
        assert aimd.limit == 3
        assert aimd.statistics(10.0).decreases == 1

    def test_latency_over_tolerance_counts_as_a_drop(self) -> None:
        """With ``latency_tolerance=2`` a call slower than twice the no-load latency backs off."""
        aimd = AIMDLimit(10, latency_tolerance=2.0)
        aimd.on_sample(1.0, dropped=False, inflight=1, now=0.0)
        assert aimd.on_sample(1.9, dropped=False, inflight=1, now=2.0) == 10
        assert aimd.on_sample(2.5, dropped=False, inflight=1, now=4.0) == 5


class TestIncrease:
    def test_grows_by_one_per_window_when_saturated(self) -> None:
        """After slow start, ``limit`` saturated successes add exactly one."""
        aimd = after_first_drop(20)
        limits = [aimd.on_sample(1.0, dropped=False, inflight=10, now=1.0 + i) for i in range(21)]
        assert limits == [10] * 9 + [11] * 11 + [12]

    def test_stays_flat_when_underused(self) -> None:
        """Successes with inflight well below the limit never raise it (no creeping up)."""
        aimd = after_first_drop(20)
        for i in range(1000):
            aimd.on_sample(1.0, dropped=False, inflight=5, now=1.0 + i)
        assert aimd.limit == 10
        assert aimd.statistics(1001.0).increases == 0

    def test_slow_start_also_needs_saturation(self) -> None:
        """Even in slow start an underused limit does not grow."""
        aimd = AIMDLimit(10)
        for i in range(100):
            aimd.on_sample(1.0, dropped=False, inflight=8, now=float(i))
        assert aimd.limit == 10

    def test_never_above_max_limit(self) -> None:
        """The limit stops at ``max_limit``."""
        aimd = AIMDLimit(4, max_limit=6)
        for i in range(10):
            aimd.on_sample(1.0, dropped=False, inflight=aimd.limit, now=float(i))
        assert aimd.limit == 6

    def test_rejects_inconsistent_bounds(self) -> None:
        """``initial`` outside [min_limit, max_limit] is a configuration error."""
        with pytest.raises(ValueError):
            AIMDLimit(50, max_limit=10)


class TestWindowedMin:
    def test_minimum_within_two_periods(self) -> None:
        """The minimum covers the current and the previous period."""
        window = WindowedMin(period=60.0)
        window.add(1.0, now=0.0)
        window.add(3.0, now=70.0)
        assert window.value(70.0) == 1.0

    def test_old_minimum_is_forgotten_so_it_cannot_drift(self) -> None:
        """A lucky fast sample expires after two periods; the baseline follows a slower provider."""
        window = WindowedMin(period=60.0)
        window.add(0.1, now=0.0)
        for t in range(60, 120, 10):
            window.add(2.0, now=float(t))
        assert window.value(119.0) == 0.1
        window.add(2.5, now=120.0)
        assert window.value(120.0) == 2.0

    def test_long_silence_empties_it(self) -> None:
        """After two idle periods there is no baseline."""
        window = WindowedMin(period=10.0)
        window.add(1.0, now=0.0)
        assert window.value(25.0) is None

    def test_aimd_reports_the_remeasured_baseline(self) -> None:
        """The limiter's statistics show the windowed no-load latency."""
        aimd = AIMDLimit(4, min_latency_period=10.0)
        aimd.on_sample(0.5, dropped=False, inflight=1, now=0.0)
        aimd.on_sample(1.5, dropped=False, inflight=1, now=15.0)
        aimd.on_sample(1.5, dropped=False, inflight=1, now=25.0)
        assert aimd.statistics(25.0).min_latency == 1.5
