"""Rate limits shared through Redis by every process that uses the same key (a fleet of runners
on one provider account): requests/min, tokens/min and concurrency, like ``RateLimiter``.

# Design
# The state lives in Redis under ``{prefix}{<key>}:`` (the braces keep both keys in one
# cluster slot):
#   ...:b   a hash with the two token buckets: ``r``/``rt`` (requests: level, time of level)
#           and ``t``/``tt`` (tokens). A missing field means a full bucket.
#   ...:l   a sorted set of concurrency leases: member = grant id (``<instance>:<n>``),
#           score = the lease's expiry.
# Every decision is one Lua script (EVALSHA through redis-py's ``register_script``), so it
# is atomic across processes and one round trip. The scripts read the time with Redis
# ``TIME``: the one clock every process shares, so no process's clock skew can refill a
# bucket early. Buckets refill continuously in the script (level + elapsed × rate, capped
# at the burst) exactly like ``TokenBucket``:
#   acquire  drops expired leases (score <= now), then takes one request, the estimated
#            tokens and a lease (now + ``lease``) all together, or nothing; it answers
#            granted / the seconds the buckets need / "no free slot".
#   settle   removes the lease and adds ``estimate - actual`` to the token bucket: a refund
#            (capped at the burst) or a debt (the level may go below zero, which delays the
#            next grant by exactly the time refilling it takes).
#   headers  lowers a bucket to the server-reported ``remaining`` (never raises it).
# A bucket hash expires once every bucket in it would be full again, and the lease set
# once its longest lease has run out (TTLs are only ever extended), so an idle key leaves
# nothing behind. A process that dies holding slots gets them back for the others when its
# leases expire: ``lease`` is the longest a call may hold a slot, so set it above the
# longest call timeout.
#
# Waiting. A bucket wait is exact (the script says how long), so the waiter sleeps that
# long on the clock. A full concurrency set can be freed by any process at any moment, so
# the waiter polls: every ``poll_interval`` (50 ms) or at once when a ``settle`` in this
# process frees a slot. Polling rather than pub/sub: a notification channel needs a
# dedicated connection per limiter, a notification published between a failed attempt and
# the subscription is lost, and a lease that expires publishes nothing, so polling would
# be needed anyway; 50 ms is noise next to the seconds a model call takes. To keep the
# polling cheap, waiters in one process queue behind an ``asyncio.Lock`` (FIFO) and only
# the head of the queue asks Redis; an ``acquire`` with nobody queued asks at once, so
# concurrent grants on an idle limiter are not serialised.
#
# Redis does the deciding, so the clock only measures waits: use a real-time clock (the
# waits come from Redis' time; on a virtual clock they would pass instantly and busy-poll).
# An ``acquire`` cancelled while its script is in flight gives the grant back (slot,
# request and tokens) in the background instead of leaking it for ``lease`` seconds.
# Redis failures raise ``BusError`` naming the URL: the limiter is shared state between
# processes, like the bus, and cannot decide without it.
#
# redis and redis.asyncio are imported on first use, so importing agentfleet.resilience
# stays cheap for processes that never share a limit.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import uuid
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._redact import redact
from .._types import Clock
from ..errors import BusClosed, BusError
from ._ratelimit import Grant, Limiter, RateLimiter, RateLimiterStatistics, _number

if TYPE_CHECKING:
    import redis.asyncio as aredis
    from redis.commands.core import AsyncScript

__all__ = ["SharedLimiterState", "SharedRateLimiter"]

# Helpers shared by every script. KEYS[1] is the bucket hash, KEYS[2] the lease set.
_LUA_COMMON = """
if redis.replicate_commands then pcall(redis.replicate_commands) end
local function fmt(x)
  if x == nil then return '' end
  return string.format('%.17g', x)
end
local function server_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
-- bucket field f at now: level and the time it is valid at (time never goes backwards)
local function level(f, rate, burst, now)
  local v = redis.call('HMGET', KEYS[1], f, f .. 't')
  local lvl, ts = tonumber(v[1]), tonumber(v[2])
  if lvl == nil or ts == nil then return burst, now end
  if now > ts then
    lvl = lvl + (now - ts) * rate
    ts = now
  end
  if lvl > burst then lvl = burst end
  return lvl, ts
end
-- write a bucket and keep the hash until it would be full again (TTLs only grow)
local function store(f, lvl, ts, rate, burst)
  redis.call('HSET', KEYS[1], f, fmt(lvl), f .. 't', fmt(ts))
  local ms = math.ceil((burst - lvl) / rate * 1000) + 1000
  if redis.call('PTTL', KEYS[1]) < ms then redis.call('PEXPIRE', KEYS[1], ms) end
