"""Tests for the JSON form, the rich summary and the text timeline of a run report."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

import agentfleet.analysis
from agentfleet._types import TaskRecord, TaskState
from agentfleet.analysis import (
    analyze,
    format_seconds,
    gantt_text,
    render_summary,
    report_to_dict,
)

from .test_metrics import diamond, fan, rec, with_expected


def summary_text(records: list[TaskRecord], title: str = "", **kwargs: object) -> str:
    """Render a summary on a colourless console and return it with whitespace collapsed."""
    console = Console(record=True, width=100, color_system=None)
    render_summary(analyze(records, **kwargs), console, title=title)  # type: ignore[arg-type]
    return " ".join(console.export_text().split())


class TestExports:
    def test_all(self) -> None:
        """The package's public names are exactly these."""
        assert sorted(agentfleet.analysis.__all__) == [
            "AgentStats",
            "BOTTLENECK_KINDS",
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
        for name in agentfleet.analysis.__all__:
            assert getattr(agentfleet.analysis, name) is not None


class TestFormatSeconds:
    @pytest.mark.parametrize(
        ("seconds", "text"),
        [(0.0, "0s"), (0.41, "410ms"), (4.125, "4.1s"), (59.0, "59.0s"), (125.25, "2m05.2s")],
    )
    def test_formats(self, seconds: float, text: str) -> None:
        """Durations print in ms below a second, seconds below a minute, then minutes."""
        assert format_seconds(seconds) == text


class TestReportToDict:
    def test_json_round_trip(self) -> None:
        """The dict is strict JSON and carries the report's numbers."""
        records = with_expected(diamond(), {"split": 2.0, "b": 6.0})
        data = report_to_dict(analyze(records, max_parallel=4, providers=["sim"]))
        assert json.loads(json.dumps(data, allow_nan=False)) == data
        assert data["makespan"] == 8.0
        assert data["speedup"] == 1.25
        assert data["efficiency"] == 0.625
        assert data["max_parallel"] == 4
        assert [s["task_id"] for s in data["critical_path"]] == ["split", "b", "release"]
        assert data["agents"]["dev"]["busy"] == 7.0
        assert data["counts"] == {"done": 4}
        assert data["tasks_done"] == 4
        assert data["simulated"] is True
        assert data["static"]["predicted_path"] == ["split", "b", "release"]

    def test_empty_report(self) -> None:
        """An empty run serialises with nulls for undefined ratios."""
        data = report_to_dict(analyze([]))
        assert json.loads(json.dumps(data, allow_nan=False)) == data
        assert data["speedup"] is None
        assert data["efficiency"] is None
        assert data["critical_path"] == []
        assert data["static"] is None


class TestRenderSummary:
    def test_headline(self) -> None:
        """The headline gives makespan, speedup, efficiency, peak and task counts."""
        text = summary_text(diamond(), max_parallel=4)
        assert "makespan 8.0s · speedup 1.25x · efficiency 62% (peak 2 parallel of 4)" in text
        assert "4 done, 0 failed" in text

    def test_critical_path_line(self) -> None:
        """The critical path lists ids with durations and queue waits, joined by arrows."""
        text = summary_text(fan())
        assert "critical path 4.0s (queue wait 1.0s, 20% of makespan)" in text
        assert "plan 1.0s → impl[2] 2.5s (+1.0s queued) → merge 500ms" in text

    def test_facts_line(self) -> None:
        """First result, token totals, task time and retries are shown."""
        text = summary_text(diamond())
        assert "first result 2.0s" in text
        assert "tokens 141 in / 112 out" in text
        assert "task time 10.0s" in text
        assert "retries 0" in text

    def test_agent_table(self) -> None:
        """The per-agent table has a row per agent with busy, waits, utilisation and tokens."""
        text = summary_text(fan())
        for header in ("agent", "tasks", "busy", "wait mean", "wait max", "avg running", "tokens in"):
            assert header in text
        assert "dev 4 6.8s 1.0s 3.0s 1.35 0 0" in text
        assert "lead 2 1.5s 0s 0s 0.30 0 0" in text

    def test_sim_scaling_note(self) -> None:
        """A scaled sim run says so and gives the equivalent unscaled makespan."""
        text = summary_text(diamond(), latency_scale=0.1, providers={"sim"})
        assert "sim provider" in text
        assert "latencies scaled x0.1: equivalent unscaled makespan 1m20.0s" in text

    def test_no_note_for_real_unscaled(self) -> None:
        """A real, unscaled run has no note line."""
        assert "note:" not in summary_text(diamond(), providers={"openai"})

    def test_title_and_failures(self) -> None:
        """The title is printed and failed, skipped and resumed tasks are counted."""
        records = [
            rec("a", "x", 0.0, 1.0, resumed=True),
            rec("b", "x", 0.0, 1.0, state=TaskState.FAILED),
            rec("c", "x", None, None, deps=("b",), state=TaskState.SKIPPED),
        ]
        text = summary_text(records, title="sprint")
        assert "sprint" in text
        assert "1 done, 1 failed, 1 skipped (1 finished in earlier sessions; times are this session's)" in text

    def test_static_line(self) -> None:
        """With expected latencies the summary compares predicted and measured paths."""
        records = with_expected(diamond(), {"split": 2.0, "a": 3.0, "b": 5.0, "release": 1.0})
        text = summary_text(records, latency_scale=0.5)
        assert "plan predicted critical path 4.0s (8.0s unscaled)" in text
        assert "measured path 7.0s (1.75x), makespan 8.0s (2.00x) · same chain" in text

    def test_empty_run(self) -> None:
        """An empty run prints a readable line instead of failing."""
        text = summary_text([])
        assert "no tasks ran" in text
        assert "first result n/a" in text

    def test_zero_makespan(self) -> None:
        """Undefined ratios print as n/a."""
        text = summary_text([rec("a", "x", 1.0, 1.0)])
        assert "speedup n/a · efficiency n/a" in text

    def test_long_path_elided(self) -> None:
        """A critical path longer than twelve steps shows its ends and how many are hidden."""
        records = [rec("t0", "x", 0.0, 1.0)]
        for i in range(1, 20):
            records.append(rec(f"t{i}", "x", float(i), float(i + 1), deps=(f"t{i - 1}",)))
        text = summary_text(records)
        assert "t5 1.0s → … 8 more … → t14 1.0s" in text
        assert "t0 1.0s" in text and "t19 1.0s" in text


class TestGanttText:
    def test_bars_and_queue(self) -> None:
        """Bars are scaled to the makespan; queue wait before a bar is drawn in light shade."""
        records = [
            rec("a", "x", 0.0, 5.0),
            rec("b", "x", 5.0, 10.0, ready=0.0),
        ]
        assert gantt_text(records, width=10).splitlines() == [
            "   0    10.0s",
            "a │█████     │ 5.0s",
            "b │░░░░░█████│ 5.0s",
        ]

    def test_rows_sorted_by_start(self) -> None:
        """Rows follow start time, labels padded to the longest id."""
        lines = gantt_text(diamond(), width=16).splitlines()
        assert [line.split()[0] for line in lines[1:]] == ["split", "a", "b", "release"]
        assert lines[4] == "release │             ░██│ 1.0s"

    def test_limit_rows(self) -> None:
        """Only the first forty rows are drawn, then a count of the rest."""
        records = [rec(f"t{i}", "x", float(i), float(i + 1)) for i in range(45)]
        lines = gantt_text(records).splitlines()
        assert len(lines) == 42
        assert lines[-1] == "... 5 more"

    def test_untimed_counted(self) -> None:
        """Skipped and resumed tasks are not drawn but counted."""
        records = [
            rec("a", "x", 0.0, 1.0),
            rec("b", "x", None, None, state=TaskState.SKIPPED),
            rec("c", "x", 0.0, 1.0, resumed=True),
        ]
        lines = gantt_text(records, width=10).splitlines()
        assert lines[1] == "a │██████████│ 1.0s"
        assert lines[-1] == "(2 not shown: skipped, not started or resumed)"

    def test_zero_makespan(self) -> None:
        """Zero-length tasks still get a one-cell bar."""
        assert gantt_text([rec("a", "x", 1.0, 1.0)], width=10).splitlines()[1] == (
            "a │█         │ 0s"
        )

    def test_empty(self) -> None:
        """No records gives a short placeholder."""
        assert gantt_text([]) == "(no tasks)"

    def test_width_checked(self) -> None:
        """A width too small to draw is rejected."""
        with pytest.raises(ValueError, match="width"):
            gantt_text(diamond(), width=3)
