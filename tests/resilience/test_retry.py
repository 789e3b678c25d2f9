"""Retry decisions: Retry-After parsing, the retryable table, the retry budget and backoff."""

from __future__ import annotations

import pytest

from agentfleet.errors import ProviderConfigError, ProviderError, ProviderTimeout, RateLimited
from agentfleet.resilience import RetryBudget, backoff, is_retryable, retry_after_seconds

EPOCH = 1_445_412_480.0  # Wed, 21 Oct 2015 07:28:00 GMT


class FixedRandom:
    """A ``random()`` that always answers the same value."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


class TestRetryAfterSeconds:
    def test_delta_seconds(self) -> None:
        """A number is seconds to wait."""
        assert retry_after_seconds("120", EPOCH) == 120.0
        assert retry_after_seconds(" 1.5 ", EPOCH) == 1.5

    def test_http_date_in_the_future(self) -> None:
        """An HTTP-date gives the seconds from ``now_epoch`` until then."""
        assert retry_after_seconds("Wed, 21 Oct 2015 07:28:30 GMT", EPOCH) == 30.0

    def test_http_date_in_the_past_is_zero(self) -> None:
        """An HTTP-date already past means retry now, not a negative wait."""
        assert retry_after_seconds("Wed, 21 Oct 2015 07:27:00 GMT", EPOCH) == 0.0

    @pytest.mark.parametrize("value", ["", "soon", "-5", "nan", "inf"])
    def test_malformed_is_none(self, value: str) -> None:
        """Malformed or negative values give None."""
        assert retry_after_seconds(value, EPOCH) is None


class TestIsRetryable:
    @pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504, 529])
    def test_retryable_statuses(self, status: int) -> None:
        """Timeouts, rate limits and transient server errors are retried."""
        assert is_retryable(status, None)

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 422, 501])
    def test_client_errors_are_not(self, status: int) -> None:
        """Requests that will fail the same way again are not retried."""
        assert not is_retryable(status, None)

    def test_status_wins_over_the_exception(self) -> None:
        """A 400 is final even if the exception says retryable."""
        assert not is_retryable(400, ProviderError("bad request"))

    @pytest.mark.parametrize(
        "exc",
        [TimeoutError(), ConnectionResetError(), BrokenPipeError(), ProviderTimeout("slow"), RateLimited("429")],
    )
    def test_transient_exceptions(self, exc: BaseException) -> None:
        """Timeouts, dropped connections and retryable provider errors are retried."""
        assert is_retryable(None, exc)

    @pytest.mark.parametrize("exc", [ValueError("x"), ProviderConfigError("no key"), KeyError("k")])
    def test_other_exceptions_are_not(self, exc: BaseException) -> None:
        """Programming and configuration errors are not retried."""
        assert not is_retryable(None, exc)

    def test_transport_errors_by_name(self) -> None:
        """httpx-style transport errors count, matched by class name without importing httpx."""

        class NetworkError(Exception):
            pass

        class ReadError(NetworkError):
            pass

        assert is_retryable(None, ReadError("reset"))

    def test_cause_is_consulted(self) -> None:
        """A wrapper raised from a timeout is retryable through its cause."""
        try:
            try:
                raise TimeoutError
            except TimeoutError as inner:
                raise RuntimeError("call failed") from inner
        except RuntimeError as outer:
            assert is_retryable(None, outer)

    def test_nothing_known_is_not_retryable(self) -> None:
        """No status and no exception means no retry."""
        assert not is_retryable(None, None)


class TestRetryBudget:
    def test_floor_allows_retries_without_traffic(self) -> None:
        """``min_per_s × window_s`` retries are always available."""
        budget = RetryBudget(ratio=0.2, min_per_s=0.2, window_s=10)
        assert [budget.try_retry(0.0) for _ in range(3)] == [True, True, False]

    def test_blocks_retries_after_a_burst_of_failures(self) -> None:
        """100 requests earn 20 retries (plus the floor); the rest of a failure burst is refused."""
        budget = RetryBudget(ratio=0.2, min_per_s=0.0, window_s=10)
        for _ in range(100):
            budget.record_request(0.0)
        results = [budget.try_retry(1.0) for _ in range(100)]
        assert results.count(True) == 20
        assert results[:20] == [True] * 20
        stats = budget.statistics(1.0)
        assert (stats.allowed, stats.denied, stats.balance) == (20, 80, 0.0)

    def test_window_expiry_restores_the_floor(self) -> None:
        """Retries and requests older than the window stop counting."""
        budget = RetryBudget(ratio=0.0, min_per_s=0.1, window_s=10)
        assert budget.try_retry(0.0)
        assert not budget.try_retry(9.9)
        assert budget.try_retry(10.0)

    def test_statistics_count_the_window(self) -> None:
        """Statistics report the window's requests and retries."""
        budget = RetryBudget(ratio=0.5, min_per_s=0.0, window_s=10)
        budget.record_request(0.0)
        budget.record_request(5.0)
        budget.record_request(5.0)
        assert budget.try_retry(5.0)
        stats = budget.statistics(10.0)
        assert (stats.requests, stats.retries, stats.balance) == (2, 1, 0.0)


class TestBackoff:
    def test_full_jitter_scales_the_ceiling(self) -> None:
        """The delay is the random draw times min(cap, base × 2**attempt)."""
        rng = FixedRandom(0.5)
        assert [backoff(a, 1.0, 10.0, rng) for a in range(6)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0]

    def test_jitter_can_be_zero(self) -> None:
        """Full jitter draws from zero up."""
        assert backoff(3, 1.0, 10.0, FixedRandom(0.0)) == 0.0

    def test_server_delay_is_a_floor(self) -> None:
        """A Retry-After longer than the jittered delay wins, even above the cap."""
        rng = FixedRandom(0.5)
        assert backoff(0, 1.0, 10.0, rng, server_delay=30.0) == 30.0
        assert backoff(4, 1.0, 10.0, rng, server_delay=1.0) == 5.0

    def test_huge_attempts_do_not_overflow(self) -> None:
        """A very large attempt number is capped, not an OverflowError."""
        assert backoff(5000, 1.0, 60.0, FixedRandom(0.5)) == 30.0

    def test_negative_attempt_is_an_error(self) -> None:
        """Attempts count from zero."""
        with pytest.raises(ValueError):
            backoff(-1, 1.0, 10.0, FixedRandom(0.5))
