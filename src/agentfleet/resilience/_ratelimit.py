"""Client-side rate limits for one provider+model: requests/min, tokens/min, concurrency.

# Design
# Each per-minute limit is a token bucket refilled continuously (``rate`` per second up to
# ``burst``), which is how OpenAI and Anthropic describe their own limits. All decisions
# happen in ``try_acquire(tokens_estimate, now)``: it either takes from every bucket and a
# concurrency slot at once and returns a ``Grant``, or takes nothing and says how long to
# wait. ``async acquire`` only sleeps on the clock (or waits for a ``release`` when the wait
# is for a concurrency slot) and asks again.
#
# Token counts are only estimated before a call. ``release(grant, actual_tokens, now)``
# settles the difference: a refund when the call used fewer tokens, a debt when it used
# more. The token bucket may go below zero, so a debt delays the next grant exactly as
# long as refilling it takes. A single request larger than the burst is granted once the
# bucket is full (and leaves it in debt) rather than never.
#
# The server knows its budget better than we do: ``observe_headers`` lowers a bucket to the
# ``remaining`` a response reports (never raises it, since responses arrive out of order and
# other clients may share the key). For a limit we were not configured with, the headers
# are the only knowledge: remaining and reset time form a fixed window until the reset.
#
# ``Limiter`` is what the runtime calls: acquire, settle, observe_headers, statistics. This
# in-process ``RateLimiter`` and the Redis-backed ``SharedRateLimiter`` (``_shared.py``) both
# satisfy it, so a provider's limits move from one process to a fleet by configuration.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from .._types import Clock
from ._retry import http_date_epoch

__all__ = [
    "Grant",
    "Limiter",
    "RateLimiter",
    "RateLimiterStatistics",
    "TokenBucket",
    "TokenBucketStatistics",
    "parse_duration",
]

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)")
_EPSILON = 1e-9  # units: far below one request or token, far above float rounding
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(value: str) -> float | None:
    """Seconds in a Go-style duration as OpenAI sends it ("1s", "6m0s", "20ms", "1h2m3.5s").

    A bare number is seconds. Returns None for anything else, so a malformed header is ignored."""
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    total = 0.0
    pos = 0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            return None
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    return total if pos == len(text) else None


@dataclass(frozen=True, slots=True)
class TokenBucketStatistics:
    """``level`` available now (negative while in debt), ``rate`` per second, ``burst`` capacity."""

    level: float
    rate: float
    burst: float


class TokenBucket:
    """A continuously refilled bucket: ``rate_per_s`` units per second, at most ``burst`` stored.

    Starts full. Pure: every method takes the current time; time going backwards counts as
    no time passing."""

    __slots__ = ("_last", "_level", "burst", "rate")

    def __init__(self, rate_per_s: float, burst: float) -> None:
        if not rate_per_s > 0 or not math.isfinite(rate_per_s):
            raise ValueError(f"rate_per_s must be a positive number, got {rate_per_s!r}")
        if not burst > 0 or not math.isfinite(burst):
            raise ValueError(f"burst must be a positive number, got {burst!r}")
        self.rate = float(rate_per_s)
        self.burst = float(burst)
        self._level = self.burst
        self._last: float | None = None

    def _refill(self, now: float) -> None:
        if self._last is not None and now > self._last:
            self._level = min(self.burst, self._level + (now - self._last) * self.rate)
        if self._last is None or now > self._last:
            self._last = now

    def level(self, now: float) -> float:
        """Units available at ``now`` (negative while paying off a debt)."""
        self._refill(now)
        return self._level

    def wait_time(self, n: float, now: float) -> float:
        """Seconds until ``n`` units can be taken (0 if now); takes nothing.

        More than ``burst`` units can be taken once the bucket is full."""
        self._refill(now)
        need = min(float(n), self.burst)
        # Within rounding of enough counts as enough: a wait of 1e-15 s added to a clock at 40.0
        # leaves it at 40.0, and a waiter would ask again at the same instant forever.
        if self._level >= need - _EPSILON * max(1.0, need):
            return 0.0
        return (need - self._level) / self.rate

    def take(self, n: float, now: float) -> None:
        """Take ``n`` units unconditionally; the level may go negative (a debt)."""
        self._refill(now)
        self._level -= n

    def give(self, n: float, now: float) -> None:
        """Return ``n`` units (a refund), never above ``burst``."""
        self._refill(now)
        self._level = min(self.burst, self._level + n)

    def lower_to(self, level: float, now: float) -> None:
        """Lower the level to ``level`` if it is higher (the server reported less left)."""
        self._refill(now)
        self._level = min(self._level, float(level))

    def try_take(self, n: float, now: float) -> float:
        """Take ``n`` units and return 0.0, or take nothing and return the seconds to wait."""
        wait = self.wait_time(n, now)
        if wait == 0.0:
            self._level -= n
        return wait

    def statistics(self, now: float) -> TokenBucketStatistics:
        """The bucket's level at ``now`` and its parameters."""
        return TokenBucketStatistics(level=self.level(now), rate=self.rate, burst=self.burst)


