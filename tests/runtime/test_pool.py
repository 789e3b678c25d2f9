"""AgentPool: pre-warming, dispatch, waiting, growth and shrinking, loss and replacement,
health checks, spawn failures, backpressure, cancellation, shared providers and closing.

Everything runs on virtual time (``run_virtual``): a 1 s cold start costs no wall time and
``now()`` is exact, so timings are asserted with ``==``. The one test with real worker
processes runs on a real loop.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agentfleet._types import ProviderRequest, ProviderResponse
from agentfleet.errors import PoolBackpressure, ProviderConfigError, ProviderError, SpawnFailed, WorkerLost
from agentfleet.providers import CommandProvider, SimProvider, build_provider
from agentfleet.runtime._pool import AgentPool, PoolMember, PoolStatistics, WouldBlock
from agentfleet.spec import AgentSpec
from agentfleet.testing import run_virtual

T = TypeVar("T")

HANG = 3600.0  # virtual seconds: a test that would hang fails at once instead
REQUEST = ProviderRequest(task_id="t-1", agent="a", model="fake", system="", prompt="hi")
WORKERS = Path(__file__).resolve().parent.parent / "fixtures" / "workers"
WORKER_SCRIPT = WORKERS / "protocol_worker.py"


# -- test doubles ----------------------------------------------------------------------------


class FakeProvider:
    """A member's provider: answers after ``latency``, warms in ``cold_start``, all on the loop."""

    name = "fake"

    def __init__(self, ident: int, *, latency: float = 0.1, cold_start: float = 0.0, warm_fails: bool = False,
                 close_delay: float = 0.0) -> None:
        self.ident = ident
        self.latency = latency
        self.cold_start = cold_start
        self.warm_fails = warm_fails
        self.warm_result = True  # what warm() returns (False: "did not come up", as CommandProvider does)
        self.warm_error: Exception | None = None  # warm() raises it after the cold start
        self.close_delay = close_delay
        self.is_healthy: bool | Exception = True  # an exception: healthy() raises it
        self.probe_delay = 0.0
        self.lose_calls = 0  # the next calls that raise WorkerLost
        self.error: Exception | None = None  # complete() raises it
        self.last_error: str | None = None
        self.warmed = 0
        self.probes = 0
        self.calls = 0
        self.closed = 0

    async def warm(self) -> bool:
        self.warmed += 1
        await asyncio.sleep(self.cold_start)
        if self.warm_fails:
            raise RuntimeError(f"worker {self.ident} would not start")
        if self.warm_error is not None:
            raise self.warm_error
        return self.warm_result

    async def healthy(self) -> bool:
        self.probes += 1
        if self.probe_delay:
            await asyncio.sleep(self.probe_delay)
        if isinstance(self.is_healthy, Exception):
            raise self.is_healthy
        return self.is_healthy

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.calls += 1
        if self.lose_calls:
            self.lose_calls -= 1
            raise WorkerLost(f"worker {self.ident} died", provider=self.name)
        if self.error is not None:
            raise self.error
        await asyncio.sleep(self.latency)
        return ProviderResponse(text=f"{request.prompt} from {self.ident}", provider=self.name,
                                model=request.model, latency=self.latency)

    async def aclose(self) -> None:
        if self.close_delay:
            await asyncio.sleep(self.close_delay)
        self.closed += 1


class Factory:
    """Builds a FakeProvider per call and keeps them; ``fails(n)`` makes the n-th one fail to warm."""

    def __init__(self, *, cold_start: float = 0.0, latency: float = 0.1, fails: Callable[[int], bool] | None = None,
                 config_error_from: int | None = None, lose_calls: int = 0, close_delay: float = 0.0) -> None:
        self.cold_start = cold_start
        self.latency = latency
        self.fails = fails or (lambda n: False)
        self.config_error_from = config_error_from
        self.lose_calls = lose_calls
        self.close_delay = close_delay
        self.calls = 0
        self.made: list[FakeProvider] = []

    def __call__(self) -> FakeProvider:
        self.calls += 1
        if self.config_error_from is not None and self.calls >= self.config_error_from:
            raise ProviderConfigError("agent 'a': unknown option 'timout'", provider="fake")
        n = len(self.made) + 1
        provider = FakeProvider(n, latency=self.latency, cold_start=self.cold_start, warm_fails=self.fails(n),
                                close_delay=self.close_delay)
        provider.lose_calls = self.lose_calls
        self.made.append(provider)
        return provider


class ManualClock:
    """A clock that only moves when told: for the pool's synchronous methods, with no loop at all."""

    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        raise AssertionError("a synchronous code path must not sleep")


def now() -> float:
    return asyncio.get_running_loop().time()


def with_pool(body: Callable[[AgentPool], Awaitable[T]], factory: Any = None, **options: Any) -> T:
    """Run ``body(pool)`` on virtual time (from t=0) and close the pool afterwards."""
    async def main() -> T:
        pool = AgentPool("a", factory if factory is not None else Factory(), **options)
        try:
            async with asyncio.timeout(HANG):
                return await body(pool)
        finally:
            await pool.aclose()
    return run_virtual(main())


def provider_of(member: PoolMember) -> FakeProvider:
    assert isinstance(member.provider, FakeProvider)
    return member.provider


async def hold(pool: AgentPool, seconds: float, log: list[tuple[str, float, int]], name: str) -> None:
    """A caller: take a member, note who and when, keep it ``seconds``, give it back."""
    member = await pool.acquire()
    log.append((name, now(), member.id))
    await asyncio.sleep(seconds)
    pool.release(member)


# -- tests -----------------------------------------------------------------------------------


class TestStart:
    def test_prewarms_size_members_concurrently(self) -> None:
        """start() warms ``size`` members at once: four 1 s cold starts are all ready at t=1.0."""
        factory = Factory(cold_start=1.0)

        async def body(pool: AgentPool) -> tuple[float, PoolStatistics]:
            await pool.start()
            return now(), pool.statistics()
        t, stats = with_pool(body, factory, size=4)
        assert t == 1.0
        assert (stats.members, stats.spawned, stats.spawning, stats.waiting) == (4, 4, 0, 0)
        assert stats.spawn_seconds == 4.0
        assert [p.warmed for p in factory.made] == [1, 1, 1, 1]

    def test_async_factory_is_awaited(self) -> None:
        """A factory returning an awaitable is awaited once per member."""
        factory = Factory()

        async def make() -> FakeProvider:
            await asyncio.sleep(0.5)
            return factory()

        async def body(pool: AgentPool) -> tuple[float, int]:
            await pool.start()
            return now(), len(pool.members)
        assert with_pool(body, make, size=2) == (0.5, 2)
        assert factory.calls == 2

    def test_returns_although_a_member_never_starts(self) -> None:
        """start() returns after ``max_spawn_failures`` failures in a row; the rest of the pool serves."""
        factory = Factory(fails=lambda n: n > 1)

        async def body(pool: AgentPool) -> tuple[float, PoolStatistics]:
            await pool.start()
            return now(), pool.statistics()
        t, stats = with_pool(body, factory, size=2)
        assert t == pytest.approx(0.15)  # failures at 0, 0.05 and 0.15 (backoff 0.05, 0.1)
        assert (stats.members, stats.spawn_failures) == (1, 3)


