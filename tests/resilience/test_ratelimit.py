"""Token buckets and the per-provider rate limiter, on exact times."""

from __future__ import annotations

import asyncio
import math

import pytest

from agentfleet._types import LoopClock
from agentfleet.resilience import Grant, RateLimiter, TokenBucket, parse_duration
from agentfleet.testing import run_virtual


def granted(decision: Grant | float) -> Grant:
    assert isinstance(decision, Grant), f"expected a grant, got a wait of {decision}"
    return decision


class TestTokenBucket:
    def test_starts_full_and_grants_up_to_burst(self) -> None:
        """A new bucket grants its whole burst at once, then says how long to wait."""
        bucket = TokenBucket(rate_per_s=2.0, burst=4.0)
        assert bucket.try_take(4, now=0.0) == 0.0
        assert bucket.try_take(1, now=0.0) == 0.5

    def test_refusal_takes_nothing(self) -> None:
        """A refused take leaves the level untouched."""
        bucket = TokenBucket(rate_per_s=1.0, burst=2.0)
        bucket.try_take(2, now=0.0)
        assert bucket.try_take(2, now=1.0) == 1.0
        assert bucket.level(1.0) == 1.0

    def test_refill_after_long_idle_never_exceeds_burst(self) -> None:
        """After an hour idle the bucket holds exactly its burst, not an hour's refill."""
        bucket = TokenBucket(rate_per_s=10.0, burst=5.0)
        bucket.try_take(5, now=0.0)
        assert bucket.level(3600.0) == 5.0
        assert bucket.try_take(5, now=3600.0) == 0.0
        assert bucket.try_take(1, now=3600.0) == 0.1

    def test_more_than_burst_waits_for_a_full_bucket_then_owes(self) -> None:
        """A take larger than the burst is granted once full and leaves a debt."""
        bucket = TokenBucket(rate_per_s=1.0, burst=4.0)
        bucket.try_take(2, now=0.0)
        assert bucket.try_take(10, now=0.0) == 2.0
        assert bucket.try_take(10, now=2.0) == 0.0
        assert bucket.level(2.0) == -6.0
        assert bucket.wait_time(1, now=2.0) == 7.0

    def test_time_going_backwards_adds_nothing(self) -> None:
        """An earlier ``now`` than the last one counts as no time passing."""
        bucket = TokenBucket(rate_per_s=1.0, burst=2.0)
        bucket.try_take(2, now=10.0)
        assert bucket.level(5.0) == 0.0
        assert bucket.level(11.0) == 1.0

    def test_rejects_non_positive_parameters(self) -> None:
        """Zero or negative rate and burst are configuration errors."""
        with pytest.raises(ValueError):
            TokenBucket(0.0, 1.0)
        with pytest.raises(ValueError):
            TokenBucket(1.0, -1.0)


class TestParseDuration:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.5", 0.5), ("7.66s", 7.66)],
    )
    def test_go_durations(self, text: str, seconds: float) -> None:
        """OpenAI's Go-style durations and bare numbers parse to seconds."""
        assert parse_duration(text) == pytest.approx(seconds)

    @pytest.mark.parametrize("text", ["", "soon", "1x", "s1", "-1s", "1s garbage"])
    def test_malformed_is_none(self, text: str) -> None:
        """Anything else is None, so a bad header is ignored."""
        assert parse_duration(text) is None


class TestRateLimiterRequests:
    def test_rpm_spaces_requests_after_the_burst(self) -> None:
        """With rpm=60 and burst 2, the third request waits one second."""
        limiter = RateLimiter(rpm=60, burst_requests=2)
        granted(limiter.try_acquire(0, now=0.0))
        granted(limiter.try_acquire(0, now=0.0))
        assert limiter.try_acquire(0, now=0.0) == 1.0
        assert limiter.try_acquire(0, now=0.25) == 0.75
        granted(limiter.try_acquire(0, now=1.0))

    def test_refused_request_takes_no_tokens(self) -> None:
        """When the request bucket refuses, the token bucket is not charged."""
        limiter = RateLimiter(rpm=60, tpm=6000, burst_requests=1)
        granted(limiter.try_acquire(100, now=0.0))
        assert limiter.try_acquire(100, now=0.0) == 1.0
        assert limiter.statistics(0.0).tokens_available == 5900.0

    def test_no_limits_always_grants(self) -> None:
        """A limiter with every limit off grants immediately."""
        limiter = RateLimiter()
        for _ in range(1000):
            granted(limiter.try_acquire(10**6, now=0.0))
        assert limiter.statistics(0.0).grants == 1000


