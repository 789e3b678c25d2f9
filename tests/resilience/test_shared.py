"""SharedRateLimiter on the real Redis: limits shared exactly by separate clients and processes.

Each test runs on a real asyncio loop (the waits come from Redis' clock) with limiters on their
own clients, as separate processes would have, under a fresh namespace deleted afterwards.
Rates are chosen so that every wait is short; the whole file takes well under 3 s.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
import textwrap
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import redis.asyncio as aredis

from agentfleet._types import LoopClock
from agentfleet.errors import BusError
from agentfleet.resilience import Grant, Limiter, RateLimiter, SharedRateLimiter
from agentfleet.testing import run_virtual
from tests.redis_kit import REDIS_URL, fresh_namespace

T = TypeVar("T")


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix under a fresh namespace on the test Redis (skips when Redis does not answer)."""
    for namespace in fresh_namespace("aftest-rl"):
        yield f"{namespace}:"


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def granted(decision: Grant | float) -> Grant:
    assert isinstance(decision, Grant), f"expected a grant, got a wait of {decision}"
    return decision


def pair(prefix: str, **limits: Any) -> tuple[SharedRateLimiter, SharedRateLimiter]:
    """Two limiters on the same key, each with its own Redis client (like two processes)."""
    return (SharedRateLimiter(REDIS_URL, "acct", prefix=prefix, **limits),
            SharedRateLimiter(REDIS_URL, "acct", prefix=prefix, **limits))


async def close(*limiters: SharedRateLimiter) -> None:
    for limiter in limiters:
        await limiter.aclose()


class TestProtocol:
    def test_both_limiters_are_limiters(self) -> None:
        """The in-process and the shared limiter satisfy the ``Limiter`` protocol."""
        assert isinstance(RateLimiter(rpm=60), Limiter)
        assert isinstance(SharedRateLimiter(REDIS_URL, "k", rpm=60), Limiter)

    def test_rate_limiter_settle_is_release_at_clock_now(self) -> None:
        """``RateLimiter.settle`` frees the slot and reconciles tokens at the clock's time."""

        async def main() -> None:
            clock = LoopClock()
            limiter = RateLimiter(tpm=6, max_concurrency=1, burst_tokens=1000)  # 0.1 token/s
            grant = await limiter.acquire(100, clock)
            waiter = asyncio.ensure_future(limiter.acquire(10, clock))
            await asyncio.sleep(5)
            assert not waiter.done()
            await limiter.settle(grant, 40, clock)
            second = await waiter
            assert second.granted_at == 5.0
            stats = limiter.statistics(clock.now())
            assert stats.refunded == 60
            assert stats.tokens_available == pytest.approx(1000 - 100 + 0.5 + 60 - 10)
            await limiter.settle(second, None, clock)
            assert limiter.statistics(clock.now()).inflight == 0

        run_virtual(main())

    def test_rejects_bad_parameters(self) -> None:
        """Non-positive limits, leases and an empty key are configuration errors."""
        for kwargs in ({"rpm": 0}, {"tpm": -1}, {"max_concurrency": 0}, {"lease": 0}, {"poll_interval": 0}):
            with pytest.raises(ValueError):
                SharedRateLimiter(REDIS_URL, "k", **kwargs)
        with pytest.raises(ValueError):
            SharedRateLimiter(REDIS_URL, "", rpm=1)


