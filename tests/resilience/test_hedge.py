"""The hedge delay: a percentile of recent latencies, none until enough are known."""

from __future__ import annotations

import pytest

from agentfleet.resilience import HedgePolicy


class TestHedgePolicy:
    def test_no_hedge_before_min_samples(self) -> None:
        """With fewer than ``min_samples`` latencies there is no hedge delay."""
        policy = HedgePolicy(percentile=0.95, min_samples=20)
        for i in range(19):
            policy.record(1.0, now=float(i))
        assert policy.hedge_after(19.0) is None

    def test_nearest_rank_percentile(self) -> None:
        """Latencies 1..100 give p95 = 95 and p50 = 50."""
        p95 = HedgePolicy(percentile=0.95, min_samples=20)
        p50 = HedgePolicy(percentile=0.5, min_samples=20)
        for i in range(100, 0, -1):
            p95.record(float(i), now=0.0)
            p50.record(float(i), now=0.0)
        assert p95.hedge_after(0.0) == 95.0
        assert p50.hedge_after(0.0) == 50.0

    def test_window_is_bounded(self) -> None:
        """Only the last ``window`` latencies count."""
        policy = HedgePolicy(percentile=0.5, min_samples=2, window=4)
        for latency in (100.0, 100.0, 100.0, 100.0, 1.0, 1.0, 1.0):
            policy.record(latency, now=0.0)
        assert policy.hedge_after(0.0) == 1.0
        assert policy.statistics(0.0).samples == 4

    def test_old_samples_expire_with_max_age(self) -> None:
        """With ``max_age`` stale latencies stop counting, and the estimate goes away."""
        policy = HedgePolicy(percentile=0.5, min_samples=2, max_age=60.0)
        policy.record(1.0, now=0.0)
        policy.record(2.0, now=30.0)
        assert policy.hedge_after(59.0) == 1.0
        assert policy.hedge_after(60.0) is None

    def test_rejects_bad_parameters(self) -> None:
        """A percentile outside (0, 1) or a window below ``min_samples`` is a configuration error."""
        with pytest.raises(ValueError):
            HedgePolicy(percentile=1.0)
        with pytest.raises(ValueError):
            HedgePolicy(min_samples=20, window=10)
