"""Anomalies in a run and across runs, and the trends table: synthetic series with known outliers."""

from __future__ import annotations

import io
import random

from rich.console import Console

from agentfleet.analysis._anomalies import history_anomalies, resource_anomalies, task_anomalies
from agentfleet.analysis._trends import render_trends, sparkline, trends_dict

from .test_metrics import rec


def test_the_one_slow_task_among_its_peers_is_flagged() -> None:
    rng = random.Random(7)
    records = []
    t = 0.0
    for i in range(60):
        duration = 4.0 if i == 45 else rng.gauss(1.0, 0.1)
        records.append(rec(f"t{i}", "dev", t, t + duration))
        t += 0.5
    found = task_anomalies(records)
    assert [a["subject"] for a in found] == ["t45"]
    assert found[0]["score"] > 5 and "x the median of the 60 dev tasks" in found[0]["message"]


def test_noise_alone_flags_nothing() -> None:
    for seed in range(20):
        rng = random.Random(seed)
        records = [rec(f"t{i}", "dev", float(i), i + rng.lognormvariate(0, 0.25)) for i in range(200)]
        assert task_anomalies(records) == [], seed


def test_tiny_durations_that_barely_vary_are_not_news() -> None:
    # 20 us tasks and one of 200 us: an outlier by z, but 180 us is below anyone's concern
    records = [rec(f"t{i}", "dev", float(i), i + (0.0002 if i == 30 else 0.00002)) for i in range(40)]
    assert task_anomalies(records) == []


def test_resource_spikes_are_flagged_and_memory_only_upwards() -> None:
    rng = random.Random(1)
    samples = [{"t": i * 0.5, "cpu_percent": 50 + rng.gauss(0, 2), "rss_mb": 100 + rng.gauss(0, 0.5)}
               for i in range(100)]
    samples[70]["cpu_percent"] = 190.0
    samples[80]["rss_mb"] = 400.0
    samples[90]["rss_mb"] = 20.0  # a drop: not a problem
    found = {(a["metric"], a["t"]) for a in resource_anomalies(samples)}
    assert found == {("cpu_percent", 35.0), ("rss_mb", 40.0)}


def history(values: list[float], metric: str = "makespan_s") -> list[tuple[str, float, dict[str, float]]]:
    return [(f"r{i}", float(i), {metric: v, "tasks": 10.0}) for i, v in enumerate(values)]


def test_a_run_far_slower_than_the_recent_ones_is_flagged() -> None:
    past = [10.0, 10.4, 9.8, 10.1, 9.9, 10.2]
    found = history_anomalies(history([*past, 16.0]))
    assert [(a["metric"], a["run_id"]) for a in found] == [("makespan_s", "r6")]
    assert "1.6x" in found[0]["message"]
    # faster is good news, a near-median run is nothing, and too little history says nothing
    assert history_anomalies(history([*past, 5.0])) == []
    assert history_anomalies(history([*past, 10.3])) == []
    assert history_anomalies(history([10.0, 10.1, 16.0])) == []
    # the run asked about, not the latest
    assert [a["run_id"] for a in history_anomalies(history([*past, 16.0, 10.0]), run_id="r6")] == ["r6"]


def test_sparkline_scales_between_min_and_max() -> None:
    assert sparkline([1, 2, 3, 4, 5, 6, 7, 8]) == "▁▂▃▄▅▆▇█"
    assert sparkline([5, 5, 5]) == "▄▄▄"
    assert sparkline([1, None, 2]) == "▁ █"
    assert sparkline([]) == ""


def test_trends_table_and_json() -> None:
    runs = history([10.0, 10.4, 9.8, 10.1, 9.9, 10.2, 16.0])
    data = trends_dict(runs)
    assert data["metrics"]["makespan_s"]["sparkline"] == sparkline([r[2]["makespan_s"] for r in runs])
    assert data["metrics"]["makespan_s"]["change"] == 16.0 / 10.05 - 1
    assert [a["metric"] for a in data["anomalies"]] == ["makespan_s"]
    console = Console(file=io.StringIO(), width=120)
    render_trends(runs, console, workflow="wf")
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "wf: 7 runs" in text and "makespan" in text and "+59%" in text and "anomaly" in text


def test_an_infinite_score_is_null_in_json() -> None:
    # six runs with exactly the same tokens, then one with more: z is infinite, JSON must stay valid
    import json

    runs = [(f"r{i}", float(i), {"tokens": 100.0}) for i in range(6)] + [("r6", 6.0, {"tokens": 900.0})]
    (found,) = history_anomalies(runs)
    assert found["metric"] == "tokens" and found["score"] is None
    json.dumps(found, allow_nan=False)


def test_runs_at_another_latency_scale_are_not_compared() -> None:
    past = [(f"r{i}", float(i), {"makespan_s": 1.0 + i / 100, "latency_scale": 0.01}) for i in range(6)]
    assert history_anomalies([*past, ("x", 9.0, {"makespan_s": 100.0, "latency_scale": 1.0})]) == []
    assert history_anomalies([*past, ("y", 9.0, {"makespan_s": 100.0, "latency_scale": 0.01})]) != []