class TestAcquireNowait:
    def test_returns_a_free_member_without_waiting(self) -> None:
        """On a warm pool acquire_nowait() hands out a member synchronously and counts the activation."""
        async def body(pool: AgentPool) -> None:
            await pool.start()
            t0 = now()
            member = pool.acquire_nowait()
            assert member in pool.members and member.outstanding == 1
            stats = pool.statistics()
            assert (stats.activations, stats.busy, stats.outstanding, stats.cold_waits) == (1, 1, 1, 0)
            assert now() == t0
        with_pool(body, size=2)

    def test_raises_would_block_when_none_is_free(self) -> None:
        """With every member busy acquire_nowait() raises WouldBlock and starts nothing."""
        async def body(pool: AgentPool) -> None:
            await pool.start()
            pool.acquire_nowait()
            with pytest.raises(WouldBlock):
                pool.acquire_nowait()
            stats = pool.statistics()
            assert (stats.spawning, stats.waiting, stats.activations) == (0, 0, 1)
        with_pool(body, size=1, max=4)

    def test_most_recently_released_member_goes_first(self) -> None:
        """Free members are a stack: the member released last (the hottest) is handed out next."""
        async def body(pool: AgentPool) -> None:
            await pool.start()
            first, second = pool.acquire_nowait(), pool.acquire_nowait()
            pool.release(second)
            pool.release(first)
            assert pool.acquire_nowait() is first
        with_pool(body, size=3)

    def test_closed_pool_raises_spawn_failed(self) -> None:
        """acquire_nowait() on a closed pool raises SpawnFailed naming the pool."""
        async def body(pool: AgentPool) -> None:
            await pool.start()
            await pool.aclose()
            with pytest.raises(SpawnFailed, match="pool 'a': the pool is closed"):
                pool.acquire_nowait()
            with pytest.raises(SpawnFailed):
                await pool.acquire()
        with_pool(body)


class TestWaiters:
    def test_served_first_in_first_out(self) -> None:
        """Callers waiting for a member get it in arrival order, one release at a time."""
        async def body(pool: AgentPool) -> list[tuple[str, float, int]]:
            await pool.start()
            held = pool.acquire_nowait()
            log: list[tuple[str, float, int]] = []
            tasks = [asyncio.create_task(hold(pool, 1.0, log, f"w{i}")) for i in range(3)]
            await asyncio.sleep(0)
            assert pool.statistics().waiting == 3
            pool.release(held)
            await asyncio.gather(*tasks)
            return log
        log = with_pool(body, size=1, max=1)
        assert [(name, t) for name, t, _ in log] == [("w0", 0.0), ("w1", 1.0), ("w2", 2.0)]

    def test_released_member_goes_to_the_waiter_not_the_free_list(self) -> None:
        """A release with a caller waiting hands the member straight over."""
        async def body(pool: AgentPool) -> None:
            await pool.start()
            held = pool.acquire_nowait()
            waiter = asyncio.create_task(pool.acquire())
            await asyncio.sleep(0)
            pool.release(held)
            with pytest.raises(WouldBlock):
                pool.acquire_nowait()
            assert await waiter is held and held.outstanding == 1
        with_pool(body, size=1, max=1)


class TestPerMember:
    def test_least_outstanding_work_first(self) -> None:
        """With per_member > 1 each call goes to the member with the fewest calls in flight."""
        async def body(pool: AgentPool) -> None:
            await pool.start()
            picks = [pool.acquire_nowait() for _ in range(4)]
            one, two = pool.members
            assert [m.id for m in picks] == [one.id, two.id, one.id, two.id]
            pool.release(picks[0])
            pool.release(picks[2])
            assert (one.outstanding, two.outstanding) == (0, 2)
            assert pool.acquire_nowait() is one
        with_pool(body, size=2, max=2, per_member=3)

    def test_full_members_would_block(self) -> None:
        """A member serves at most ``per_member`` calls at once."""
        async def body(pool: AgentPool) -> None:
            await pool.start()
            member = pool.acquire_nowait()
            assert pool.acquire_nowait() is member
            with pytest.raises(WouldBlock):
                pool.acquire_nowait()
        with_pool(body, size=1, max=1, per_member=2)

    def test_one_new_member_covers_per_member_waiters(self) -> None:
        """Growth starts ceil(waiters / per_member) members, and a new member serves that many."""
        async def body(pool: AgentPool) -> tuple[list[tuple[str, float, int]], PoolStatistics]:
            await pool.start()
            pool.acquire_nowait()
            pool.acquire_nowait()
            log: list[tuple[str, float, int]] = []
            tasks = [asyncio.create_task(hold(pool, 1.0, log, f"w{i}")) for i in range(2)]
            await asyncio.sleep(0)
            assert pool.statistics().spawning == 1
            await asyncio.gather(*tasks)
            return log, pool.statistics()
        log, stats = with_pool(body, Factory(cold_start=1.0), size=1, max=3, per_member=2)
        assert [(t, mid) for _, t, mid in log] == [(2.0, 2), (2.0, 2)]
        assert (stats.spawned, stats.cold_waits) == (2, 2)


