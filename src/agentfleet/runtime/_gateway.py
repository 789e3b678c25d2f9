"""The provider gateway: every call an agent makes to its provider goes through here.

# Design
# One call, in order:
#   cache      a deterministic request (temperature 0, or a task that opts in) is looked up in the
#              tiered cache (L1 memory, L2 Redis, L3 SQLite); a hit never touches the provider.
#   coalesce   an identical cacheable request already in flight is joined, not sent again.
#   target     the agent's primary provider/model or a fallback: in order (the first whose circuit
#              is not open) or, with ``routing: latency``, the best-quality candidate whose
#              measured p95 latency meets the task's deadline.
#   breaker    per provider+model; an open circuit is a ``CircuitOpen`` before anything is sent.
#   limiter    requests/min, tokens/min and concurrency per provider+model, shared by every agent
#              that uses it (and through Redis by every runner, when ``shared``). The grant is held
#              until the answer arrives and settled with the tokens the provider reported.
#   adaptive   an AIMD concurrency gate per provider+model: 429s, 503/529 and timeouts halve it,
#              saturated successes grow it.
#   pool       a member of the agent's pool (a warm connection or worker process).
#   hedge      opt-in per agent: no answer after the p95 of recent latencies (or ``after``
#              seconds) sends one more identical request; the first answer wins, the other is
#              cancelled.
# Time spent waiting on the limiter and the adaptive gate is added to the task's
# ``meta["limit_wait"]``; hedges, cache hits, coalesced calls and fallbacks are noted in
# ``meta`` too. Retries, the retry budget and moving on to the next fallback are the runner's
# (they are decisions about the task, not the call); the gateway only answers or raises.
# Writing an answer to the cache is also the runner's, after the output passed its checks, so a
# rejected answer is never served again.
"""

from __future__ import annotations

import asyncio
import math
import os
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .._types import Clock, LoopClock, ProviderRequest, ProviderResponse
from ..errors import (
    CircuitOpen,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    SpecError,
    WorkerLost,
)
from ..resilience import AIMDLimit, BreakerState, CircuitBreaker, HedgePolicy, RateLimiter, RetryBudget
from ._pool import WouldBlock

if TYPE_CHECKING:
    from ..cache import TieredCache
    from ..spec import LimitSpec
    from ._pool import AgentPool, SlotPool

__all__ = ["CachePlan", "Gateway", "GuardStatistics", "ProviderGuard", "Target", "parse_limits_env"]

#: HTTP statuses that say "too much load" (halve the adaptive limit), unlike a plain 500.
_CONGESTION_STATUSES = frozenset({429, 503, 529})


def error_status(exc: BaseException) -> int | None:
    """The HTTP status behind a provider error, when there was one (``ProviderError.status``)."""
    if isinstance(exc, RateLimited):
        return 429
    return exc.status if isinstance(exc, ProviderError) else None


def congestion(exc: BaseException) -> bool:
    """Whether a failure says the provider is overloaded (as opposed to broken or refusing)."""
    if isinstance(exc, (RateLimited, ProviderTimeout, TimeoutError)):
        return True
    return error_status(exc) in _CONGESTION_STATUSES


def breaker_failure(exc: BaseException) -> bool:
    """Whether a failure counts against the provider's circuit: its fault, not ours, not a 429."""
    if isinstance(exc, (TimeoutError, ProviderTimeout)):
        return True
    if isinstance(exc, (RateLimited, CircuitOpen, WorkerLost)):
        return False
    return isinstance(exc, ProviderError) and exc.retryable


def parse_limits_env(text: str, *, variable: str = "AGENTFLEET_LIMITS") -> dict[str, dict[str, Any]]:
    """``"openai/gpt-4o=rpm:500,tpm:30000; anthropic=rpm:50"`` -> ``{key: {field: value}}``, each entry
    checked by the same ``LimitSpec`` as ``settings.resilience.limits`` in a workflow."""
    from pydantic import ValidationError

    from ..spec import LimitSpec

    known = tuple(LimitSpec.model_fields)
    limits: dict[str, dict[str, Any]] = {}
    for part in text.replace("\n", ";").split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, body = part.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError(f"expected 'provider[/model]=rpm:N,tpm:N,...', got {part!r}",
                            field=variable)
        fields: dict[str, str] = {}
        for item in body.split(","):
            name, colon, value = item.strip().partition(":")
            name = name.strip()
            if not colon or name not in known:
                raise SpecError(f"{key}: unknown setting {item.strip()!r} (known: {', '.join(known)})", field=variable)
            fields[name] = value.strip()
        try:
            spec = LimitSpec.model_validate(fields)
        except ValidationError as exc:
            error = exc.errors()[0]
            name = ".".join(str(p) for p in error["loc"])
            raise SpecError(f"{key}: {name}: {error['msg'].lower()}, got {fields.get(name, '')!r}",
                            field=variable) from None
        limits[key] = limit_fields(spec)
    return limits


