"""Latency recording in time windows for load tests, in bounded memory however long the run.

# Design
# Latency runs from the INTENDED send time, which the caller passes (``record(t_intended_start,
# latency, ...)`` with ``latency = completion - t_intended_start``), not from when the request
# actually left. A generator that falls behind (the system under test stalls, the event loop is
# busy) therefore charges the wait to the requests that suffered it instead of quietly sending
# fewer of them: no coordinated omission. The lag itself is reported too (``note_late``), and
# sends the engine gave up on (``note_dropped``).
#
# Windows: a request belongs to the window of its completion time (``t_intended_start + latency``)
# by default, as in HdrHistogram interval logs: completions arrive in time order, so a window is
# complete soon after it ends. ``window_by="intended"`` files requests under their intended send
# time instead (a stall then shows where it started), at the price of keeping windows open for
# as long as the slowest request. Each live window has its own ``LatencyHistogram``; when a
# window is ``keep_windows`` windows older than the newest, its chart row (count, rps, p50, p95,
# p99, max, errors) is computed once, its histogram is merged into the running total and
# dropped. An 8-hour soak thus holds ``keep_windows`` histograms (~190 KB each) plus one small row
# per window. A record for a window already retired (a straggler) still counts in the totals and
# the total histogram, only not in that window's row; ``summary().stragglers`` counts them.
#
# A row's percentiles come from the window's raw latencies (an ``array('d')``, 8 bytes a value),
# sorted once when the row is made: exact (nearest rank), and ~20x cheaper than walking HDR counts,
# which takes milliseconds a window and would stall the generator's event loop once a second. A
# window holding more than ``exact_row_limit`` successes drops its raw values (memory stays
# bounded) and its row falls back to the HDR percentiles (within 0.1%).
#
# The latency histograms hold successful requests only; failures are counted (by kind, and per
# window) and give the error rate. Pure: no clock, every time is a parameter.
"""

from __future__ import annotations

import math
from array import array
from dataclasses import asdict, dataclass
from typing import Any, Literal

from ..telemetry import LatencyHistogram

__all__ = ["LoadSummary", "RecorderStatistics", "WindowRow", "WindowedRecorder"]

_ROW_PERCENTILES = (50.0, 95.0, 99.0)
_SUMMARY_PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)