class TestAutoSizing:
    def test_grows_one_member_per_waiting_caller(self) -> None:
        """Each caller that has to wait starts one more member; all start in one concurrent batch."""
        async def body(pool: AgentPool) -> tuple[list[tuple[str, float, int]], PoolStatistics]:
            await pool.start()
            pool.acquire_nowait()
            log: list[tuple[str, float, int]] = []
            tasks = [asyncio.create_task(hold(pool, 1.0, log, f"w{i}")) for i in range(3)]
            await asyncio.sleep(0)
            assert pool.statistics().spawning == 3
            await asyncio.gather(*tasks)
            return log, pool.statistics()
        log, stats = with_pool(body, Factory(cold_start=1.0), size=1, max=10)
        assert [t for _, t, _ in log] == [2.0, 2.0, 2.0]  # started at t=1, ready together at t=2
        assert (stats.members, stats.spawned, stats.peak_members, stats.peak_waiting) == (4, 4, 4, 3)

    def test_never_beyond_max(self) -> None:
        """Growth stops at ``max``; the callers beyond it wait for a release."""
        async def body(pool: AgentPool) -> tuple[list[tuple[str, float, int]], PoolStatistics]:
            await pool.start()
            held = pool.acquire_nowait()
            log: list[tuple[str, float, int]] = []
            tasks = [asyncio.create_task(hold(pool, 1.0, log, f"w{i}")) for i in range(6)]
            await asyncio.sleep(0)
            assert pool.statistics().spawning == 2
            await asyncio.sleep(0.5)
            pool.release(held)
            await asyncio.gather(*tasks)
            return log, pool.statistics()
        log, stats = with_pool(body, Factory(cold_start=1.0), size=1, max=3)
        assert [t for _, t, _ in log] == [1.5, 2.0, 2.0, 2.5, 3.0, 3.0]
        assert (stats.members, stats.spawned, stats.peak_members, stats.peak_waiting) == (3, 3, 3, 6)

    def test_without_max_the_pool_is_unbounded(self) -> None:
        """With ``max=None`` every waiting caller gets a member of its own."""
        async def body(pool: AgentPool) -> int:
            log: list[tuple[str, float, int]] = []
            await asyncio.gather(*(hold(pool, 1.0, log, f"w{i}") for i in range(20)))
            return pool.statistics().peak_members
        assert with_pool(body, size=0) == 20


class TestIdleRetirement:
    @staticmethod
    async def grow_to_three(pool: AgentPool) -> list[PoolMember]:
        await pool.start()
        first = pool.acquire_nowait()
        more = await asyncio.gather(pool.acquire(), pool.acquire())
        members = [first, *more]
        for member in members:
            pool.release(member)
        assert len(pool.members) == 3
        return members

    def test_idle_surplus_is_retired_lazily_on_release(self) -> None:
        """Members above ``size`` idle for ``idle_timeout`` go at the next release, and are closed."""
        factory = Factory()

        async def body(pool: AgentPool) -> PoolStatistics:
            await self.grow_to_three(pool)
            await asyncio.sleep(10.0)
            assert len(pool.members) == 3  # nothing happens without a release
            pool.release(pool.acquire_nowait())
            await asyncio.sleep(0)
            assert sorted(p.closed for p in factory.made) == [0, 1, 1]
            return pool.statistics()
        stats = with_pool(body, factory, size=1, max=3, idle_timeout=10.0)
        assert (stats.members, stats.retired, stats.lost, stats.replaced) == (1, 2, 0, 0)

    def test_not_retired_before_idle_timeout(self) -> None:
        """A member idle for less than ``idle_timeout`` stays."""
        async def body(pool: AgentPool) -> int:
            await self.grow_to_three(pool)
            await asyncio.sleep(9.9)
            pool.release(pool.acquire_nowait())
            return len(pool.members)
        assert with_pool(body, size=1, max=3, idle_timeout=10.0) == 3

    def test_never_below_size(self) -> None:
        """Idle retirement stops at ``size``, however long every member has been idle."""
        async def body(pool: AgentPool) -> int:
            await self.grow_to_three(pool)
            await asyncio.sleep(100.0)
            pool.release(pool.acquire_nowait())
            await asyncio.sleep(100.0)
            pool.release(pool.acquire_nowait())
            return len(pool.members)
        assert with_pool(body, size=2, max=3, idle_timeout=10.0) == 2

    def test_retires_idle_surplus_with_per_member_above_one(self) -> None:
        """Idle retirement works for members serving several calls at once too."""
        async def body(pool: AgentPool) -> int:
            await pool.start()
            calls = [pool.acquire_nowait(), pool.acquire_nowait()]
            calls += await asyncio.gather(pool.acquire(), pool.acquire())
            assert len(pool.members) == 2
            for member in calls:
                pool.release(member)
            await asyncio.sleep(10.0)
            pool.release(pool.acquire_nowait())
            return len(pool.members)
        assert with_pool(body, size=1, max=2, per_member=2, idle_timeout=10.0) == 1


class TestLoss:
    def test_lost_member_is_retired_and_replaced_in_the_background(self) -> None:
        """release(lost=True) retires the member, closes its provider and starts a replacement."""
        factory = Factory(cold_start=1.0)

        async def body(pool: AgentPool) -> PoolStatistics:
            await pool.start()
            member = pool.acquire_nowait()
            pool.release(member, lost=True)
            assert member.retired and member not in pool.members
            assert pool.statistics().spawning == 1
            await asyncio.sleep(0)
            assert provider_of(member).closed == 1
            await asyncio.sleep(1.0)
            return pool.statistics()
        stats = with_pool(body, factory, size=2)
        assert (stats.members, stats.spawned, stats.lost, stats.replaced, stats.retired) == (2, 3, 1, 1, 1)

    def test_waiter_is_served_by_the_replacement(self) -> None:
        """A caller waiting when the only member is lost gets the replacement."""
        async def body(pool: AgentPool) -> tuple[float, int]:
            await pool.start()
            member = pool.acquire_nowait()
            waiter = asyncio.create_task(pool.acquire())
            await asyncio.sleep(0)
            pool.release(member, lost=True)
            fresh = await waiter
            return now(), fresh.id
        assert with_pool(body, Factory(cold_start=1.0), size=1, max=1) == (2.0, 2)

    def test_release_of_a_retired_member_is_ignored(self) -> None:
        """A call finishing on a member already retired changes nothing."""
        async def body(pool: AgentPool) -> None:
            await pool.start()
            member = pool.acquire_nowait()
            assert pool.acquire_nowait() is member
            pool.release(member, lost=True)
            before = pool.statistics()
            pool.release(member)
            pool.release(member, lost=True)
            after = pool.statistics()
            assert (after.lost, after.retired, after.members) == (before.lost, before.retired, before.members)
            assert member not in pool.members
        with_pool(body, size=1, per_member=2)


