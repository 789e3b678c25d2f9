"""Post-run analysis and reports: where a run's time went, and a terminal summary of it.

``analyze`` turns a run's ``TaskRecord`` list into a ``RunReport`` (makespan, speedup,
parallel efficiency, measured critical path, per-agent queue wait and busy time, tokens);
``render_summary`` prints it with rich, ``report_to_dict`` makes it JSON and
``gantt_text`` draws a text timeline and ``render_html`` a self-contained HTML page.
``run_anomalies`` / ``history_anomalies`` flag what stands out in a run and across runs, and
``render_trends`` / ``trends_dict`` show a workflow's figures over its stored runs.
"""

from __future__ import annotations

from ._anomalies import history_anomalies, run_anomalies
from ._bottlenecks import (
    BOTTLENECK_KINDS,
    Bottleneck,
    BottleneckKind,
    Pattern,
    Thresholds,
    WhatIf,
    classify_bottlenecks,
    recurring,
    what_if,
    what_if_scenarios,
)
from ._html import render_html
from ._metrics import AgentStats, PathStep, RunReport, StaticComparison, TaskContext, analyze
from ._render import format_seconds, gantt_text, render_context, render_summary, report_to_dict
from ._trends import render_trends, sparkline, trends_dict

__all__ = [
    "BOTTLENECK_KINDS",
    "AgentStats",
    "Bottleneck",
    "BottleneckKind",
    "PathStep",
    "Pattern",
    "RunReport",
    "StaticComparison",
    "TaskContext",
    "Thresholds",
    "WhatIf",
    "analyze",
    "classify_bottlenecks",
    "format_seconds",
    "gantt_text",
    "history_anomalies",
    "recurring",
    "render_context",
    "render_html",
    "render_summary",
    "render_trends",
    "report_to_dict",
    "run_anomalies",
    "sparkline",
    "trends_dict",
    "what_if",
    "what_if_scenarios",
]