class TestSharedBuckets:
    def test_two_clients_share_the_burst_exactly(self, prefix: str) -> None:
        """rpm=60, burst 5: two limiters together get exactly 5 grants; the 6th waits ~1 s."""

        async def main() -> None:
            a, b = pair(prefix, rpm=60, burst_requests=5)
            try:
                decisions = await asyncio.gather(*(lim.try_acquire(0, 0.0) for lim in (a, b) * 6))
                grants = [d for d in decisions if isinstance(d, Grant)]
                waits = [d for d in decisions if not isinstance(d, Grant)]
                assert len(grants) == 5
                assert len(waits) == 7
                assert all(0.5 < w <= 1.0 for w in waits), waits
                assert a.statistics(0).grants + b.statistics(0).grants == 5
                state = await b.state()
                assert state.requests_available is not None and 0.0 <= state.requests_available < 0.5
                assert state.tokens_available is None and state.leases == 0
            finally:
                await close(a, b)

        run(main())

    def test_acquire_waits_for_the_shared_refill(self, prefix: str) -> None:
        """Once one client spent the burst, the other's ``acquire`` waits for the refill (10/s here)."""

        async def main() -> None:
            a, b = pair(prefix, rpm=600, burst_requests=2)
            clock = LoopClock()
            try:
                for _ in range(2):
                    granted(await a.try_acquire(0, clock.now()))
                start = clock.now()
                await b.acquire(0, clock)
                waited = clock.now() - start
                assert 0.08 < waited < 0.3, waited
                stats = b.statistics(clock.now())
                assert (stats.grants, stats.waits) == (1, 1)
                assert stats.waited_s == pytest.approx(waited, abs=0.05)
            finally:
                await close(a, b)

        run(main())

    def test_token_refund_and_debt_are_shared(self, prefix: str) -> None:
        """A settle below the estimate refunds the shared bucket, above it leaves a debt both wait for."""

        async def main() -> None:
            a, b = pair(prefix, tpm=600, burst_tokens=1000)  # 10 tokens/s
            clock = LoopClock()
            try:
                grant = granted(await a.try_acquire(400, clock.now()))
                await a.settle(grant, 100, clock)  # refund 300
                state = await b.state()
                assert state.tokens_available == pytest.approx(900, abs=5)
                grant = granted(await b.try_acquire(500, clock.now()))
                await b.settle(grant, 1500, clock)  # owe 1000: 900 - 500 - 1000 = -600
                state = await a.state()
                assert state.tokens_available == pytest.approx(-600, abs=5)
                wait = await a.try_acquire(100, clock.now())  # (100 + 600) / 10 per s
                assert isinstance(wait, float) and wait == pytest.approx(70.0, abs=0.2)
                assert (a.statistics(0).refunded, a.statistics(0).owed) == (300, 0)
                assert (b.statistics(0).refunded, b.statistics(0).owed) == (0, 1000)
                assert b.statistics(0).tokens_available == pytest.approx(-600, abs=5)
            finally:
                await close(a, b)

        run(main())

    def test_refund_never_fills_past_the_burst(self, prefix: str) -> None:
        """A refund on a nearly full bucket stops at the burst; None settles keep the estimate."""

        async def main() -> None:
            a, _ = pair(prefix, tpm=60, burst_tokens=1000)
            clock = LoopClock()
            try:
                grant = granted(await a.try_acquire(10, clock.now()))
                await a.settle(grant, 0, clock)
                assert (await a.state()).tokens_available == 1000
                grant = granted(await a.try_acquire(10, clock.now()))
                await a.settle(grant, None, clock)
                assert (await a.state()).tokens_available == pytest.approx(990, abs=0.5)
                with pytest.raises(ValueError, match="not outstanding"):
                    await a.settle(grant, None, clock)
            finally:
                await close(a, _)

        run(main())

    def test_idle_keys_expire_by_themselves(self, prefix: str) -> None:
        """The bucket hash lives until the bucket would be full again (plus a second), no longer."""

        async def main() -> None:
            a, _ = pair(prefix, rpm=600, burst_requests=10)
            client = aredis.Redis.from_url(REDIS_URL)
            try:
                granted(await a.try_acquire(0, 0.0))
                ttl = await client.pttl(a.keys[0])
                assert 1000 < ttl <= 1100  # 1 request at 10/s = 100 ms, plus the 1 s margin
            finally:
                await client.aclose()
                await close(a, _)

        run(main())