class TestComplete:
    def test_returns_the_response(self) -> None:
        """complete() runs the request on a member and releases it."""
        async def body(pool: AgentPool) -> tuple[str, float, PoolStatistics]:
            await pool.start()
            response = await pool.complete(REQUEST)
            return response.text, now(), pool.statistics()
        text, t, stats = with_pool(body)
        assert (text, t) == ("hi from 1", 0.1)
        assert (stats.activations, stats.outstanding, stats.busy) == (1, 0, 0)

    def test_retries_once_on_a_fresh_member_after_worker_lost(self) -> None:
        """A member that dies mid-call is retired and the request runs again on a fresh one."""
        factory = Factory(cold_start=1.0)

        async def body(pool: AgentPool) -> tuple[str, float, PoolStatistics]:
            await pool.start()
            factory.made[0].lose_calls = 1
            response = await pool.complete(REQUEST)
            return response.text, now(), pool.statistics()
        text, t, stats = with_pool(body, factory, size=1)
        assert (text, t) == ("hi from 2", 2.1)  # the replacement is ready at t=2
        assert (stats.lost, stats.replaced, stats.members) == (1, 1, 1)
        assert factory.made[0].closed == 1

    def test_raises_after_member_retries(self) -> None:
        """When every member dies, WorkerLost propagates after ``member_retries`` fresh attempts."""
        factory = Factory(lose_calls=1)

        async def body(pool: AgentPool) -> PoolStatistics:
            await pool.start()
            with pytest.raises(WorkerLost):
                await pool.complete(REQUEST, member_retries=2)
            return pool.statistics()
        stats = with_pool(body, factory, size=1)
        assert [p.calls for p in factory.made[:3]] == [1, 1, 1]
        assert stats.lost == 3

    def test_no_retry_with_zero_member_retries(self) -> None:
        """member_retries=0 raises the first WorkerLost."""
        factory = Factory(lose_calls=1)

        async def body(pool: AgentPool) -> None:
            await pool.start()
            with pytest.raises(WorkerLost):
                await pool.complete(REQUEST, member_retries=0)
        with_pool(body, factory, size=1)
        assert factory.made[0].calls == 1 and all(p.calls == 0 for p in factory.made[1:])

    def test_other_errors_keep_the_member(self) -> None:
        """A provider error that is not WorkerLost propagates and the member stays in the pool."""
        factory = Factory()

        async def body(pool: AgentPool) -> PoolStatistics:
            await pool.start()
            factory.made[0].error = ProviderError("overloaded", provider="fake")
            with pytest.raises(ProviderError, match="overloaded"):
                await pool.complete(REQUEST)
            return pool.statistics()
        stats = with_pool(body, factory, size=1)
        assert (stats.members, stats.lost, stats.outstanding, stats.retired) == (1, 0, 0, 0)


class TestHealth:
    def test_check_health_retires_and_replaces_unhealthy_idle_members(self) -> None:
        """check_health() returns how many failed, retires and closes them and starts replacements."""
        factory = Factory(cold_start=1.0)

        async def body(pool: AgentPool) -> PoolStatistics:
            await pool.start()
            factory.made[0].is_healthy = False
            assert await pool.check_health() == 1
            assert len(pool.members) == 1 and pool.statistics().spawning == 1
            await asyncio.sleep(1.5)
            assert [p.closed for p in factory.made] == [1, 0, 0]
            return pool.statistics()
        stats = with_pool(body, factory, size=2)
        assert (stats.members, stats.lost, stats.replaced, stats.retired) == (2, 1, 1, 1)

    def test_busy_members_are_not_probed(self) -> None:
        """A member with work in flight is left alone by the health check."""
        factory = Factory()

        async def body(pool: AgentPool) -> None:
            await pool.start()
            pool.acquire_nowait()
            factory.made[0].is_healthy = False
            probes = factory.made[0].probes
            assert await pool.check_health() == 0
            assert factory.made[0].probes == probes and len(pool.members) == 1
        with_pool(body, factory, size=1)

    def test_a_probe_that_raises_is_a_failure(self) -> None:
        """healthy() raising counts as unhealthy."""
        factory = Factory()

        async def body(pool: AgentPool) -> int:
            await pool.start()
            factory.made[0].is_healthy = OSError("broken pipe")
            return await pool.check_health()
        assert with_pool(body, factory, size=1) == 1

    def test_background_loop_replaces_unhealthy_members(self) -> None:
        """With ``health_interval`` the pool probes by itself and replaces a member that fails."""
        factory = Factory()

        async def body(pool: AgentPool) -> PoolStatistics:
            await pool.start()
            factory.made[0].is_healthy = False
            await asyncio.sleep(4.9)
            assert factory.made[0].closed == 0
            await asyncio.sleep(0.2)
            assert factory.made[0].closed == 1 and [m.id for m in pool.members] == [2]
            await asyncio.sleep(10.0)
            return pool.statistics()
        stats = with_pool(body, factory, size=1, health_interval=5.0)
        assert (stats.members, stats.lost, stats.replaced) == (1, 1, 1)
        assert factory.made[1].probes == 3  # its first check, then at t=10 and t=15

    def test_member_under_probe_is_not_handed_out(self) -> None:
        """While a member is probed no call starts on it; if the probe fails a fresh member serves."""
        factory = Factory()

        async def body(pool: AgentPool) -> str:
            await pool.start()
            first = factory.made[0]
            first.probe_delay, first.is_healthy = 1.0, False
            check = asyncio.create_task(pool.check_health())
            await asyncio.sleep(0)
            with pytest.raises(WouldBlock):
                pool.acquire_nowait()
            response = await pool.complete(REQUEST)
            assert await check == 1
            assert first.calls == 0 and first.closed == 1
            return response.text
        assert with_pool(body, factory, size=1, max=1) == "hi from 2"

    def test_caller_waiting_during_a_passing_probe_gets_the_member(self) -> None:
        """A caller that queued while the only member was probed is served when the probe passes."""
        factory = Factory()

        async def body(pool: AgentPool) -> tuple[float, int]:
            await pool.start()
            factory.made[0].probe_delay = 1.0
            check = asyncio.create_task(pool.check_health())
            await asyncio.sleep(0)
            member = await pool.acquire()
            assert await check == 0
            return now(), member.id
        assert with_pool(body, factory, size=1, max=1) == (1.0, 1)


