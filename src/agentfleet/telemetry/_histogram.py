"""Latency histograms with HDR precision: seconds in, percentiles out, 1 µs to 1 hour.

# Design
# ``LatencyHistogram`` wraps hdrhistogram's ``HdrHistogram`` over whole microseconds from
# 1 µs to 1 hour at 3 significant digits: every percentile is within 0.1% of the true value
# (1 µs below 1 ms), whatever the spread, in a fixed ~190 KB of counts and ~2.5 µs per
# ``record``. A value is rounded to the nearest microsecond (so below 0.5 µs it counts as 0).
#
# Beside the counts the wrapper keeps the exact minimum, maximum and sum of what it recorded:
# ``min``, ``max`` and ``mean`` are exact, ``_sum`` in the Prometheus exposition is exact, and
# every percentile is clipped into [min, max] (HDR reports the top of a value's bucket, which
# may be up to 0.1% above the largest value seen), so ``percentile(100) == max``.
#
# A value above one hour is recorded as one hour and counted in ``clamped``: the histogram
# never raises on a slow task, and the count says when its top figures are floors. Negative
# and NaN values are programming errors and raise ``ValueError``.
#
# ``encode`` gives a compact ASCII string (HDR's zlib-compressed V2 blob in base64 with the
# exact figures in front) for storing a histogram in SQLite; ``decode`` restores it exactly,
# and ``merge`` adds another histogram's counts, so histograms from several runs or processes
# combine without losing precision. hdrhistogram's own ``add`` mishandles the minimum when
# either side is empty; the wrapper does not rely on HDR's min or max.
#
# Not thread-safe: one writer at a time (``MetricsRegistry`` serialises access with a lock).
"""

from __future__ import annotations

import binascii
import math
import zlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

# hdrhistogram ships no type information (no py.typed, no stubs): HdrHistogram is Any here.
from hdrh.codec import (  # type: ignore[import-untyped]
    HdrCookieException,
    HdrHistogramSettingsException,
    HdrLengthException,
)
from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

__all__ = ["HistogramSummary", "LatencyHistogram"]

_US_PER_S = 1_000_000
_LOWEST_US = 1
_HIGHEST_US = 3_600 * _US_PER_S
_SIGNIFICANT_DIGITS = 3
_FORMAT = "v1"
_SUMMARY_PERCENTILES = (50.0, 95.0, 99.0, 99.9)
# What a corrupt blob can make hdrhistogram's decoder raise.
_DECODE_ERRORS = (
    ValueError,
    TypeError,
    IndexError,
    binascii.Error,
    zlib.error,
    HdrCookieException,
    HdrLengthException,
    HdrHistogramSettingsException,
)


@dataclass(frozen=True, slots=True)
class HistogramSummary:
    """The usual figures of one histogram, in seconds; every figure but ``count`` is None when empty.

    ``min``, ``mean`` and ``max`` are exact; ``p50`` .. ``p999`` (the 50th, 95th, 99th and 99.9th
    percentiles) are within 0.1% (1 µs below 1 ms)."""

    count: int
    min: float | None
    mean: float | None
    p50: float | None
    p95: float | None
    p99: float | None
    p999: float | None
    max: float | None

    def to_dict(self) -> dict[str, Any]:
        """The figures as a plain dict (JSON-able)."""
        return asdict(self)


def _new_hdr() -> Any:
    return HdrHistogram(_LOWEST_US, _HIGHEST_US, _SIGNIFICANT_DIGITS)


