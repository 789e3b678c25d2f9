"""The circuit breaker's closed, open and half-open states on exact times."""

from __future__ import annotations

import pytest

from agentfleet.errors import CircuitOpen, ProviderError
from agentfleet.resilience import BreakerState, CircuitBreaker


def opened(at: float = 0.0, half_open_max: int = 1) -> CircuitBreaker:
    """A breaker (threshold 3, window 10 s, cooldown 30 s) opened by three failures at ``at``."""
    breaker = CircuitBreaker(3, window=10.0, cooldown=30.0, half_open_max=half_open_max, provider="openai")
    for _ in range(3):
        breaker.record_failure(at)
    return breaker


class TestClosed:
    def test_allows_calls(self) -> None:
        """A new breaker is closed and lets calls through."""
        breaker = CircuitBreaker(failure_threshold=3, window=10.0, cooldown=30.0)
        assert breaker.state(0.0) is BreakerState.CLOSED
        assert breaker.allow(0.0)

    def test_opens_at_the_threshold_within_the_window(self) -> None:
        """Three failures within ten seconds open the circuit."""
        breaker = CircuitBreaker(failure_threshold=3, window=10.0, cooldown=30.0)
        breaker.record_failure(0.0)
        breaker.record_failure(5.0)
        assert breaker.state(5.0) is BreakerState.CLOSED
        breaker.record_failure(9.0)
        assert breaker.state(9.0) is BreakerState.OPEN

    def test_failures_outside_the_window_do_not_count(self) -> None:
        """Failures spread wider than the window keep the circuit closed."""
        breaker = CircuitBreaker(failure_threshold=3, window=10.0, cooldown=30.0)
        for t in (0.0, 6.0, 12.0, 18.0):
            breaker.record_failure(t)
        assert breaker.state(18.0) is BreakerState.CLOSED
        assert breaker.statistics(18.0).failures == 2


class TestOpen:
    def test_refuses_until_the_cooldown_ends(self) -> None:
        """An open breaker refuses calls for the cooldown, then half-opens."""
        breaker = opened()
        assert not breaker.allow(29.9)
        assert breaker.state(30.0) is BreakerState.HALF_OPEN
        assert breaker.statistics(29.9).retry_at == 30.0

    def test_check_raises_circuit_open_naming_provider_and_time(self) -> None:
        """``check`` raises ``CircuitOpen`` saying which provider and when it half-opens."""
        breaker = opened()
        with pytest.raises(CircuitOpen) as info:
            breaker.check(10.0)
        assert info.value.provider == "openai"
        assert info.value.retry_at == 30.0
        assert info.value.retryable
        assert isinstance(info.value, ProviderError)
        assert str(info.value) == (
            "openai: circuit open after repeated failures; openai half-opens in 20s (at t=30)"
        )

    def test_late_failure_while_open_is_ignored(self) -> None:
        """A failure reported while open (a call sent earlier) does not extend the cooldown."""
        breaker = opened()
        breaker.record_failure(20.0)
        assert breaker.state(30.0) is BreakerState.HALF_OPEN


class TestHalfOpen:
    def test_admits_one_probe(self) -> None:
        """Half-open admits exactly ``half_open_max`` probes."""
        breaker = opened()
        assert breaker.allow(30.0)
        assert not breaker.allow(30.0)
        with pytest.raises(CircuitOpen, match="probe"):
            breaker.check(31.0)

    def test_probe_success_closes(self) -> None:
        """A successful probe closes the circuit and forgets earlier failures."""
        breaker = opened()
        assert breaker.allow(30.0)
        breaker.record_success(31.0)
        assert breaker.state(31.0) is BreakerState.CLOSED
        breaker.record_failure(32.0)
        assert breaker.allow(32.0)

    def test_probe_failure_reopens_for_another_cooldown(self) -> None:
        """A failed probe reopens the circuit for a full cooldown from the failure."""
        breaker = opened()
        assert breaker.allow(30.0)
        breaker.record_failure(32.0)
        assert breaker.state(32.0) is BreakerState.OPEN
        assert not breaker.allow(61.9)
        assert breaker.state(62.0) is BreakerState.HALF_OPEN
        assert breaker.statistics(62.0).opened == 2

    def test_lost_probe_expires_after_a_cooldown(self) -> None:
        """A probe that never reports frees its place after one cooldown."""
        breaker = opened()
        assert breaker.allow(30.0)
        assert not breaker.allow(59.0)
        assert breaker.allow(60.0)

    def test_several_probes_when_configured(self) -> None:
        """``half_open_max=2`` admits two probes."""
        breaker = opened(half_open_max=2)
        assert [breaker.allow(30.0) for _ in range(3)] == [True, True, False]

    def test_statistics(self) -> None:
        """Statistics count openings, rejections and probes."""
        breaker = opened()
        breaker.allow(1.0)
        breaker.allow(30.0)
        breaker.allow(30.0)
        stats = breaker.statistics(30.0)
        assert (stats.state, stats.opened, stats.rejected, stats.probes, stats.retry_at) == (
            BreakerState.HALF_OPEN, 1, 2, 1, None,
        )