class TestSpawnFailures:
    def test_failures_are_counted_and_retried_with_backoff(self) -> None:
        """A failed spawn is retried after 0.05 s, then 0.1 s...; statistics() has count and rate."""
        factory = Factory(fails=lambda n: n <= 2)

        async def body(pool: AgentPool) -> tuple[float, PoolStatistics]:
            await pool.start()
            assert [p.closed for p in factory.made] == [1, 1, 0]  # members that failed to start are closed
            return now(), pool.statistics()
        t, stats = with_pool(body, factory, size=1)
        assert t == pytest.approx(0.15)
        assert (stats.members, stats.spawned, stats.spawn_failures) == (1, 1, 2)
        assert stats.spawn_failure_rate == pytest.approx(2 / 3)

    def test_waiters_get_spawn_failed_when_no_member_can_start(self) -> None:
        """After ``max_spawn_failures`` failures in a row with no member alive, waiters get the reason."""
        factory = Factory(fails=lambda n: True)

        async def body(pool: AgentPool) -> tuple[float, str, PoolStatistics]:
            with pytest.raises(SpawnFailed) as caught:
                await pool.acquire()
            assert caught.value.agent == "a"
            return now(), str(caught.value), pool.statistics()
        t, message, stats = with_pool(body, factory, size=1)
        assert t == pytest.approx(0.15)
        assert message.startswith("pool 'a': no member could be started (3 attempts in a row)")
        assert message.endswith("last error: RuntimeError: worker 3 would not start")
        assert (stats.spawn_failures, stats.spawning, stats.waiting, stats.spawn_failure_rate) == (3, 0, 0, 1.0)

    def test_config_error_is_fatal_at_once(self) -> None:
        """A ProviderConfigError from the factory fails the waiter at once and stops spawning."""
        factory = Factory(config_error_from=1)

        async def body(pool: AgentPool) -> PoolStatistics:
            with pytest.raises(SpawnFailed, match="cannot start a member: fake: agent 'a': unknown option"):
                await pool.acquire()
            assert now() == 0.0
            with pytest.raises(SpawnFailed, match="unknown option"):
                await pool.acquire()  # no second attempt: the configuration will not change
            await asyncio.sleep(60.0)
            return pool.statistics()
        stats = with_pool(body, factory, size=1)
        assert factory.calls == 1
        assert (stats.spawn_failures, stats.spawning, stats.members) == (1, 0, 0)

    def test_config_error_from_warm_is_fatal_and_closes_the_provider(self) -> None:
        """A ProviderConfigError raised by warm() (a program that cannot run) is fatal too."""
        made: list[FakeProvider] = []

        def factory() -> FakeProvider:
            provider = FakeProvider(len(made) + 1)
            provider.warm_error = ProviderConfigError("command 'nope' not found", provider="command")
            made.append(provider)
            return provider

        async def body(pool: AgentPool) -> None:
            with pytest.raises(SpawnFailed, match="cannot start a member: command: command 'nope' not found"):
                await pool.acquire()
            await asyncio.sleep(60.0)
            assert [p.closed for p in made] == [1]
        with_pool(body, factory, size=1)

    def test_config_error_stops_growth_but_members_serve(self) -> None:
        """A fatal error while growing leaves the live members serving, and no retry loop."""
        factory = Factory(config_error_from=2)

        async def body(pool: AgentPool) -> tuple[float, int]:
            await pool.start()
            held = pool.acquire_nowait()
            waiter = asyncio.create_task(pool.acquire())
            await asyncio.sleep(1.0)
            pool.release(held)
            member = await waiter
            await asyncio.sleep(60.0)
            return now(), member.id
        assert with_pool(body, factory, size=1, max=3) == (61.0, 1)
        assert factory.calls == 2

    def test_losing_the_last_member_after_a_config_error_fails_waiters(self) -> None:
        """With no member left and none able to start, waiting callers get SpawnFailed, not a hang."""
        factory = Factory(config_error_from=2)

        async def body(pool: AgentPool) -> None:
            await pool.start()
            held = pool.acquire_nowait()
            waiter = asyncio.create_task(pool.acquire())
            await asyncio.sleep(0)
            pool.release(held, lost=True)
            with pytest.raises(SpawnFailed, match="unknown option"):
                await waiter
        with_pool(body, factory, size=1, max=3)

    def test_warm_returning_false_is_advisory(self) -> None:
        """warm() returning False (a best-effort HTTP warm-up) does not fail a member that is healthy."""
        made: list[FakeProvider] = []

        def factory() -> FakeProvider:
            provider = FakeProvider(len(made) + 1)
            provider.warm_result = False
            made.append(provider)
            return provider

        async def body(pool: AgentPool) -> PoolStatistics:
            await pool.start()
            return pool.statistics()
        stats = with_pool(body, factory, size=2)
        assert (stats.members, stats.spawn_failures) == (2, 0)

    def test_failed_first_health_check_gives_the_providers_reason(self) -> None:
        """A member that does not come up fails its first health check, with the provider's last_error."""
        made: list[FakeProvider] = []

        def factory() -> FakeProvider:
            provider = FakeProvider(len(made) + 1)
            provider.warm_result, provider.is_healthy, provider.last_error = False, False, "no pong within 5 s"
            made.append(provider)
            return provider

        async def body(pool: AgentPool) -> str:
            with pytest.raises(SpawnFailed) as caught:
                await pool.acquire()
            assert [p.closed for p in made] == [1, 1, 1]
            return str(caught.value)
        message = with_pool(body, factory, size=1)
        assert message.endswith("last error: member failed its first health check: no pong within 5 s")

    def test_failed_first_health_check_is_a_failed_spawn(self) -> None:
        """A member whose first health check fails is not added."""
        made: list[FakeProvider] = []

        def factory() -> FakeProvider:
            provider = FakeProvider(len(made) + 1)
            provider.is_healthy = len(made) > 0
            made.append(provider)
            return provider

        async def body(pool: AgentPool) -> tuple[FakeProvider, PoolStatistics]:
            member = await pool.acquire()
            assert made[0].closed == 1
            return provider_of(member), pool.statistics()
        provider, stats = with_pool(body, factory, size=1)
        assert provider is made[1]
        assert (stats.spawn_failures, stats.spawned, stats.members) == (1, 1, 1)