class TestRateLimiterTokens:
    def test_tokens_estimate_is_charged_up_front(self) -> None:
        """The estimate comes out of the tokens-per-minute bucket at grant time."""
        limiter = RateLimiter(tpm=6000)  # 100 tokens per second, burst 6000
        granted(limiter.try_acquire(5000, now=0.0))
        assert limiter.try_acquire(2000, now=0.0) == 10.0

    def test_refund_when_actual_is_lower(self) -> None:
        """Releasing with fewer tokens than estimated gives the difference back."""
        limiter = RateLimiter(tpm=6000)
        grant = granted(limiter.try_acquire(5000, now=0.0))
        limiter.release(grant, actual_tokens=1000, now=0.0)
        assert limiter.statistics(0.0).tokens_available == 5000.0
        assert limiter.statistics(0.0).refunded == 4000
        granted(limiter.try_acquire(5000, now=0.0))

    def test_debt_delays_the_next_grant(self) -> None:
        """Using more tokens than estimated leaves a debt that the next grant waits out."""
        limiter = RateLimiter(tpm=6000)
        grant = granted(limiter.try_acquire(6000, now=0.0))
        limiter.release(grant, actual_tokens=7000, now=0.0)
        stats = limiter.statistics(0.0)
        assert stats.tokens_available == -1000.0
        assert stats.owed == 1000
        assert limiter.try_acquire(500, now=0.0) == 15.0  # (1000 debt + 500) / 100 per s
        granted(limiter.try_acquire(500, now=15.0))

    def test_release_without_actual_keeps_the_estimate(self) -> None:
        """``actual_tokens=None`` frees the slot but settles nothing."""
        limiter = RateLimiter(tpm=6000, max_concurrency=1)
        grant = granted(limiter.try_acquire(600, now=0.0))
        limiter.release(grant, actual_tokens=None, now=0.0)
        stats = limiter.statistics(0.0)
        assert (stats.tokens_available, stats.inflight, stats.refunded, stats.owed) == (5400.0, 0, 0, 0)

    def test_release_twice_is_an_error(self) -> None:
        """A grant can be released once."""
        limiter = RateLimiter()
        grant = granted(limiter.try_acquire(1, now=0.0))
        limiter.release(grant, actual_tokens=1, now=0.0)
        with pytest.raises(ValueError, match="not outstanding"):
            limiter.release(grant, actual_tokens=1, now=0.0)


class TestRateLimiterConcurrency:
    def test_slot_held_until_release(self) -> None:
        """A concurrency slot is held until the response (release), not freed at send."""
        limiter = RateLimiter(max_concurrency=2)
        first = granted(limiter.try_acquire(0, now=0.0))
        granted(limiter.try_acquire(0, now=0.0))
        assert limiter.try_acquire(0, now=100.0) == math.inf
        limiter.release(first, actual_tokens=0, now=100.0)
        granted(limiter.try_acquire(0, now=100.0))
        assert limiter.statistics(100.0).inflight == 2

    def test_acquire_waits_for_a_release(self) -> None:
        """``acquire`` blocked on concurrency resumes exactly when a slot is released."""
        limiter = RateLimiter(max_concurrency=1)
        clock = LoopClock()

        async def main() -> tuple[float, float]:
            first = await limiter.acquire(0, clock)

            async def finish() -> None:
                await asyncio.sleep(3.0)
                limiter.release(first, actual_tokens=0, now=clock.now())

            task = asyncio.create_task(finish())
            await limiter.acquire(0, clock)
            await task
            return clock.now(), limiter.statistics(clock.now()).waited_s

        assert run_virtual(main()) == (3.0, 3.0)

    def test_acquire_sleeps_the_bucket_wait_and_counts_it(self) -> None:
        """``acquire`` sleeps exactly the bucket's wait and records it in statistics."""
        limiter = RateLimiter(rpm=60, burst_requests=1)
        clock = LoopClock()

        async def main() -> list[float]:
            times = []
            for _ in range(3):
                grant = await limiter.acquire(0, clock)
                times.append(grant.granted_at)
            return times

        assert run_virtual(main()) == [0.0, 1.0, 2.0]
        stats = limiter.statistics(2.0)
        assert (stats.grants, stats.waits, stats.waited_s) == (3, 2, 2.0)