class TestValidation:
    def test_rejects_bad_parameters(self) -> None:
        """A zero threshold or window is a configuration error."""
        with pytest.raises(ValueError):
            CircuitBreaker(failure_threshold=0, window=1.0, cooldown=1.0)
        with pytest.raises(ValueError):
            CircuitBreaker(failure_threshold=1, window=0.0, cooldown=1.0)


class TestFailureRate:
    def test_a_steady_share_of_errors_below_the_rate_keeps_it_closed(self) -> None:
        breaker = CircuitBreaker(5, window=10.0, cooldown=30.0, failure_rate=0.5)
        now = 0.0
        for i in range(300):  # 30% failures, 30 calls/s
            now = i / 30
            if i % 10 < 3:
                breaker.record_failure(now)
            else:
                breaker.record_success(now)
        assert breaker.state(now) is BreakerState.CLOSED

    def test_failures_at_the_rate_open_it_once_enough_are_seen(self) -> None:
        breaker = CircuitBreaker(5, window=10.0, cooldown=30.0, failure_rate=0.5)
        for i in range(4):
            breaker.record_success(float(i))
        for i in range(4):
            breaker.record_failure(4.0 + i)
        assert breaker.state(8.0) is BreakerState.CLOSED  # 4 failures: under the minimum
        breaker.record_failure(8.0)
        assert breaker.state(8.0) is BreakerState.OPEN  # 5 of 9 >= 50%

    def test_old_successes_leave_the_window(self) -> None:
        breaker = CircuitBreaker(2, window=10.0, cooldown=30.0, failure_rate=0.5)
        for i in range(10):
            breaker.record_success(float(i))
        breaker.record_failure(30.0)
        breaker.record_failure(30.5)
        assert breaker.state(30.5) is BreakerState.OPEN

    def test_rate_must_be_a_share(self) -> None:
        with pytest.raises(ValueError, match="failure_rate"):
            CircuitBreaker(1, window=1.0, cooldown=1.0, failure_rate=1.5)


def test_closed_flag_follows_the_state() -> None:
    breaker = CircuitBreaker(1, window=10.0, cooldown=5.0)
    assert breaker.closed
    breaker.record_failure(0.0)
    assert not breaker.closed and breaker.state(1.0) is BreakerState.OPEN
    assert not breaker.closed and breaker.state(6.0) is BreakerState.HALF_OPEN  # still not closed
    assert breaker.allow(6.0)
    breaker.record_success(6.5)
    assert breaker.closed and breaker.state(7.0) is BreakerState.CLOSED


def test_calls_still_in_flight_count_against_the_rate() -> None:
    # a burst of 30: the 9 fast failures come back before any of the 21 slow successes
    breaker = CircuitBreaker(5, window=10.0, cooldown=30.0, failure_rate=0.5)
    for i in range(9):
        breaker.record_failure(0.001 * i, pending=29 - i)
    assert breaker.closed
    dead = CircuitBreaker(5, window=10.0, cooldown=30.0, failure_rate=0.5)
    for i in range(6):
        dead.record_failure(0.001 * i, pending=6 - i - 1)
    assert not dead.closed  # 5 failures of 5 calls, nothing pending