@dataclass(frozen=True, slots=True)
class Grant:
    """Permission for one call: hand it back to ``RateLimiter.release`` when the response arrives."""

    id: int
    tokens_estimate: int
    granted_at: float


@dataclass(frozen=True, slots=True)
class RateLimiterStatistics:
    """``grants`` made, of which ``waits`` had to wait, ``waited_s`` seconds in all (async acquire);
    ``inflight`` grants not yet released; ``requests_available`` / ``tokens_available`` in the
    buckets (None when that limit is not configured); ``refunded`` and ``owed`` tokens settled by
    ``release``; ``header_corrections`` times a response's headers lowered a bucket."""

    grants: int
    waits: int
    waited_s: float
    inflight: int
    requests_available: float | None
    tokens_available: float | None
    refunded: int
    owed: int
    header_corrections: int


@runtime_checkable
class Limiter(Protocol):
    """What the runtime calls around every provider call, whatever keeps the limits.

    ``acquire`` waits (on ``clock``) for permission for one request of about ``tokens_estimate``
    tokens and returns the ``Grant``; ``settle`` hands it back when the answer arrives, freeing
    its concurrency slot and reconciling the estimate with ``actual_tokens`` (None: keep the
    estimate). ``observe_headers`` feeds a response's rate-limit headers back; ``statistics``
    reports counters. Implemented by ``RateLimiter`` (one process) and ``SharedRateLimiter``
    (every process using the same Redis and key)."""

    async def acquire(self, tokens_estimate: int, clock: Clock) -> Grant: ...

    async def settle(self, grant: Grant, actual_tokens: int | None, clock: Clock) -> None: ...

    def observe_headers(self, headers: Mapping[str, str], now: float) -> None: ...

    def statistics(self, now: float) -> RateLimiterStatistics: ...


class _ServerWindow:
    """What the server said about a limit we have no bucket for: ``remaining`` until ``reset_at``."""

    __slots__ = ("remaining", "reset_at")

    def __init__(self) -> None:
        self.remaining: float | None = None
        self.reset_at: float | None = None

    def wait_time(self, n: float, now: float) -> float:
        if self.remaining is None or self.reset_at is None:
            return 0.0
        if now >= self.reset_at:
            self.remaining = None
            self.reset_at = None
            return 0.0
        return 0.0 if self.remaining >= n else self.reset_at - now

    def take(self, n: float) -> None:
        if self.remaining is not None:
            self.remaining -= n

    def observe(self, remaining: float, reset_in: float | None, now: float) -> None:
        self.remaining = remaining if self.remaining is None else min(self.remaining, remaining)
        if reset_in is not None:
            self.reset_at = now + reset_in
        elif self.reset_at is None:
            self.remaining = None  # no reset time: we cannot know when it frees up


