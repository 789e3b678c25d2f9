"""A run as one self-contained HTML page: header, timeline, latencies, concurrency, resources,
bottlenecks, anomalies, trends and profile.

# Design
# ``render_html`` is a pure function of what the store and ``analyze`` already hold: it returns a
# string and does no I/O. The page must open offline and leak nothing, so it references no URL at
# all: CSS is inline, every chart is an inline SVG drawn here, fonts are the system's, and a
# Content-Security-Policy forbids any fetch. The little inline JS (a styled tooltip, local times)
# is optional: every tooltip is an SVG ``<title>`` first, and the script only restyles it.
#
# Every string that came from a user or a provider (task ids, agent names, errors, messages) goes
# through ``_e`` (``html.escape``); numbers are formatted here. Task ids like ``impl[2]`` need no
# special care in HTML.
#
# Which records are drawn: the tasks that ran in this run (``analyze``'s rule: started, ended, not
# resumed). Events count only from the last session (``max(session)``), since times restart with
# every session. Waits come from ``rate_wait`` events (else ``meta["limit_wait"]`` at the start of
# the run interval), retries from ``retry`` events, cache hits from ``cache_hit`` events or
# ``meta["cache"]``.
#
# Timeline lanes: each agent's tasks are packed greedily, in start order, into the lowest free
# lane (intervals half-open, so a task starting when another ends reuses its lane): the fewest
# lanes that show every overlap. Big runs stay bounded: at most ``_MAX_BARS`` bars are drawn (the
# critical path, then the longest tasks), an agent's lanes beyond ``_LANE_CAP`` are merged into one
# row, and step charts with many change points keep each pixel column's maximum.
"""

from __future__ import annotations

import heapq
import html
import itertools
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from .._types import TaskRecord, TaskState
from ..telemetry import LatencyHistogram
from ._bottlenecks import Bottleneck, Pattern, WhatIf
from ._metrics import RunReport, _ran
from ._render import _pct, _times, format_seconds

__all__ = ["render_html"]

EventRow = tuple[int, float, str, str | None, str | None]

_MAX_BARS = 3000  # timeline bars drawn at most (critical path first, then the longest tasks)
_LANE_CAP = 32  # lanes per agent before the rest merge into one row
_MAX_STEP_POINTS = 1500  # above this many change points a step chart keeps each column's maximum
_MAX_HISTOGRAMS = 12  # agents with a histogram card (the busiest); the table lists every agent
_MAX_TABLE_ROWS = 200
_MAX_FAILED = 25
_MAX_TREE_CHARS = 200_000
_PATH_SHOWN = 20
_MAX_LINKED_PATH = 200  # longer critical paths get no connectors between their steps
_WIDTH = 1240  # SVG user units of the wide charts
_LABEL_W = 150  # the timeline's row labels
_PAD_R = 16
_EPS = 1e-9
_NO_END = "_report_no_end"  # meta flag of a task drawn up to the last known time (no end recorded)

_STATE_CLASS = {
    TaskState.DONE: "done",
    TaskState.RUNNING: "running",
    TaskState.FAILED: "failed",
    TaskState.CANCELLED: "stopped",
    TaskState.INTERRUPTED: "stopped",
}
_STATUS_CLASS = {"succeeded": "ok", "failed": "bad", "interrupted": "warn", "stopped": "warn", "running": "info"}
_TREND_METRICS = (
    ("makespan_s", "makespan", "s"),
    ("p95_s", "p95 task latency", "s"),
    ("cost_usd", "cost", "$"),
    ("tokens", "tokens", "n"),
    ("error_rate", "error rate", "%"),
)


# -- small formatting helpers --------------------------------------------------------------


def _e(value: object) -> str:
    """Any value as escaped HTML text."""
    return html.escape(str(value), quote=True)