def merge_limits(layers: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Later layers override earlier ones, field by field (``None`` leaves a field as it was)."""
    merged: dict[str, Any] = {}
    for layer in layers:
        for name, value in layer.items():
            if value is not None:
                merged[name] = value
    return merged


def limit_fields(spec: LimitSpec | None) -> dict[str, Any]:
    """The fields a user set on a LimitSpec (defaults left out, so they do not override)."""
    if spec is None:
        return {}
    return {name: getattr(spec, name) for name in spec.model_fields_set}


class _Latencies:
    """Recent successful latencies of one provider+model: p95 and count for routing and reports."""

    __slots__ = ("_sorted_cache", "_values")

    def __init__(self, window: int = 256) -> None:
        self._values: deque[float] = deque(maxlen=window)
        self._sorted_cache: list[float] | None = None

    def add(self, latency: float) -> None:
        self._values.append(latency)
        self._sorted_cache = None

    def __len__(self) -> int:
        return len(self._values)

    def quantile(self, q: float) -> float | None:
        if not self._values:
            return None
        if self._sorted_cache is None:
            self._sorted_cache = sorted(self._values)
        ordered = self._sorted_cache
        rank = max(1, math.ceil(q * len(ordered)))
        return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class GuardStatistics:
    """What one provider+model saw during a run (the report's resilience table)."""

    identity: str
    calls: int
    succeeded: int
    failed: int
    rate_limited: int
    breaker_state: str
    breaker_opened: int
    adaptive_limit: int | None
    limit_waits: int
    limit_wait_s: float
    p50: float | None
    p95: float | None
    hedges: int
    hedge_wins: int


class ProviderGuard:
    """Everything shared by the calls to one provider+model: limiter, adaptive gate, breaker, latencies."""

    def __init__(self, identity: str, *, limiter: Any = None, adaptive: AIMDLimit | None = None,
                 breaker: CircuitBreaker, clock: Clock) -> None:
        self.identity = identity
        self.limiter = limiter  # RateLimiter or SharedRateLimiter (the ``Limiter`` protocol)
        self.adaptive = adaptive
        self.breaker = breaker
        self.clock = clock
        self.latencies = _Latencies()
        self.inflight = 0  # in the adaptive gate
        self.pending = 0  # sent to the provider, not answered yet
        self.streak = 0  # failures since the provider last answered (any caller)
        self._gate_waiters: deque[asyncio.Future[None]] = deque()
        self.calls = 0
        self.succeeded = 0
        self.failed = 0
        self.rate_limited = 0
        self.limit_waits = 0
        self.limit_wait_s = 0.0
        self.hedges = 0
        self.hedge_wins = 0

    @property
    def simple(self) -> bool:
        """No limiter and no adaptive gate: a call only needs the breaker."""
        return self.limiter is None and self.adaptive is None

    async def enter(self) -> None:
        """Wait for room under the adaptive limit, then take it."""
        adaptive = self.adaptive
        if adaptive is not None and self.inflight >= adaptive.limit:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._gate_waiters.append(waiter)
            try:
                while True:
                    await waiter
                    if self.inflight < adaptive.limit:
                        break
                    waiter = asyncio.get_running_loop().create_future()
                    self._gate_waiters.appendleft(waiter)  # keep its place in line
            except BaseException:
                if not waiter.done():
                    waiter.cancel()
                self._wake()  # a wake-up meant for us goes to the next in line
                raise
        self.inflight += 1

    def leave(self) -> None:
        self.inflight -= 1
        self._wake()

    def _wake(self) -> None:
        adaptive = self.adaptive
        room = (adaptive.limit if adaptive is not None else math.inf) - self.inflight
        while room > 0 and self._gate_waiters:
            waiter = self._gate_waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                room -= 1

    def outcome(self, latency: float, exc: BaseException | None, inflight: int) -> None:
        """Feed one finished call to the breaker, the adaptive limit and the latency window."""
        if isinstance(exc, asyncio.CancelledError):
            return  # a hedge that lost, or a run that stopped: says nothing about the provider
        now = self.clock.now()
        if exc is None:
            self.streak = 0
            self.succeeded += 1
            self.breaker.record_success(now)
            self.latencies.add(latency)
        else:
            self.failed += 1
            self.streak += 1
            if isinstance(exc, RateLimited):
                self.rate_limited += 1
            if breaker_failure(exc):
                self.breaker.record_failure(now, self.pending)
        if self.adaptive is not None:
            before = self.adaptive.limit
            self.adaptive.on_sample(latency, exc is not None and congestion(exc), inflight, now)
            if self.adaptive.limit > before:
                self._wake()

    def statistics(self) -> GuardStatistics:
        now = self.clock.now()
        breaker = self.breaker.statistics(now)
        return GuardStatistics(
            identity=self.identity, calls=self.calls, succeeded=self.succeeded, failed=self.failed,
            rate_limited=self.rate_limited, breaker_state=str(self.breaker.state(now)),
            breaker_opened=breaker.opened,
            adaptive_limit=self.adaptive.limit if self.adaptive is not None else None,
            limit_waits=self.limit_waits, limit_wait_s=self.limit_wait_s,
            p50=self.latencies.quantile(0.5), p95=self.latencies.quantile(0.95),
            hedges=self.hedges, hedge_wins=self.hedge_wins)


@dataclass(slots=True)
class Target:
    """One provider+model an agent's calls can go to: its pool, its guard and its routing facts."""

    name: str  # the pool's name: the agent, or "agent~N" for its N-th fallback
    label: str  # "provider/model" for messages and reports
    model: str
    pool: AgentPool | SlotPool
    guard: ProviderGuard
    quality: float = 1.0
    expected_latency: float | None = None
    hedge: HedgePolicy | None = None
    hedge_after: float | None = None

    def estimate(self) -> float | None:
        """The latency to expect: the measured p95, else what the spec declared."""
        measured = self.guard.latencies.quantile(0.95) if len(self.guard.latencies) >= 5 else None
        return measured if measured is not None else self.expected_latency


@dataclass(slots=True)
class Route:
    targets: list[Target]
    routing: str = "ordered"
    #: one target, no limiter, no adaptive gate, no hedging: the call needs only breaker and pool
    fast: bool = False


@dataclass(slots=True)
class CachePlan:
    """How one call uses the cache: its key, and what to write after the output is accepted."""

    key: str
    ttl: float | None = None
    tags: tuple[str, ...] = ()
    derived_from: tuple[str, ...] = ()


@dataclass(slots=True)
class CacheCounters:
    """Per-run cache accounting beyond the tiered cache's own counters."""

    hits: int = 0
    coalesced: int = 0
    saved_tokens: int = 0
    saved_seconds: float = 0.0
    writes: int = 0
    unstorable: int = 0
    by_level: dict[str, int] = field(default_factory=dict)


class Gateway:
    """Routes an agent's calls through cache, coalescing, fallbacks, breakers, limits and hedging."""

    def __init__(self, *, clock: Clock, cache: TieredCache | None = None, coalesce: bool = True,
                 budget: RetryBudget | None = None) -> None:
        self.clock = clock
        self.cache: TieredCache | None = None
        self._coalescer: Any = None
        if cache is not None:
            self.use_cache(cache, coalesce=coalesce)
        self.budget = budget if budget is not None else RetryBudget()
        self.routes: dict[str, Route] = {}
        self.guards: dict[str, ProviderGuard] = {}
        self.cache_counters = CacheCounters()
        self._time: Callable[[], float] = clock.now

    def bind_time(self) -> None:
        """Read the running loop's clock directly on the hot path when the clock is the loop's
        (one call per reading instead of three); call at the start of each run, in its loop."""
        self._time = asyncio.get_running_loop().time if type(self.clock) is LoopClock else self.clock.now

    def use_cache(self, cache: TieredCache, *, coalesce: bool = True) -> None:
        """Read and write answers through ``cache``; with ``coalesce`` identical in-flight calls share one."""
        self.cache = cache
        if coalesce:
            from ..cache import Coalescer

            self._coalescer = Coalescer()

    # -- setup --------------------------------------------------------------------------------

    def guard(self, identity: str, *, limits: Mapping[str, Any], http: bool,
              breaker: tuple[int, float, float, int, float], shared: Any = None) -> ProviderGuard:
        """The guard of ``identity`` (created on first use; every agent on it shares it)."""
        existing = self.guards.get(identity)
        if existing is not None:
            return existing
        rpm, tpm, cap = limits.get("rpm"), limits.get("tpm"), limits.get("max_concurrency")
        limiter: Any = None
        if shared is not None:
            limiter = shared
        elif rpm is not None or tpm is not None or cap is not None:
            limiter = RateLimiter(rpm=rpm, tpm=tpm, max_concurrency=cap, burst_requests=limits.get("burst"))
        adaptive_on = limits.get("adaptive")
        if adaptive_on is None:
            adaptive_on = http
        adaptive = None
        if adaptive_on:
            top = int(cap) if cap is not None else 1000
            initial = max(1, min(int(limits.get("initial_concurrency", 16)), top))
            adaptive = AIMDLimit(initial, min_limit=1, max_limit=max(top, initial))
        failures, window, cooldown, half_open, rate = breaker
        made = ProviderGuard(identity, limiter=limiter, adaptive=adaptive,
                             breaker=CircuitBreaker(failures, window, cooldown, half_open, failure_rate=rate,
                                                    provider=identity),
                             clock=self.clock)
        self.guards[identity] = made
        return made

    def add_route(self, agent: str, targets: list[Target], routing: str = "ordered") -> None:
        only = targets[0]
        fast = (len(targets) == 1 and only.guard.simple and only.hedge is None and only.hedge_after is None)
        self.routes[agent] = Route(targets, routing, fast)

    def candidates(self, agent: str) -> int:
        return len(self.routes[agent].targets)

    def reopens_in(self, agent: str, index: int) -> float | None:
        """Seconds until the circuit of ``agent``'s candidate ``index`` half-opens (None: not open)."""
        breaker = self.routes[agent].targets[index].guard.breaker
        now = self.clock.now()
        if breaker.state(now) is not BreakerState.OPEN:
            return None
        retry_at = breaker.statistics(now).retry_at
        return None if retry_at is None else max(0.0, retry_at - now)

    def failure_streak(self, agent: str, index: int) -> int:
        """Failures in a row of ``agent``'s candidate ``index`` across all its callers (0 after any success)."""
        return self.routes[agent].targets[index].guard.streak

    def target(self, agent: str, index: int) -> Target:
        return self.routes[agent].targets[index]

    # -- calls ---------------------------------------------------------------------------------

    async def call(self, agent: str, request: ProviderRequest, *, timeout: float | None,
                   meta: dict[str, Any] | None = None, first: int = 0, deadline: float | None = None,
                   cache: CachePlan | None = None) -> ProviderResponse:
        """One answer for ``request`` from ``agent``'s route, starting at candidate ``first``.

        ``meta`` (the task record's) receives cache, coalescing, hedging, fallback and limit-wait notes."""
        if cache is not None and self.cache is not None:
            value = await self.cache.get(cache.key)
            if value is not None:
                return self._from_cache(value, meta)
            coalescer = self._coalescer
            if coalescer is not None:
                if coalescer.in_flight(cache.key):
                    self.cache_counters.coalesced += 1
                    if meta is not None:
                        meta["coalesced"] = True
                response: ProviderResponse = await coalescer.run(
                    cache.key, lambda: self._fetch(agent, request, timeout, meta, first, deadline))
                return response
        route = self.routes[agent]
        if route.fast:
            # The hot path of sim, python and command agents without limits: what ``_attempt``
            # does for a simple guard, inline (one coroutine less per task, two clock reads).
            target = route.targets[0]
            guard = target.guard
            time = self._time
            now = time()
            if not guard.breaker.closed:
                guard.breaker.check(now)
            guard.calls += 1
            if request.options.get("attempt", 1) == 1:
                self.budget.record_request(now)
            pool = target.pool
            started = now
            try:
                member = pool.acquire_nowait()
            except WouldBlock:
                member = await pool.acquire()
                started = time()
            guard.pending += 1
            try:
                if timeout is None:
                    answer = await member.provider.complete(request)
                else:
                    async with asyncio.timeout(timeout):
                        answer = await member.provider.complete(request)
            except BaseException as exc:
                guard.pending -= 1
                pool.release(member, lost=isinstance(exc, WorkerLost))
                guard.outcome(time() - started, exc, 0)
                raise
            guard.pending -= 1
            pool.release(member, lost=False)
            now = time()
            guard.streak = 0
            guard.succeeded += 1
            breaker = guard.breaker
            if breaker.closed:
                breaker.note_success(now)
            else:
                breaker.record_success(now)
            guard.latencies.add(now - started)
            return answer
        return await self._fetch(agent, request, timeout, meta, first, deadline)

    async def remember(self, plan: CachePlan, response: ProviderResponse) -> None:
        """Write an accepted answer to the cache (not when it came from there)."""
        if self.cache is None or response.meta.get("cache"):
            return
        from ..cache import response_to_json

        value = response_to_json(response)
        value["latency"] = response.latency
        try:
            await self.cache.put(plan.key, value, ttl=plan.ttl, tags=plan.tags, derived_from=plan.derived_from)
        except TypeError:
            self.cache_counters.unstorable += 1  # an answer that is not JSON (a python agent's object)
            return
        self.cache_counters.writes += 1

    def _from_cache(self, value: dict[str, Any], meta: dict[str, Any] | None) -> ProviderResponse:
        from ..cache import response_from_json

        response = response_from_json(value)
        level = (self.cache.last_level if self.cache is not None else None) or "cache"
        response.meta = {"cache": level}
        counters = self.cache_counters
        counters.hits += 1
        counters.by_level[level] = counters.by_level.get(level, 0) + 1
        counters.saved_tokens += response.tokens_in + response.tokens_out
        latency = value.get("latency")
        if isinstance(latency, (int, float)):
            counters.saved_seconds += float(latency)
        if meta is not None:
            meta["cache"] = level
        return response

    def choose(self, agent: str, first: int, deadline: float | None) -> tuple[int, Target]:
        """The candidate to call: see the module comment. Raises CircuitOpen when all are open."""
        route = self.routes[agent]
        targets = route.targets
        now = self.clock.now()
        if len(targets) == 1:  # the common case: only the breaker to ask
            targets[0].guard.breaker.check(now)
            return 0, targets[0]
        order = list(range(first, len(targets)))
        if route.routing == "latency" and len(order) > 1:
            order.sort(key=lambda i: -targets[i].quality)  # stable: declared order breaks ties
            if deadline is not None:
                meeting = [i for i in order if (targets[i].estimate() or 0.0) <= deadline]
                if meeting:
                    order = meeting + [i for i in order if i not in meeting]
                else:  # nobody meets it: the fastest first
                    order.sort(key=lambda i: targets[i].estimate() or 0.0)
        refusal: CircuitOpen | None = None
        for index in order:
            target = targets[index]
            breaker = target.guard.breaker
            if breaker.state(now) is BreakerState.OPEN:
                if refusal is None:
                    try:
                        breaker.check(now)
                    except CircuitOpen as exc:
                        refusal = exc
                continue
            try:
                breaker.check(now)
            except CircuitOpen as exc:
                refusal = refusal or exc
                continue
            return index, target
        assert refusal is not None
        raise refusal

    async def _fetch(self, agent: str, request: ProviderRequest, timeout: float | None,
                     meta: dict[str, Any] | None, first: int, deadline: float | None) -> ProviderResponse:
        index, target = self.choose(agent, first, deadline)
        if index and meta is not None:
            meta["route"] = target.label
        if target.hedge is None and target.hedge_after is None:
            return await self._attempt(target, request, timeout, meta)
        return await self._hedged(target, request, timeout, meta)

    async def _attempt(self, target: Target, request: ProviderRequest, timeout: float | None,
                       meta: dict[str, Any] | None) -> ProviderResponse:
        guard = target.guard
        clock = self.clock
        guard.calls += 1
        if request.options.get("attempt", 1) == 1:
            self.budget.record_request(clock.now())  # a first attempt earns the budget a share of a retry
        if target.model != request.model:
            request = _with_model(request, target.model)
        grant: Any = None
        limiter = guard.limiter
        entered = False
        started: float | None = None
        inflight = 0
        try:
            if not guard.simple:
                waited_from = clock.now()
                if limiter is not None:
                    grant = await limiter.acquire(_estimate(request), clock)
                await guard.enter()
                entered = True
                waited = clock.now() - waited_from
                if waited > 0.0:
                    guard.limit_waits += 1
                    guard.limit_wait_s += waited
                    if meta is not None:
                        meta["limit_wait"] = meta.get("limit_wait", 0.0) + waited
            pool = target.pool
            try:
                member = pool.acquire_nowait()
            except WouldBlock:
                member = await pool.acquire()
            lost = False
            inflight = guard.inflight
            started = clock.now()
            guard.pending += 1
            try:
                if timeout is not None:
                    async with asyncio.timeout(timeout):
                        response = await member.provider.complete(request)
                else:
                    response = await member.provider.complete(request)
            except WorkerLost:
                lost = True
                raise
            finally:
                guard.pending -= 1
                pool.release(member, lost=lost)
        except BaseException as exc:
            if started is not None:
                guard.outcome(clock.now() - started, exc, inflight)
            if grant is not None:
                headers = getattr(exc, "headers", None)
                if headers:
                    limiter.observe_headers(headers, clock.now())
                elif isinstance(exc, RateLimited) and exc.retry_after:
                    limiter.observe_headers({"x-ratelimit-remaining-requests": "0",
                                             "x-ratelimit-reset-requests": f"{exc.retry_after:g}s"}, clock.now())
                await _settle(limiter, grant, None, clock, unused=unserved(exc))
            raise
        finally:
            if entered:
                guard.leave()
        guard.outcome(clock.now() - started, None, inflight)
        if target.hedge is not None:
            target.hedge.record(clock.now() - started, clock.now())
        if grant is not None:
            headers = response.meta.get("headers")
            if headers:
                limiter.observe_headers(headers, clock.now())
            await _settle(limiter, grant, response.tokens_in + response.tokens_out, clock)
        return response

    async def _hedged(self, target: Target, request: ProviderRequest, timeout: float | None,
                      meta: dict[str, Any] | None) -> ProviderResponse:
        delay = target.hedge_after
        if delay is None:
            assert target.hedge is not None
            delay = target.hedge.hedge_after(self.clock.now())
        if delay is None:  # too few samples yet
            return await self._attempt(target, request, timeout, meta)
        loop = asyncio.get_running_loop()
        primary = loop.create_task(self._attempt(target, request, timeout, meta))
        tasks = [primary]
        try:
            done, _ = await asyncio.wait(tasks, timeout=delay)
            if done:
                return primary.result()
            target.guard.hedges += 1
            if meta is not None:
                meta["hedges"] = meta.get("hedges", 0) + 1
            tasks.append(loop.create_task(self._attempt(target, request, timeout, meta)))
            pending = set(tasks)
            failure: BaseException | None = None
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in tasks:  # in send order: the primary wins a tie
                    if task in done and not task.cancelled() and task.exception() is None:
                        if task is not primary:
                            target.guard.hedge_wins += 1
                            if meta is not None:
                                meta["hedge_won"] = True
                        return task.result()
                    if task in done and failure is None and not task.cancelled():
                        failure = task.exception()
            assert failure is not None
            raise failure
        finally:
            losers = [task for task in tasks if not task.done()]
            for task in losers:
                task.cancel()
            if losers:
                await asyncio.gather(*losers, return_exceptions=True)

    async def aclose(self) -> None:
        """Close what the guards hold open (a shared limiter's Redis connection)."""
        for guard in self.guards.values():
            closing = getattr(guard.limiter, "aclose", None)
            if closing is not None:
                await closing()

    # -- reports -------------------------------------------------------------------------------

    def statistics(self) -> list[GuardStatistics]:
        return [guard.statistics() for guard in self.guards.values()]


def _estimate(request: ProviderRequest) -> int:
    """Tokens a request will use, for the token bucket: prompt estimate plus the answer's cap."""
    sent = (len(request.system) + len(request.prompt) + 3) // 4
    return sent + (request.max_tokens if request.max_tokens is not None else 256)


async def _settle(limiter: Any, grant: Any, tokens: int | None, clock: Clock, *, unused: bool = False) -> None:
    if isinstance(limiter, RateLimiter):
        limiter.release(grant, tokens, clock.now(), unused=unused)
    else:  # the shared limiter keeps the request: the refund is not worth a second Redis round trip
        await limiter.settle(grant, tokens, clock)


def unserved(exc: BaseException) -> bool:
    """Whether the provider refused a call without serving it (a 5xx, or no connection at all):
    such calls do not count against its request and token limits, so ours gives them back."""
    if isinstance(exc, ProviderError) and "cannot reach" in str(exc):
        return True
    status = error_status(exc)
    return status is not None and status >= 500


def _with_model(request: ProviderRequest, model: str) -> ProviderRequest:
    return ProviderRequest(
        task_id=request.task_id, agent=request.agent, model=model, system=request.system,
        prompt=request.prompt, max_tokens=request.max_tokens, temperature=request.temperature,
        output_schema=request.output_schema, timeout=request.timeout, options=request.options,
        stream=request.stream)


def env_limits() -> dict[str, dict[str, Any]]:
    """Limits from ``AGENTFLEET_LIMITS`` (empty when unset)."""
    text = os.environ.get("AGENTFLEET_LIMITS", "")
    return parse_limits_env(text) if text.strip() else {}
