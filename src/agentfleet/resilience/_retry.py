"""When to retry a provider call, how long to wait first, and how many retries to allow at all.

# Design
# ``is_retryable`` is an explicit table, not a guess from the status class: 429, 408 and the
# transient 5xx (plus Anthropic's 529 "overloaded") are worth another try; client errors are
# not, because the same request will fail the same way. Without a status, the exception
# decides: our own ``ProviderError.retryable``, timeouts and dropped connections (matched by
# class name too, so httpx's transport errors count without importing httpx).
#
# ``RetryBudget`` follows Finagle's: every request deposits ``ratio`` of a retry, plus a
# floor of ``min_per_s`` retries per second, over a sliding window. When a provider fails
# wholesale, retries stop at about ``ratio`` extra load instead of multiplying it by the
# attempt count (a retry storm).
#
# ``backoff`` is exponential with full jitter (AWS architecture blog, "Exponential backoff
# and jitter"): a uniform draw in [0, min(cap, base * 2**attempt)], never shorter than the
# delay the server asked for in ``Retry-After``.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Protocol

from ..errors import ProviderError

__all__ = [
    "NON_RETRYABLE_STATUSES",
    "RETRYABLE_STATUSES",
    "RetryBudget",
    "RetryBudgetStatistics",
    "SupportsRandom",
    "backoff",
    "http_date_epoch",
    "is_retryable",
    "retry_after_seconds",
]

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504, 529})
"""Statuses where the same request may succeed later: timeout, rate limit, transient server trouble."""

NON_RETRYABLE_STATUSES = frozenset({400, 401, 403, 404, 422})
"""Statuses where the same request will fail the same way (listed for documentation; any status
not in ``RETRYABLE_STATUSES`` is not retried)."""

# Transport failures worth a retry, by class name anywhere in the exception's MRO:
# the standard library's and httpx's (TimeoutException, NetworkError, RemoteProtocolError).
_RETRYABLE_EXCEPTION_NAMES = frozenset({
    "TimeoutError",
    "ConnectionError",  # resets, aborts, refusals, broken pipes
    "TimeoutException",
    "NetworkError",
    "RemoteProtocolError",
})


class SupportsRandom(Protocol):
    """Anything with ``random.Random``'s ``random()``: a float in [0, 1)."""

    def random(self) -> float: ...


def http_date_epoch(value: str) -> float | None:
    """Epoch seconds of an HTTP-date ("Wed, 21 Oct 2015 07:28:00 GMT"), or None if it is not one."""
    try:
        when = parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:  # pragma: no cover - defensive, py3.11 never returns None
        return None
    return when.timestamp()


def retry_after_seconds(value: str, now_epoch: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date.

    An HTTP-date in the past gives 0. Returns None for a malformed or negative value."""
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    epoch = http_date_epoch(text)
    if epoch is None:
        return None
    return max(0.0, epoch - now_epoch)


def is_retryable(status: int | None, exc: BaseException | None) -> bool:
    """Whether a failed call is worth retrying.

    A status decides alone when given (see ``RETRYABLE_STATUSES``); otherwise the exception
    (or the exception it was raised from) does. Neither means no."""
    if status is not None:
        return status in RETRYABLE_STATUSES
    seen = 0
    while exc is not None and seen < 2:
        if isinstance(exc, ProviderError):
            return exc.retryable
        if any(cls.__name__ in _RETRYABLE_EXCEPTION_NAMES for cls in type(exc).__mro__):
            return True
        exc = exc.__cause__
        seen += 1
    return False


def backoff(
    attempt: int,
    base: float,
    cap: float,
    rng: SupportsRandom,
    *,
    server_delay: float | None = None,
) -> float:
    """Seconds to wait before retry number ``attempt`` (0 for the first retry).

    Full jitter: uniform in [0, min(cap, base * 2**attempt)). A ``server_delay`` (Retry-After) is a
    floor, honoured even above ``cap``: the server said sooner will fail."""
    if attempt < 0:
        raise ValueError(f"attempt must not be negative, got {attempt}")
    ceiling = cap if attempt >= 63 else min(cap, base * 2.0**attempt)
    delay = rng.random() * max(0.0, ceiling)
    if server_delay is not None and server_delay > delay:
        return server_delay
    return delay


@dataclass(frozen=True, slots=True)
class RetryBudgetStatistics:
    """``requests`` and ``retries`` in the window at the time asked, the ``balance`` of retries
    still allowed, and totals of retries ``allowed`` and ``denied`` since creation."""

    requests: int
    retries: int
    balance: float
    allowed: int
    denied: int


class RetryBudget:
    """Allows a retry only while retries stay under ``ratio`` × requests in the last ``window_s``
    seconds, plus a floor of ``min_per_s`` retries per second so a quiet client can still retry.

    Call ``record_request(now)`` for every first attempt and ``try_retry(now)`` before each retry."""

    def __init__(self, ratio: float = 0.2, min_per_s: float = 1.0, window_s: float = 10.0) -> None:
        if ratio < 0 or min_per_s < 0 or not window_s > 0:
            raise ValueError("ratio and min_per_s must not be negative, window_s must be positive")
        self.ratio = ratio
        self.min_per_s = min_per_s
        self.window_s = window_s
        self._requests: deque[float] = deque()
        self._retries: deque[float] = deque()
        self._allowed = 0
        self._denied = 0

    def _expire(self, now: float) -> None:
        horizon = now - self.window_s
        for times in (self._requests, self._retries):
            while times and times[0] <= horizon:
                times.popleft()

    def balance(self, now: float) -> float:
        """Retries still allowed in the window at ``now`` (at least 1 means ``try_retry`` succeeds)."""
        self._expire(now)
        return self.min_per_s * self.window_s + self.ratio * len(self._requests) - len(self._retries)

    def record_request(self, now: float) -> None:
        """Count a first attempt (not a retry); it earns ``ratio`` of a retry."""
        requests = self._requests
        requests.append(now)
        if requests[0] <= now - self.window_s:  # forget the old ones as we go: bounded on long runs
            self._expire(now)

    def try_retry(self, now: float) -> bool:
        """Spend one retry if the budget allows it; False (and nothing spent) otherwise."""
        if self.balance(now) >= 1.0:
            self._retries.append(now)
            self._allowed += 1
            return True
        self._denied += 1
        return False

    def statistics(self, now: float) -> RetryBudgetStatistics:
        """The window's counts and the balance at ``now``, and lifetime totals."""
        balance = self.balance(now)
        return RetryBudgetStatistics(
            requests=len(self._requests),
            retries=len(self._retries),
            balance=balance,
            allowed=self._allowed,
            denied=self._denied,
        )
