"""Anomalies in a run and across runs: tasks far slower than their peers, resource spikes, and a run
whose makespan, p95 or cost is far off the workflow's recent history.

# Design
# Pure functions over stored data (records, resource samples, the metric history), so the run
# summary, ``agentfleet report`` and the HTML report flag the same things.
#
# * Slow tasks: per agent (with more than 10 tasks), each task's duration is scored against all
#   the durations of that agent with a robust z-score (median and MAD), on a log scale: latencies
#   spread multiplicatively (a heavy right tail is normal for LLM calls; on a linear scale one
#   task in a couple of thousand of a healthy lognormal agent would be flagged). A task is
#   flagged only when it is both a statistical outlier (z above 5) and materially slow (at least
#   twice the agent's median and 50 ms above it): a sim agent whose durations barely vary would
#   otherwise flag microseconds. One sort per agent: O(n log n) for a 10,000-task run.
# * Resources: CPU and memory series scored by ``telemetry.EWMADetector`` (a live run's view:
#   no window kept), after 20 samples; memory only upwards (a drop is not a problem).
# * History: the latest run's figures against the same workflow's earlier runs at the same sim
#   latency scale with ``telemetry.robust_z`` (at least 5 earlier runs; |z| above 3.5, Iglewicz and Hoaglin's
#   threshold for labelling one point against a fixed sample), in the direction that hurts
#   (slower, dearer, more errors), and at least 10% off the median.
# Each anomaly is a plain dict (metric, t or run_id, value, score, method, message), the shape
# the HTML report and ``--json`` use.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from .._types import TaskRecord
from ..telemetry import EWMADetector, robust_z

__all__ = ["history_anomalies", "resource_anomalies", "run_anomalies", "task_anomalies"]

_MAD_SCALE = 0.6745  # MAD to a normal distribution's standard deviation (as in telemetry.robust_z)

#: history figures checked against earlier runs, and which way is worse (+1: higher is worse)
HISTORY_CHECKS: Mapping[str, tuple[int, str]] = {
    "makespan_s": (1, "makespan"),
    "p95_s": (1, "p95 task latency"),
    "cost_usd": (1, "cost"),
    "tokens": (1, "tokens"),
    "error_rate": (1, "error rate"),
    "rss_peak_mb": (1, "peak memory"),
}


def _fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _score(score: float) -> float | None:
    """A score for JSON: None for an infinite one (every earlier value equal, this one not)."""
    return score if math.isfinite(score) else None


def _rank(anomaly: Mapping[str, Any]) -> float:
    score = anomaly["score"]
    return -math.inf if score is None else -abs(float(score))


def task_anomalies(records: Sequence[TaskRecord], *, threshold: float = 5.0, min_peers: int = 10,
                   min_ratio: float = 2.0, min_excess: float = 0.05, limit: int = 10) -> list[dict[str, Any]]:
    """Tasks much slower than the other tasks of their agent, worst first (at most ``limit``)."""
    by_agent: dict[str, list[TaskRecord]] = {}
    for r in records:
        if not r.resumed and r.started_at is not None and r.ended_at is not None:
            by_agent.setdefault(r.agent, []).append(r)
    found: list[dict[str, Any]] = []
    for agent, tasks in by_agent.items():
        if len(tasks) <= min_peers:
            continue
        durations = [r.duration for r in tasks]
        logs = [math.log(max(d, 1e-6)) for d in durations]
        centre = statistics.median(logs)
        mad = statistics.median(abs(x - centre) for x in logs)
        median = statistics.median(durations)
        for r, duration, value in zip(tasks, durations, logs, strict=True):
            if duration < min_ratio * median or duration - median < min_excess:
                continue  # cheap filter first: most tasks are nowhere near
            score = _MAD_SCALE * (value - centre) / mad if mad > 0 else math.inf
            if score <= threshold:
                continue
            found.append({"metric": "task_duration", "subject": r.task_id, "t": r.started_at, "run_id": None,
                          "value": duration, "score": _score(score), "method": "robust_z",
                          "message": f"task {r.task_id} took {_fmt(duration)}s, {duration / median:.1f}x the "
                                     f"median of the {len(tasks)} {agent} tasks ({_fmt(median)}s)"})
    found.sort(key=_rank)
    return found[:limit]


def resource_anomalies(samples: Sequence[Mapping[str, float]], *, k: float = 5.0,
                       min_points: int = 20, limit: int = 10) -> list[dict[str, Any]]:
    """CPU and memory samples far off their running (EWMA) mean."""
    found: list[dict[str, Any]] = []
    for key, label, unit, upward_only in (("cpu_percent", "CPU", "%", False), ("rss_mb", "memory", " MB", True)):
        detector = EWMADetector(k=k, min_points=min_points)
        for sample in samples:
            if key not in sample:
                continue
            value = float(sample[key])
            mean = detector.mean
            score = detector.update(value)
            if score is None or (upward_only and score < 0) or mean is None:
                continue
            found.append({"metric": key, "subject": label, "t": sample.get("t"), "run_id": None, "value": value,
                          "score": _score(score), "method": "ewma",
                          "message": f"{label} at {_fmt(value)}{unit} (running mean {_fmt(mean)}{unit}) "
                                     f"at {sample.get('t', 0.0):.1f}s"})
    found.sort(key=_rank)
    return found[:limit]


def history_anomalies(history: Sequence[tuple[str, float, Mapping[str, float]]], *, run_id: str | None = None,
                      threshold: float = 3.5, min_runs: int = 5, min_change: float = 0.10) -> list[dict[str, Any]]:
    """The figures of run ``run_id`` (default: the latest in ``history``, oldest first) that stand out
    from the earlier runs of the workflow."""
    if not history:
        return []
    index = len(history) - 1
    if run_id is not None:
        matches = [i for i, (rid, _, _) in enumerate(history) if rid == run_id]
        if not matches:
            return []
        index = matches[0]
    current_id, _, current = history[index]
    # sim runs at another latency scale are another workload: compare like with like
    scale = current.get("latency_scale")
    earlier = [h for h in history[:index] if h[2].get("latency_scale") == scale]
    found: list[dict[str, Any]] = []
    for metric, (worse, label) in HISTORY_CHECKS.items():
        if metric not in current:
            continue
        past = [figures[metric] for _, _, figures in earlier if metric in figures]
        if len(past) < min_runs:
            continue
        value = current[metric]
        score = robust_z(value, past)
        median = statistics.median(past)
        off = abs(value - median) / abs(median) if median else (1.0 if value != median else 0.0)
        if score * worse > threshold and off >= min_change:
            found.append({"metric": metric, "subject": label, "t": None, "run_id": current_id, "value": value,
                          "score": _score(score), "method": "robust_z",
                          "message": f"{label} {_fmt(value)} vs a median of {_fmt(median)} over the last "
                                     f"{len(past)} runs ({value / median:.1f}x)" if median else
                                     f"{label} {_fmt(value)} where the last {len(past)} runs had {_fmt(median)}"})
    return found


def run_anomalies(records: Sequence[TaskRecord], samples: Sequence[Mapping[str, float]] = (),
                  history: Sequence[tuple[str, float, Mapping[str, float]]] = (),
                  run_id: str | None = None) -> list[dict[str, Any]]:
    """Everything anomalous about one run: against history first, then slow tasks, then resources."""
    return [*history_anomalies(history, run_id=run_id), *task_anomalies(records), *resource_anomalies(samples)]
