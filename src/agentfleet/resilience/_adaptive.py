"""Adaptive concurrency: find how many calls a provider takes at once, from its own answers.

# Design
# AIMD, like TCP congestion control and Netflix's concurrency-limits ``AIMDLimit``. Every
# finished call is a sample ``(latency, dropped, inflight)``:
#
# * a drop (429, timeout, overload) - or, when ``latency_tolerance`` is set, a latency above
#   ``tolerance × no-load latency`` - multiplies the limit by ``backoff_ratio``. Only once per
#   congestion episode: a sample sent before the last decrease was sent under the old limit
#   and says nothing about the new one.
# * a success grows the limit only when the limit was actually in use (``inflight`` at least
#   ``saturation × limit``). Otherwise a lightly loaded client would creep its limit up without
#   ever testing it, then flood the provider when load arrives.
# * slow start: until the first drop the limit grows by one per saturated sample (doubling
#   per window of ``limit`` samples); afterwards by one per window.
#
# The no-load latency is a windowed minimum: the minimum over the current and the previous
# ``min_latency_period`` seconds. A single lucky fast answer, or a provider that got slower
# for good, is forgotten within two periods instead of skewing the baseline forever.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["AIMDLimit", "AIMDStatistics", "WindowedMin"]


class WindowedMin:
    """The minimum of values seen in the current and previous ``period`` seconds (None if none)."""

    __slots__ = ("_current", "_previous", "_start", "period")

    def __init__(self, period: float) -> None:
        if not period > 0:
            raise ValueError(f"period must be positive, got {period!r}")
        self.period = period
        self._start: float | None = None
        self._current = math.inf
        self._previous = math.inf

    def _roll(self, now: float) -> None:
        if self._start is None:
            self._start = now
            return
        elapsed = now - self._start
        if elapsed >= 2 * self.period:
            self._previous = math.inf
            self._current = math.inf
            self._start = now
        elif elapsed >= self.period:
            self._previous = self._current
            self._current = math.inf
            self._start += self.period

    def add(self, value: float, now: float) -> None:
        """Record ``value`` observed at ``now``."""
        self._roll(now)
        self._current = min(self._current, value)

    def value(self, now: float) -> float | None:
        """The windowed minimum at ``now``, or None when no value is recent enough."""
        self._roll(now)
        best = min(self._current, self._previous)
        return None if math.isinf(best) else best


@dataclass(frozen=True, slots=True)
class AIMDStatistics:
    """The current ``limit``, whether still in ``slow_start``, the windowed ``min_latency``
    (None before any success), and how many ``samples``, ``increases`` and ``decreases``."""

    limit: int
    slow_start: bool
    min_latency: float | None
    samples: int
    increases: int
    decreases: int


class AIMDLimit:
    """Additive-increase / multiplicative-decrease concurrency limit in [``min_limit``, ``max_limit``].

    Feed every finished call to ``on_sample``; read ``limit`` to size the next batch of calls."""

    def __init__(
        self,
        initial: int = 4,
        *,
        min_limit: int = 1,
        max_limit: int = 200,
        backoff_ratio: float = 0.5,
        saturation: float = 0.9,
        latency_tolerance: float | None = None,
        min_latency_period: float = 60.0,
    ) -> None:
        if not 1 <= min_limit <= initial <= max_limit:
            raise ValueError(f"need 1 <= min_limit <= initial <= max_limit, got {min_limit}, {initial}, {max_limit}")
        if not 0 < backoff_ratio < 1:
            raise ValueError(f"backoff_ratio must be in (0, 1), got {backoff_ratio!r}")
        if not 0 < saturation <= 1:
            raise ValueError(f"saturation must be in (0, 1], got {saturation!r}")
        if latency_tolerance is not None and not latency_tolerance > 1:
            raise ValueError(f"latency_tolerance must be above 1, got {latency_tolerance!r}")
        self.limit = initial
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.backoff_ratio = backoff_ratio
        self.saturation = saturation
        self.latency_tolerance = latency_tolerance
        self._min_latency = WindowedMin(min_latency_period)
        self._slow_start = True
        self._acked = 0
        self._last_decrease: float | None = None
        self._samples = 0
        self._increases = 0
        self._decreases = 0

    def on_sample(self, latency: float, dropped: bool, inflight: int, now: float) -> int:
        """Account one finished call (``inflight`` calls were out, this one included) and return the limit."""
        self._samples += 1
        congested = dropped
        if not dropped:
            baseline = self._min_latency.value(now)
            if self.latency_tolerance is not None and baseline is not None:
                congested = latency > self.latency_tolerance * baseline
            self._min_latency.add(latency, now)
        if congested:
            if self._last_decrease is not None and now - latency < self._last_decrease:
                return self.limit  # sent under the old limit: this episode was already answered
            new = max(self.min_limit, math.floor(self.limit * self.backoff_ratio))
            if new < self.limit:
                self._decreases += 1
            self.limit = new
            self._slow_start = False
            self._acked = 0
            self._last_decrease = now
            return self.limit
        if inflight < self.saturation * self.limit or self.limit >= self.max_limit:
            return self.limit  # underused: a success says nothing about a higher limit
        if self._slow_start:
            self._grow()
        else:
            self._acked += 1
            if self._acked >= self.limit:
                self._acked = 0
                self._grow()
        return self.limit

    def _grow(self) -> None:
        self.limit = min(self.max_limit, self.limit + 1)
        self._increases += 1

    def statistics(self, now: float) -> AIMDStatistics:
        """The limit and counters at ``now``."""
        return AIMDStatistics(
            limit=self.limit,
            slow_start=self._slow_start,
            min_latency=self._min_latency.value(now),
            samples=self._samples,
            increases=self._increases,
            decreases=self._decreases,
        )
