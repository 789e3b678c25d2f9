"""Agent pools: ready members per persona, so a task never waits on a cold start.

# Design
# A *member* is one ready agent: its provider built (HTTP client, imported function,
# started worker process), warmed (a connection opened, a worker pinged) and health
# checked. A member serves ``per_member`` tasks at a time (1 by default: one agent, one
# task). The pool keeps ``size`` members, grows towards ``max`` while callers queue
# (one new member per waiting caller, spawned concurrently in one batch) and retires
# members above ``size`` that have been idle for ``idle_timeout``.
#
# All decisions live in synchronous methods (``acquire_nowait``, ``release``,
# ``_wanted_spawns``) that read time from the injected clock; ``acquire`` only waits.
# Free members sit on a stack (most recently used first), so a burst is served by the
# members that are already hot and the surplus goes idle and can be retired; with
# ``per_member > 1`` the member with the least outstanding work is chosen.
#
# Failure handling: a member whose call raised ``WorkerLost`` (its process died) or
# whose health check failed is retired and, if the pool is below ``size``, replaced in
# the background. Spawns that fail are counted (count and rate, in ``statistics()``)
# and retried with exponential backoff; when no member is alive and ``max_spawn_failures``
# spawns in a row failed, the waiting callers get ``SpawnFailed`` with the last reason
# instead of waiting forever.
#
# A ``ProviderConfigError`` is fatal: it will not fix itself, so the pool stops spawning
# and, with no member alive, callers get ``SpawnFailed`` at once.
#
# Backpressure: at most ``queue`` callers wait. Past that, ``on_full="error"`` raises
# ``PoolBackpressure`` at once and ``on_full="wait"`` makes the caller wait for a place
# in the queue (the wait is itself bounded by the scheduler's own parallelism limits).
# Places are handed out first come, first served: a freed place is *reserved* for the
# first caller outside the queue (so a newcomer cannot take it), and a caller cancelled
# just as it got one passes it on. With ``queue=0`` nobody waits in the queue, so a
# caller outside it is let in to take a member as soon as one is free.
#
# A member being health-checked is out of rotation (not handed out, not retired for
# idleness) until its probe is done, so a failing probe never closes a provider under a
# running call.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal

from .._types import Clock, LoopClock, Provider, ProviderRequest, ProviderResponse
from ..errors import PoolBackpressure, ProviderConfigError, SpawnFailed, WorkerLost

__all__ = ["AgentPool", "PoolMember", "PoolStatistics", "SlotPool", "WouldBlock"]

ProviderFactory = Callable[[], Provider | Awaitable[Provider]]


class WouldBlock(Exception):
    """``acquire_nowait`` found no free member; ``acquire`` would have to wait."""


class PoolMember:
    """One ready agent of a pool: its provider and what it is doing."""

    __slots__ = ("created", "id", "last_used", "outstanding", "probing", "provider", "retired", "tasks")

    def __init__(self, member_id: int, provider: Provider, now: float) -> None:
        self.id = member_id
        self.provider = provider
        self.outstanding = 0
        self.tasks = 0
        self.created = now
        self.last_used = now
        self.retired = False
        self.probing = False  # out of rotation while its health check runs

    def __repr__(self) -> str:
        return f"PoolMember(id={self.id}, outstanding={self.outstanding}, tasks={self.tasks})"


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A pool's counters: size, activity, growth and failures."""

    agent: str
    size: int  # members kept ready
    max: int | None
    members: int  # alive now
    busy: int  # members with work
    outstanding: int  # calls in flight
    waiting: int  # callers queued for a member
    spawning: int
    spawned: int  # members started successfully, ever
    spawn_failures: int
    spawn_failure_rate: float  # failures / attempts
    retired: int  # members removed (idle, lost or unhealthy)
    lost: int  # members that died mid-call or failed a health check
    replaced: int  # spawns made to get back to ``size`` after a loss
    activations: int  # calls served
    cold_waits: int  # calls that waited for a member to be started for them (not for a release)
    rejected: int  # callers refused by backpressure
    peak_members: int
    peak_waiting: int
    spawn_seconds: float  # total time spent starting members (cold start cost)


