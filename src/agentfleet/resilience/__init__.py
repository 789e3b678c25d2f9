"""Resilience policies for provider calls: small, pure objects that take the time as a parameter.

    TokenBucket         continuously refilled bucket; ``try_take(n, now)`` -> 0 or seconds to wait
    Limiter             the protocol the runtime calls: acquire, settle, observe_headers, statistics
    RateLimiter         requests/min, tokens/min and concurrency for one provider+model, corrected
                        by the provider's rate-limit headers
    SharedRateLimiter   the same limits shared through Redis by every process using one key
                        (Lua scripts on Redis' clock; concurrency slots are expiring leases)
    RetryBudget         Finagle-style cap on retries as a share of requests
    retry_after_seconds, is_retryable, backoff
                        when to retry and how long to wait first
    CircuitBreaker      closed / open / half-open, raises ``CircuitOpen`` from ``check(now)``
    AIMDLimit           adaptive concurrency limit (additive increase, multiplicative decrease)
    HedgePolicy         when to send a hedged second call: a percentile of recent latencies
    ResourceGuard       CPU/memory hysteresis: a parallelism factor for CPU-bound agents and a
                        hold on low tiers while the machine is busy; ResourceSampler (psutil)
                        and ResourceMonitor (samples on a clock, reports changes) feed it

Each object decides in a synchronous method; only the limiters' ``acquire`` waits (on an
injected ``Clock``). ``SharedRateLimiter`` decides in Redis, so its methods that ask it are async.
"""

from __future__ import annotations

from ._adaptive import AIMDLimit, AIMDStatistics, WindowedMin
from ._breaker import BreakerState, CircuitBreaker, CircuitBreakerStatistics
from ._guard import (
    GuardDecision,
    ResourceGuard,
    ResourceGuardStatistics,
    ResourceMonitor,
    ResourceSampler,
    SupportsSample,
)
from ._hedge import HedgePolicy, HedgeStatistics
from ._ratelimit import (
    Grant,
    Limiter,
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
from ._shared import SharedLimiterState, SharedRateLimiter

__all__ = [
    "NON_RETRYABLE_STATUSES",
    "RETRYABLE_STATUSES",
    "AIMDLimit",
    "AIMDStatistics",
    "BreakerState",
    "CircuitBreaker",
    "CircuitBreakerStatistics",
    "Grant",
    "GuardDecision",
    "HedgePolicy",
    "HedgeStatistics",
    "Limiter",
    "RateLimiter",
    "RateLimiterStatistics",
    "ResourceGuard",
    "ResourceGuardStatistics",
    "ResourceMonitor",
    "ResourceSampler",
    "RetryBudget",
    "RetryBudgetStatistics",
    "SharedLimiterState",
    "SharedRateLimiter",
    "SupportsRandom",
    "SupportsSample",
    "TokenBucket",
    "TokenBucketStatistics",
    "WindowedMin",
    "backoff",
    "http_date_epoch",
    "is_retryable",
    "parse_duration",
    "retry_after_seconds",
]