def _f(value: float) -> str:
    """A coordinate with one decimal, without a trailing ``.0`` (keeps big SVGs small)."""
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _finite(value: Any) -> float | None:
    """``value`` as a finite float, or None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _int(n: int | float) -> str:
    return f"{int(n):,}"


def _money(value: float) -> str:
    if value == 0:
        return "$0"
    return f"${value:,.2f}" if abs(value) >= 1 else f"${value:.4f}".rstrip("0")


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _decimals(step: float) -> int:
    for digits in range(7):
        if abs(round(step, digits) - step) <= _EPS * max(1.0, abs(step)):
            return digits
    return 6


_TIME_STEPS = (10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0)


def _nice_step(span: float, target: int, *, time: bool = False) -> float:
    """A round step giving about ``target`` ticks over ``span`` (whole minutes and so on for times)."""
    if span <= 0:
        return 1.0
    raw = span / max(1, target)
    if time and _TIME_STEPS[0] < raw <= _TIME_STEPS[-1]:
        return next(step for step in _TIME_STEPS if raw <= step + _EPS)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    for mult in (1.0, 2.0, 2.5, 5.0):
        if raw <= mult * magnitude + _EPS:
            return mult * magnitude
    return 10 * magnitude


def _ticks(lo: float, hi: float, target: int = 8, *, time: bool = False) -> tuple[list[float], float]:
    """Round tick values covering [lo, hi] and their step."""
    step = _nice_step(hi - lo, target, time=time)
    first = math.ceil(lo / step - _EPS) * step
    count = int((hi - first) / step + _EPS) + 1
    digits = _decimals(step) + 2
    return [round(first + i * step, digits) for i in range(max(0, count))], step


def _time_label(value: float, step: float) -> str:
    if abs(value) < _EPS:
        return "0"
    if abs(value) >= 60 and step >= 1:
        minutes, rest = divmod(value, 60)
        return f"{int(minutes)}m" if rest < _EPS else f"{int(minutes)}m{rest:02.0f}s"
    return f"{value:.{_decimals(step)}f}s"


def _value_label(value: float, step: float) -> str:
    if abs(value) >= 10_000:
        return f"{value / 1000:,.0f}k"
    return f"{value:,.{_decimals(step)}f}"


def _when(epoch: Any) -> str:
    """An epoch time as a ``<time>`` element in UTC (the page's script shows it in local time)."""
    seconds = _finite(epoch)
    if seconds is None:
        return ""
    try:
        moment = datetime.fromtimestamp(seconds, tz=UTC)
    except (OverflowError, OSError, ValueError):
        return ""
    return f'<time datetime="{moment.isoformat()}">{moment.strftime("%Y-%m-%d %H:%M:%S")} UTC</time>'


class _Scale:
    """A linear map from data values to SVG units."""

    __slots__ = ("_a", "_factor", "_lo")

    def __init__(self, lo: float, hi: float, a: float, b: float) -> None:
        self._lo = lo
        self._a = a
        self._factor = (b - a) / (hi - lo) if hi > lo else 0.0

    def __call__(self, value: float) -> float:
        return self._a + (value - self._lo) * self._factor


# -- what the events and records say about each task --------------------------------------


@dataclass(slots=True)
class _Marks:
    """What one task went through besides running: rate-limit waits, retries, a cache hit."""

    rate_waits: list[tuple[float, float]] = field(default_factory=list)  # (start, seconds)
    retries: list[tuple[float, int, float, str]] = field(default_factory=list)  # (t, attempt, delay, error)
    cache: str | None = None


def _payload(data: str | None) -> dict[str, Any]:
    if not data:
        return {}
    try:
        value = json.loads(data)
    except (ValueError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def _marks(events: Sequence[EventRow], records: Iterable[TaskRecord]) -> dict[str, _Marks]:
    """Per task id: the waits, retries and cache hit of the last session (see the module comment)."""
    out: dict[str, _Marks] = {}
    last = max((row[0] for row in events), default=None)
    for session, when, kind, task_id, data in events:
        t = _finite(when)
        if session != last or task_id is None or t is None or kind not in ("rate_wait", "retry", "cache_hit"):
            continue
        marks = out.setdefault(task_id, _Marks())
        payload = _payload(data)
        if kind == "rate_wait":
            seconds = _finite(payload.get("seconds"))
            if seconds and seconds > 0:
                marks.rate_waits.append((t, seconds))
        elif kind == "retry":
            attempt = _finite(payload.get("attempt")) or 0
            marks.retries.append((t, int(attempt), max(0.0, _finite(payload.get("delay")) or 0.0),
                                  str(payload.get("error", ""))))
        else:
            marks.cache = str(payload.get("level") or "cache")
    for record in records:
        marks = out.get(record.task_id) or _Marks()
        if not marks.rate_waits and record.started_at is not None:
            waited = _finite(record.meta.get("limit_wait"))
            if waited and waited > 0:
                marks.rate_waits.append((record.started_at, waited))
        if marks.cache is None and record.meta.get("cache"):
            marks.cache = str(record.meta["cache"])
        if marks.rate_waits or marks.retries or marks.cache:
            out[record.task_id] = marks
    return out


@dataclass(slots=True)
class _Ctx:
    """Everything the sections share, computed once."""

    run: Mapping[str, Any]
    records: Sequence[TaskRecord]
    timed: list[TaskRecord]  # ran in this run (analyze's rule)
    drawn: list[TaskRecord]  # timed, plus tasks with no end (a crashed run) drawn up to the last time known
    report: RunReport
    marks: dict[str, _Marks]
    critical: set[str]
    t0: float
    t1: float
    max_parallel: int | None
    anomalies: list[Mapping[str, Any]]


def _context(run: Mapping[str, Any], records: Sequence[TaskRecord], events: Sequence[EventRow],
             report: RunReport, resources: Sequence[Mapping[str, float]],
             anomalies: Sequence[Mapping[str, Any]]) -> _Ctx:
    timed = [r for r in records if _ran(r)]
    live = [r for r in records if not r.resumed]
    marks = _marks(events, live)
    times = [0.0]
    for r in live:
        times.extend(t for t in (r.ready_at, r.started_at, r.ended_at) if t is not None and math.isfinite(t))
    times.extend(t for s in resources if (t := _finite(s.get("t"))) is not None)
    lo, hi = min(times), max(times)
    open_ended = [replace(r, ended_at=max(hi, r.started_at), meta={**r.meta, _NO_END: True}) for r in live
                  if r.started_at is not None and r.ended_at is None]
    if hi - lo < _EPS:
        hi = lo + 1.0
    step = _nice_step(hi - lo, 10, time=True)
    rounded = math.ceil(hi / step - _EPS) * step
    if rounded - hi <= 0.05 * (hi - lo):  # end the axis on a tick when that wastes little room
        hi = rounded
    max_parallel = report.max_parallel
    if max_parallel is None:
        value = _finite(run.get("max_parallel"))
        max_parallel = int(value) if value and value >= 1 else None
    return _Ctx(run=run, records=records, timed=timed, drawn=timed + open_ended, report=report, marks=marks,
                critical={s.task_id for s in report.critical_path}, t0=lo, t1=hi,
                max_parallel=max_parallel, anomalies=list(anomalies))


# -- header ---------------------------------------------------------------------------------


def _stat(label: str, value: str, sub: str = "", cls: str = "") -> str:
    """One headline figure card (``value`` and ``sub`` are plain text)."""
    sub_html = f'<div class="sub">{_e(sub)}</div>' if sub else ""
    return (f'<div class="stat {cls}"><div class="label">{_e(label)}</div><div class="value">{_e(value)}</div>'
            f"{sub_html}</div>")


def _cost(ctx: _Ctx, history: Sequence[tuple[str, float, Mapping[str, float]]]) -> float | None:
    for key in ("cost_usd", "cost"):
        value = _finite(ctx.run.get(key))
        if value is not None:
            return value
    run_id = ctx.run.get("id")
    for hid, _, values in history:
        if hid == run_id:
            return _finite(values.get("cost_usd"))
    return None


def _cache_stat(ctx: _Ctx) -> str:
    cache = ctx.report.cache
    hits = int(_finite(cache.get("hits")) or 0)
    saved_tokens = int(_finite(cache.get("saved_tokens")) or 0)
    saved_seconds = _finite(cache.get("saved_seconds")) or 0.0
    if not hits:
        cached = [r for r in ctx.records if not r.resumed and r.task_id in ctx.marks and ctx.marks[r.task_id].cache]
        hits = len(cached)
        saved_tokens = sum(int(_finite(r.meta.get("saved_tokens")) or 0) for r in cached)
    if not hits:
        return ""
    sub = f"{_int(saved_tokens)} tokens saved" if saved_tokens else ""
    if saved_seconds:
        sub += f"{' · ' if sub else ''}{format_seconds(saved_seconds)} of provider time"
    return _stat("cache", f"{_int(hits)} {'hit' if hits == 1 else 'hits'}", sub, "good")


def _state_pills(report: RunReport) -> str:
    pills = [f'<span class="pill st-{_STATE_CLASS.get(state, "other")}"><i></i>{_int(n)} {_e(state)}</span>'
             for state, n in report.counts.items()]
    return "".join(pills) or '<span class="muted">no tasks</span>'


def _header(ctx: _Ctx, history: Sequence[tuple[str, float, Mapping[str, float]]]) -> str:
    run, report = ctx.run, ctx.report
    status = str(run.get("status") or "unknown")
    name = str(run.get("name") or "workflow")
    run_id = str(run.get("id") or "")
    meta = [f"run <code>{_e(run_id)}</code>" if run_id else "", _when(run.get("created_at"))]
    ended = _finite(run.get("ended_at"))
    created = _finite(run.get("created_at"))
    if ended is not None and created is not None and ended >= created:
        meta.append(f"wall {format_seconds(ended - created)}")
    if report.providers:
        meta.append("providers " + ", ".join(_e(p) for p in report.providers))
    stats = [_headline_stats(ctx), _token_stats(ctx, history), _cache_stat(ctx)]
    failure = run.get("failure")
    banner = f'<div class="banner bad">{_e(_short(str(failure), 2000))}</div>' if failure else ""
    return (
        '<header class="top"><div class="eyebrow">agentfleet run report</div>'
        f'<div class="title"><h1>{_e(name)}</h1>'
        f'<span class="status {_STATUS_CLASS.get(status, "info")}">{_e(status)}</span></div>'
        f'<div class="meta">{" · ".join(m for m in meta if m)}</div>{banner}'
        f'<div class="stats">{"".join(stats)}</div>'
        f'<div class="pills">{_state_pills(report)}</div>{_notes(ctx)}</header>'
    )


def _headline_stats(ctx: _Ctx) -> str:
    report = ctx.report
    if report.tasks_ran == 0:
        return _stat("makespan", "—", "no tasks ran")
    limit = f" of {ctx.max_parallel}" if ctx.max_parallel is not None else ""
    first = report.time_to_first_result
    path = f"{_plural(len(report.critical_path), 'step')} · queued {format_seconds(report.critical_path_queue_wait)}"
    return "".join((
        _stat("makespan", format_seconds(report.makespan),
              f"first result {format_seconds(first)}" if first is not None else ""),
        _stat("speedup", _times(report.speedup), f"task time {format_seconds(report.total_task_time)}"),
        _stat("efficiency", _pct(report.efficiency), f"peak {report.peak_concurrency} parallel{limit}"),
        _stat("critical path", format_seconds(report.critical_path_length), path),
    ))


def _token_stats(ctx: _Ctx, history: Sequence[tuple[str, float, Mapping[str, float]]]) -> str:
    report = ctx.report
    out = [_stat("tokens", _int(report.tokens_in + report.tokens_out),
                 f"{_int(report.tokens_in)} in / {_int(report.tokens_out)} out")]
    cost = _cost(ctx, history)
    if cost is not None:
        out.append(_stat("cost", _money(cost), "estimated"))
    if report.retries or report.hedges or report.fallbacks:
        extra = [_plural(n, word) for n, word in ((report.hedges, "hedge"), (report.fallbacks, "fallback")) if n]
        out.append(_stat("retries", _int(report.retries), " · ".join(extra), "warn" if report.retries else ""))
    if report.limit_wait > 0:
        waited = sum(1 for r in ctx.records if not r.resumed and (_finite(r.meta.get("limit_wait")) or 0) > 0)
        out.append(_stat("rate-limit wait", format_seconds(report.limit_wait), f"over {_plural(waited, 'task')}",
                         "warn"))
    return "".join(out)


def _notes(ctx: _Ctx) -> str:
    report = ctx.report
    notes: list[str] = []
    if report.simulated:
        notes.append("sim provider: simulated latencies and tokens")
    if report.latency_scale != 1:
        notes.append(f"latencies scaled x{report.latency_scale:g} (unscaled makespan "
                     f"{format_seconds(report.unscaled_makespan)})")
    if report.tasks_resumed:
        notes.append(f"{_plural(report.tasks_resumed, 'task')} finished in earlier sessions (not drawn)")
    return f'<div class="note">{_e("; ".join(notes))}</div>' if notes else ""


# -- timeline -------------------------------------------------------------------------------


def _select_bars(timed: Sequence[TaskRecord], critical: set[str], cap: int) -> list[TaskRecord]:
    """At most ``cap`` records: the critical path, then the longest (record order kept)."""
    if len(timed) <= cap:
        return list(timed)
    keep = {i for i, r in enumerate(timed) if r.task_id in critical}
    rest = (i for i in range(len(timed)) if i not in keep)
    keep.update(heapq.nlargest(max(0, cap - len(keep)), rest, key=lambda i: timed[i].duration))
    return [timed[i] for i in sorted(keep)]


def _assign_lanes(intervals: Sequence[tuple[float, float]]) -> list[int]:
    """The lane of each interval: in start order, the lowest lane free at its start (half-open)."""
    lanes = [0] * len(intervals)
    busy: list[tuple[float, int]] = []
    free: list[int] = []
    count = 0
    for i in sorted(range(len(intervals)), key=lambda k: intervals[k]):
        start, end = intervals[i]
        while busy and busy[0][0] <= start:
            heapq.heappush(free, heapq.heappop(busy)[1])
        if free:
            lane = heapq.heappop(free)
        else:
            lane, count = count, count + 1
        lanes[i] = lane
        heapq.heappush(busy, (max(start, end), lane))
    return lanes


@dataclass(slots=True)
class _Row:
    agent: str
    label: str
    first: bool  # first row of its agent
    merged: bool = False


def _layout(drawn: Sequence[TaskRecord]) -> tuple[list[_Row], list[int]]:
    """Rows (agent slots) in order of each agent's first start, and the row of each drawn record."""
    by_agent: dict[str, list[int]] = {}
    for k in sorted(range(len(drawn)), key=lambda k: (drawn[k].started_at or 0.0, drawn[k].agent)):
        by_agent.setdefault(drawn[k].agent, []).append(k)
    rows: list[_Row] = []
    row_of = [0] * len(drawn)
    for agent, members in by_agent.items():
        lanes = _assign_lanes([(drawn[k].started_at or 0.0, drawn[k].ended_at or 0.0) for k in members])
        used = max(lanes) + 1
        base = len(rows)
        for lane in range(min(used, _LANE_CAP)):
            rows.append(_Row(agent, f"{agent} #{lane + 1}", lane == 0))
        if used > _LANE_CAP:
            rows.append(_Row(agent, f"{agent} #{_LANE_CAP + 1}–{used}", False, merged=True))
        for k, lane in zip(members, lanes, strict=True):
            row_of[k] = base + min(lane, _LANE_CAP)
    return rows, row_of


def _tooltip(r: TaskRecord, marks: _Marks | None, critical: bool) -> str:
    assert r.started_at is not None and r.ended_at is not None
    lines = [f"{r.task_id} · {r.agent}" + (" · critical path" if critical else ""),
             f"{r.state}{' (from ' + marks.cache + ' cache)' if marks and marks.cache else ''} · "
             f"{format_seconds(r.started_at)} → {format_seconds(r.ended_at)} ({format_seconds(r.duration)})"]
    if r.meta.get(_NO_END):
        lines[1] = f"{r.state} · started {format_seconds(r.started_at)}, no end recorded (drawn to the last time known)"
    if r.queue_wait > 0:
        lines.append(f"queued {format_seconds(r.queue_wait)} (ready at {format_seconds(r.ready_at or 0.0)})")
    if marks and marks.rate_waits:
        lines.append(f"rate-limit wait {format_seconds(sum(s for _, s in marks.rate_waits))}")
    if marks:
        for t, attempt, delay, error in marks.retries[:5]:
            lines.append(f"retry after attempt {attempt} at {format_seconds(t)} (+{format_seconds(delay)}): "
                         f"{_short(error, 160)}")
    lines.append(f"attempts {r.attempts} · tokens {_int(r.tokens_in)} in / {_int(r.tokens_out)} out")
    if r.error:
        lines.append(f"error: {_short(r.error, 300)}")
    return _e("\n".join(lines))


def _bar(r: TaskRecord, marks: _Marks | None, x: _Scale, y: float, h: float, critical: bool) -> str:
    """One task's bar with its rate-limit waits, retry backoffs and retry markers."""
    assert r.started_at is not None and r.ended_at is not None
    state = "cache" if marks and marks.cache and r.state == TaskState.DONE else _STATE_CLASS.get(r.state, "done")
    x0 = x(r.started_at)
    width = max(2.0, x(r.ended_at) - x0)
    parts = [f'<g class="tip" data-task="{_e(r.task_id)}"><title>{_tooltip(r, marks, critical)}</title>']
    crit = " crit" if critical else ""
    parts.append(f'<rect class="bar {state}{crit}" x="{_f(x0)}" y="{_f(y)}" width="{_f(width)}" '
                 f'height="{_f(h)}" rx="2"/>')
    if marks:
        parts.extend(_overlays(marks, r.ended_at, x, y, h))
    parts.append("</g>")
    return "".join(parts)


def _queue_strip(r: TaskRecord, x: _Scale, y: float, h: float) -> str:
    """The queue wait (ready to start) as a thin strip in the row's gutter, under every bar."""
    if r.ready_at is None or r.started_at is None or r.queue_wait <= 0:
        return ""
    a, b = x(r.ready_at), x(r.started_at)
    return (f'<rect class="queue tip" x="{_f(a)}" y="{_f(y)}" width="{_f(max(0.75, b - a))}" height="{_f(h)}">'
            f"<title>{_e(r.task_id)} queued {format_seconds(r.queue_wait)}</title></rect>")


def _overlays(marks: _Marks, end: float, x: _Scale, y: float, h: float) -> list[str]:
    out: list[str] = []
    for start, seconds in marks.rate_waits:
        a, b = x(start), x(min(end, start + seconds))
        out.append(f'<rect class="ratewait" x="{_f(a)}" y="{_f(y)}" width="{_f(max(0.75, b - a))}" height="{_f(h)}"/>')
    for t, _, delay, _ in marks.retries:
        a, b = x(t), x(min(end, t + delay))
        if delay > 0:
            out.append(f'<rect class="backoff" x="{_f(a)}" y="{_f(y)}" width="{_f(max(0.75, b - a))}" '
                       f'height="{_f(h)}"/>')
        size = min(5.0, max(2.5, h * 0.4))
        out.append(f'<path class="retry" d="M{_f(a - size)} {_f(y - 1)}h{_f(2 * size)}'
                   f'l-{_f(size)} {_f(size * 1.3)}z"/>')
    return out


def _time_axis(x: _Scale, ctx: _Ctx, top: float, bottom: float, *, labels_at: float) -> str:
    ticks, step = _ticks(ctx.t0, ctx.t1, 10, time=True)
    out = []
    for t in ticks:
        px = _f(x(t))
        out.append(f'<line class="grid" x1="{px}" x2="{px}" y1="{_f(top)}" y2="{_f(bottom)}"/>'
                   f'<text class="tick" x="{px}" y="{_f(labels_at)}" text-anchor="middle">'
                   f"{_time_label(t, step)}</text>")
    return "".join(out)


def _anomaly_marks(ctx: _Ctx, x: _Scale, top: float, bottom: float, metrics: tuple[str, ...] = ()) -> str:
    """Dashed red lines at each anomaly's time (only anomalies of this run, for ``metrics`` when given)."""
    run_id = ctx.run.get("id")
    out = []
    for a in ctx.anomalies:
        t = _finite(a.get("t"))
        if t is None or not ctx.t0 <= t <= ctx.t1 or a.get("run_id") not in (None, run_id):
            continue
        if metrics and not any(m in str(a.get("metric", "")) for m in metrics):
            continue
        px = _f(x(t))
        out.append(f'<g class="tip anomaly"><title>{_e(_anomaly_text(a))}</title>'
                   f'<line x1="{px}" x2="{px}" y1="{_f(top)}" y2="{_f(bottom)}"/>'
                   f'<path d="M{px} {_f(top - 1)}l4 -5l-4 -5l-4 5z"/></g>')
    return "".join(out)


def _anomaly_text(a: Mapping[str, Any]) -> str:
    value, score = _finite(a.get("value")), _finite(a.get("score"))
    parts = [f"anomaly: {a.get('metric', '?')}"]
    if value is not None:
        parts.append(f"value {value:,.4g}")
    if score is not None:
        parts.append(f"score {score:.1f} ({a.get('method', '')})")
    message = a.get("message")
    return " · ".join(parts) + (f"\n{message}" if message else "")


def _timeline_rows_svg(rows: Sequence[_Row], row_h: float, top: float, width: float) -> str:
    out = []
    shade = False
    for i, row in enumerate(rows):
        if row.first:
            shade = not shade
        y = top + i * row_h
        cls = "row alt" if shade else "row"
        out.append(f'<rect class="{cls}" x="0" y="{_f(y)}" width="{_f(width)}" height="{_f(row_h)}"/>')
        if row.first and i:
            out.append(f'<line class="sep" x1="0" x2="{_f(width)}" y1="{_f(y)}" y2="{_f(y)}"/>')
        if row_h >= 7 or row.first:
            cls = "rowlabel strong" if row.first else "rowlabel merged" if row.merged else "rowlabel"
            out.append(f'<text class="{cls}" x="8" y="{_f(y + row_h / 2 + 4)}">{_e(_short(row.label, 22))}</text>')
    return "".join(out)


def _critical_links(drawn: Sequence[TaskRecord], row_of: Sequence[int], ctx: _Ctx, x: _Scale,
                    y_of: Callable[[int], float]) -> str:
    """Thin connectors from each critical step's end to the next step's start."""
    if len(ctx.report.critical_path) > _MAX_LINKED_PATH:  # the outlines alone read better than a thicket
        return ""
    where = {r.task_id: (r, row_of[i]) for i, r in enumerate(drawn) if r.task_id in ctx.critical}
    segments = []
    steps = [where[s.task_id] for s in ctx.report.critical_path if s.task_id in where]
    for (a, ra), (b, rb) in itertools.pairwise(steps):
        assert a.ended_at is not None and b.started_at is not None
        segments.append(f"M{_f(x(a.ended_at))} {_f(y_of(ra))}L{_f(x(b.started_at))} {_f(y_of(rb))}")
    return f'<path class="critlink" d="{"".join(segments)}"/>' if segments else ""


_TIMELINE_DEFS = (
    '<defs><pattern id="hatch-rate" width="5" height="5" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(45)"><rect width="5" height="5" class="hatch-bg"/>'
    '<rect width="2.2" height="5" class="hatch-rate"/></pattern>'
    '<pattern id="hatch-backoff" width="4" height="4" patternUnits="userSpaceOnUse" '
    'patternTransform="rotate(-45)"><rect width="4" height="4" class="hatch-bg"/>'
    '<rect width="1.6" height="4" class="hatch-backoff"/></pattern></defs>'
)


def _timeline_svg(ctx: _Ctx) -> tuple[str, int]:
    """The Gantt chart and how many bars it draws."""
    if not ctx.drawn:
        return _empty_svg("timeline", "No task ran in this run."), 0
    drawn = _select_bars(ctx.drawn, ctx.critical, _MAX_BARS)
    rows, row_of = _layout(drawn)
    row_h = 22.0 if len(rows) <= 40 else max(4.0, min(22.0, 1400 / len(rows)))
    top = 30.0
    height = top + len(rows) * row_h + (26.0 if len(rows) > 30 else 6.0)
    x = _Scale(ctx.t0, ctx.t1, _LABEL_W, _WIDTH - _PAD_R)
    bar_h = max(2.0, row_h * 0.6)
    strip_h = max(1.0, row_h * 0.14)

    def y_of(row: int) -> float:  # the middle of the row's bar
        return top + row * row_h + row_h * 0.12 + bar_h / 2

    bottom = top + len(rows) * row_h
    parts = [
        f'<svg id="timeline" class="chart" viewBox="0 0 {_WIDTH} {_f(height)}" role="img" '
        f'aria-label="task timeline">{_TIMELINE_DEFS}',
        _timeline_rows_svg(rows, row_h, top, _WIDTH),
        _time_axis(x, ctx, top - 4, bottom, labels_at=top - 10),
        f'<line class="axis" x1="{_LABEL_W}" x2="{_LABEL_W}" y1="{_f(top)}" y2="{_f(bottom)}"/>',
    ]
    if len(rows) > 30:
        ticks, step = _ticks(ctx.t0, ctx.t1, 10, time=True)
        parts.extend(f'<text class="tick" x="{_f(x(t))}" y="{_f(bottom + 16)}" text-anchor="middle">'
                     f'{_time_label(t, step)}</text>' for t in ticks)
    parts.extend(_queue_strip(r, x, y_of(row_of[i]) + bar_h / 2 + row_h * 0.06, strip_h)
                 for i, r in enumerate(drawn))
    for i, r in enumerate(drawn):
        y = y_of(row_of[i]) - bar_h / 2
        parts.append(_bar(r, ctx.marks.get(r.task_id), x, y, bar_h, r.task_id in ctx.critical))
    parts.append(_critical_links(drawn, row_of, ctx, x, y_of))
    parts.append(_anomaly_marks(ctx, x, top, bottom))
    parts.append("</svg>")
    return "".join(parts), len(drawn)


def _empty_svg(svg_id: str, message: str) -> str:
    return (f'<svg id="{svg_id}" class="chart empty" viewBox="0 0 {_WIDTH} 80" role="img">'
            f'<text class="muted-text" x="{_WIDTH // 2}" y="45" text-anchor="middle">{_e(message)}</text></svg>')


_LEGEND = (
    ("sw done", "done"), ("sw running", "running"), ("sw failed", "failed"), ("sw stopped", "cancelled / interrupted"),
    ("sw cache", "answered from cache"), ("sw queue", "queued (ready → start)"), ("sw ratewait", "rate-limit wait"),
    ("sw backoff", "retry backoff"), ("sw retry", "retry"), ("sw crit", "critical path"),
)


def _legend() -> str:
    return '<div class="legend">' + "".join(f'<span><i class="{c}"></i>{_e(t)}</span>' for c, t in _LEGEND) + "</div>"


def _critical_list(ctx: _Ctx) -> str:
    report = ctx.report
    steps = list(report.critical_path)
    if not steps:
        return ""
    shown: list[str] = []
    half = _PATH_SHOWN // 2
    cut = len(steps) > _PATH_SHOWN
    for i, step in enumerate(steps):
        if cut and half <= i < len(steps) - half:
            if i == half:
                shown.append(f'<li class="more">… {len(steps) - 2 * half} more steps …</li>')
            continue
        wait = f' <span class="q">+{format_seconds(step.queue_wait)} queued</span>' if step.queue_wait > 0 else ""
        shown.append(f'<li><code>{_e(step.task_id)}</code> <span class="muted">{_e(step.agent)}</span> '
                     f'{format_seconds(step.duration)}{wait}</li>')
    share = _pct(report.critical_path_queue_share)
    return (f'<div class="critpath"><h3>Critical path <span class="muted">{format_seconds(report.critical_path_length)}'
            f' of work, {format_seconds(report.critical_path_queue_wait)} queued ({share} of makespan)</span></h3>'
            f'<ol>{"".join(shown)}</ol></div>')


def _failed_list(ctx: _Ctx) -> str:
    failed = [r for r in ctx.records if r.state == TaskState.FAILED and not r.resumed]
    if not failed:
        return ""
    rows = "".join(f'<tr><td><code>{_e(r.task_id)}</code></td><td>{_e(r.agent)}</td><td class="num">{r.attempts}</td>'
                   f'<td class="err">{_e(_short(r.error or "", 400))}</td></tr>' for r in failed[:_MAX_FAILED])
    more = f'<p class="muted">… {len(failed) - _MAX_FAILED} more failed tasks</p>' if len(failed) > _MAX_FAILED else ""
    return (f'<details class="failed"{" open" if len(failed) <= 5 else ""}><summary>Failed tasks '
            f'<span class="muted">{_int(len(failed))}</span></summary><table class="grid-table" id="failed">'
            '<thead><tr><th>task</th><th>agent</th><th class="num">attempts</th><th class="wide">error</th></tr>'
            f"</thead><tbody>{rows}</tbody></table>{more}</details>")


def _timeline_section(ctx: _Ctx) -> str:
    svg, drawn = _timeline_svg(ctx)
    total = len(ctx.drawn)
    note = ""
    if drawn < total:
        note = (f'<p class="note">{_int(drawn)} of {_int(total)} tasks drawn: the critical path and the longest '
                f'tasks (concurrency below counts every task).</p>')
    return _section("timeline-section", "Timeline",
                    f"{_plural(total, 'task')} that ran, one row per agent slot; hover a bar for details",
                    f'{_legend() if total else ""}{note}<div class="scroll">{svg}</div>{_critical_list(ctx)}'
                    f"{_failed_list(ctx)}")


def _section(anchor: str, title: str, subtitle: str, body: str) -> str:
    sub = f'<p class="subtitle">{_e(subtitle)}</p>' if subtitle else ""
    return f'<section class="card" id="{anchor}"><h2>{_e(title)}</h2>{sub}{body}</section>'


# -- latency histograms ---------------------------------------------------------------------


def _bins(values: Sequence[float], count: int = 24) -> tuple[list[float], bool]:
    """Bin edges over ``values``: log-spaced when the spread is wide (max / min > 20)."""
    lo, hi = min(values), max(values)
    if hi - lo < _EPS:  # one value: a narrow bar in the middle
        half = max(abs(lo) * 0.5, 1e-3)
        lo, hi = (max(0.0, lo - half) if lo >= 0 else lo - half), hi + half
        count += 1 - count % 2  # odd, so the value sits in the middle of a bin
        return [lo + (hi - lo) * i / count for i in range(count + 1)], False
    positive = [v for v in values if v > 0]
    if positive and hi / min(positive) > 20:
        a, b = math.log10(min(positive)), math.log10(hi)
        return [10 ** (a + (b - a) * i / count) for i in range(count + 1)], True
    return [lo + (hi - lo) * i / count for i in range(count + 1)], False


def _bin_counts(values: Sequence[float], edges: Sequence[float], log: bool) -> list[int]:
    counts = [0] * (len(edges) - 1)
    lo, hi = edges[0], edges[-1]
    n = len(counts)
    for v in values:
        if log:
            pos = 0.0 if v <= lo else (math.log10(v) - math.log10(lo)) / (math.log10(hi) - math.log10(lo))
        else:
            pos = (v - lo) / (hi - lo) if hi > lo else 0.0
        counts[min(n - 1, max(0, int(pos * n)))] += 1
    return counts


def _histogram_svg(values: Sequence[float], p50: float | None, p95: float | None) -> str:
    w, h, left, bottom_pad, top = 320.0, 140.0, 34.0, 22.0, 16.0
    edges, log = _bins(values)
    counts = _bin_counts(values, edges, log)
    peak = max(counts) or 1
    plot_h = h - bottom_pad - top
    slot = (w - left - 6) / len(counts)
    parts = [f'<svg class="histogram" viewBox="0 0 {_f(w)} {_f(h)}" role="img" aria-label="latency histogram">']
    for tick in (0, peak):
        y = top + plot_h - plot_h * tick / peak
        parts.append(f'<line class="grid" x1="{_f(left)}" x2="{_f(w - 6)}" y1="{_f(y)}" y2="{_f(y)}"/>'
                     f'<text class="tick" x="{_f(left - 4)}" y="{_f(y + 3)}" text-anchor="end">{tick}</text>')
    for i, c in enumerate(counts):
        if not c:
            continue
        bh = max(1.0, plot_h * c / peak)
        parts.append(f'<g class="tip"><title>{_dur_label(edges[i])} – {_dur_label(edges[i + 1])}: '
                     f'{_plural(c, "task")}</title><rect class="hbar" x="{_f(left + i * slot + 0.5)}" '
                     f'y="{_f(top + plot_h - bh)}" width="{_f(max(1.0, slot - 1))}" height="{_f(bh)}"/></g>')

    def x_of(v: float) -> float:
        i = _bin_counts([v], edges, log).index(1)
        frac = _bin_frac(v, edges[i], edges[i + 1], log)
        return left + (i + frac) * slot

    marks = [(label, x_of(value)) for label, value in (("p50", p50), ("p95", p95)) if value is not None]
    close = len(marks) == 2 and abs(marks[1][1] - marks[0][1]) < 26
    for label, px in marks:
        ly = top + 10 if close and label == "p95" else top - 2  # p95 drops below p50 when they meet
        anchor, dx = ("end", -3.0) if px > w - 24 else ("start", 3.0) if px < left + 12 or close else ("middle", 0.0)
        parts.append(f'<line class="pmark {label}" x1="{_f(px)}" x2="{_f(px)}" y1="{_f(top)}" '
                     f'y2="{_f(top + plot_h)}"/><text class="plabel {label}" x="{_f(px + dx)}" y="{_f(ly)}" '
                     f'text-anchor="{anchor}">{label}</text>')
    lo, hi = edges[0], edges[-1]
    middle = math.sqrt(lo * hi) if log else (lo + hi) / 2
    for value, px, anchor in ((lo, left, "start"), (middle, (left + w - 6) / 2, "middle"), (hi, w - 6, "end")):
        parts.append(f'<text class="tick" x="{_f(px)}" y="{_f(h - 6)}" text-anchor="{anchor}">'
                     f"{_dur_label(value)}</text>")
    parts.append("</svg>")
    return "".join(parts)


def _bin_frac(v: float, a: float, b: float, log: bool) -> float:
    if b <= a:
        return 0.5
    if log and a > 0 and v > 0:
        return min(1.0, max(0.0, (math.log10(v) - math.log10(a)) / (math.log10(b) - math.log10(a))))
    return min(1.0, max(0.0, (v - a) / (b - a)))


def _latency_section(ctx: _Ctx) -> str:
    durations: dict[str, list[float]] = {}
    for r in ctx.timed:
        durations.setdefault(r.agent, []).append(r.duration)
    if not durations:
        return _section("latency-section", "Task latency", "", '<p class="muted">No task ran in this run.</p>')
    summaries = {agent: _summary(values) for agent, values in durations.items()}
    busiest = sorted(durations, key=lambda a: (-len(durations[a]), a))
    cards = []
    for agent in busiest[:_MAX_HISTOGRAMS]:
        s = summaries[agent]
        cards.append(f'<div class="hcard"><div class="hhead"><b>{_e(agent)}</b><span class="muted">'
                     f'{_plural(len(durations[agent]), "task")} · p50 {_fmt_opt(s.get("p50"))} · '
                     f'p95 {_fmt_opt(s.get("p95"))}</span></div>'
                     f'{_histogram_svg(durations[agent], s.get("p50"), s.get("p95"))}</div>')
    more = (f'<p class="muted">Histograms for the {_MAX_HISTOGRAMS} busiest of {len(busiest)} agents.</p>'
            if len(busiest) > _MAX_HISTOGRAMS else "")
    spread = ("log-spaced bins where the durations span more than 20x" if any(
        _bins(v)[1] for v in durations.values()) else "")
    return _section("latency-section", "Task latency", "service time per task (start to end) by agent"
                    + (f"; {spread}" if spread else ""),
                    f'<div class="hgrid">{"".join(cards)}</div>{more}{_agent_table(ctx, summaries, busiest)}')


def _summary(values: Sequence[float]) -> dict[str, float | None]:
    histogram = LatencyHistogram()
    for v in values:
        histogram.record(max(0.0, v))
    p = histogram.percentiles((50.0, 95.0, 99.0))
    return {"p50": p[50.0], "p95": p[95.0], "p99": p[99.0], "max": histogram.max, "mean": histogram.mean}


def _dur_label(value: float) -> str:
    """A duration for an axis: like ``format_seconds`` but with 3 digits below a second (and µs)."""
    if value == 0 or abs(value) >= 1:
        return format_seconds(value)
    if abs(value) < 1e-3:
        return f"{value * 1e6:.3g}µs"
    return f"{value * 1e3:.3g}ms"


def _fmt_opt(value: float | None) -> str:
    return "n/a" if value is None else format_seconds(value)


def _agent_table(ctx: _Ctx, summaries: Mapping[str, Mapping[str, float | None]], order: Sequence[str]) -> str:
    head = ("agent", "tasks", "p50", "p95", "p99", "max", "mean", "busy", "wait mean", "wait max", "avg running",
            "tokens in", "tokens out")
    rows = []
    for agent in order[:_MAX_TABLE_ROWS]:
        s = summaries[agent]
        stats = ctx.report.agents.get(agent)
        cells = [f"<td>{_e(agent)}</td>"]
        cells.append(f'<td class="num">{_int(stats.tasks) if stats else ""}</td>')
        cells.extend(f'<td class="num">{_fmt_opt(s.get(k))}</td>' for k in ("p50", "p95", "p99", "max", "mean"))
        if stats is not None:
            util = "n/a" if stats.utilisation is None else f"{stats.utilisation:.2f}"
            cells.extend(f'<td class="num">{v}</td>' for v in (
                format_seconds(stats.busy), format_seconds(stats.queue_wait_mean), format_seconds(stats.queue_wait_max),
                util, _int(stats.tokens_in), _int(stats.tokens_out)))
        else:
            cells.extend('<td class="num"></td>' for _ in range(6))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    header = "".join(f'<th class="{"" if h == "agent" else "num"}">{h}</th>' for h in head)
    more = (f'<p class="muted">… {len(order) - _MAX_TABLE_ROWS} more agents</p>'
            if len(order) > _MAX_TABLE_ROWS else "")
    return (f'<div class="scroll"><table class="grid-table" id="agents"><thead><tr>{header}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table></div>{more}')


# -- step charts: concurrency and resources -------------------------------------------------


def _steps(changes: Iterable[tuple[float, int]]) -> list[tuple[float, int]]:
    """A step function from (time, delta) changes: (time, value after the changes at that time)."""
    out: list[tuple[float, int]] = []
    value = 0
    for t, delta in sorted(changes):
        value += delta
        if out and abs(out[-1][0] - t) < _EPS:
            out[-1] = (out[-1][0], value)
        else:
            out.append((t, value))
    return out


def _column_max(points: Sequence[tuple[float, float]], x: _Scale) -> list[tuple[float, float]]:
    """Per pixel column the largest value (so peaks survive), as (x, value) points in SVG units."""
    best: dict[int, float] = {}
    for t, v in points:
        col = int(x(t))
        best[col] = max(best.get(col, -math.inf), v)
    return sorted((float(c), v) for c, v in best.items())


def _step_path(points: Sequence[tuple[float, int]], x: _Scale, y: _Scale, end: float) -> str:
    """An SVG path drawing a step function up to ``end``."""
    if not points:
        return ""
    if len(points) > _MAX_STEP_POINTS:
        coarse = _column_max([(t, float(v)) for t, v in points], x)
        d = [f"M{_f(coarse[0][0])} {_f(y(0))}"]
        d.extend(f"V{_f(y(v))}H{_f(px + 1)}" for px, v in coarse)
        return "".join(d)
    d = [f"M{_f(x(points[0][0]))} {_f(y(0))}"]
    for i, (_, v) in enumerate(points):
        nxt = points[i + 1][0] if i + 1 < len(points) else end
        d.append(f"V{_f(y(v))}H{_f(x(nxt))}")
    return "".join(d)


def _concurrency_series(ctx: _Ctx) -> tuple[list[tuple[float, int]], list[tuple[float, int]]]:
    running: list[tuple[float, int]] = []
    queued: list[tuple[float, int]] = []
    for r in ctx.drawn:
        assert r.started_at is not None and r.ended_at is not None
        if r.ended_at > r.started_at:
            running.extend(((r.started_at, 1), (r.ended_at, -1)))
        if r.ready_at is not None and r.started_at > r.ready_at:
            queued.extend(((r.ready_at, 1), (r.started_at, -1)))
    return _steps(running), _steps(queued)


def _y_axis(y: _Scale, lo: float, hi: float, left: float, right: float, target: int = 4) -> str:
    ticks, step = _ticks(lo, hi, target)
    return "".join(f'<line class="grid" x1="{_f(left)}" x2="{_f(right)}" y1="{_f(y(v))}" y2="{_f(y(v))}"/>'
                   f'<text class="tick" x="{_f(left - 6)}" y="{_f(y(v) + 3)}" text-anchor="end">'
                   f'{_value_label(v, step)}</text>' for v in ticks)


def _concurrency_svg(ctx: _Ctx) -> str:
    running, queued = _concurrency_series(ctx)
    if not running and not queued:
        return _empty_svg("concurrency", "No task ran in this run.")
    peak = max([v for _, v in running] + [v for _, v in queued] + [ctx.max_parallel or 0, 1])
    hi = float(_ticks(0, peak * 1.1, 4)[0][-1]) if peak else 1.0
    hi = max(hi, peak)
    height, top, bottom = 240.0, 14.0, 24.0
    left = 56.0
    x = _Scale(ctx.t0, ctx.t1, left, _WIDTH - _PAD_R)
    y = _Scale(0.0, hi, height - bottom, top)
    parts = [f'<svg id="concurrency" class="chart" viewBox="0 0 {_WIDTH} {_f(height)}" role="img" '
             f'aria-label="concurrency and queue depth">',
             _y_axis(y, 0, hi, left, _WIDTH - _PAD_R),
             _time_axis(x, ctx, top, height - bottom, labels_at=height - 6)]
    run_path = _step_path(running, x, y, ctx.t1)
    if run_path:
        parts.append(f'<path class="area running" d="{run_path}V{_f(y(0))}Z"/>'
                     f'<path class="line running" d="{run_path}"/>')
    q_path = _step_path(queued, x, y, ctx.t1)
    if q_path:
        parts.append(f'<path class="line queued" d="{q_path}"/>')
    if ctx.max_parallel is not None:
        py = _f(y(ctx.max_parallel))
        parts.append(f'<line class="limit" x1="{_f(left)}" x2="{_WIDTH - _PAD_R}" y1="{py}" y2="{py}"/>'
                     f'<text class="limit-label" x="{_WIDTH - _PAD_R - 4}" y="{_f(y(ctx.max_parallel) - 4)}" '
                     f'text-anchor="end">max_parallel {ctx.max_parallel}</text>')
    parts.append(_anomaly_marks(ctx, x, top, height - bottom, ("concurren", "queue", "running")))
    parts.append("</svg>")
    return "".join(parts)


def _concurrency_section(ctx: _Ctx) -> str:
    legend = ('<div class="legend"><span><i class="sw running"></i>running</span>'
              '<span><i class="sw line-queued"></i>queued (ready, not started)</span>'
              '<span><i class="sw line-limit"></i>max_parallel</span></div>')
    peak = ctx.report.peak_concurrency
    return _section("concurrency-section", "Concurrency and queue depth",
                    f"tasks running and waiting over time; peak {peak} running",
                    f'{legend}<div class="scroll">{_concurrency_svg(ctx)}</div>')


_RESOURCE_PANELS = (
    ("CPU %", ("cpu_percent",), "cpu"),
    ("RSS MB", ("rss_mb",), "rss"),
    ("I/O MB/s", ("read_mb_s", "write_mb_s", "net_sent_mb_s", "net_recv_mb_s"), "io"),
)


def _series(samples: Sequence[Mapping[str, float]], key: str) -> list[tuple[float, float]]:
    out = []
    for s in samples:
        t, v = _finite(s.get("t")), _finite(s.get(key))
        if t is not None and v is not None:
            out.append((t, v))
    out.sort()
    return out


def _line_path(points: Sequence[tuple[float, float]], x: _Scale, y: _Scale) -> str:
    if len(points) > _MAX_STEP_POINTS:
        coarse = _column_max(points, x)
        return "M" + "L".join(f"{_f(px)} {_f(y(v))}" for px, v in coarse)
    return "M" + "L".join(f"{_f(x(t))} {_f(y(v))}" for t, v in points)


def _resource_panel(ctx: _Ctx, samples: Sequence[Mapping[str, float]], title: str, keys: tuple[str, ...],
                    cls: str, top: float, height: float) -> str:
    series = {k: _series(samples, k) for k in keys}
    series = {k: v for k, v in series.items() if v}
    if not series:
        return ""
    left = 56.0
    peak = max(v for pts in series.values() for _, v in pts)
    hi = max(_ticks(0, peak * 1.1 if peak > 0 else 1.0, 3)[0][-1], peak, _EPS)
    x = _Scale(ctx.t0, ctx.t1, left, _WIDTH - _PAD_R)
    y = _Scale(0.0, hi, top + height, top + 14)
    parts = [f'<text class="panel-title" x="{_f(left)}" y="{_f(top + 9)}">{_e(title)}</text>',
             _y_axis(y, 0, hi, left, _WIDTH - _PAD_R, 3)]
    for i, (key, pts) in enumerate(series.items()):
        path = _line_path(pts, x, y)
        if len(series) == 1:
            parts.append(f'<path class="area {cls}" d="{path}V{_f(y(0))}H{_f(x(pts[0][0]))}Z"/>')
        last = pts[-1][1]
        parts.append(f'<g class="tip"><title>{_e(key)}: peak {max(v for _, v in pts):,.1f}, last {last:,.1f}'
                     f'</title><path class="line {cls} s{i}" d="{path}"/></g>')
    if len(series) > 1:
        labels = " · ".join(k.replace("_mb_s", "") for k in series)
        parts.append(f'<text class="tick" x="{_WIDTH - _PAD_R}" y="{_f(top + 9)}" text-anchor="end">'
                     f"{_e(labels)}</text>")
    metrics = {"cpu": ("cpu",), "rss": ("rss", "mem"), "io": ("read", "write", "net", "io")}[cls]
    parts.append(_anomaly_marks(ctx, x, top + 14, top + height, metrics))
    return "".join(parts)


def _resources_section(ctx: _Ctx, samples: Sequence[Mapping[str, float]]) -> str:
    panel_h, gap = 120.0, 18.0
    panels: list[str] = []
    top = 6.0
    for title, keys, cls in _RESOURCE_PANELS:
        panel = _resource_panel(ctx, samples, title, keys, cls, top, panel_h)
        if panel:
            panels.append(panel)
            top += panel_h + gap
    if not panels:
        return _section("resources-section", "Resources", "",
                        '<p class="muted">No resource samples were recorded for this run.</p>')
    x = _Scale(ctx.t0, ctx.t1, 56.0, _WIDTH - _PAD_R)
    height = top + 6
    axis = _time_axis(x, ctx, 6, top - gap, labels_at=height - 4)
    threads = [v for _, v in _series(samples, "threads")]
    sub = f"{_plural(len(samples), 'sample')} of the process and its children"
    if threads:
        sub += f"; up to {int(max(threads))} threads"
    svg = (f'<svg id="resources" class="chart" viewBox="0 0 {_WIDTH} {_f(height + 8)}" role="img" '
           f'aria-label="resource usage">{axis}{"".join(panels)}</svg>')
    return _section("resources-section", "Resources", sub, f'<div class="scroll">{svg}</div>')


# -- bottlenecks, anomalies, trends, profile ---------------------------------------------------


def _bottleneck_rows(bottlenecks: Sequence[Bottleneck], makespan: float) -> str:
    rows = []
    for b in bottlenecks[:_MAX_TABLE_ROWS]:
        share = min(1.0, b.severity / makespan) if makespan > 0 else 0.0
        setting = f'<div class="setting">change <code>{_e(b.setting)}</code></div>' if b.setting else ""
        rows.append(
            f'<tr><td><span class="kind k-{_e(b.kind)}">{_e(b.kind.replace("_", " "))}</span></td>'
            f"<td><code>{_e(b.subject)}</code></td>"
            f'<td class="num"><div class="impact"><span>~{format_seconds(b.severity)}</span>'
            f'<div class="meter"><i style="width:{share * 100:.1f}%"></i></div></div></td>'
            f'<td>{_e(b.recommendation)}{setting}<div class="evidence">{_e(b.evidence)}</div></td></tr>')
    return "".join(rows)


def _bottleneck_section(ctx: _Ctx, bottlenecks: Sequence[Bottleneck], patterns: Sequence[Pattern],
                        history_len: int, what_if: Sequence[WhatIf] = ()) -> str:
    if bottlenecks:
        body = ('<table class="grid-table" id="bottlenecks"><thead><tr><th>kind</th><th>subject</th>'
                '<th class="num">at stake</th><th>what to change</th></tr></thead>'
                f"<tbody>{_bottleneck_rows(bottlenecks, ctx.report.makespan)}</tbody></table>")
    else:
        body = '<p class="muted">No bottleneck cleared the noise floor in this run.</p>'
    if what_if:
        rows = "".join(
            f"<tr><td>{_e(w.scenario)}</td><td><code>{_e(w.setting)}</code></td>"
            f'<td class="num">{format_seconds(w.makespan)}</td>'
            f'<td class="num">{"n/a" if w.change is None else f"{w.change * 100:+.0f}%"}</td></tr>'
            for w in what_if)
        body += ('<h3>What if</h3><p class="muted">the run replayed with one thing changed (measured durations, '
                 f'list-scheduled; the same replay as is takes {format_seconds(what_if[0].baseline)})</p>'
                 '<table class="grid-table" id="what-if"><thead><tr><th>change</th><th>setting</th>'
                 '<th class="num">makespan</th><th class="num">vs as is</th></tr></thead>'
                 f"<tbody>{rows}</tbody></table>")
    if patterns:
        runs = max([history_len, *(p.last + 1 for p in patterns)])
        items = "".join(
            f'<li><span class="kind k-{_e(p.kind)}">{_e(p.kind.replace("_", " "))}</span> <code>{_e(p.subject)}</code>'
            f" <b>seen in {p.count} of last {runs} runs</b>"
            f' <span class="muted">{_e(p.latest.recommendation)}</span></li>'
            for p in patterns)
        body += f'<h3>Recurring patterns</h3><ul class="patterns" id="patterns">{items}</ul>'
    return _section("bottlenecks-section", "Bottlenecks",
                    "what held the run back, the makespan at stake (estimated by replaying the run) and what to "
                    "change", body)


def _anomaly_section(ctx: _Ctx) -> str:
    if not ctx.anomalies:
        return ""
    items = []
    for a in ctx.anomalies[:_MAX_TABLE_ROWS]:
        t = _finite(a.get("t"))
        value, score = _finite(a.get("value")), _finite(a.get("score"))
        where = f"at {format_seconds(t)}" if t is not None else ""
        if a.get("run_id") and a.get("run_id") != ctx.run.get("id"):
            where += f" run {a.get('run_id')}"
        items.append(
            f'<tr><td><code>{_e(a.get("metric", "?"))}</code></td><td>{_e(where.strip())}</td>'
            f'<td class="num">{"" if value is None else f"{value:,.4g}"}</td>'
            f'<td class="num">{"" if score is None else f"{score:.1f}"}</td><td>{_e(a.get("method", ""))}</td>'
            f'<td>{_e(a.get("message", ""))}</td></tr>')
    return _section("anomalies-section", "Anomalies", "points far from their metric's normal (marked on the charts "
                    "where a time is known)",
                    '<table class="grid-table" id="anomalies"><thead><tr><th>metric</th><th>when</th>'
                    '<th class="num">value</th><th class="num">score</th><th>method</th><th>message</th></tr></thead>'
                    f'<tbody>{"".join(items)}</tbody></table>')


def _trend_value(value: float, unit: str) -> str:
    if unit == "s":
        return format_seconds(value)
    if unit == "$":
        return _money(value)
    if unit == "%":
        return f"{value * 100:.1f}%"
    return _int(value)


def _sparkline(values: Sequence[float], current: int | None) -> str:
    w, h, pad = 220.0, 44.0, 4.0
    lo, hi = min(values), max(values)
    if hi - lo < _EPS:
        lo, hi = lo - 1, hi + 1
    x = _Scale(0, max(1, len(values) - 1), pad, w - pad)
    y = _Scale(lo, hi, h - pad, pad)
    pts = " ".join(f"{_f(x(i))},{_f(y(v))}" for i, v in enumerate(values))
    mark = current if current is not None else len(values) - 1
    return (f'<svg class="spark" viewBox="0 0 {_f(w)} {_f(h)}" role="img"><polyline points="{pts}"/>'
            f'<circle cx="{_f(x(mark))}" cy="{_f(y(values[mark]))}" r="3"/></svg>')


def _trends_section(ctx: _Ctx, history: Sequence[tuple[str, float, Mapping[str, float]]]) -> str:
    if len(history) < 2:
        return ""
    cards = []
    for key, label, unit in _TREND_METRICS:
        points = [(run_id, v) for run_id, _, values in history if (v := _finite(values.get(key))) is not None]
        if len(points) < 2:
            continue
        values = [v for _, v in points]
        ids = [run_id for run_id, _ in points]
        current = ids.index(ctx.run["id"]) if ctx.run.get("id") in ids else None
        shown = values[current] if current is not None else values[-1]
        base = values[:current] if current is not None else values[:-1]
        delta = ""
        if base:
            median = sorted(base)[len(base) // 2]
            if median:
                change = (shown - median) / abs(median)
                cls = "up" if change > 0.05 else "down" if change < -0.05 else "flat"
                delta = f'<span class="delta {cls}">{change * 100:+.0f}% vs median</span>'
        cards.append(f'<div class="trend"><div class="label">{_e(label)}</div><div class="value">'
                     f'{_trend_value(shown, unit)} {delta}</div>{_sparkline(values, current)}<div class="sub">'
                     f"{len(values)} runs · min {_trend_value(min(values), unit)} · max "
                     f"{_trend_value(max(values), unit)}</div></div>")
    if not cards:
        return ""
    return _section("trends-section", "Trends", f"this workflow's last {len(history)} runs, oldest first",
                    f'<div class="trends" id="trends">{"".join(cards)}</div>')


def _profile_section(profile: Mapping[str, Any] | None) -> str:
    if not profile:
        return ""
    share = _finite(profile.get("runtime_share"))
    duration = _finite(profile.get("duration_s"))
    samples = _finite(profile.get("samples"))
    facts = []
    if duration is not None:
        facts.append(f"{format_seconds(duration)} profiled")
    if samples is not None:
        facts.append(f"{_int(samples)} samples")
    meter = ""
    if share is not None:
        meter = (f'<div class="share"><div class="label">CPU in agentfleet\'s own code</div>'
                 f'<div class="value">{share * 100:.1f}%</div><div class="meter wide">'
                 f'<i style="width:{min(100.0, max(0.0, share * 100)):.1f}%"></i></div></div>')
    top = profile.get("top") or []
    rows = []
    scale = max([_finite(f.get("total_s")) or 0.0 for f in top if isinstance(f, Mapping)] + [_EPS])
    for f in top[:30]:
        if not isinstance(f, Mapping):
            continue
        self_s, total_s = _finite(f.get("self_s")) or 0.0, _finite(f.get("total_s")) or 0.0
        rows.append(f'<tr><td><code>{_e(f.get("function", "?"))}</code></td><td class="muted">'
                    f'{_e(f.get("location", ""))}</td><td class="num">{format_seconds(self_s)}</td>'
                    f'<td class="num"><div class="impact"><span>{format_seconds(total_s)}</span><div class="meter">'
                    f'<i style="width:{total_s / scale * 100:.1f}%"></i></div></div></td></tr>')
    table = ('<table class="grid-table" id="profile-top"><thead><tr><th>function</th><th>location</th>'
             f'<th class="num">self</th><th class="num">total</th></tr></thead><tbody>{"".join(rows)}</tbody></table>'
             if rows else "")
    tree = str(profile.get("tree") or "")
    if len(tree) > _MAX_TREE_CHARS:
        tree = tree[:_MAX_TREE_CHARS] + "\n… (truncated)"
    tree_html = (f'<details><summary>Call tree</summary><pre class="tree">{_e(tree)}</pre></details>'
                 if tree else "")
    return _section("profile-section", "Profile", " · ".join(facts), f"{meter}{table}{tree_html}")


# -- the page ---------------------------------------------------------------------------------

_NAV = (("timeline-section", "Timeline"), ("latency-section", "Latency"), ("concurrency-section", "Concurrency"),
        ("resources-section", "Resources"), ("bottlenecks-section", "Bottlenecks"),
        ("anomalies-section", "Anomalies"), ("trends-section", "Trends"), ("profile-section", "Profile"))


def _nav(body: str) -> str:
    links = "".join(f'<a href="#{anchor}">{title}</a>' for anchor, title in _NAV if f'id="{anchor}"' in body)
    return f'<nav class="toc">{links}</nav>'


def render_html(
    *,
    run: Mapping[str, Any],
    records: Sequence[TaskRecord],
    events: Sequence[tuple[int, float, str, str | None, str | None]],
    report: RunReport,
    bottlenecks: Sequence[Bottleneck],
    patterns: Sequence[Pattern] = (),
    resources: Sequence[Mapping[str, float]] = (),
    anomalies: Sequence[Mapping[str, Any]] = (),
    profile: Mapping[str, Any] | None = None,
    history: Sequence[tuple[str, float, Mapping[str, float]]] = (),
    what_if: Sequence[WhatIf] = (),
) -> str:
    """One self-contained HTML page reporting a run (no external resource; opens offline).

    ``run`` holds the stored run's fields (id, name, status, created_at, ended_at, max_parallel,
    latency_scale, failure; any may be missing), ``records`` its task records, ``events`` its
    ``RunStore.events`` rows and ``report`` / ``bottlenecks`` / ``patterns`` what ``analyze``,
    ``classify_bottlenecks`` and ``recurring`` made of them. ``resources`` are resource samples,
    ``anomalies`` detected anomalies, ``profile`` a CPU profile and ``history`` the workflow's
    headline figures per run, oldest first (trends); ``what_if`` re-simulated changes
    (``what_if_scenarios``). Pure: no I/O.
    """
    ctx = _context(run, records, events, report, resources, anomalies)
    body = "".join((
        _timeline_section(ctx),
        _latency_section(ctx),
        _concurrency_section(ctx),
        _resources_section(ctx, resources),
        _bottleneck_section(ctx, bottlenecks, patterns, len(history), what_if),
        _anomaly_section(ctx),
        _trends_section(ctx, history),
        _profile_section(profile),
    ))
    title = f"{run.get('name') or 'workflow'} — run {run.get('id') or ''}".strip()
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; img-src data:\">"
        f"<meta name=\"generator\" content=\"agentfleet\"><title>{_e(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{_header(ctx, history)}{_nav(body)}{body}"
        "<footer>Generated by agentfleet · self-contained: no network access needed</footer></main>"
        f'<div id="tooltip" role="tooltip" hidden></div><script>{_JS}</script></body></html>\n'
    )


_CSS = """
:root{--bg:#f4f5f7;--card:#fff;--text:#1c2030;--muted:#6b7280;--border:#e4e7ec;--grid:#eceef2;--row:#fafbfc;
--done:#4a7cf0;--running:#7fb0ff;--failed:#e5484d;--stopped:#a6acb8;--cache:#12a594;--queue:#f0b429;
--rate:#f76808;--backoff:#e5484d;--crit:#111827;--ok:#18794e;--okbg:#e9f7ef;--bad:#c62a2f;--badbg:#fdecec;
--warn:#a35200;--warnbg:#fff4e5;--info:#1d4ed8;--infobg:#e8efff;--accent:#4a7cf0}
@media (prefers-color-scheme:dark){:root{--bg:#0f1117;--card:#171a22;--text:#e6e8ee;--muted:#9aa1ad;
--border:#2a2f3a;--grid:#232833;--row:#1b1f28;--crit:#f5f7fa;--okbg:#10291c;--badbg:#2f1416;--warnbg:#2e2110;
--infobg:#142040;--ok:#4cc38a;--bad:#ff6b6b;--warn:#f5a524;--info:#7aa2ff}}
*{box-sizing:border-box}
body{margin:0;background:var(--bg);color:var(--text);font:14px/1.5 -apple-system,BlinkMacSystemFont,"Segoe UI",
Roboto,"Helvetica Neue",Arial,sans-serif;-webkit-font-smoothing:antialiased}
main{max-width:1320px;margin:0 auto;padding:24px 20px 40px}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,"Liberation Mono",monospace;font-size:12.5px}
h1{font-size:24px;margin:0;font-weight:650;letter-spacing:-.01em}
h2{font-size:17px;margin:0 0 2px;font-weight:620}
h3{font-size:14px;margin:18px 0 8px;font-weight:620}
.muted,.subtitle{color:var(--muted)}
.subtitle{margin:0 0 14px;font-size:13px}
.top{background:var(--card);border:1px solid var(--border);border-radius:12px;padding:20px 22px;
box-shadow:0 1px 2px rgba(16,24,40,.04)}
.eyebrow{font-size:11.5px;text-transform:uppercase;letter-spacing:.08em;color:var(--muted);font-weight:600;
margin-bottom:4px}
.title{display:flex;align-items:center;gap:12px;flex-wrap:wrap}
.meta{color:var(--muted);margin:4px 0 14px;font-size:13px}
.status{font-size:12px;font-weight:650;text-transform:uppercase;letter-spacing:.05em;padding:3px 10px;
border-radius:999px}
.status.ok{color:var(--ok);background:var(--okbg)}.status.bad{color:var(--bad);background:var(--badbg)}
.status.warn{color:var(--warn);background:var(--warnbg)}.status.info{color:var(--info);background:var(--infobg)}
.banner{border-radius:8px;padding:10px 14px;margin:0 0 14px;font-size:13px;white-space:pre-wrap}
.banner.bad{background:var(--badbg);color:var(--bad);border:1px solid rgba(229,72,77,.25)}
.stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(140px,1fr));gap:10px}
.stat{border:1px solid var(--border);border-radius:10px;padding:10px 14px;background:var(--row)}
.stat .label,.trend .label,.share .label{font-size:11.5px;text-transform:uppercase;letter-spacing:.06em;
color:var(--muted);font-weight:600}
.stat .value{font-size:22px;font-weight:650;font-variant-numeric:tabular-nums;margin-top:2px}
.stat .sub,.trend .sub{font-size:12px;color:var(--muted)}
.stat.good .value{color:var(--ok)}.stat.warn .value{color:var(--warn)}
.pills{display:flex;flex-wrap:wrap;gap:8px;margin-top:14px}
.pill{display:inline-flex;align-items:center;gap:6px;font-size:12.5px;padding:3px 10px;border-radius:999px;
border:1px solid var(--border);background:var(--card)}
.pill i{width:8px;height:8px;border-radius:50%;background:var(--stopped);display:inline-block}
.pill.st-done i{background:var(--done)}.pill.st-failed i{background:var(--failed)}
.pill.st-running i{background:var(--running)}
.note{color:var(--muted);font-size:12.5px;margin-top:10px}
.toc{position:sticky;top:0;z-index:5;display:flex;gap:4px;flex-wrap:wrap;padding:10px 0;background:var(--bg)}
.toc a{color:var(--muted);text-decoration:none;font-size:13px;padding:4px 10px;border-radius:6px}
.toc a:hover{background:var(--card);color:var(--text)}
.card{background:var(--card);border:1px solid var(--border);border-radius:12px;padding:18px 20px;margin:0 0 16px;
box-shadow:0 1px 2px rgba(16,24,40,.04);scroll-margin-top:52px}
.scroll{overflow-x:auto}
svg.chart{width:100%;min-width:900px;height:auto;display:block}
svg text{font-family:inherit}
.legend{display:flex;flex-wrap:wrap;gap:14px;font-size:12px;color:var(--muted);margin:0 0 10px}
.legend span{display:inline-flex;align-items:center;gap:6px}
.sw{display:inline-block;width:14px;height:10px;border-radius:2px}
.sw.done{background:var(--done)}.sw.running{background:var(--running)}.sw.failed{background:var(--failed)}
.sw.stopped{background:var(--stopped)}.sw.cache{background:var(--cache)}
.sw.queue{background:var(--queue);opacity:.7;height:4px}
.sw.ratewait{background:repeating-linear-gradient(45deg,var(--rate) 0 2px,#fff 2px 4px);border:1px solid var(--rate)}
.sw.backoff{background:repeating-linear-gradient(-45deg,var(--backoff) 0 1.5px,#fff 1.5px 4px);
border:1px solid var(--backoff)}
.sw.retry{width:0;height:0;border-radius:0;border-left:6px solid transparent;border-right:6px solid transparent;
border-top:8px solid var(--failed)}
.sw.crit{background:transparent;border:2px solid var(--crit)}
.sw.line-queued{height:3px;background:var(--queue)}
.sw.line-limit{height:0;border-top:2px dashed var(--failed)}
.row{fill:transparent}.row.alt{fill:var(--row)}
.sep{stroke:var(--border)}
.grid{stroke:var(--grid);stroke-width:1}
.axis{stroke:var(--border)}
.tick{fill:var(--muted);font-size:11px;font-variant-numeric:tabular-nums}
.rowlabel{fill:var(--muted);font-size:11.5px}.rowlabel.strong{fill:var(--text);font-weight:600}
.rowlabel.merged{font-style:italic}
.bar{fill:var(--done)}.bar.running{fill:var(--running)}.bar.failed{fill:var(--failed)}
.bar.stopped{fill:var(--stopped)}.bar.cache{fill:var(--cache)}
.bar.crit{stroke:var(--crit);stroke-width:1.6}
.tip:hover .bar{filter:brightness(1.12)}
.queue{fill:var(--queue);opacity:.75}
.ratewait{fill:url(#hatch-rate)}.backoff{fill:url(#hatch-backoff)}
.hatch-bg{fill:#fff;opacity:.75}.hatch-rate{fill:var(--rate)}.hatch-backoff{fill:var(--backoff)}
.retry{fill:var(--failed);stroke:var(--card);stroke-width:.6}
.critlink{pointer-events:none;fill:none;stroke:var(--crit);stroke-width:1;stroke-dasharray:2 2;opacity:.55}
.anomaly line{stroke:var(--failed);stroke-width:1.2;stroke-dasharray:4 3}.anomaly path{fill:var(--failed)}
.muted-text{fill:var(--muted);font-size:14px}
.critpath ol{margin:0;padding-left:22px;columns:2 360px;column-gap:28px;font-size:13px}
.critpath li{break-inside:avoid;padding:1px 0}.critpath li.more{color:var(--muted);list-style:none}
.critpath .q{color:var(--warn)}
.hgrid{display:grid;grid-template-columns:repeat(auto-fill,minmax(300px,1fr));gap:14px;margin-bottom:14px}
.hcard{border:1px solid var(--border);border-radius:10px;padding:10px 12px 6px}
.hhead{display:flex;justify-content:space-between;gap:8px;font-size:12.5px;flex-wrap:wrap}
svg.histogram{width:100%;height:auto;display:block}
.hbar{fill:var(--done);opacity:.85}.tip:hover .hbar{opacity:1}
.pmark{stroke-width:1.2;stroke-dasharray:3 2}.pmark.p50{stroke:var(--ok)}.pmark.p95{stroke:var(--warn)}
.plabel{fill:var(--muted);font-size:10px}.plabel.p50{fill:var(--ok)}.plabel.p95{fill:var(--warn)}
.area.running{fill:var(--done);opacity:.16}.line{fill:none;stroke-width:1.6}
.line.running{stroke:var(--done)}.line.queued{stroke:var(--queue);stroke-width:1.8}
.limit{stroke:var(--failed);stroke-dasharray:6 4;stroke-width:1.2}
.limit-label{fill:var(--failed);font-size:11px}
.panel-title{fill:var(--text);font-size:12px;font-weight:600}
.area.cpu{fill:#8e4ec6;opacity:.14}.line.cpu{stroke:#8e4ec6}
.area.rss{fill:#12a594;opacity:.14}.line.rss{stroke:#12a594}
.line.io.s0{stroke:#4a7cf0}.line.io.s1{stroke:#f76808}.line.io.s2{stroke:#8e4ec6}.line.io.s3{stroke:#12a594}
.grid-table{width:100%;border-collapse:collapse;font-size:13px}
.grid-table th{text-align:left;font-weight:600;color:var(--muted);font-size:12px;border-bottom:1px solid var(--border);
padding:6px 10px;white-space:nowrap}
.grid-table td{border-bottom:1px solid var(--grid);padding:7px 10px;vertical-align:top}
.grid-table tr:last-child td{border-bottom:0}
.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
th.num{text-align:right}
.err{color:var(--bad);font-size:12.5px;word-break:break-word}
.kind{display:inline-block;font-size:11.5px;font-weight:600;padding:2px 8px;border-radius:6px;white-space:nowrap;
background:var(--infobg);color:var(--info)}
.kind.k-slow_task,.kind.k-retries{background:var(--badbg);color:var(--bad)}
.kind.k-contention,.kind.k-agent_overload,.kind.k-rate_limit{background:var(--warnbg);color:var(--warn)}
.impact{display:flex;flex-direction:column;align-items:flex-end;gap:4px}
.meter{width:90px;height:5px;border-radius:3px;background:var(--grid);overflow:hidden}
.meter.wide{width:100%;max-width:420px;height:8px}
.meter i{display:block;height:100%;background:var(--accent)}
.setting{margin-top:3px;font-size:12.5px}.evidence{margin-top:3px;font-size:12px;color:var(--muted)}
.patterns{margin:0;padding-left:18px}.patterns li{margin:4px 0}
.trends{display:grid;grid-template-columns:repeat(auto-fill,minmax(240px,1fr));gap:12px}
.trend{border:1px solid var(--border);border-radius:10px;padding:10px 12px}
.trend .value{font-size:18px;font-weight:650}
.delta{font-size:12px;font-weight:600;margin-left:6px}.delta.up{color:var(--bad)}.delta.down{color:var(--ok)}
.delta.flat{color:var(--muted)}
svg.spark{width:100%;height:44px;display:block;margin:4px 0}
.spark polyline{fill:none;stroke:var(--accent);stroke-width:1.6}.spark circle{fill:var(--accent)}
.share{margin-bottom:14px}.share .value{font-size:22px;font-weight:650}
details{margin-top:12px}summary{cursor:pointer;font-weight:600}
.grid-table th.wide{width:60%}
pre.tree{max-height:520px;overflow:auto;background:var(--row);border:1px solid var(--border);border-radius:8px;
padding:12px;line-height:1.35}
#tooltip{position:fixed;z-index:20;pointer-events:none;max-width:460px;background:#111827;color:#f3f4f6;
font-size:12px;line-height:1.45;padding:8px 10px;border-radius:8px;white-space:pre-line;
box-shadow:0 6px 24px rgba(0,0,0,.25)}
footer{color:var(--muted);font-size:12px;text-align:center;margin-top:24px}
"""

# Optional niceties only: a styled tooltip from each SVG <title> and local times. Guarded so it
# can never throw; without it the native <title> tooltips still work.
_JS = """
(function(){try{
var tip=document.getElementById('tooltip');
function text(g){var t=g.querySelector(':scope > title');if(t){g.setAttribute('data-tip',t.textContent);
t.parentNode.removeChild(t);}return g.getAttribute('data-tip');}
document.addEventListener('pointerover',function(e){var g=e.target&&e.target.closest?e.target.closest('.tip'):null;
if(!g||!tip){return;}var s=text(g);if(!s){return;}var i=s.indexOf('\\n');tip.textContent='';
var head=document.createElement('b');head.textContent=i<0?s:s.slice(0,i);tip.appendChild(head);
if(i>=0){tip.appendChild(document.createTextNode(s.slice(i)));}tip.hidden=false;});
document.addEventListener('pointermove',function(e){if(!tip||tip.hidden){return;}
var x=e.clientX+14,y=e.clientY+14,r=tip.getBoundingClientRect();
if(x+r.width>innerWidth-8){x=e.clientX-r.width-14;}if(y+r.height>innerHeight-8){y=e.clientY-r.height-14;}
tip.style.left=Math.max(4,x)+'px';tip.style.top=Math.max(4,y)+'px';});
document.addEventListener('pointerout',function(e){var g=e.target&&e.target.closest?e.target.closest('.tip'):null;
if(g&&tip&&!(e.relatedTarget&&g.contains(e.relatedTarget))){tip.hidden=true;}});
document.querySelectorAll('time[datetime]').forEach(function(el){var d=new Date(el.getAttribute('datetime'));
if(!isNaN(d.getTime())){el.title=el.textContent;el.textContent=d.toLocaleString();}});
}catch(err){}})();
"""
