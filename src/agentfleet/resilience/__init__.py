"""Resilience policies for provider calls: small, pure objects that take the time as a parameter.

    TokenBucket         continuously refilled bucket; ``try_take(n, now)`` -> 0 or seconds to wait
    RateLimiter         requests/min, tokens/min and concurrency for one provider+model, corrected
                        by the provider's rate-limit headers
    RetryBudget         Finagle-style cap on retries as a share of requests
    retry_after_seconds, is_retryable, backoff
                        when to retry and how long to wait first
    CircuitBreaker      closed / open / half-open, raises ``CircuitOpen`` from ``check(now)``
    AIMDLimit           adaptive concurrency limit (additive increase, multiplicative decrease)
    HedgePolicy         when to send a hedged second call: a percentile of recent latencies

Not wired into the runner yet; each object decides in a synchronous method and only
``RateLimiter.acquire`` waits (on an injected ``Clock``).
"""

from __future__ import annotations

from ._adaptive import AIMDLimit, AIMDStatistics, WindowedMin
from ._breaker import BreakerState, CircuitBreaker, CircuitBreakerStatistics
from ._hedge import HedgePolicy, HedgeStatistics
from ._ratelimit import (
    Grant,
    RateLimiter,
    RateLimiterStatistics,
    TokenBucket,
    TokenBucketStatistics,
    parse_duration,
)
from ._retry import (
    NON_RETRYABLE_STATUSES,
    RETRYABLE_STATUSES,
    RetryBudget,
    RetryBudgetStatistics,
    SupportsRandom,
    backoff,
    http_date_epoch,
    is_retryable,
    retry_after_seconds,
)

__all__ = [
    "NON_RETRYABLE_STATUSES",
    "RETRYABLE_STATUSES",
    "AIMDLimit",
    "AIMDStatistics",
    "BreakerState",
    "CircuitBreaker",
    "CircuitBreakerStatistics",
    "Grant",
    "HedgePolicy",
    "HedgeStatistics",
    "RateLimiter",
    "RateLimiterStatistics",
    "RetryBudget",
    "RetryBudgetStatistics",
    "SupportsRandom",
    "TokenBucket",
    "TokenBucketStatistics",
    "WindowedMin",
    "backoff",
    "http_date_epoch",
    "is_retryable",
    "parse_duration",
    "retry_after_seconds",
]
