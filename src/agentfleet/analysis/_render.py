"""Turning a ``RunReport`` into JSON, a terminal summary and a text timeline.

# Design
# The summary is built from rich ``Text`` objects, never markup strings, because task
# instance ids carry brackets (``implement[2]``) that markup would swallow. Every line
# reads the same without colour: styles only add emphasis, the words carry the meaning.
# Ratios the report leaves undefined (None) print as "n/a".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._types import TaskRecord
from ._metrics import AgentStats, PathStep, RunReport, StaticComparison

if TYPE_CHECKING:  # _bottlenecks imports format_seconds from here
    from ._bottlenecks import Bottleneck, Pattern

__all__ = ["bottleneck_dict", "gantt_text", "render_summary", "report_to_dict"]

_PATH_SHOWN = 12  # longer critical paths show their first and last steps only
_GANTT_ROWS = 40
_GANTT_LABEL_MAX = 24
_DOT = " · "


def _num(value: float | None) -> float | None:
    """A float JSON can carry (NaN and infinities become None)."""
    if value is None or not math.isfinite(value):
        return None
    return value


def _step_dict(step: PathStep) -> dict[str, Any]:
    return {
        "task_id": step.task_id,
        "agent": step.agent,
        "duration": _num(step.duration),
        "queue_wait": _num(step.queue_wait),
        "started_at": _num(step.started_at),
        "ended_at": _num(step.ended_at),
    }


def _agent_dict(stats: AgentStats) -> dict[str, Any]:
    return {
        "agent": stats.agent,
        "tasks": stats.tasks,
        "busy": _num(stats.busy),
        "queue_wait_total": _num(stats.queue_wait_total),
        "queue_wait_mean": _num(stats.queue_wait_mean),
        "queue_wait_max": _num(stats.queue_wait_max),
        "utilisation": _num(stats.utilisation),
        "tokens_in": stats.tokens_in,
        "tokens_out": stats.tokens_out,
    }


def _static_dict(static: StaticComparison | None) -> dict[str, Any] | None:
    if static is None:
        return None
    return {
        "predicted_path": list(static.predicted_path),
        "predicted_length": _num(static.predicted_length),
        "predicted_scaled": _num(static.predicted_scaled),
        "measured_length": _num(static.measured_length),
        "makespan_ratio": _num(static.makespan_ratio),
        "path_ratio": _num(static.path_ratio),
        "same_path": static.same_path,
    }


def report_to_dict(report: RunReport) -> dict[str, Any]:
    """The report as plain JSON types (for ``--json``): field names as on ``RunReport``.

    Also carries the derived ``tasks_done``, ``tasks_failed``, ``simulated`` and
    ``unscaled_makespan``; ``agents`` maps each agent name to its stats.
    """
    return {
        "makespan": _num(report.makespan),
        "first_start": _num(report.first_start),
        "last_end": _num(report.last_end),
        "total_task_time": _num(report.total_task_time),
        "speedup": _num(report.speedup),
        "peak_concurrency": report.peak_concurrency,
        "max_parallel": report.max_parallel,
        "efficiency": _num(report.efficiency),
        "critical_path": [_step_dict(step) for step in report.critical_path],
        "critical_path_length": _num(report.critical_path_length),
        "critical_path_queue_wait": _num(report.critical_path_queue_wait),
        "critical_path_queue_share": _num(report.critical_path_queue_share),
        "agents": {name: _agent_dict(stats) for name, stats in report.agents.items()},
        "time_to_first_result": _num(report.time_to_first_result),
        "tokens_in": report.tokens_in,
        "tokens_out": report.tokens_out,
        "counts": dict(report.counts),
        "tasks_total": report.tasks_total,
        "tasks_ran": report.tasks_ran,
        "tasks_resumed": report.tasks_resumed,
        "tasks_done": report.tasks_done,
        "tasks_failed": report.tasks_failed,
        "retries": report.retries,
        "static": _static_dict(report.static),
        "latency_scale": _num(report.latency_scale),
        "providers": list(report.providers),
        "simulated": report.simulated,
        "unscaled_makespan": _num(report.unscaled_makespan),
        "context_tokens": report.context_tokens,
        "naive_tokens": report.naive_tokens,
        "context_reduction": _num(report.context_reduction),
        "context": [{"task_id": c.task_id, "sent": c.sent, "naive": c.naive, "reduction": _num(c.reduction),
                     "strategy": c.strategy} for c in report.context],
        "scores": dict(report.scores),
        "mean_score": _num(report.mean_score),
        "rejections": report.rejections,
        "pools": {name: dict(stats) for name, stats in report.pools.items()},
        "resilience": [dict(stats) for stats in report.resilience],
        "cache": dict(report.cache),
        "limit_wait": _num(report.limit_wait),
        "limit_wait_by_agent": {name: _num(wait) for name, wait in report.limit_wait_by_agent.items()},
        "hedges": report.hedges,
        "fallbacks": report.fallbacks,
        "retry_time": _num(report.retry_time),
        "timeout_time": _num(report.timeout_time),
        "cost_usd": _num(report.cost_usd),
        "saved_usd": _num(report.saved_usd),
    }


def format_seconds(seconds: float) -> str:
    """A short human duration: ``0s``, ``410ms``, ``4.1s``, ``2m05.3s``."""
    if seconds == 0:
        return "0s"
    if abs(seconds) < 1:
        return f"{seconds * 1000:.0f}ms"
    if abs(seconds) < 60:
        return f"{seconds:.1f}s"
    minutes, rest = divmod(seconds, 60)
    return f"{int(minutes)}m{rest:04.1f}s"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.0f}%"


def _times(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}x"


def _headline(report: RunReport) -> Text:
    line = Text()
    if report.tasks_ran == 0:
        line.append("no tasks ran", style="bold")
    else:
        line.append("makespan ")
        line.append(format_seconds(report.makespan), style="bold")
        line.append(_DOT + "speedup ")
        line.append(_times(report.speedup), style="bold")
        line.append(_DOT + "efficiency ")
        line.append(_pct(report.efficiency), style="bold")
        limit = f" of {report.max_parallel}" if report.max_parallel is not None else ""
        line.append(f" (peak {report.peak_concurrency} parallel{limit})")
    done = report.tasks_done
    line.append(_DOT)
    line.append(f"{done} done", style="green" if done else "")
    line.append(", ")
    failed = report.tasks_failed
    line.append(f"{failed} failed", style="bold red" if failed else "")
    others = [
        f"{n} {state}" for state, n in report.counts.items() if state not in ("done", "failed")
    ]
    if others:
        line.append(", " + ", ".join(others))
    if report.tasks_resumed:
        line.append(f" ({report.tasks_resumed} finished in earlier sessions; times are this session's)")
    return line


def _step_text(step: PathStep) -> Text:
    text = Text()
    text.append(step.task_id, style="bold")
    text.append(" " + format_seconds(step.duration))
    waited = format_seconds(step.queue_wait)
    if waited != format_seconds(0.0):
        text.append(f" (+{waited} queued)", style="yellow")
    return text


def _path_line(report: RunReport) -> Text:
    line = Text("critical path ")
    line.append(format_seconds(report.critical_path_length), style="bold")
    line.append(
        f" (queue wait {format_seconds(report.critical_path_queue_wait)}, "
        f"{_pct(report.critical_path_queue_share)} of makespan): "
    )
    steps = list(report.critical_path)
    parts: list[Text] = []
    if len(steps) > _PATH_SHOWN:
        half = _PATH_SHOWN // 2
        hidden = len(steps) - 2 * half
        parts = [_step_text(s) for s in steps[:half]]
        parts.append(Text(f"… {hidden} more …", style="dim"))
        parts.extend(_step_text(s) for s in steps[-half:])
    else:
        parts = [_step_text(s) for s in steps]
    line.append_text(Text(" → ").join(parts))
    return line


def _facts_line(report: RunReport) -> Text:
    line = Text("first result ")
    first = report.time_to_first_result
    line.append("n/a" if first is None else format_seconds(first), style="bold")
    line.append(_DOT + f"tokens {report.tokens_in:,} in / {report.tokens_out:,} out")
    line.append(_DOT + f"task time {format_seconds(report.total_task_time)}")
    line.append(_DOT + f"retries {report.retries}")
    if report.cost_usd is not None:
        line.append(_DOT + f"cost ${report.cost_usd:.4f}")
        if report.saved_usd:
            line.append(f" (cache saved ${report.saved_usd:.4f})")
    lost = [(name, seconds) for name, seconds in (("rate limits", report.limit_wait), ("retries", report.retry_time),
                                                 ("timeouts", report.timeout_time)) if seconds > 0]
    if lost:
        line.append(_DOT + "time lost to " + ", ".join(f"{name} {format_seconds(s)}" for name, s in lost))
    return line


def _agent_table(report: RunReport) -> Table:
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False)
    table.add_column("agent")
    # "avg running": busy time / makespan, the mean number of the agent's tasks in flight
    # (a percentage would read 1920% for an agent running 20 tasks at once).
    for name in ("tasks", "busy", "wait mean", "wait max", "avg running", "tokens in", "tokens out"):
        table.add_column(name, justify="right")
    for stats in report.agents.values():
        table.add_row(
            Text(stats.agent),
            str(stats.tasks),
            format_seconds(stats.busy),
            format_seconds(stats.queue_wait_mean),
            format_seconds(stats.queue_wait_max),
            "n/a" if stats.utilisation is None else f"{stats.utilisation:.2f}",
            f"{stats.tokens_in:,}",
            f"{stats.tokens_out:,}",
        )
    return table


def _context_line(report: RunReport) -> Text | None:
    if not report.naive_tokens:
        return None
    line = Text("context ")
    line.append(f"{report.context_tokens:,} tokens sent", style="bold")
    line.append(f" vs {report.naive_tokens:,} if every task got the whole history")
    reduction = report.context_reduction
    if reduction is not None:
        line.append(f" ({reduction:.0%} less)", style="bold green" if reduction >= 0.5 else "bold")
    cut = sum(1 for c in report.context if c.strategy)
    if cut:
        line.append(_DOT + f"{cut} task{'s' if cut != 1 else ''} cut to budget")
    return line


def _quality_line(report: RunReport) -> Text | None:
    if not report.scores and not report.rejections:
        return None
    line = Text("quality ")
    if report.scores:
        mean = report.mean_score
        line.append(f"review score {mean:.1f}/10" if mean is not None else "", style="bold")
        low = min(report.scores.items(), key=lambda kv: kv[1])
        line.append(f" over {len(report.scores)} task{'s' if len(report.scores) != 1 else ''}"
                    f" (lowest {low[1]:g}: {low[0]})")
    if report.rejections:
        line.append(_DOT + f"{report.rejections} output{'s' if report.rejections != 1 else ''} rejected and redone")
    return line


def _pool_line(report: RunReport) -> Text | None:
    parts = []
    for name, p in report.pools.items():
        attempts = p.get("spawned", 0) + p.get("spawn_failures", 0)
        if not attempts:
            continue
        text = f"{name} {p.get('spawned', 0)} started"
        if p.get("spawn_failures"):
            text += f", {p['spawn_failures']} failed ({p.get('spawn_failure_rate', 0):.0%})"
        if p.get("lost"):
            text += f", {p['lost']} lost/{p.get('replaced', 0)} replaced"
        if p.get("cold_waits"):
            text += f", {p['cold_waits']} cold waits"
        parts.append(text)
    if not parts:
        return None
    return Text("pools " + "; ".join(parts), style="dim")


def _resilience_line(report: RunReport) -> Text | None:
    """Only what happened: waits on limits, 429s, failures, open circuits, hedges, fallbacks."""
    parts: list[str] = []
    if report.limit_wait > 0:
        worst = max(report.limit_wait_by_agent.items(), key=lambda kv: kv[1]) if report.limit_wait_by_agent \
            else None
        text = f"{report.limit_wait:.1f}s waiting on rate limits"
        if worst is not None and len(report.limit_wait_by_agent) > 1:
            text += f" (most: {worst[0]} {worst[1]:.1f}s)"
        parts.append(text)
    for g in report.resilience:
        bits = []
        if g.get("rate_limited"):
            bits.append(f"{g['rate_limited']} rate-limited")
        other = int(g.get("failed", 0)) - int(g.get("rate_limited", 0))
        if other > 0:
            bits.append(f"{other} failed")
        if g.get("breaker_opened"):
            bits.append(f"circuit opened {g['breaker_opened']}x")
        if g.get("adaptive_limit") is not None and (g.get("rate_limited") or other):
            bits.append(f"concurrency settled at {g['adaptive_limit']}")
        if bits:
            name = str(g.get("identity", "?")).split("@", 1)[0]
            parts.append(f"{name}: {g.get('calls', 0)} calls, " + ", ".join(bits))
    if report.hedges:
        won = sum(int(g.get("hedge_wins", 0)) for g in report.resilience)
        parts.append(f"{report.hedges} hedged request{'s' if report.hedges != 1 else ''} ({won} won)")
    if report.fallbacks:
        parts.append(f"{report.fallbacks} fallback{'s' if report.fallbacks != 1 else ''}")
    if not parts:
        return None
    return Text("providers " + _DOT.join(parts), style="yellow" if report.limit_wait or report.fallbacks
                else "")


def _cache_line(report: RunReport) -> Text | None:
    c = report.cache
    hits, coalesced = int(c.get("hits", 0)), int(c.get("coalesced", 0))
    if not hits and not coalesced:
        return None
    line = Text("cache ")
    levels = ", ".join(f"{name} {n}" for name, n in sorted(dict(c.get("by_level", {})).items()))
    line.append(f"{hits} hit{'s' if hits != 1 else ''}", style="bold green")
    if levels:
        line.append(f" ({levels})")
    if coalesced:
        line.append(_DOT + f"{coalesced} identical call{'s' if coalesced != 1 else ''} shared")
    saved = int(c.get("saved_tokens", 0))
    if saved:
        line.append(_DOT + f"{saved:,} tokens")
        seconds = float(c.get("saved_seconds", 0.0))
        if seconds:
            line.append(f" and {seconds:.1f}s of provider time")
        line.append(" saved")
    return line


def render_context(report: RunReport, console: Console, *, top: int = 20) -> None:
    """Per-task context tokens against the naive whole-history baseline, biggest savings first."""
    if not report.context:
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, title="context per task",
                  title_justify="left", title_style="bold")
    table.add_column("task")
    for name in ("sent", "whole history", "reduction", "budget"):
        table.add_column(name, justify="right")
    rows = sorted(report.context, key=lambda c: c.naive - c.sent, reverse=True)
    for c in rows[:top]:
        table.add_row(c.task_id, f"{c.sent:,}", f"{c.naive:,}", _pct(c.reduction), c.strategy or "")
    if len(rows) > top:
        table.add_row(f"... {len(rows) - top} more", "", "", "", "")
    table.add_row(Text("total", style="bold"), f"{report.context_tokens:,}", f"{report.naive_tokens:,}",
                  _pct(report.context_reduction), "")
    console.print(table)


def _static_line(report: RunReport, static: StaticComparison) -> Text:
    line = Text("plan predicted critical path ")
    line.append(format_seconds(static.predicted_scaled), style="bold")
    if report.latency_scale != 1:
        line.append(f" ({format_seconds(static.predicted_length)} unscaled)")
    line.append(f"{_DOT}measured path {format_seconds(static.measured_length)}")
    line.append(f" ({_times(static.path_ratio)})")
    line.append(f", makespan {format_seconds(report.makespan)} ({_times(static.makespan_ratio)})")
    line.append(_DOT + ("same chain" if static.same_path else "a different chain"))
    return line


def _note_line(report: RunReport) -> Text | None:
    parts: list[str] = []
    if report.simulated:
        parts.append("sim provider (simulated latencies and tokens)")
    if report.latency_scale != 1:
        parts.append(
            f"latencies scaled x{report.latency_scale:g}: equivalent unscaled makespan "
            f"{format_seconds(report.unscaled_makespan)}"
        )
    if not parts:
        return None
    return Text("note: " + ", ".join(parts), style="dim")


def render_summary(report: RunReport, console: Console, *, title: str = "",
                   bottlenecks: Sequence[Bottleneck] = (), top: int = 3, patterns: Sequence[Pattern] = (),
                   runs: int = 0, anomalies: Sequence[Mapping[str, Any]] = ()) -> None:
    """Print a compact run summary: headline, critical path, facts, agents, notes, the ``top``
    bottlenecks with what to change, and anomalies. A bottleneck that is one of ``patterns`` (found
    in ``runs`` recent runs of the workflow) is shown as recurring, not as news."""
    if title:
        console.rule(Text(title, style="bold"))
    console.print(_headline(report))
    if report.critical_path:
        console.print(_path_line(report))
    console.print(_facts_line(report))
    if report.agents:
        console.print(_agent_table(report))
    if report.static is not None:
        console.print(_static_line(report, report.static))
    for extra in (_context_line(report), _quality_line(report), _pool_line(report), _resilience_line(report),
                  _cache_line(report)):
        if extra is not None:
            console.print(extra)
    seen = {(p.kind, p.subject): p for p in patterns}
    for found in bottlenecks[:top]:
        console.print(_bottleneck_line(found, seen.get((found.kind, found.subject)), runs))
    if len(bottlenecks) > top:
        console.print(Text(f"... {len(bottlenecks) - top} more bottlenecks in --json", style="dim"))
    for anomaly in anomalies[:top]:
        line = Text("anomaly ", style="bold red")
        line.append(str(anomaly.get("message", "")))
        console.print(line)
    if len(anomalies) > top:
        console.print(Text(f"... {len(anomalies) - top} more anomalies in --json", style="dim"))
    note = _note_line(report)
    if note is not None:
        console.print(note)


def _bottleneck_line(found: Bottleneck, pattern: Pattern | None = None, runs: int = 0) -> Text:
    if pattern is not None:
        line = Text("recurring ", style="bold magenta")
        line.append(f"(in {pattern.count} of the last {runs} runs) ", style="magenta")
    else:
        line = Text("bottleneck ", style="bold yellow")
    line.append(f"{found.kind.replace('_', ' ')} · {found.subject} · ~{found.severity:.1f}s at stake → ")
    line.append(found.recommendation)  # it carries the numbers; the evidence is in --json
    return line


def bottleneck_dict(found: Bottleneck) -> dict[str, Any]:
    return {"kind": found.kind, "subject": found.subject, "severity": _num(found.severity),
            "evidence": found.evidence, "recommendation": found.recommendation, "setting": found.setting}


def gantt_text(records: Sequence[TaskRecord], width: int = 60) -> str:
    """A text timeline of the tasks that ran: one row each, ``█`` running, ``░`` queued.

    Bars are scaled to the makespan; rows are in start order, the first 40 shown. Tasks
    without timing in this run (skipped, never started, resumed) are counted at the end.
    """
    if width < 10:
        raise ValueError(f"width must be >= 10, got {width!r}")
    timed = [
        r
        for r in records
        if not r.resumed
        and r.started_at is not None
        and r.ended_at is not None
        and r.ended_at >= r.started_at
    ]
    untimed = len(records) - len(timed)
    if not timed:
        return f"(no tasks ran; {untimed} not shown)" if untimed else "(no tasks)"
    timed.sort(key=lambda r: (r.started_at, r.ended_at, r.task_id))
    t0 = min(r.started_at for r in timed if r.started_at is not None)
    t1 = max(r.ended_at for r in timed if r.ended_at is not None)
    span = t1 - t0
    label_width = min(_GANTT_LABEL_MAX, max(len(r.task_id) for r in timed[:_GANTT_ROWS]))

    def col(t: float) -> int:
        if span <= 0:
            return 0
        return min(width, max(0, round((t - t0) / span * width)))

    end_label = format_seconds(span)
    axis = "0" + end_label.rjust(width - 1) if width > len(end_label) else "0"
    lines = [f"{'':<{label_width}}  {axis}"]
    for record in timed[:_GANTT_ROWS]:
        assert record.started_at is not None and record.ended_at is not None
        start = col(record.started_at)
        stop = max(start + 1, col(record.ended_at))
        if stop > width:
            start, stop = width - 1, width
        ready = col(record.ready_at) if record.ready_at is not None else start
        ready = min(ready, start)
        bar = " " * ready + "░" * (start - ready) + "█" * (stop - start)
        label = record.task_id
        if len(label) > label_width:
            label = label[: label_width - 1] + "…"
        lines.append(f"{label:<{label_width}} │{bar:<{width}}│ {format_seconds(record.duration)}")
    if len(timed) > _GANTT_ROWS:
        lines.append(f"... {len(timed) - _GANTT_ROWS} more")
    if untimed:
        lines.append(f"({untimed} not shown: skipped, not started or resumed)")
    return "\n".join(lines)