class TestSharedConcurrency:
    def test_slots_are_shared_and_freed_by_settle(self, prefix: str) -> None:
        """max_concurrency=2 across both clients; a settle in either frees a slot for the other."""

        async def main() -> None:
            a, b = pair(prefix, max_concurrency=2, poll_interval=0.01)
            clock = LoopClock()
            try:
                first = granted(await a.try_acquire(0, clock.now()))
                granted(await b.try_acquire(0, clock.now()))
                assert await a.try_acquire(0, clock.now()) == math.inf
                assert await b.try_acquire(0, clock.now()) == math.inf
                assert (await a.state()).leases == 2
                waiter = asyncio.ensure_future(b.acquire(0, clock))
                await asyncio.sleep(0.05)
                assert not waiter.done()
                start = clock.now()
                await a.settle(first, None, clock)  # another "process" frees it: b notices by polling
                await waiter
                assert clock.now() - start < 0.1
                assert (a.statistics(0).inflight, b.statistics(0).inflight) == (0, 2)
                assert b.statistics(0).waits == 1
            finally:
                await close(a, b)

        run(main())

    def test_a_local_settle_wakes_the_waiter_at_once(self, prefix: str) -> None:
        """In one process a settle wakes the queued acquire without waiting for the next poll."""

        async def main() -> None:
            a, _ = pair(prefix, max_concurrency=1, poll_interval=5.0)
            clock = LoopClock()
            try:
                grant = granted(await a.try_acquire(0, clock.now()))
                waiters = [asyncio.ensure_future(a.acquire(0, clock)) for _ in range(2)]
                await asyncio.sleep(0.05)
                start = clock.now()
                await a.settle(grant, None, clock)
                done, _pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                assert clock.now() - start < 0.5  # far sooner than the 5 s poll
                assert waiters[0] in done and not waiters[1].done()  # first come, first served
                await a.settle(waiters[0].result(), None, clock)
                await a.settle(await waiters[1], None, clock)
                assert (await a.state()).leases == 0
            finally:
                await close(a, _)

        run(main())

    def test_a_leaked_lease_expires(self, prefix: str) -> None:
        """A grant never settled (its process died) frees its slot after ``lease`` seconds."""

        async def main() -> None:
            a, b = pair(prefix, max_concurrency=1, lease=0.3, poll_interval=0.02)
            clock = LoopClock()
            try:
                leaked = granted(await a.try_acquire(0, clock.now()))
                start = clock.now()
                await b.acquire(0, clock)
                assert 0.2 < clock.now() - start < 0.45
                await a.settle(leaked, None, clock)  # too late: b's lease is untouched
                assert a.expired_leases == 1
                assert (await b.state()).leases == 1
            finally:
                await close(a, b)

        run(main())

    def test_a_cancelled_acquire_gives_its_grant_back(self, prefix: str) -> None:
        """Cancelling ``acquire`` while Redis decides returns the slot, the request and the tokens."""

        async def main() -> None:
            a, b = pair(prefix, rpm=60, tpm=600, max_concurrency=1, burst_requests=1)
            clock = LoopClock()
            try:
                task = asyncio.ensure_future(a.acquire(100, clock))
                await asyncio.sleep(0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
                await a.flush()
                state = await b.state()
                assert state.leases == 0
                assert state.requests_available == pytest.approx(1.0)
                assert state.tokens_available == pytest.approx(600)
                granted(await b.try_acquire(100, clock.now()))
            finally:
                await close(a, b)

        run(main())


class TestHeaders:
    def test_headers_lower_the_shared_bucket_and_never_raise_it(self, prefix: str) -> None:
        """A response's remaining counts lower the bucket every client sees; higher ones change nothing."""

        async def main() -> None:
            a, b = pair(prefix, rpm=6, tpm=600)  # 0.1 request/s, 10 tokens/s
            try:
                a.observe_headers({"X-RateLimit-Remaining-Requests": "3", "x-ratelimit-remaining-tokens": "99999"}, 0)
                await a.flush()
                state = await b.state()
                assert state.requests_available == pytest.approx(3, abs=0.05)
                assert state.tokens_available == 600
                b.observe_headers({"anthropic-ratelimit-tokens-remaining": "250",
                                   "anthropic-ratelimit-requests-remaining": "5"}, 0)
                await b.flush()
                state = await a.state()
                assert state.requests_available == pytest.approx(3, abs=0.05)
                assert state.tokens_available == pytest.approx(250, abs=5)
                assert (a.statistics(0).header_corrections, b.statistics(0).header_corrections) == (1, 1)
                assert a.statistics(0).requests_available == pytest.approx(3, abs=0.05)
            finally:
                await close(a, b)

        run(main())

    def test_headers_for_unconfigured_limits_are_ignored_and_aclose_finishes_updates(self, prefix: str) -> None:
        """No bucket, no update; a pending update is finished by ``aclose``."""

        async def main() -> None:
            a, b = pair(prefix, rpm=6)
            a.observe_headers({"x-ratelimit-remaining-tokens": "5"}, 0)
            assert not a._background
            a.observe_headers({"x-ratelimit-remaining-requests": "4"}, 0)
            await a.aclose()
            try:
                assert a.statistics(0).header_corrections == 1
                assert (await b.state()).requests_available == pytest.approx(4, abs=0.05)
            finally:
                await b.aclose()

        run(main())


class TestFailures:
    def test_unreachable_redis_raises_bus_error_naming_the_url(self) -> None:
        """No Redis: a ``BusError`` that names the URL, with the password hidden."""

        async def main() -> None:
            limiter = SharedRateLimiter("redis://:hunter2@127.0.0.1:1/0", "k", rpm=60, socket_timeout=0.5)
            try:
                with pytest.raises(BusError, match=r"127\.0\.0\.1:1") as info:
                    await limiter.acquire(1, LoopClock())
                assert "hunter2" not in str(info.value)
            finally:
                await limiter.aclose()

        run(main())

    def test_a_given_client_is_left_open(self, prefix: str) -> None:
        """``aclose`` closes only a client the limiter made."""

        async def main() -> None:
            client = aredis.Redis.from_url(REDIS_URL)
            limiter = SharedRateLimiter(client, "k", rpm=60, prefix=prefix)
            try:
                granted(await limiter.try_acquire(0, 0.0))
                await limiter.aclose()
                assert await client.ping()
            finally:
                await client.aclose()

        run(main())


_CHILD = textwrap.dedent(
    """
    import asyncio, json, os, sys
    from agentfleet.resilience import Grant, SharedRateLimiter

    async def main(url, prefix):
        requests = SharedRateLimiter(url, "acct", rpm=6, burst_requests=5, prefix=prefix)
        out = []
        for _ in range(3):
            d = await requests.try_acquire(0, 0.0)
            out.append("grant" if isinstance(d, Grant) else d)
        slots = SharedRateLimiter(url, "slots", max_concurrency=1, lease=0.3, prefix=prefix)
        out.append(isinstance(await slots.try_acquire(0, 0.0), Grant))
        print(json.dumps(out), flush=True)
        os._exit(0)  # die holding the slot, without settling or closing anything

    asyncio.run(main(*sys.argv[1:]))
    """
)


class TestSecondProcess:
    def test_a_second_process_shares_the_requests_and_its_dead_slot_comes_back(self, prefix: str) -> None:
        """This process takes 3 of the burst of 5 and another process gets exactly the other 2; the
        slot that process took before dying is free again once its lease ran out."""

        async def take(n: int) -> list[Grant | float]:
            limiter = SharedRateLimiter(REDIS_URL, "acct", rpm=6, burst_requests=5, prefix=prefix)  # 0.1/s
            try:
                return [await limiter.try_acquire(0, 0.0) for _ in range(n)]
            finally:
                await limiter.aclose()

        async def slot() -> tuple[Grant | float, float]:
            limiter = SharedRateLimiter(REDIS_URL, "slots", max_concurrency=1, lease=0.3, prefix=prefix,
                                        poll_interval=0.02)
            clock = LoopClock()
            try:
                first = await limiter.try_acquire(0, clock.now())
                start = clock.now()
                grant = await limiter.acquire(0, clock)
                await limiter.settle(grant, None, clock)
                return first, clock.now() - start
            finally:
                await limiter.aclose()

        assert all(isinstance(d, Grant) for d in run(take(3)))
        done = subprocess.run([sys.executable, "-c", _CHILD, REDIS_URL, prefix],
                              capture_output=True, text=True, timeout=30, check=False)
        assert done.returncode == 0, done.stderr
        got = json.loads(done.stdout)
        assert got[:2] == ["grant", "grant"]
        assert isinstance(got[2], float) and 5.0 < got[2] <= 10.0
        assert got[3] is True
        first, waited = run(slot())
        assert first == math.inf  # the dead process's lease still holds the slot
        assert 0.0 < waited < 0.35  # the rest of the 0.3 s lease, plus at most a poll or two
        (last,) = run(take(1))
        assert isinstance(last, float) and 5.0 < last <= 10.0