class TestBackpressure:
    def test_error_policy_rejects_past_the_queue_limit(self) -> None:
        """With ``queue=2, on_full="error"`` the third waiter gets PoolBackpressure at once."""
        async def body(pool: AgentPool) -> tuple[str, PoolStatistics]:
            await pool.start()
            held = pool.acquire_nowait()
            waiters = [asyncio.create_task(pool.acquire()) for _ in range(2)]
            await asyncio.sleep(0)
            with pytest.raises(PoolBackpressure) as caught:
                await pool.acquire()
            assert caught.value.agent == "a" and now() == 0.0
            stats = pool.statistics()
            pool.release(held)
            for waiter in waiters:
                pool.release(await waiter)
            return str(caught.value), stats
        message, stats = with_pool(body, size=1, max=1, queue=2, on_full="error")
        assert message.startswith("pool 'a': 2 callers already wait for a member (queue limit 2)")
        assert (stats.rejected, stats.waiting) == (1, 2)

    def test_wait_policy_queues_in_arrival_order(self) -> None:
        """With ``on_full="wait"`` callers past the limit wait outside the queue and are served in order."""
        async def body(pool: AgentPool) -> tuple[list[tuple[str, float, int]], PoolStatistics]:
            await pool.start()
            held = pool.acquire_nowait()
            log: list[tuple[str, float, int]] = []
            tasks = []
            for i in range(5):
                tasks.append(asyncio.create_task(hold(pool, 1.0, log, f"w{i}")))
                await asyncio.sleep(0)
            assert pool.statistics().waiting == 2
            pool.release(held)
            await asyncio.gather(*tasks)
            return log, pool.statistics()
        log, stats = with_pool(body, size=1, max=1, queue=2, on_full="wait")
        assert [(name, t) for name, t, _ in log] == [("w0", 0.0), ("w1", 1.0), ("w2", 2.0), ("w3", 3.0), ("w4", 4.0)]
        assert (stats.peak_waiting, stats.rejected) == (2, 0)

    def test_zero_queue_wait_policy_takes_the_next_free_member(self) -> None:
        """With ``queue=0, on_full="wait"`` a caller gets a member as soon as one is free."""
        async def body(pool: AgentPool) -> list[tuple[str, float, int]]:
            await pool.start()
            held = pool.acquire_nowait()
            log: list[tuple[str, float, int]] = []
            tasks = [asyncio.create_task(hold(pool, 1.0, log, f"w{i}")) for i in range(2)]
            await asyncio.sleep(1.0)
            pool.release(held)
            await asyncio.gather(*tasks)
            assert pool.statistics().peak_waiting == 0
            return log
        log = with_pool(body, size=1, max=1, queue=0, on_full="wait")
        assert [(name, t) for name, t, _ in log] == [("w0", 1.0), ("w1", 2.0)]

    def test_zero_queue_error_policy_rejects_at_once(self) -> None:
        """With ``queue=0, on_full="error"`` a caller finding no free member is refused."""
        async def body(pool: AgentPool) -> None:
            await pool.start()
            pool.acquire_nowait()
            with pytest.raises(PoolBackpressure, match="queue limit 0"):
                await pool.acquire()
        with_pool(body, size=1, max=1, queue=0, on_full="error")

    def test_place_given_to_a_cancelled_caller_is_passed_on(self) -> None:
        """A caller cancelled just as a queue place opened for it hands the place to the next."""
        async def body(pool: AgentPool) -> list[tuple[str, float, int]]:
            await pool.start()
            held = pool.acquire_nowait()
            log: list[tuple[str, float, int]] = []
            first = asyncio.create_task(hold(pool, 1.0, log, "first"))
            await asyncio.sleep(0)
            doomed = asyncio.create_task(hold(pool, 1.0, log, "doomed"))
            await asyncio.sleep(0)
            last = asyncio.create_task(hold(pool, 1.0, log, "last"))
            await asyncio.sleep(0)
            pool.release(held)  # "first" is served and its queue place goes to "doomed"...
            doomed.cancel()  # ...which is cancelled before it can take it
            await asyncio.gather(first, last)
            with pytest.raises(asyncio.CancelledError):
                await doomed
            return log
        log = with_pool(body, size=1, max=1, queue=1, on_full="wait")
        assert [(name, t) for name, t, _ in log] == [("first", 0.0), ("last", 1.0)]


class TestCancellation:
    def test_cancelled_waiter_leaves_the_queue(self) -> None:
        """Cancelling a waiting acquire() removes it; the next release frees the member."""
        async def body(pool: AgentPool) -> PoolStatistics:
            await pool.start()
            held = pool.acquire_nowait()
            waiter = asyncio.create_task(pool.acquire())
            await asyncio.sleep(0)
            assert pool.statistics().waiting == 1
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert pool.statistics().waiting == 0
            pool.release(held)
            assert pool.acquire_nowait() is held
            return pool.statistics()
        stats = with_pool(body, size=1, max=1)
        assert (stats.activations, stats.busy) == (2, 1)

    def test_member_handed_over_at_cancellation_is_not_leaked(self) -> None:
        """A member handed to a waiter in the same step it is cancelled goes back to the pool."""
        async def body(pool: AgentPool) -> PoolStatistics:
            await pool.start()
            held = pool.acquire_nowait()
            waiter = asyncio.create_task(pool.acquire())
            await asyncio.sleep(0)
            pool.release(held)  # hands the member to the waiter's future...
            waiter.cancel()  # ...which is cancelled before it runs
            with pytest.raises(asyncio.CancelledError):
                await waiter
            stats = pool.statistics()
            assert (stats.busy, stats.outstanding, stats.waiting) == (0, 0, 0)
            assert pool.acquire_nowait() is held
            return pool.statistics()
        stats = with_pool(body, size=1, max=1)
        assert (stats.activations, stats.members) == (2, 1)

    def test_cancelled_waiter_during_growth_leaves_the_new_member_free(self) -> None:
        """A member started for a caller that gave up becomes a free member."""
        async def body(pool: AgentPool) -> PoolStatistics:
            await pool.start()
            pool.acquire_nowait()
            waiter = asyncio.create_task(pool.acquire())
            await asyncio.sleep(0.5)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            await asyncio.sleep(1.0)
            assert pool.acquire_nowait().id == 2
            return pool.statistics()
        stats = with_pool(body, Factory(cold_start=1.0), size=1, max=2)
        assert (stats.members, stats.cold_waits, stats.waiting) == (2, 0, 0)