class AgentPool:
    """Ready members of one agent, dispatched least-outstanding-work first."""

    def __init__(
        self,
        agent: str,
        factory: ProviderFactory,
        *,
        size: int = 1,
        max: int | None = None,
        per_member: int = 1,
        queue: int = 10_000,
        on_full: Literal["wait", "error"] = "wait",
        idle_timeout: float = 30.0,
        health_interval: float | None = None,
        max_spawn_failures: int = 3,
        spawn_backoff: tuple[float, float] = (0.05, 5.0),
        shared: bool = False,
        warm_each: bool = True,
        close_shared: bool = True,
        provider: Provider | None = None,
        clock: Clock | None = None,
    ) -> None:
        if max is not None and max < size:
            raise ValueError(f"pool {agent!r}: max ({max}) < size ({size})")
        self.agent = agent
        self._factory = factory
        self.size = size
        self.max = max
        self.per_member = per_member
        self.queue_limit = queue
        self.on_full = on_full
        self.idle_timeout = idle_timeout
        self.health_interval = health_interval
        self.max_spawn_failures = max_spawn_failures
        self._backoff = spawn_backoff
        self._shared = shared
        self._warm_each = warm_each
        self._close_shared = close_shared
        # A shared pool may be handed its (already built and checked) provider up front.
        self._shared_provider: Provider | None = provider if shared else None
        self.clock = clock or LoopClock()
        self._members: list[PoolMember] = []
        self._free: list[PoolMember] = []  # per_member == 1: members with no work, MRU last
        self._waiters: deque[asyncio.Future[PoolMember]] = deque()
        self._queue_waiters: deque[asyncio.Future[None]] = deque()
        self._reserved = 0  # queue places handed to callers that have not taken them yet
        self._spawning = 0
        self._spawn_tasks: set[asyncio.Task[None]] = set()
        self._closing: set[asyncio.Task[None]] = set()  # retired members' providers being closed
        self._health_task: asyncio.Task[None] | None = None
        self._next_id = 0
        self._closed = False
        self._failures_in_row = 0
        self._last_spawn_error: str | None = None
        self._fatal: str | None = None  # a ProviderConfigError: no spawn can succeed
        self._retry_at = 0.0
        self._next_sweep = 0.0  # clock time of the next idle-retirement sweep
        self._target = size  # members wanted ready (raised by prewarm lookahead)
        # counters
        self._spawned = 0
        self._spawn_failures = 0
        self._retired = 0
        self._lost = 0
        self._replaced = 0
        self._activations = 0
        self._cold_waits = 0
        self._rejected = 0
        self._peak_members = 0
        self._peak_waiting = 0
        self._spawn_seconds = 0.0

    # -- state ---------------------------------------------------------------------------

    @property
    def members(self) -> tuple[PoolMember, ...]:
        return tuple(self._members)

    @property
    def closed(self) -> bool:
        return self._closed

    def statistics(self) -> PoolStatistics:
        attempts = self._spawned + self._spawn_failures
        return PoolStatistics(
            agent=self.agent, size=self.size, max=self.max, members=len(self._members),
            busy=sum(1 for m in self._members if m.outstanding), outstanding=sum(m.outstanding for m in self._members),
            waiting=len(self._waiters), spawning=self._spawning, spawned=self._spawned,
            spawn_failures=self._spawn_failures,
            spawn_failure_rate=(self._spawn_failures / attempts) if attempts else 0.0,
            retired=self._retired, lost=self._lost, replaced=self._replaced, activations=self._activations,
            cold_waits=self._cold_waits, rejected=self._rejected, peak_members=self._peak_members,
            peak_waiting=self._peak_waiting, spawn_seconds=self._spawn_seconds,
        )

    # -- sizing (pure decisions) ---------------------------------------------------------

    def _capacity_limit(self) -> float:
        return float("inf") if self.max is None else self.max

    def _wanted_spawns(self) -> int:
        """How many members to start now: up to the target, plus one per uncovered waiter."""
        alive = len(self._members) + self._spawning
        want = max(self._target - alive, 0)
        free_slots = sum(self.per_member - m.outstanding for m in self._members) if self.per_member > 1 \
            else len(self._free)
        uncovered = len(self._waiters) - free_slots - self._spawning * self.per_member
        if uncovered > 0:
            want = max(want, -(-uncovered // self.per_member))
        room = self._capacity_limit() - alive
        return int(max(0, min(want, room)))

    def _maybe_spawn(self) -> None:
        if self._closed or self._fatal is not None:
            return
        n = self._wanted_spawns()
        if n <= 0:
            return
        delay = max(0.0, self._retry_at - self.clock.now()) if self._failures_in_row else 0.0
        self.spawn_nowait(n, delay=delay)

    # -- spawning ------------------------------------------------------------------------

    def spawn_nowait(self, n: int, *, delay: float = 0.0) -> None:
        """Start ``n`` members concurrently in the background (one batch)."""
        if n <= 0 or self._closed or self._fatal is not None:
            return
        if self._shared_provider is not None and not self._warm_each and delay <= 0:
            # Members over one shared, already warm provider (sim, python, per-task command)
            # are just slots: add them now, no task and no await per member.
            for _ in range(n):
                self._spawned += 1
                self._add_member(self._shared_provider)
            return
        self._spawning += n
        for _ in range(n):
            task = asyncio.get_running_loop().create_task(self._spawn_one(delay), name=f"pool-{self.agent}-spawn")
            self._spawn_tasks.add(task)
            task.add_done_callback(self._spawn_tasks.discard)

    async def spawn(self, n: int) -> list[PoolMember]:
        """Start ``n`` members concurrently and wait for them; returns those that started."""
        before = {id(m) for m in self._members}
        self.spawn_nowait(n)
        await self.wait_spawned()
        return [m for m in self._members if id(m) not in before]

    async def wait_spawned(self) -> None:
        """Wait until no spawn is in progress, or until ``max_spawn_failures`` spawns in a row
        have failed (the pool then retries in the background; ``statistics()`` shows it)."""
        failures = self._spawn_failures
        while self._spawn_tasks and not (self._failures_in_row >= self.max_spawn_failures
                                         and self._spawn_failures > failures):
            await asyncio.wait(list(self._spawn_tasks), return_when=asyncio.FIRST_COMPLETED)

    async def _build(self) -> tuple[Provider, bool]:
        """The member's provider, and whether it still needs warming."""
        if self._shared and self._shared_provider is not None:
            return self._shared_provider, self._warm_each
        made = self._factory()
        provider = await made if inspect.isawaitable(made) else made
        if self._shared:
            self._shared_provider = provider
        return provider, True

    async def _spawn_one(self, delay: float) -> None:
        provider: Provider | None = None
        try:
            if delay > 0:
                await self.clock.sleep(delay)
            t0 = self.clock.now()
            provider, needs_warm = await self._build()
            warm = getattr(provider, "warm", None) if needs_warm else None
            if warm is not None:
                await warm()  # best effort (an HTTP warm-up may fail harmlessly): the health check decides
            healthy = getattr(provider, "healthy", None)
            if healthy is not None and not await healthy():
                raise _StartFailed("member failed its first health check" + _why(provider))
            self._spawn_seconds += self.clock.now() - t0
        except asyncio.CancelledError:
            self._spawning -= 1
            if provider is not None and not self._shared:
                await _close_quietly(provider)
            raise
        except Exception as exc:  # noqa: BLE001 - any failure to start a member is counted
            self._spawning -= 1
            # Count it before awaiting the close, so no caller sees a pool that forgot the failure.
            self._spawn_failed(str(exc) if isinstance(exc, (_StartFailed, ProviderConfigError))
                               else f"{type(exc).__name__}: {exc}", fatal=isinstance(exc, ProviderConfigError))
            if provider is not None and not self._shared:
                await _close_quietly(provider)
            return
        self._spawning -= 1
        if self._closed:
            if not self._shared:
                await _close_quietly(provider)
            return
        self._spawned += 1
        self._failures_in_row = 0
        self._add_member(provider)
        self._maybe_spawn()  # callers still uncovered (an earlier spawn of the batch failed)

    def _spawn_failed(self, reason: str, *, fatal: bool = False) -> None:
        self._spawn_failures += 1
        self._failures_in_row += 1
        self._last_spawn_error = reason
        base, cap = self._backoff
        self._retry_at = self.clock.now() + min(cap, base * 2 ** (self._failures_in_row - 1))
        if fatal:
            self._fatal = reason  # a configuration error will not fix itself: stop spawning
        if not self._members and (fatal or self._failures_in_row >= self.max_spawn_failures):
            self._fail_waiters(self._no_member_error())
            return
        self._maybe_spawn()

    def _no_member_error(self) -> SpawnFailed:
        if self._fatal is not None:
            return SpawnFailed(f"cannot start a member: {self._fatal}", agent=self.agent)
        return SpawnFailed(f"no member could be started ({self._failures_in_row} attempts in a row); "
                           f"last error: {self._last_spawn_error}", agent=self.agent)

    def _fail_waiters(self, error: SpawnFailed) -> None:
        """Fail every caller waiting for a member or for a place in the queue."""
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(error)
        while self._queue_waiters:
            place = self._queue_waiters.popleft()
            if not place.done():
                place.set_exception(error)

    def _add_member(self, provider: Provider) -> None:
        self._next_id += 1
        member = PoolMember(self._next_id, provider, self.clock.now())
        self._members.append(member)
        self._peak_members = max(self._peak_members, len(self._members))
        self._hand_over(member)

    # -- acquire / release ---------------------------------------------------------------

    def acquire_nowait(self) -> PoolMember:
        """A free member, now, or ``WouldBlock`` (``acquire`` then queues and grows the pool)."""
        if self._closed:
            raise SpawnFailed("the pool is closed", agent=self.agent)
        member = self._pick()
        if member is None:
            raise WouldBlock
        member.outstanding += 1
        self._activations += 1
        return member

    def _pick(self) -> PoolMember | None:
        if self.per_member == 1:
            return self._free.pop() if self._free else None
        best: PoolMember | None = None
        for m in self._members:
            if m.outstanding < self.per_member and not m.probing and (best is None or m.outstanding < best.outstanding):
                best = m
        return best

    def _has_room(self) -> bool:
        """Whether some member could take a call now."""
        if self.per_member == 1:
            return bool(self._free)
        return any(m.outstanding < self.per_member and not m.probing for m in self._members)

    async def acquire(self) -> PoolMember:
        """A member with room for one more call; waits (bounded queue) while none is free."""
        try:
            return self.acquire_nowait()
        except WouldBlock:
            pass
        if (stranded := self._stranded()) is not None:
            raise stranded
        front = False
        while self._queue_waiters or len(self._waiters) + self._reserved >= self.queue_limit:
            if self.on_full == "error":
                self._rejected += 1
                raise _backpressure(self.agent, len(self._waiters), self.queue_limit)
            await self._wait_for_place(front)
            try:
                return self.acquire_nowait()
            except WouldBlock:
                pass
            if len(self._waiters) + self._reserved < self.queue_limit:
                break  # our reserved place
            front = True  # let in to take a free member another caller took first: keep our turn
        if (stranded := self._stranded()) is not None:
            raise stranded
        fut: asyncio.Future[PoolMember] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._peak_waiting = max(self._peak_waiting, len(self._waiters))
        newest = self._next_id
        self._maybe_spawn()
        try:
            member = await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._give_back(fut.result())  # handed over just as we were cancelled
            elif fut in self._waiters:
                self._waiters.remove(fut)
            raise
        finally:
            self._wake_queue()
        if member.id > newest:
            self._cold_waits += 1  # served by a member started on demand, not by a released one
        return member

    async def _wait_for_place(self, front: bool) -> None:
        """Wait (outside the queue) until a place in it is reserved for us, then take it."""
        place: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if front:
            self._queue_waiters.appendleft(place)
        else:
            self._queue_waiters.append(place)
        try:
            await place
        except asyncio.CancelledError:
            if place.done() and not place.cancelled() and place.exception() is None:
                self._reserved -= 1  # given a place just as we were cancelled: pass it on
                self._wake_queue()
            elif place in self._queue_waiters:
                self._queue_waiters.remove(place)
            raise
        self._reserved -= 1

    def _stranded(self) -> SpawnFailed | None:
        """The error for callers when no member is alive and none can start (else None)."""
        if self._fatal is not None and not self._members and not self._spawning:
            return self._no_member_error()
        return None

    def _give_back(self, member: PoolMember) -> None:
        """Undo a hand-over whose caller was cancelled before it could use the member."""
        member.outstanding -= 1
        self._activations -= 1
        if not member.retired:
            self._hand_over(member)

    def release(self, member: PoolMember, *, lost: bool = False) -> None:
        """Return ``member`` after a call; ``lost=True`` retires it (its worker died)."""
        member.outstanding -= 1
        member.tasks += 1
        now = self.clock.now()
        member.last_used = now
        if member.retired:
            return
        if lost:
            self._lost += 1
            self._retire(member)
            return
        self._hand_over(member)
        if len(self._members) > self.size and not self._waiters:
            self._retire_idle(now)

    def _hand_over(self, member: PoolMember) -> None:
        """Give a member with room to the first waiter, or put it back as free."""
        while self._waiters and member.outstanding < self.per_member:
            fut = self._waiters.popleft()
            if fut.done():
                continue
            member.outstanding += 1
            self._activations += 1
            fut.set_result(member)
        if self.per_member == 1 and member.outstanding == 0:
            self._free.append(member)
        self._wake_queue()

    def _wake_queue(self) -> None:
        """Reserve each free place in the queue for the first caller waiting outside it (with
        ``queue=0``, let one in whenever a member is free and nobody else is on the way)."""
        while self._queue_waiters:
            room = len(self._waiters) + self._reserved < self.queue_limit
            if not room and (self._waiters or self._reserved or not self._has_room()):
                return
            place = self._queue_waiters.popleft()
            if not place.done():
                place.set_result(None)
                self._reserved += 1

    def _retire(self, member: PoolMember) -> None:
        if member.retired:
            return
        member.retired = True
        self._retired += 1
        if member in self._members:
            self._members.remove(member)
        if member in self._free:
            self._free.remove(member)
        if not self._shared:
            task = asyncio.get_running_loop().create_task(_close_quietly(member.provider))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        if len(self._members) + self._spawning < self._target or self._waiters:
            if len(self._members) + self._spawning < self._target and self._fatal is None:
                self._replaced += 1
            self._maybe_spawn()
        if (stranded := self._stranded()) is not None:
            self._fail_waiters(stranded)  # the last member is gone and no new one can start

    def _retire_idle(self, now: float) -> None:
        """Retire members above ``size`` that have had no work for ``idle_timeout``.

        A sweep is O(members), so it runs at most every quarter ``idle_timeout`` (and at most
        every second): a burst of releases on a large pool must not pay it per release."""
        if now < self._next_sweep:
            return
        self._next_sweep = now + min(self.idle_timeout / 4, 1.0)
        idle = sorted((m for m in self._members if m.outstanding == 0 and not m.probing), key=lambda m: m.last_used)
        for member in idle:  # least recently used first
            if len(self._members) <= self.size:
                break
            if now - member.last_used >= self.idle_timeout:
                # A lookahead target is stale once its members sit idle: shrink it first,
                # or the retirement would be "replaced" at once.
                self._target = max(self.size, min(self._target, len(self._members) - 1))
                self._retire(member)

    # -- calls ---------------------------------------------------------------------------

    async def complete(self, request: ProviderRequest, *, member_retries: int = 1) -> ProviderResponse:
        """Run ``request`` on a member; if the member dies mid-call, once more on a fresh one."""
        attempt = 0
        while True:
            member = await self.acquire()
            try:
                response = await member.provider.complete(request)
            except WorkerLost:
                self.release(member, lost=True)
                attempt += 1
                if attempt > member_retries:
                    raise
                continue
            except BaseException:
                self.release(member)
                raise
            self.release(member)
            return response

    # -- warming and health --------------------------------------------------------------

    def prewarm(self, n: int | None = None) -> None:
        """Make sure ``n`` (default ``size``) members are ready or starting; never above ``max``."""
        if self._closed:
            return
        want = self.size if n is None else n
        self._target = int(max(self._target, min(want, self._capacity_limit())))
        self._maybe_spawn()
        if self.health_interval is not None and self._health_task is None:
            self._health_task = asyncio.get_running_loop().create_task(self._health_loop(),
                                                                       name=f"pool-{self.agent}-health")

    async def start(self) -> None:
        """Pre-warm ``size`` members and wait until they are ready."""
        self.prewarm()
        await self.wait_spawned()

    async def check_health(self) -> int:
        """Health-check idle members; retire (and replace) the unhealthy. Returns how many failed.

        A member is out of rotation while its probe runs, so no call starts on it meanwhile.
        """
        failed = 0
        for member in list(self._members):
            if self._closed:
                break
            if member.outstanding or member.retired or member.probing:
                continue
            probe = getattr(member.provider, "healthy", None)
            if probe is None:
                continue
            member.probing = True
            if member in self._free:
                self._free.remove(member)
            try:
                ok = bool(await probe())
            except asyncio.CancelledError:
                self._end_probe(member, ok=True)  # not checked: back as it was
                raise
            except Exception:  # noqa: BLE001 - a probe that raises is a failed probe
                ok = False
            if not self._end_probe(member, ok=ok):
                failed += 1
        return failed

    def _end_probe(self, member: PoolMember, *, ok: bool) -> bool:
        """Put a probed member back in rotation, or retire it; False when it failed."""
        member.probing = False
        if member.retired or self._closed:
            return True
        if ok:
            self._hand_over(member)  # callers may have queued during the probe
            return True
        self._lost += 1
        self._retire(member)
        return False

    async def _health_loop(self) -> None:
        assert self.health_interval is not None
        while not self._closed:
            await self.clock.sleep(self.health_interval)
            await self.check_health()

    async def aclose(self) -> None:
        """Stop spawning, fail waiters, close every member's provider."""
        if self._closed:
            return
        self._closed = True
        if self._health_task is not None:
            self._health_task.cancel()
        for task in list(self._spawn_tasks):
            task.cancel()
        await asyncio.gather(*list(self._spawn_tasks), return_exceptions=True)
        if self._health_task is not None:
            await asyncio.gather(self._health_task, return_exceptions=True)
        self._fail_waiters(SpawnFailed("the pool closed while waiting for a member", agent=self.agent))
        members, self._members, self._free = self._members, [], []
        for member in members:
            member.retired = True  # a call still running releases it without touching the pool
        if self._shared:
            if self._shared_provider is not None and self._close_shared:
                await _close_quietly(self._shared_provider)
        else:
            await asyncio.gather(*(_close_quietly(m.provider) for m in members))
        # Retired members' providers are closing already: wait for them, never cancel them.
        await asyncio.gather(*list(self._closing), return_exceptions=True)


class _StartFailed(Exception):
    """A member's provider was built but did not come up (warm-up or first health check)."""


def _backpressure(agent: str, waiting: int, limit: int) -> PoolBackpressure:
    return PoolBackpressure(f"{waiting} callers already wait for a member (queue limit {limit}); "
                            "raise pool.queue or pool.max, or set on_full: wait", agent=agent)


def _why(provider: Any) -> str:
    reason = getattr(provider, "last_error", None)
    return f": {reason}" if reason else ""


async def _close_quietly(provider: Provider) -> None:
    try:
        await provider.aclose()
    except Exception:  # noqa: BLE001 - closing a dead member must not fail the run
        pass


class SlotPool:
    """The pool of an agent whose provider needs no warming and no process per member
    (sim, python, per-task command): concurrency slots over one shared provider.

    Nothing can be cold, die or be replaced, so there are no member objects to create,
    warm or retire: a slot is a counter, taken without awaiting while under ``max``
    (times ``per_member``), and handed to the first waiter on release. It has the same
    acquire/release, backpressure and statistics surface as ``AgentPool``; the runner uses
    it where an ``AgentPool`` would only add work per task.
    """

    def __init__(
        self,
        agent: str,
        provider: Provider,
        *,
        size: int = 1,
        max: int | None = None,
        per_member: int = 1,
        queue: int = 10_000,
        on_full: Literal["wait", "error"] = "wait",
        close_shared: bool = False,
        clock: Clock | None = None,
    ) -> None:
        self.agent = agent
        self.size = size
        self.max = max
        self.per_member = per_member
        self.queue_limit = queue
        self.on_full = on_full
        self.clock = clock or LoopClock()
        self._provider = provider
        self._close_shared = close_shared
        self._member = PoolMember(0, provider, 0.0)
        self._capacity = float("inf") if max is None else max * per_member
        self._in_use = 0
        self._waiters: deque[asyncio.Future[PoolMember]] = deque()
        self._queue_waiters: deque[asyncio.Future[None]] = deque()  # callers waiting for a queue place
        self._closed = False
        self._activations = 0
        self._cold_waits = 0
        self._rejected = 0
        self._peak = 0
        self._peak_waiting = 0

    @property
    def members(self) -> tuple[PoolMember, ...]:
        return (self._member,)

    @property
    def closed(self) -> bool:
        return self._closed

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(
            agent=self.agent, size=self.size, max=self.max, members=self._in_use, busy=self._in_use,
            outstanding=self._in_use, waiting=len(self._waiters), spawning=0, spawned=0, spawn_failures=0,
            spawn_failure_rate=0.0, retired=0, lost=0, replaced=0, activations=self._activations,
            cold_waits=self._cold_waits, rejected=self._rejected, peak_members=self._peak,
            peak_waiting=self._peak_waiting, spawn_seconds=0.0,
        )

    def acquire_nowait(self) -> PoolMember:
        """A slot now, or ``WouldBlock`` when ``max`` slots are in use."""
        if self._closed:
            raise SpawnFailed("the pool is closed", agent=self.agent)
        if self._in_use >= self._capacity or self._waiters:
            raise WouldBlock
        self._in_use += 1
        self._activations += 1
        if self._in_use > self._peak:
            self._peak = self._in_use
        self._member.outstanding = self._in_use
        return self._member

    async def acquire(self) -> PoolMember:
        """A slot; waits (first come, first served; at most ``queue`` waiting) while all are in use."""
        try:
            return self.acquire_nowait()
        except WouldBlock:
            pass
        while len(self._waiters) >= self.queue_limit and not (self.queue_limit == 0 and self._in_use < self._capacity):
            if self.on_full == "error":
                self._rejected += 1
                raise _backpressure(self.agent, len(self._waiters), self.queue_limit)
            place: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._queue_waiters.append(place)
            try:
                await place
            finally:
                if place in self._queue_waiters:
                    self._queue_waiters.remove(place)
            if self._closed:
                raise SpawnFailed("the pool closed while waiting for a member", agent=self.agent)
            try:
                return self.acquire_nowait()
            except WouldBlock:
                pass
        fut: asyncio.Future[PoolMember] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        self._peak_waiting = max(self._peak_waiting, len(self._waiters))
        self._cold_waits += 1
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                self._in_use -= 1  # handed over just as we were cancelled: pass it on
                self._activations -= 1
                self._hand_over()
            elif fut in self._waiters:
                self._waiters.remove(fut)
            raise

    def release(self, member: PoolMember, *, lost: bool = False) -> None:
        """Give a slot back (``lost`` has no meaning here: the provider is shared)."""
        self._in_use -= 1
        member.tasks += 1
        self._hand_over()
        self._member.outstanding = self._in_use

    def _hand_over(self) -> None:
        while self._waiters and self._in_use < self._capacity:
            fut = self._waiters.popleft()
            if fut.done():
                continue
            self._in_use += 1
            self._activations += 1
            fut.set_result(self._member)
        if self._queue_waiters and len(self._waiters) < self.queue_limit:
            place = self._queue_waiters.popleft()
            if not place.done():
                place.set_result(None)

    def prewarm(self, n: int | None = None) -> None:
        """Nothing to warm: the provider is shared and already built."""

    async def start(self) -> None:
        """Nothing to start."""

    async def aclose(self) -> None:
        """Fail waiters; close the provider if this pool owns it."""
        if self._closed:
            return
        self._closed = True
        error = SpawnFailed("the pool closed while waiting for a member", agent=self.agent)
        while self._waiters:
            fut = self._waiters.popleft()
            if not fut.done():
                fut.set_exception(error)
        while self._queue_waiters:
            place = self._queue_waiters.popleft()
            if not place.done():
                place.set_result(None)
        if self._close_shared:
            await _close_quietly(self._provider)