end
"""

# ARGV: requests rate/s, burst (rate 0 = no limit); tokens rate/s, burst; tokens estimate;
# max concurrency (0 = none); lease seconds; lease member.
# Returns {status, wait, requests level, tokens level}: status 1 granted, 0 wait for the
# buckets (wait = seconds), 2 no free concurrency slot.
_ACQUIRE = _LUA_COMMON + """
local rr, rb = tonumber(ARGV[1]), tonumber(ARGV[2])
local tr, tb = tonumber(ARGV[3]), tonumber(ARGV[4])
local est, maxc, lease = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local now = server_now()
local wait = 0
local rl, rts, tl, tts
if rr > 0 then
  rl, rts = level('r', rr, rb, now)
  local need = math.min(1, rb)
  if rl < need then wait = math.max(wait, (need - rl) / rr) end
end
if tr > 0 then
  tl, tts = level('t', tr, tb, now)
  local need = math.min(est, tb)
  if tl < need then wait = math.max(wait, (need - tl) / tr) end
end
if maxc > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', fmt(now))
  if redis.call('ZCARD', KEYS[2]) >= maxc then return {2, fmt(wait), fmt(rl), fmt(tl)} end
end
if wait > 0 then return {0, fmt(wait), fmt(rl), fmt(tl)} end
if rr > 0 then
  rl = rl - 1
  store('r', rl, rts, rr, rb)
end
if tr > 0 then
  tl = tl - est
  store('t', tl, tts, tr, tb)
end
if maxc > 0 then
  redis.call('ZADD', KEYS[2], fmt(now + lease), ARGV[8])
  local ms = math.ceil(lease * 1000) + 1000
  if redis.call('PTTL', KEYS[2]) < ms then redis.call('PEXPIRE', KEYS[2], ms) end
end
return {1, '0', fmt(rl), fmt(tl)}
"""

# ARGV: lease member; requests rate/s, burst, requests to give back; tokens rate/s, burst,
# tokens to add (estimate - actual: negative is a debt). Returns {lease removed, requests
# level, tokens level} (levels '' when untouched).
_SETTLE = _LUA_COMMON + """
local removed = redis.call('ZREM', KEYS[2], ARGV[1])
local rr, rb, rd = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tr, tb, td = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local rl, tl
if (rr > 0 and rd ~= 0) or (tr > 0 and td ~= 0) then
  local now = server_now()
  if rr > 0 and rd ~= 0 then
    local ts
    rl, ts = level('r', rr, rb, now)
    rl = math.min(rb, rl + rd)
    store('r', rl, ts, rr, rb)
  end
  if tr > 0 and td ~= 0 then
    local ts
    tl, ts = level('t', tr, tb, now)
    tl = math.min(tb, tl + td)
    store('t', tl, ts, tr, tb)
  end
end
return {removed, fmt(rl), fmt(tl)}
"""

# ARGV: requests rate/s, burst, remaining ('' = not reported); tokens likewise.
# Returns {buckets lowered, requests level, tokens level}.
_HEADERS = _LUA_COMMON + """
local now = server_now()
local lowered = 0
local out = {}
for i, f in ipairs({'r', 't'}) do
  local rate, burst, rem = tonumber(ARGV[3 * i - 2]), tonumber(ARGV[3 * i - 1]), tonumber(ARGV[3 * i])
  if rate > 0 and rem ~= nil then
    local lvl, ts = level(f, rate, burst, now)
    if lvl > rem then
      lvl = rem
      store(f, lvl, ts, rate, burst)
      lowered = lowered + 1
    end
    out[i] = lvl
  end