class LatencyHistogram:
    """Durations in seconds, 1 µs to 1 hour at 3 significant digits (see the module notes).

    ``record(seconds)`` adds one value; ``count``, ``clamped``, ``sum``, ``min``, ``max``,
    ``percentile(p)`` and ``summary()`` read; ``merge`` adds another histogram; ``encode`` /
    ``decode`` store one as a string."""

    __slots__ = ("_clamped", "_hdr", "_max", "_min", "_sum")

    #: The largest value recorded as itself; anything above is recorded as this and counted in ``clamped``.
    HIGHEST_SECONDS = _HIGHEST_US / _US_PER_S

    def __init__(self) -> None:
        self._hdr: Any = _new_hdr()
        self._clamped = 0
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf

    # -- recording -----------------------------------------------------------------------

    def record(self, seconds: float) -> None:
        """Record one duration. Above one hour it is recorded as one hour and counted in ``clamped``.

        Raises ``ValueError`` for a negative value or NaN."""
        value = float(seconds)
        if not value >= 0.0:  # also catches NaN
            raise ValueError(f"a duration must be a non-negative number of seconds, got {seconds!r}")
        if value > self.HIGHEST_SECONDS:
            value = self.HIGHEST_SECONDS
            self._clamped += 1
        self._hdr.record_value(round(value * _US_PER_S))
        self._sum += value
        if value < self._min:
            self._min = value
        if value > self._max:
            self._max = value

    def record_many(self, values: Iterable[float]) -> None:
        """``record`` every value, faster: equal microsecond values are counted first and recorded once
        with their count (a burst of similar durations costs one HDR update per distinct value).
        Validates every value before recording any."""
        counts: dict[int, int] = {}
        total = 0.0
        low, high = self._min, self._max
        clamped = 0
        ceiling = self.HIGHEST_SECONDS
        for seconds in values:
            value = float(seconds)
            if not value >= 0.0:
                raise ValueError(f"a duration must be a non-negative number of seconds, got {seconds!r}")
            if value > ceiling:
                value = ceiling
                clamped += 1
            us = round(value * _US_PER_S)
            counts[us] = counts.get(us, 0) + 1
            total += value
            if value < low:
                low = value
            if value > high:
                high = value
        record = self._hdr.record_value
        for us, n in counts.items():
            record(us, n)
        self._sum += total
        self._min, self._max = low, high
        self._clamped += clamped

    def merge(self, other: LatencyHistogram) -> None:
        """Add every value ``other`` recorded to this histogram (``other`` is unchanged).

        The result is the histogram that recording both sets of values would have given."""
        if other is self:
            other = other.copy()
        if other.count == 0:
            return
        self._hdr.add(other._hdr)
        self._clamped += other._clamped
        self._sum += other._sum
        self._min = min(self._min, other._min)
        self._max = max(self._max, other._max)

    def copy(self) -> LatencyHistogram:
        """An independent histogram with the same contents."""
        twin = LatencyHistogram()
        twin.merge(self)
        return twin

    # -- reading -------------------------------------------------------------------------

    @property
    def count(self) -> int:
        """Values recorded (clamped ones included)."""
        return int(self._hdr.get_total_count())

    @property
    def clamped(self) -> int:
        """Values above one hour, recorded as one hour."""
        return self._clamped

    @property
    def sum(self) -> float:
        """The exact sum of the values recorded, in seconds (clamped ones as one hour)."""
        return self._sum

    @property
    def min(self) -> float | None:
        """The smallest value recorded (exact), None when empty."""
        return self._min if self.count else None

    @property
    def max(self) -> float | None:
        """The largest value recorded (exact; one hour if a value was clamped), None when empty."""
        return self._max if self.count else None

    @property
    def mean(self) -> float | None:
        """The exact mean, None when empty."""
        count = self.count
        return self._sum / count if count else None

    def percentile(self, p: float) -> float | None:
        """The value at percentile ``p`` (0..100) in seconds, within 0.1%; None when empty.

        ``percentile(0)`` is the minimum and ``percentile(100)`` the maximum."""
        if not 0.0 <= p <= 100.0:
            raise ValueError(f"a percentile must be between 0 and 100, got {p!r}")
        if not self.count:
            return None
        return self._clip(self._hdr.get_value_at_percentile(p))

    def percentiles(self, ps: tuple[float, ...] | list[float]) -> dict[float, float | None]:
        """``percentile(p)`` for every ``p`` in ``ps``, in one pass over the counts."""
        for p in ps:
            if not 0.0 <= p <= 100.0:
                raise ValueError(f"a percentile must be between 0 and 100, got {p!r}")
        if not self.count:
            return dict.fromkeys(ps)
        values = self._hdr.get_percentile_to_value_dict(list(ps))
        return {p: self._clip(values[p]) for p in ps}

    def summary(self) -> HistogramSummary:
        """count, min, mean, p50, p95, p99, p99.9 and max (seconds; None when empty)."""
        count = self.count
        if not count:
            return HistogramSummary(0, None, None, None, None, None, None, None)
        p = self.percentiles(_SUMMARY_PERCENTILES)
        return HistogramSummary(
            count=count,
            min=self._min,
            mean=self._sum / count,
            p50=p[50.0],
            p95=p[95.0],
            p99=p[99.0],
            p999=p[99.9],
            max=self._max,
        )

    def _clip(self, micros: int) -> float:
        return min(max(micros / _US_PER_S, self._min), self._max)

    # -- storage -------------------------------------------------------------------------

    def encode(self) -> str:
        """A compact ASCII string holding the whole histogram (tens to hundreds of bytes).

        ``v1:<clamped>:<sum>:<min>:<max>:<HDR V2 blob, base64>``; min and max are empty when
        the histogram is empty."""
        count = self.count
        low = repr(self._min) if count else ""
        high = repr(self._max) if count else ""
        blob = self._hdr.encode().decode("ascii")
        return f"{_FORMAT}:{self._clamped}:{self._sum!r}:{low}:{high}:{blob}"

    @classmethod
    def decode(cls, text: str) -> LatencyHistogram:
        """The histogram ``encode`` wrote. Raises ``ValueError`` for anything else."""
        parts = text.strip().split(":", 5)
        if len(parts) != 6 or parts[0] != _FORMAT:
            raise ValueError(f"not an encoded LatencyHistogram: {text[:40]!r}")
        _, clamped_s, sum_s, low_s, high_s, blob = parts
        try:
            hdr = HdrHistogram.decode(blob.encode("ascii"))
            clamped = int(clamped_s)
            total = float(sum_s)
            low = float(low_s) if low_s else math.inf
            high = float(high_s) if high_s else -math.inf
        except _DECODE_ERRORS as exc:
            raise ValueError(f"corrupt encoded LatencyHistogram: {exc}") from exc
        if (hdr.lowest_trackable_value, hdr.highest_trackable_value, hdr.significant_figures) != (
            _LOWEST_US,
            _HIGHEST_US,
            _SIGNIFICANT_DIGITS,
        ):
            raise ValueError("encoded histogram has a different range or precision")
        count = int(hdr.get_total_count())
        if not 0 <= clamped <= count or (count > 0) != bool(low_s and high_s) or (count and not low <= high):
            raise ValueError("encoded LatencyHistogram is inconsistent")
        histogram = cls()
        if count:
            histogram._hdr.add(hdr)
        histogram._clamped = clamped
        histogram._sum = total
        histogram._min = low
        histogram._max = high
        return histogram

    def __repr__(self) -> str:
        return f"<LatencyHistogram count={self.count} clamped={self._clamped}>"
