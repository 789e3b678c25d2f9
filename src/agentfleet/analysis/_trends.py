"""How a workflow's figures moved across runs: sparklines and a table for ``agentfleet trends``.

# Design
# Pure: the store's metric history (``RunStore.metric_history``: (run id, created at, figures)
# oldest first) in, a rich table or a JSON-able dict out. A sparkline maps each run's value onto
# eight block heights between the series' min and max (a flat series is a flat line); a run that
# lacks the figure is a gap. The last column compares the latest run with the median of the ones
# before it, and anomalies (``history_anomalies``) are marked.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from ._anomalies import history_anomalies

__all__ = ["TREND_METRICS", "render_trends", "sparkline", "trends_dict"]

_BLOCKS = "▁▂▃▄▅▆▇█"

#: figure -> (label, unit) in the order ``agentfleet trends`` shows them
TREND_METRICS: Mapping[str, tuple[str, str]] = {
    "makespan_s": ("makespan", "s"),
    "p50_s": ("p50 task", "s"),
    "p95_s": ("p95 task", "s"),
    "p99_s": ("p99 task", "s"),
    "queue_wait_p95_s": ("p95 queue wait", "s"),
    "tasks": ("tasks run", ""),
    "error_rate": ("error rate", "%"),
    "retry_rate": ("retry rate", "%"),
    "cache_hit_rate": ("cache hit rate", "%"),
    "rate_limit_share": ("rate-limit wait", "%"),
    "tokens": ("tokens", ""),
    "cost_usd": ("cost", "$"),
    "cpu_mean_percent": ("CPU mean", "% core"),
    "rss_peak_mb": ("peak memory", "MB"),
}


def sparkline(values: Sequence[float | None]) -> str:
    """One block character per value, scaled between the min and max; None is a space."""
    present = [v for v in values if v is not None]
    if not present:
        return " " * len(values)
    low, high = min(present), max(present)
    span = high - low
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif span <= 0:
            out.append(_BLOCKS[3])
        else:
            out.append(_BLOCKS[min(7, int((v - low) / span * 8))])
    return "".join(out)


def _show(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value * 100:.1f}%"
    if unit == "$":
        return f"${value:.4f}" if value < 1 else f"${value:,.2f}"
    if unit == "s":
        return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"
    if unit == "":
        return f"{value:,.0f}"
    return f"{value:,.1f} {unit}"


def _series(history: Sequence[tuple[str, float, Mapping[str, float]]], metric: str) -> list[float | None]:
    return [figures.get(metric) for _, _, figures in history]


def _change(series: list[float | None]) -> float | None:
    """The latest value against the median of the earlier ones, as a ratio - 1."""
    if len(series) < 2 or series[-1] is None:
        return None
    earlier = [v for v in series[:-1] if v is not None]
    if not earlier:
        return None
    median = statistics.median(earlier)
    return None if median == 0 else series[-1] / median - 1


def trends_dict(history: Sequence[tuple[str, float, Mapping[str, float]]]) -> dict[str, Any]:
    """The history as JSON: runs (id, time) and per metric its series, latest change and sparkline."""
    anomalies = history_anomalies(history)
    metrics = {}
    for metric in TREND_METRICS:
        series = _series(history, metric)
        if all(v is None for v in series):
            continue
        metrics[metric] = {"values": series, "sparkline": sparkline(series), "change": _change(series)}
    return {"runs": [{"run_id": rid, "at": at} for rid, at, _ in history], "metrics": metrics,
            "anomalies": anomalies}


def render_trends(history: Sequence[tuple[str, float, Mapping[str, float]]], console: Any, *, workflow: str) -> None:
    """A table: one row per figure with its sparkline over the runs, first, latest and the change."""
    from rich.table import Table

    flagged = {a["metric"]: a for a in history_anomalies(history)}
    table = Table(title=f"{workflow}: {len(history)} runs, oldest to latest", title_justify="left")
    table.add_column("figure")
    table.add_column("trend", no_wrap=True)
    table.add_column("first", justify="right")
    table.add_column("best", justify="right")
    table.add_column("latest", justify="right")
    table.add_column("vs median", justify="right")
    for metric, (label, unit) in TREND_METRICS.items():
        series = _series(history, metric)
        present = [v for v in series if v is not None]
        if not present:
            continue
        higher_better = metric == "cache_hit_rate"
        best = max(present) if higher_better else min(present)
        change = _change(series)
        earlier = [v for v in series[:-1] if v is not None]
        floor = 0.01 if unit == "s" else 0.005 if unit == "%" else 0.0
        if earlier and series[-1] is not None and abs(statistics.median(earlier)) < floor:
            # against a median of about nothing a ratio says nothing: the difference instead
            delta = series[-1] - statistics.median(earlier)
            shown = "-" if abs(delta) < floor else ("+" if delta > 0 else "-") + _show(abs(delta), unit)
        elif change is None:
            shown = "-"
        else:
            worse = change < 0 if higher_better else change > 0
            colour = "red" if worse and abs(change) >= 0.1 else "green" if not worse and abs(change) >= 0.1 else "dim"
            shown = f"[{colour}]{change * 100:+.0f}%[/]"
        if metric in flagged:
            shown += " [bold red]anomaly[/]"
        first = next(v for v in series if v is not None)
        table.add_row(label, f"[cyan]{sparkline(series)}[/]", _show(first, unit), _show(best, unit),
                      _show(series[-1], unit), shown)
    console.print(table)
    for anomaly in flagged.values():
        console.print(f"[bold red]anomaly:[/] {anomaly['message']} (robust z {anomaly['score']:.1f})")