class TestShared:
    def test_without_warming_members_are_added_synchronously(self) -> None:
        """``shared=True, warm_each=False`` adds members at once: no spawn task, no warm-up, no loop."""
        provider = FakeProvider(0)
        pool = AgentPool("a", lambda: provider, shared=True, provider=provider, warm_each=False, size=3,
                         clock=ManualClock())
        pool.prewarm()
        stats = pool.statistics()
        assert (stats.members, stats.spawned, stats.spawning) == (3, 3, 0)
        assert all(m.provider is provider for m in pool.members)
        assert provider.warmed == 0
        assert pool.acquire_nowait() in pool.members
        run_virtual(pool.aclose())
        assert provider.closed == 1

    def test_shared_pool_grows_synchronously(self) -> None:
        """Callers waiting on a shared, unwarmed pool get a new slot at once, up to ``max``."""
        provider = FakeProvider(0)

        async def body(pool: AgentPool) -> PoolStatistics:
            pool.prewarm()
            held = pool.acquire_nowait()
            members = await asyncio.gather(pool.acquire(), pool.acquire())
            assert now() == 0.0 and len({held.id, *(m.id for m in members)}) == 3
            waiter = asyncio.create_task(pool.acquire())
            await asyncio.sleep(0)
            assert pool.statistics().waiting == 1  # at max: waits for a release
            pool.release(held)
            assert await waiter is held
            return pool.statistics()
        stats = with_pool(body, lambda: provider, shared=True, provider=provider, warm_each=False, size=1, max=3)
        assert (stats.members, stats.cold_waits, stats.activations) == (3, 2, 4)  # two slots started on demand

    def test_warm_each_warms_every_member(self) -> None:
        """``shared=True, warm_each=True`` warms the shared provider once per member, concurrently."""
        provider = FakeProvider(0, cold_start=1.0)

        async def body(pool: AgentPool) -> float:
            await pool.start()
            return now()
        t = with_pool(body, lambda: provider, shared=True, provider=provider, warm_each=True, size=3)
        assert (t, provider.warmed, provider.closed) == (1.0, 3, 1)

    def test_shared_provider_built_by_the_factory_once(self) -> None:
        """A shared pool without a provider builds one with the factory and reuses it."""
        factory = Factory()

        async def body(pool: AgentPool) -> int:
            await pool.start()
            assert len({id(m.provider) for m in pool.members}) == 1
            return len(pool.members)
        assert with_pool(body, factory, shared=True, size=2) == 2
        assert factory.calls == 1 and factory.made[0].closed == 1

    def test_lost_shared_member_is_replaced_without_closing_the_provider(self) -> None:
        """Retiring a slot of a shared provider never closes the provider."""
        provider = FakeProvider(0)

        async def body(pool: AgentPool) -> PoolStatistics:
            pool.prewarm()
            pool.release(pool.acquire_nowait(), lost=True)
            await asyncio.sleep(0)
            assert provider.closed == 0
            return pool.statistics()
        stats = with_pool(body, lambda: provider, shared=True, provider=provider, warm_each=False, size=2,
                          close_shared=False)
        assert (stats.members, stats.lost, stats.replaced) == (2, 1, 1)
        assert provider.closed == 0


class TestClose:
    def test_closes_every_owned_provider_once(self) -> None:
        """aclose() closes members, retired members and members still starting, each exactly once."""
        factory = Factory(cold_start=1.0)

        async def body(pool: AgentPool) -> None:
            await pool.start()
            pool.release(pool.acquire_nowait(), lost=True)  # retired; its replacement is starting
            await asyncio.sleep(0.5)
            await pool.aclose()
            assert pool.closed and pool.members == ()
        with_pool(body, factory, size=2)
        assert [p.closed for p in factory.made] == [1, 1, 1]

    def test_waiters_fail_with_spawn_failed(self) -> None:
        """Callers waiting for a member or for a queue place get SpawnFailed when the pool closes."""
        async def body(pool: AgentPool) -> None:
            await pool.start()
            pool.acquire_nowait()
            waiters = []
            for _ in range(3):  # one in the queue, two waiting for a place in it
                waiters.append(asyncio.create_task(pool.acquire()))
                await asyncio.sleep(0)
            await pool.aclose()
            for waiter in waiters:
                with pytest.raises(SpawnFailed, match="closed"):
                    await waiter
        with_pool(body, size=1, max=1, queue=1)

    def test_retiring_members_finish_closing(self) -> None:
        """aclose() waits for providers of retired members to close rather than cancelling them."""
        factory = Factory(close_delay=1.0)

        async def body(pool: AgentPool) -> float:
            await pool.start()
            pool.release(pool.acquire_nowait(), lost=True)  # its close takes 1 s
            await pool.aclose()  # also cancels the replacement before it is built
            return now()
        assert with_pool(body, factory, size=1) == 1.0
        assert [p.closed for p in factory.made] == [1]

    def test_release_after_close_does_not_close_again(self) -> None:
        """A call ending after aclose() neither re-closes its provider nor revives the member."""
        factory = Factory()

        async def body(pool: AgentPool) -> None:
            await pool.start()
            member = pool.acquire_nowait()
            await pool.aclose()
            pool.release(member, lost=True)
            await asyncio.sleep(0)
            assert pool.members == () and pool.statistics().lost == 0
        with_pool(body, factory, size=1)
        assert factory.made[0].closed == 1

    def test_shared_provider_left_open_without_close_shared(self) -> None:
        """``close_shared=False`` leaves the shared provider to its owner; aclose() twice is harmless."""
        provider = FakeProvider(0)

        async def body(pool: AgentPool) -> None:
            await pool.start()
            await pool.aclose()
            await pool.aclose()
        with_pool(body, lambda: provider, shared=True, provider=provider, size=2, close_shared=False)
        assert provider.closed == 0

    def test_health_loop_stops(self) -> None:
        """aclose() stops the background health loop."""
        factory = Factory()

        async def body(pool: AgentPool) -> None:
            await pool.start()
            await pool.aclose()
            probes = factory.made[0].probes
            await asyncio.sleep(60.0)
            assert factory.made[0].probes == probes
        with_pool(body, factory, size=1, health_interval=1.0)