class TestObserveHeaders:
    def test_openai_remaining_lowers_the_buckets(self) -> None:
        """``x-ratelimit-remaining-*`` lowers our buckets to what the server says is left."""
        limiter = RateLimiter(rpm=60, tpm=6000)
        limiter.observe_headers(
            {"X-RateLimit-Remaining-Requests": "3", "x-ratelimit-remaining-tokens": "250",
             "x-ratelimit-reset-requests": "57s", "x-ratelimit-reset-tokens": "57s"},
            now=0.0,
        )
        stats = limiter.statistics(0.0)
        assert (stats.requests_available, stats.tokens_available, stats.header_corrections) == (3.0, 250.0, 2)
        assert limiter.try_acquire(300, now=0.0) == 0.5

    def test_remaining_never_raises_a_bucket(self) -> None:
        """A stale response reporting more than we have changes nothing."""
        limiter = RateLimiter(rpm=60, burst_requests=2)
        granted(limiter.try_acquire(0, now=0.0))
        limiter.observe_headers({"x-ratelimit-remaining-requests": "59"}, now=0.0)
        stats = limiter.statistics(0.0)
        assert (stats.requests_available, stats.header_corrections) == (1.0, 0)

    def test_unconfigured_limit_learns_a_window_from_headers(self) -> None:
        """Without an rpm, remaining 0 with a reset blocks requests until the reset."""
        limiter = RateLimiter()
        limiter.observe_headers({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1.5s"}, now=10.0)
        assert limiter.try_acquire(0, now=10.0) == 1.5
        granted(limiter.try_acquire(0, now=11.5))

    def test_unconfigured_window_counts_down_with_grants(self) -> None:
        """Remaining tokens reported by the server are spent by later grants until the reset."""
        limiter = RateLimiter()
        limiter.observe_headers({"x-ratelimit-remaining-tokens": "1000", "x-ratelimit-reset-tokens": "6m0s"}, now=0.0)
        granted(limiter.try_acquire(800, now=0.0))
        assert limiter.try_acquire(800, now=60.0) == 300.0
        granted(limiter.try_acquire(800, now=360.0))

    def test_anthropic_reset_is_an_rfc3339_time(self) -> None:
        """Anthropic's reset time is turned into a delay with the wall clock given."""
        limiter = RateLimiter()
        epoch = 1_700_000_000.0  # 2023-11-14T22:13:20Z
        limiter.observe_headers(
            {
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": "2023-11-14T22:13:50Z",
            },
            now=5.0,
            now_epoch=epoch,
        )
        assert limiter.try_acquire(0, now=5.0) == 30.0
        granted(limiter.try_acquire(0, now=35.0))

    def test_anthropic_reset_falls_back_to_the_date_header(self) -> None:
        """Without ``now_epoch`` the response's ``Date`` header dates the reset."""
        limiter = RateLimiter()
        limiter.observe_headers(
            {"anthropic-ratelimit-tokens-remaining": "100", "anthropic-ratelimit-tokens-reset": "2023-11-14T22:14:20Z",
             "Date": "Tue, 14 Nov 2023 22:13:20 GMT"},
            now=0.0,
        )
        assert limiter.try_acquire(200, now=0.0) == 60.0

    def test_anthropic_remaining_lowers_a_configured_bucket(self) -> None:
        """Anthropic's remaining count lowers a configured bucket like OpenAI's does."""
        limiter = RateLimiter(rpm=60)
        limiter.observe_headers({"anthropic-ratelimit-requests-remaining": "0"}, now=0.0)
        assert limiter.try_acquire(0, now=0.0) == 1.0

    def test_malformed_headers_are_ignored(self) -> None:
        """Garbage values change nothing."""
        limiter = RateLimiter(rpm=60)
        limiter.observe_headers(
            {"x-ratelimit-remaining-requests": "lots", "anthropic-ratelimit-requests-reset": "tomorrow"}, now=0.0
        )
        assert limiter.statistics(0.0).requests_available == 60.0