end
return {lowered, fmt(out[1]), fmt(out[2])}
"""

# Read-only. ARGV: requests rate/s, burst; tokens rate/s, burst.
# Returns {requests level, tokens level, live leases}.
_STATE = _LUA_COMMON + """
local now = server_now()
local rr, rb, tr, tb = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local rl, tl
if rr > 0 then rl = level('r', rr, rb, now) end
if tr > 0 then tl = level('t', tr, tb, now) end
return {fmt(rl), fmt(tl), redis.call('ZCOUNT', KEYS[2], '(' .. fmt(now), '+inf')}
"""


@dataclass(frozen=True, slots=True)
class SharedLimiterState:
    """The shared buckets as every process sees them now: ``requests_available`` and
    ``tokens_available`` (negative while in debt; None for a limit not configured) and
    ``leases``, the concurrency slots held (by any process) and not yet expired."""

    requests_available: float | None
    tokens_available: float | None
    leases: int


class SharedRateLimiter:
    """``rpm`` requests and ``tpm`` tokens per minute and at most ``max_concurrency`` calls in flight,
    shared by every process that uses the same Redis and ``key`` (a ``Limiter``).

    ``redis_url_or_client`` is a URL (the client is made on first use, in the running loop, and
    closed by ``aclose``) or a ``redis.asyncio.Redis`` (left open). ``None`` leaves a limit off;
    ``burst_requests`` / ``burst_tokens`` default to a minute's worth, as in ``RateLimiter``.
    Every process sharing a key should use the same limits. A concurrency slot is a lease: one
    not settled within ``lease`` seconds (its process died) frees itself. ``poll_interval`` is
    how often a waiter for a slot asks Redis again (a ``settle`` in this process wakes it at once).
    Redis failures raise ``BusError``."""

    def __init__(
        self,
        redis_url_or_client: str | aredis.Redis,
        key: str,
        rpm: float | None = None,
        tpm: float | None = None,
        max_concurrency: int | None = None,
        *,
        lease: float = 600.0,
        prefix: str = "agentfleet:rl:",
        burst_requests: float | None = None,
        burst_tokens: float | None = None,
        poll_interval: float = 0.05,
        socket_timeout: float = 5.0,
    ) -> None:
        for name, value in (("rpm", rpm), ("tpm", tpm), ("burst_requests", burst_requests),
                            ("burst_tokens", burst_tokens)):
            if value is not None and (not value > 0 or not math.isfinite(value)):
                raise ValueError(f"{name} must be a positive number, got {value!r}")
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if not lease > 0 or not math.isfinite(lease):
            raise ValueError(f"lease must be a positive number of seconds, got {lease!r}")
        if not poll_interval > 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval!r}")
        if not key:
            raise ValueError("key must not be empty")
        self.key = key
        self.rpm = rpm
        self.tpm = tpm
        self.max_concurrency = max_concurrency
        self.lease = float(lease)
        self.poll_interval = float(poll_interval)
        self._req = (rpm / 60.0, float(burst_requests or rpm)) if rpm is not None else (0.0, 0.0)
        self._tok = (tpm / 60.0, float(burst_tokens or tpm)) if tpm is not None else (0.0, 0.0)
        base = f"{prefix}{{{key}}}"
        self.keys = (f"{base}:b", f"{base}:l")  # bucket hash, lease set
        if isinstance(redis_url_or_client, str):
            self._url = redis_url_or_client
            self._client: aredis.Redis | None = None
            self._owned = True
        else:
            self._client = redis_url_or_client
            self._url = _describe(redis_url_or_client)
            self._owned = False
        self._socket_timeout = socket_timeout
        self._scripts: dict[str, AsyncScript] = {}
        self._instance = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)
        self._outstanding: dict[int, tuple[Grant, str]] = {}
        self._queue = asyncio.Lock()  # waiters in this process, FIFO; only the head polls Redis
        self._slot_waiter: asyncio.Future[None] | None = None
        self._freed = 0  # settles completed here: a waiter that saw one during its attempt retries at once
        self._background: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._grants = 0
        self._waits = 0
        self._waited = 0.0
        self._refunded = 0
        self._owed = 0
        self._corrections = 0
        self._requests_seen: float | None = None
        self._tokens_seen: float | None = None
        self.expired_leases = 0  # settles that found their lease already expired
        self.background_errors = 0  # header corrections / returns of cancelled grants that failed

    # -- Redis -------------------------------------------------------------------------------

    def _redis(self) -> aredis.Redis:
        if self._closed:
            raise BusClosed(f"shared rate limiter {self.key!r} is closed")
        if self._client is None:
            import redis.asyncio as aredis

            try:
                self._client = aredis.Redis.from_url(self._url, socket_connect_timeout=self._socket_timeout,
                                                     socket_timeout=self._socket_timeout)
            except ValueError as exc:
                raise BusError(f"shared rate limiter {self.key!r}: cannot use Redis at {redact(self._url)}: "
                               f"{exc}") from None
        return self._client

    async def _run(self, name: str, args: list[str | int | float], what: str) -> list[Any]:
        """Run script ``name`` on this limiter's keys; Redis failures as ``BusError``."""
        from redis.exceptions import RedisError

        client = self._redis()
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = client.register_script(_SCRIPTS[name])
        try:
            reply = await script(keys=list(self.keys), args=args, client=client)
        except (RedisError, OSError) as exc:
            raise BusError(f"shared rate limiter {self.key!r}: cannot {what} at {redact(self._url)}: {exc}") from None
        return list(reply)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run ``coro`` as a task this limiter keeps (and awaits in ``aclose``)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background_done)
        return task

    def _background_done(self, task: asyncio.Task[Any]) -> None:
        self._background.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: a caller awaiting it got it; background work counts its own

    # -- decisions ---------------------------------------------------------------------------

    async def try_acquire(self, tokens_estimate: int, now: float) -> Grant | float:
        """One attempt: a ``Grant`` (one request, ``tokens_estimate`` tokens and a lease taken from the
        shared state), or the seconds until the buckets allow it (``math.inf`` when every
        concurrency slot is held; a settle anywhere or an expiring lease frees one). ``now`` (the
        caller's clock) only stamps the grant."""
        if tokens_estimate < 0:
            raise ValueError(f"tokens_estimate must not be negative, got {tokens_estimate}")
        gid = next(self._ids)
        member = f"{self._instance}:{gid}"
        args: list[str | int | float] = [*self._req, *self._tok, tokens_estimate, self.max_concurrency or 0,
                                         self.lease, member]
        call = self._spawn(self._run("acquire", args, "take a grant"))
        try:
            reply = await asyncio.shield(call)
        except asyncio.CancelledError:
            # The script may have granted: give it back rather than leak it for ``lease`` seconds.
            call.add_done_callback(lambda done: self._return_if_granted(done, member, tokens_estimate))
            raise
        status = int(reply[0])
        self._seen(reply[2], reply[3])
        if status == 1:
            grant = Grant(id=gid, tokens_estimate=tokens_estimate, granted_at=now)
            self._outstanding[gid] = (grant, member)
            self._grants += 1
            return grant
        return math.inf if status == 2 else max(float(reply[1]), 1e-6)

    def _return_if_granted(self, call: asyncio.Task[Any], member: str, tokens: int) -> None:
        if call.cancelled() or call.exception() is not None or int(call.result()[0]) != 1:
            return
        if not self._closed:
            self._spawn(self._quietly(self._run("settle", [member, *self._req, 1, *self._tok, tokens],
                                                "return a grant")))

    async def _quietly(self, work: Coroutine[Any, Any, Any]) -> None:
        """Background work nobody awaits: a failure is counted in ``background_errors``."""
        try:
            await work
        except BusError:
            self.background_errors += 1

    async def settle(self, grant: Grant, actual_tokens: int | None, clock: Clock) -> None:
        """Free ``grant``'s concurrency slot and settle its tokens in the shared bucket: refund
        ``estimate - actual`` when the call used fewer, owe the difference when it used more (None:
        keep the estimate). Completes even if the caller is cancelled. Raises ``BusError`` when Redis
        cannot be reached (the lease then frees itself after ``lease`` seconds)."""
        entry = self._outstanding.get(grant.id)
        if entry is None or entry[0] != grant:
            raise ValueError(f"grant {grant.id} is not outstanding (settled twice, or from another limiter)")
        del self._outstanding[grant.id]
        delta = 0 if actual_tokens is None else grant.tokens_estimate - actual_tokens
        await asyncio.shield(self._spawn(self._settle(entry[1], delta)))

    async def _settle(self, member: str, delta: int) -> None:
        try:
            reply = await self._run("settle", [member, *self._req, 0, *self._tok, delta], "settle a grant")
        finally:
            self._wake_slot_waiter()
        if int(reply[0]) == 0 and self.max_concurrency is not None:
            self.expired_leases += 1
        if delta > 0:
            self._refunded += delta
        else:
            self._owed -= delta
        self._seen(reply[1], reply[2])

    def observe_headers(self, headers: Mapping[str, str], now: float) -> None:
        """Lower the shared buckets to the ``remaining`` counts of a response's rate-limit headers
        (OpenAI ``x-ratelimit-remaining-*`` or Anthropic ``anthropic-ratelimit-*-remaining``);
        never raises them. Headers for a limit this limiter is not configured with are ignored.

        Synchronous: the Redis update runs as a background task of this limiter (``flush`` awaits
        it, ``aclose`` finishes it). ``now`` is unused: Redis' time applies."""
        lower = {k.lower(): v for k, v in headers.items()}
        remaining: list[str] = []
        for kind, configured in (("requests", self.rpm is not None), ("tokens", self.tpm is not None)):
            value = _number(lower.get(f"x-ratelimit-remaining-{kind}"))
            if value is None:
                value = _number(lower.get(f"anthropic-ratelimit-{kind}-remaining"))
            remaining.append(repr(value) if configured and value is not None else "")
        if not any(remaining) or self._closed:
            return
        self._spawn(self._quietly(self._lower(remaining)))

    async def _lower(self, remaining: list[str]) -> None:
        args: list[str | int | float] = [*self._req, remaining[0], *self._tok, remaining[1]]
        reply = await self._run("headers", args, "apply rate-limit headers")
        self._corrections += int(reply[0])
        self._seen(reply[1], reply[2])

    def _seen(self, requests: bytes | str, tokens: bytes | str) -> None:
        if requests:
            self._requests_seen = float(requests)
        if tokens:
            self._tokens_seen = float(tokens)

    # -- waiting -----------------------------------------------------------------------------

    async def acquire(self, tokens_estimate: int, clock: Clock) -> Grant:
        """Wait until the shared limits allow one request of ``tokens_estimate`` tokens and return its
        grant. Bucket waits sleep on ``clock`` as long as Redis says; slot waits poll (see the module)."""
        start = clock.now()
        decision: Grant | float | None = None
        freed = self._freed
        if not self._queue.locked():  # nobody waiting here: ask at once, concurrently with others
            decision = await self.try_acquire(tokens_estimate, clock.now())
            if isinstance(decision, Grant):
                return decision
        contended = self._queue.locked()
        async with self._queue:
            if contended:
                decision = None  # the answer is stale after waiting for the queue
            while True:
                if decision is None:
                    freed = self._freed
                    decision = await self.try_acquire(tokens_estimate, clock.now())
                if isinstance(decision, Grant):
                    self._waits += 1
                    self._waited += clock.now() - start
                    return decision
                if math.isinf(decision):
                    if freed == self._freed:  # else a slot was freed here while we asked: ask again
                        await self._wait_for_slot(clock)
                else:
                    await clock.sleep(decision)
                decision = None

    async def _wait_for_slot(self, clock: Clock) -> None:
        """Sleep ``poll_interval`` on the clock, or less if this process settles a grant meanwhile."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._slot_waiter = waiter
        sleeper = asyncio.ensure_future(clock.sleep(self.poll_interval))
        try:
            await asyncio.wait((waiter, sleeper), return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            if self._slot_waiter is waiter:
                self._slot_waiter = None

    def _wake_slot_waiter(self) -> None:
        self._freed += 1
        waiter, self._slot_waiter = self._slot_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # -- state and lifecycle -----------------------------------------------------------------

    async def state(self) -> SharedLimiterState:
        """The shared buckets and the live leases as of now (one read-only script)."""
        reply = await self._run("state", [*self._req, *self._tok], "read the shared limits")
        return SharedLimiterState(
            requests_available=float(reply[0]) if reply[0] else None,
            tokens_available=float(reply[1]) if reply[1] else None,
            leases=int(reply[2]),
        )

    def statistics(self, now: float) -> RateLimiterStatistics:
        """This process's counters; ``inflight`` counts its own unsettled grants and the
        ``*_available`` levels are the shared ones as last seen by this process (None before any)."""
        return RateLimiterStatistics(
            grants=self._grants,
            waits=self._waits,
            waited_s=self._waited,
            inflight=len(self._outstanding),
            requests_available=self._requests_seen if self.rpm is not None else None,
            tokens_available=self._tokens_seen if self.tpm is not None else None,
            refunded=self._refunded,
            owed=self._owed,
            header_corrections=self._corrections,
        )

    async def flush(self) -> None:
        """Wait for the background updates started so far (header corrections, returned grants)."""
        pending = [t for t in self._background if not t.done()]
        if pending:
            await asyncio.wait(pending)

    async def aclose(self, timeout: float = 2.0) -> None:
        """Let background updates finish (cancelling those still running after ``timeout`` seconds),
        then close the client if this limiter made it. Unsettled grants keep their leases until
        they expire."""
        if self._closed:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while pending := [t for t in self._background if not t.done()]:  # finishing one may start another
            _, late = await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
            if late:
                for task in late:
                    task.cancel()
                await asyncio.gather(*late, return_exceptions=True)
                break
        self._closed = True
        self._wake_slot_waiter()
        client, self._client = self._client, None
        self._scripts.clear()
        if client is not None and self._owned:
            await client.aclose()

    async def __aenter__(self) -> SharedRateLimiter:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


_SCRIPTS = {"acquire": _ACQUIRE, "settle": _SETTLE, "headers": _HEADERS, "state": _STATE}



def _describe(client: aredis.Redis) -> str:
    """A URL-like name for a client we were given (for error messages; no password)."""
    kwargs = client.connection_pool.connection_kwargs
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"redis://{kwargs.get('host', '?')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


if TYPE_CHECKING:  # both limiters satisfy the protocol the runtime codes against

    def _is_limiter(shared: SharedRateLimiter, local: RateLimiter) -> tuple[Limiter, Limiter]:
        return shared, local