class TestPrewarm:
    def test_raises_the_target_without_exceeding_max(self) -> None:
        """prewarm(n) starts members up to n, capped at ``max``, and never lowers the target."""
        async def body(pool: AgentPool) -> PoolStatistics:
            await pool.start()
            pool.prewarm(10)
            assert pool.statistics().spawning == 2
            await asyncio.sleep(1.5)
            pool.prewarm(2)
            assert pool.statistics().spawning == 0
            return pool.statistics()
        stats = with_pool(body, Factory(cold_start=1.0), size=1, max=3)
        assert (stats.members, stats.peak_members, stats.spawned) == (3, 3, 3)

    def test_without_max_prewarms_n(self) -> None:
        """Without ``max`` prewarm(n) brings the pool to n members."""
        async def body(pool: AgentPool) -> int:
            pool.prewarm(5)
            await pool.wait_spawned()
            return len(pool.members)
        assert with_pool(body, size=1) == 5

    def test_lookahead_members_shrink_back_when_idle(self) -> None:
        """Members started by a lookahead are retired when idle, and not replaced."""
        async def body(pool: AgentPool) -> PoolStatistics:
            pool.prewarm(3)
            await pool.wait_spawned()
            await asyncio.sleep(30.0)
            pool.release(pool.acquire_nowait())
            await asyncio.sleep(1.0)
            return pool.statistics()
        stats = with_pool(body, size=1, max=4, idle_timeout=30.0)
        assert (stats.members, stats.retired, stats.replaced, stats.spawning) == (1, 2, 0, 0)


class TestStatistics:
    def test_counters_are_consistent(self) -> None:
        """Activations, cold waits, peaks and spawn seconds add up over cold and warm calls."""
        async def body(pool: AgentPool) -> PoolStatistics:
            await asyncio.gather(pool.complete(REQUEST), pool.complete(REQUEST))
            assert now() == 1.1
            await pool.complete(REQUEST)
            return pool.statistics()
        stats = with_pool(body, Factory(cold_start=1.0), size=0, max=2)
        assert stats == PoolStatistics(
            agent="a", size=0, max=2, members=2, busy=0, outstanding=0, waiting=0, spawning=0, spawned=2,
            spawn_failures=0, spawn_failure_rate=0.0, retired=0, lost=0, replaced=0, activations=3,
            cold_waits=2, rejected=0, peak_members=2, peak_waiting=2, spawn_seconds=2.0)

    def test_waiting_for_a_busy_member_is_not_a_cold_wait(self) -> None:
        """A caller served by a released member waited, but not for a cold start."""
        async def body(pool: AgentPool) -> PoolStatistics:
            await pool.start()
            held = pool.acquire_nowait()
            waiter = asyncio.create_task(pool.acquire())
            await asyncio.sleep(1.0)
            pool.release(held)
            pool.release(await waiter)
            return pool.statistics()
        stats = with_pool(body, size=1, max=1)
        assert (stats.activations, stats.cold_waits, stats.peak_waiting) == (2, 0, 1)

    def test_thousand_acquire_release_pairs_keep_the_pool_at_size(self) -> None:
        """1,000 sequential acquire/release pairs on a warm pool of 4 neither leak nor grow it."""
        async def body(pool: AgentPool) -> PoolStatistics:
            await pool.start()
            for i in range(1000):
                member = await pool.acquire() if i % 2 else pool.acquire_nowait()
                pool.release(member)
            return pool.statistics()
        stats = with_pool(body, size=4, max=8)
        assert (stats.members, stats.spawned, stats.activations, stats.retired) == (4, 4, 1000, 0)
        assert (stats.busy, stats.outstanding, stats.waiting, stats.cold_waits, stats.peak_members) == (0, 0, 0, 0, 4)


class TestRealProviders:
    @staticmethod
    def sim() -> SimProvider:
        provider = build_provider(AgentSpec(name="a", provider="sim", options={"latency": 0.1}))
        assert isinstance(provider, SimProvider)
        return provider

    def test_shared_sim_pool(self) -> None:
        """A shared pool over the sim serves 4 calls of 0.1 s on 2 members in 0.2 s."""
        provider = self.sim()

        async def body(pool: AgentPool) -> tuple[float, list[ProviderResponse]]:
            await pool.start()
            requests = [ProviderRequest(task_id=f"t-{i}", agent="a", model="sim-default", system="",
                                        prompt="summarise the plan") for i in range(4)]
            responses = await asyncio.gather(*(pool.complete(r) for r in requests))
            return now(), responses
        t, responses = with_pool(body, lambda: provider, shared=True, provider=provider, warm_each=False,
                                 close_shared=False, size=2, max=2)
        assert t == pytest.approx(0.2)
        assert all(r.provider == "sim" and r.text.startswith("[sim]") for r in responses)
        assert provider.statistics().calls == 4

    def test_sim_member_per_provider(self) -> None:
        """A pool building one sim per member warms them and serves calls on each."""
        async def body(pool: AgentPool) -> tuple[float, set[int]]:
            await pool.start()
            members = [pool.acquire_nowait(), pool.acquire_nowait()]
            for member in members:
                await member.provider.complete(REQUEST)
                pool.release(member)
            return now(), {id(m.provider) for m in members}
        t, providers = with_pool(body, self.sim, size=2)
        assert t == pytest.approx(0.2) and len(providers) == 2

    @pytest.mark.skipif(not WORKER_SCRIPT.exists(), reason="tests/fixtures/workers/protocol_worker.py is absent")
    def test_command_workers(self) -> None:
        """Worker-mode command members: one process each, a crashed worker is replaced, all stopped on close."""
        agent = AgentSpec(name="tool", provider="command", model="script",
                          options={"command": [sys.executable, str(WORKER_SCRIPT)], "mode": "worker",
                                   "kill_grace": 0.5})
        made: list[CommandProvider] = []

        def factory() -> CommandProvider:
            provider = build_provider(agent)
            assert isinstance(provider, CommandProvider)
            made.append(provider)
            return provider

        def request(prompt: str) -> ProviderRequest:
            return ProviderRequest(task_id="t-1", agent="tool", model="script", system="", prompt=prompt)

        async def main() -> None:
            pool = AgentPool("tool", factory, size=2, max=2)
            try:
                async with asyncio.timeout(30):
                    await pool.start()
                    pids = {m.provider.worker_pid for m in pool.members}  # type: ignore[attr-defined]
                    assert len(pids) == 2 and None not in pids
                    answers = await asyncio.gather(pool.complete(request("pid")), pool.complete(request("pid")))
                    assert {int(a.text) for a in answers} == pids
                    with pytest.raises(WorkerLost):
                        await pool.complete(request("crash"), member_retries=0)
                    await pool.wait_spawned()
                    stats = pool.statistics()
                    assert (stats.members, stats.lost, stats.replaced, stats.spawned) == (2, 1, 1, 3)
                    assert await pool.check_health() == 0
            finally:
                await pool.aclose()
            assert all(p.worker_pid is None for p in made)

        asyncio.run(main())