class RateLimiter:
    """Rate limits for one provider and model: ``rpm`` requests and ``tpm`` tokens per minute, and at
    most ``max_concurrency`` calls in flight (a slot is held until ``release``, not at send).

    ``None`` leaves a limit off. ``burst_requests`` / ``burst_tokens`` default to a full minute's
    worth, matching how providers let an idle client spend its whole minute at once."""

    def __init__(
        self,
        rpm: float | None = None,
        tpm: float | None = None,
        max_concurrency: int | None = None,
        *,
        burst_requests: float | None = None,
        burst_tokens: float | None = None,
    ) -> None:
        if max_concurrency is not None and max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self._requests = TokenBucket(rpm / 60.0, burst_requests or rpm) if rpm is not None else None
        self._tokens = TokenBucket(tpm / 60.0, burst_tokens or tpm) if tpm is not None else None
        self.max_concurrency = max_concurrency
        self._server_requests = _ServerWindow()
        self._server_tokens = _ServerWindow()
        self._outstanding: dict[int, Grant] = {}
        self._ids = itertools.count(1)
        self._slot_waiters: list[asyncio.Future[None]] = []
        self._grants = 0
        self._waits = 0
        self._waited = 0.0
        self._refunded = 0
        self._owed = 0
        self._corrections = 0

    # -- decisions ---------------------------------------------------------------------------

    def try_acquire(self, tokens_estimate: int, now: float) -> Grant | float:
        """A ``Grant`` taking one request, ``tokens_estimate`` tokens and a concurrency slot, or the
        seconds to wait before asking again (``math.inf`` when only a ``release`` can free a slot)."""
        if tokens_estimate < 0:
            raise ValueError(f"tokens_estimate must not be negative, got {tokens_estimate}")
        wait = 0.0
        if self._requests is not None:
            wait = max(wait, self._requests.wait_time(1, now))
        if self._tokens is not None:
            wait = max(wait, self._tokens.wait_time(tokens_estimate, now))
        wait = max(wait, self._server_requests.wait_time(1, now))
        wait = max(wait, self._server_tokens.wait_time(tokens_estimate, now))
        if self.max_concurrency is not None and len(self._outstanding) >= self.max_concurrency:
            wait = math.inf
        if wait > 0.0:
            return wait
        if self._requests is not None:
            self._requests.take(1, now)
        if self._tokens is not None:
            self._tokens.take(tokens_estimate, now)
        self._server_requests.take(1)
        self._server_tokens.take(tokens_estimate)
        grant = Grant(id=next(self._ids), tokens_estimate=tokens_estimate, granted_at=now)
        self._outstanding[grant.id] = grant
        self._grants += 1
        return grant

    def release(self, grant: Grant, actual_tokens: int | None, now: float, *, unused: bool = False) -> None:
        """Free ``grant``'s concurrency slot and settle its tokens: refund ``estimate - actual``
        when the call used fewer, owe the difference when it used more (None: keep the estimate).

        ``unused``: the provider refused the call without counting it (a 5xx it did not serve):
        its request goes back to the bucket too, and all of its tokens."""
        if self._outstanding.pop(grant.id, None) is None:
            raise ValueError(f"grant {grant.id} is not outstanding (released twice, or from another limiter)")
        if unused:
            actual_tokens = 0
            if self._requests is not None:
                self._requests.give(1, now)
            self._server_requests.take(-1)
        if actual_tokens is not None:
            delta = grant.tokens_estimate - actual_tokens
            if self._tokens is not None:
                if delta > 0:
                    self._tokens.give(delta, now)
                elif delta < 0:
                    self._tokens.take(-delta, now)
            self._server_tokens.take(-delta)
            if delta > 0:
                self._refunded += delta
            else:
                self._owed -= delta
        self._wake_one()

    def observe_headers(self, headers: Mapping[str, str], now: float, *, now_epoch: float | None = None) -> None:
        """Correct the buckets from a response's rate-limit headers (OpenAI and Anthropic styles).

        Remaining counts only ever lower a bucket. Anthropic's reset is an RFC 3339 time, turned
        into a delay with ``now_epoch`` (wall-clock seconds), else the response's ``date`` header;
        without either it is ignored."""
        lower = {k.lower(): v for k, v in headers.items()}
        if now_epoch is None and "date" in lower:
            now_epoch = http_date_epoch(lower["date"])
        for kind, server, bucket in (
            ("requests", self._server_requests, self._requests),
            ("tokens", self._server_tokens, self._tokens),
        ):
            remaining = _number(lower.get(f"x-ratelimit-remaining-{kind}"))
            reset_in = _duration_or_none(lower.get(f"x-ratelimit-reset-{kind}"))
            if remaining is None:
                remaining = _number(lower.get(f"anthropic-ratelimit-{kind}-remaining"))
                reset_in = _until(lower.get(f"anthropic-ratelimit-{kind}-reset"), now_epoch)
            if remaining is None:
                continue
            if bucket is not None:
                # Servers report whole units (the floor of their level): only a bucket a whole unit
                # above the report is wrong. Lowering on every fraction would shave up to one request
                # off the budget per answer, a few percent of the limit lost for nothing.
                if bucket.level(now) >= remaining + 1:
                    bucket.lower_to(remaining, now)
                    self._corrections += 1
            else:
                before = server.remaining
                server.observe(remaining, reset_in, now)
                if server.remaining is not None and before != server.remaining:
                    self._corrections += 1

    # -- waiting -----------------------------------------------------------------------------

    async def acquire(self, tokens_estimate: int, clock: Clock) -> Grant:
        """Wait (on ``clock``, or for a release) until ``try_acquire`` grants, and return the grant."""
        start = clock.now()
        waited = False
        while True:
            decision = self.try_acquire(tokens_estimate, clock.now())
            if isinstance(decision, Grant):
                if waited:
                    self._waits += 1
                    self._waited += clock.now() - start
                return decision
            waited = True
            if math.isinf(decision):
                waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
                self._slot_waiters.append(waiter)
                try:
                    await waiter
                finally:
                    if waiter in self._slot_waiters:
                        self._slot_waiters.remove(waiter)
            else:
                await clock.sleep(decision)

    async def settle(self, grant: Grant, actual_tokens: int | None, clock: Clock) -> None:
        """``release(grant, actual_tokens, clock.now())``: the ``Limiter`` form of ``release``."""
        self.release(grant, actual_tokens, clock.now())

    def _wake_one(self) -> None:
        while self._slot_waiters:
            waiter = self._slot_waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                return

    def statistics(self, now: float) -> RateLimiterStatistics:
        """Counters and the buckets' levels at ``now``."""
        return RateLimiterStatistics(
            grants=self._grants,
            waits=self._waits,
            waited_s=self._waited,
            inflight=len(self._outstanding),
            requests_available=self._requests.level(now) if self._requests is not None else None,
            tokens_available=self._tokens.level(now) if self._tokens is not None else None,
            refunded=self._refunded,
            owed=self._owed,
            header_corrections=self._corrections,
        )


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        number = float(value.strip())
    except ValueError:
        return None
    return number if math.isfinite(number) and number >= 0 else None


def _duration_or_none(value: str | None) -> float | None:
    return None if value is None else parse_duration(value)


def _until(value: str | None, now_epoch: float | None) -> float | None:
    """Seconds from ``now_epoch`` to an RFC 3339 time (0 if past); None when either is unknown."""
    if value is None or now_epoch is None:
        return None
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now_epoch)