@dataclass(frozen=True, slots=True)
class WindowRow:
    """One window of the series: it starts at ``t``; percentiles in seconds, None without successes."""

    t: float
    count: int
    ok: int
    errors: int
    rps: float
    p50: float | None
    p95: float | None
    p99: float | None
    max: float | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class LoadSummary:
    """The figures of a whole load test; latencies in seconds (successful requests, from the intended
    send time), None when nothing succeeded.

    ``requests`` completed (``ok`` + ``errors``); ``rps`` and ``ok_rps`` are completed and successful
    requests per second over ``span`` (None when the span is 0); ``late`` sends left after their
    intended time (``max_lag`` the worst); ``dropped`` were never sent; ``stragglers`` were recorded
    after their window had been retired; ``clamped`` latencies were above one hour."""

    requests: int
    ok: int
    errors: int
    error_rate: float | None
    errors_by_kind: dict[str, int]
    span: float
    rps: float | None
    ok_rps: float | None
    min: float | None
    mean: float | None
    p50: float | None
    p90: float | None
    p95: float | None
    p99: float | None
    p999: float | None
    max: float | None
    late: int
    max_lag: float | None
    dropped: int
    stragglers: int
    clamped: int

    def metrics(self, prefix: str = "") -> dict[str, float | None]:
        """The figures under the threshold metric names (``p99.9``, ``error_rate``, ``rps``...).

        ``prefix`` goes before every name: a recorder of times to first token gives ``ttft_p95``
        with ``prefix="ttft_"``."""
        figures: dict[str, float | None] = {
            "min": self.min,
            "mean": self.mean,
            "p50": self.p50,
            "p90": self.p90,
            "p95": self.p95,
            "p99": self.p99,
            "p99.9": self.p999,
            "max": self.max,
            "max_lag": self.max_lag,
            "error_rate": self.error_rate,
            "rps": self.rps,
            "ok_rps": self.ok_rps,
            "requests": float(self.requests),
            "errors": float(self.errors),
            "late": float(self.late),
            "dropped": float(self.dropped),
        }
        return {prefix + name: value for name, value in figures.items()}

    def to_dict(self) -> dict[str, Any]:
        """Every field as a plain dict (JSON-able)."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RecorderStatistics:
    """How much the recorder holds: live windows (each with a histogram) and retired rows."""

    live_windows: int
    retired_windows: int
    records: int
    stragglers: int


class _Window:
    __slots__ = ("errors", "histogram", "ok", "values")

    def __init__(self) -> None:
        self.histogram = LatencyHistogram()
        self.values: array[float] | None = array("d")  # None once over the recorder's exact_row_limit
        self.ok = 0
        self.errors = 0


def _nearest_rank(ordered: list[float], p: float) -> float:
    return ordered[max(math.ceil(p / 100.0 * len(ordered)) - 1, 0)]


class WindowedRecorder:
    """Latencies and outcomes per ``window_s`` window, keeping ``keep_windows`` windows' histograms.

    ``record`` one completed request, ``note_late`` / ``note_dropped`` for sends; ``summary()`` for
    the whole run, ``series()`` for the per-window rows, ``histogram()`` for the merged latencies.
    Times are seconds on the caller's clock; windows start at ``origin`` and hold requests by
    completion time unless ``window_by="intended"``; a window's row has exact percentiles up to
    ``exact_row_limit`` successes (see the module notes). ``summary()`` walks the HDR counts
    (milliseconds): a live view should read ``series()`` and leave ``summary()`` for the end."""

    def __init__(
        self,
        window_s: float = 1.0,
        *,
        keep_windows: int = 5,
        origin: float = 0.0,
        window_by: Literal["completion", "intended"] = "completion",
        exact_row_limit: int = 65_536,
    ) -> None:
        if not (isinstance(window_s, int | float) and math.isfinite(window_s) and window_s > 0):
            raise ValueError(f"window_s must be a positive number of seconds, got {window_s!r}")
        if isinstance(keep_windows, bool) or not isinstance(keep_windows, int) or keep_windows < 1:
            raise ValueError(f"keep_windows must be a whole number >= 1, got {keep_windows!r}")
        if window_by not in ("completion", "intended"):
            raise ValueError(f"window_by must be 'completion' or 'intended', got {window_by!r}")
        if isinstance(exact_row_limit, bool) or not isinstance(exact_row_limit, int) or exact_row_limit < 0:
            raise ValueError(f"exact_row_limit must be a whole number >= 0, got {exact_row_limit!r}")
        if not math.isfinite(origin):
            raise ValueError(f"origin must be a finite time, got {origin!r}")
        self.window_s = float(window_s)
        self.keep_windows = keep_windows
        self.origin = float(origin)
        self.window_by = window_by
        self.exact_row_limit = exact_row_limit
        self._windows: dict[int, _Window] = {}
        self._rows: list[WindowRow] = []
        self._total = LatencyHistogram()  # retired windows and stragglers
        self._newest = -1
        self._retired_upto = -1  # every window index <= this is retired
        self._ok = 0
        self._errors = 0
        self._by_kind: dict[str, int] = {}
        self._late = 0
        self._max_lag: float | None = None
        self._dropped = 0
        self._stragglers = 0
        self._first_start = math.inf
        self._last_end = -math.inf

    # -- recording -----------------------------------------------------------------------

    def record(self, t_intended_start: float, latency: float, ok: bool = True, error_kind: str | None = None) -> None:
        """Record one completed request: intended send time, latency FROM THAT TIME, outcome.

        A failure's ``error_kind`` defaults to ``"error"``; a success takes none. Raises
        ``ValueError`` for a time before ``origin``, a negative or NaN latency."""
        if not (math.isfinite(t_intended_start) and t_intended_start >= self.origin):
            raise ValueError(f"t_intended_start must be a finite time >= origin {self.origin!r}, got "
                             f"{t_intended_start!r}")
        if not latency >= 0.0 or math.isinf(latency):  # also catches NaN
            raise ValueError(f"latency must be a finite number of seconds >= 0, got {latency!r}")
        if ok and error_kind is not None:
            raise ValueError(f"a successful request has no error kind, got {error_kind!r}")
        end = t_intended_start + latency
        index = self._index(end if self.window_by == "completion" else t_intended_start)
        if index <= self._retired_upto:
            self._stragglers += 1
            window = None
        else:
            window = self._windows.get(index)
            if window is None:
                window = self._windows[index] = _Window()
        if ok:
            self._ok += 1
            (window.histogram if window is not None else self._total).record(latency)
        else:
            kind = error_kind or "error"
            self._errors += 1
            self._by_kind[kind] = self._by_kind.get(kind, 0) + 1
        if window is not None:
            if ok:
                window.ok += 1
                values = window.values
                if values is not None:
                    if len(values) < self.exact_row_limit:
                        values.append(latency)
                    else:
                        window.values = None
            else:
                window.errors += 1
        self._first_start = min(self._first_start, t_intended_start)
        self._last_end = max(self._last_end, end)
        if index > self._newest:
            self._newest = index
            self._retire()

    def note_late(self, lag_s: float) -> None:
        """Count a send that left ``lag_s`` seconds after its intended time."""
        if not lag_s >= 0.0 or math.isinf(lag_s):
            raise ValueError(f"lag_s must be a finite number of seconds >= 0, got {lag_s!r}")
        self._late += 1
        self._max_lag = lag_s if self._max_lag is None else max(self._max_lag, lag_s)

    def note_dropped(self, count: int = 1) -> None:
        """Count ``count`` sends that were never made (the engine could not keep up or gave up)."""
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be a whole number >= 0, got {count!r}")
        self._dropped += count

    def advance(self, now: float) -> None:
        """Retire the windows that are ``keep_windows`` older than the one holding ``now`` (for idle
        stretches, when no record moves time on)."""
        index = self._index(max(now, self.origin))
        if index > self._newest:
            self._newest = index
            self._retire()

    def flush(self) -> None:
        """Retire every live window (the run is over): their rows join ``series()``."""
        if self._windows:
            self._newest = max(self._newest, max(self._windows) + self.keep_windows)
        self._retire()

    def _index(self, t: float) -> int:
        return math.floor((t - self.origin) / self.window_s)

    def _retire(self) -> None:
        cutoff = self._newest - self.keep_windows
        if cutoff <= self._retired_upto:
            return
        for index in sorted(i for i in self._windows if i <= cutoff):
            window = self._windows.pop(index)
            self._rows.append(self._row(index, window))
            self._total.merge(window.histogram)
        self._retired_upto = cutoff

    def _row(self, index: int, window: _Window) -> WindowRow:
        histogram = window.histogram
        p: dict[float, float | None]
        if window.values is None:
            p = histogram.percentiles(_ROW_PERCENTILES)
        elif window.values:
            ordered = sorted(window.values)
            p = {q: _nearest_rank(ordered, q) for q in _ROW_PERCENTILES}
        else:
            p = dict.fromkeys(_ROW_PERCENTILES)
        count = window.ok + window.errors
        return WindowRow(
            t=self.origin + index * self.window_s,
            count=count,
            ok=window.ok,
            errors=window.errors,
            rps=count / self.window_s,
            p50=p[50.0],
            p95=p[95.0],
            p99=p[99.0],
            max=histogram.max,
        )

    # -- reading -------------------------------------------------------------------------

    def histogram(self) -> LatencyHistogram:
        """Every successful latency recorded, in one histogram (a new one: encode it, merge it)."""
        total = self._total.copy()
        for window in self._windows.values():
            total.merge(window.histogram)
        return total

    def series(self, *, fill_gaps: bool = True) -> list[WindowRow]:
        """A row per window in time order: retired windows, then the live ones as they stand.

        With ``fill_gaps`` a window in which nothing completed between two others is a row of zeros."""
        rows = self._rows + [self._row(i, self._windows[i]) for i in sorted(self._windows)]
        if not fill_gaps or not rows:
            return rows
        filled: list[WindowRow] = []
        previous = self._index_of(rows[0])
        for row in rows:
            index = self._index_of(row)
            for gap in range(previous + 1, index):
                filled.append(WindowRow(self.origin + gap * self.window_s, 0, 0, 0, 0.0, None, None, None, None))
            filled.append(row)
            previous = index
        return filled

    def _index_of(self, row: WindowRow) -> int:
        return round((row.t - self.origin) / self.window_s)

    def summary(self, span_s: float | None = None) -> LoadSummary:
        """The whole run's figures. Throughput is over ``span_s`` seconds, by default from the first
        intended send to the last completion recorded."""
        histogram = self.histogram()
        p = histogram.percentiles(_SUMMARY_PERCENTILES)
        requests = self._ok + self._errors
        if span_s is None:
            span = self._last_end - self._first_start if requests else 0.0
        elif not (math.isfinite(span_s) and span_s >= 0):
            raise ValueError(f"span_s must be a finite number of seconds >= 0, got {span_s!r}")
        else:
            span = float(span_s)
        return LoadSummary(
            requests=requests,
            ok=self._ok,
            errors=self._errors,
            error_rate=self._errors / requests if requests else None,
            errors_by_kind=dict(sorted(self._by_kind.items())),
            span=span,
            rps=requests / span if span > 0 else None,
            ok_rps=self._ok / span if span > 0 else None,
            min=histogram.min,
            mean=histogram.mean,
            p50=p[50.0],
            p90=p[90.0],
            p95=p[95.0],
            p99=p[99.0],
            p999=p[99.9],
            max=histogram.max,
            late=self._late,
            max_lag=self._max_lag,
            dropped=self._dropped,
            stragglers=self._stragglers,
            clamped=histogram.clamped,
        )

    def statistics(self) -> RecorderStatistics:
        """What the recorder holds now."""
        return RecorderStatistics(
            live_windows=len(self._windows),
            retired_windows=len(self._rows),
            records=self._ok + self._errors,
            stragglers=self._stragglers,
        )
