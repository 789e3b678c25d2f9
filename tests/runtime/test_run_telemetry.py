"""What a run records about itself: wait, retry and cache events, cost, resource samples and the
metric history, in the store beside the tasks."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from agentfleet.runtime import Runner
from agentfleet.store import RunStore
from agentfleet.telemetry import MetricsRegistry
from agentfleet.testing import run_virtual

from .kit import build, rec, sim
from .test_resilience_run import Scripted, fails, tasks

PRICE = (10 * 0.15 + 5 * 0.60) / 1_000_000  # one gpt-4o-mini answer of Scripted: 10 in, 5 out


def kinds(store: RunStore, run_id: str) -> dict[str, list[tuple[float, str | None, dict[str, object]]]]:
    out: dict[str, list[tuple[float, str | None, dict[str, object]]]] = {}
    for _session, t, kind, task_id, data in store.events(run_id):
        out.setdefault(kind, []).append((t, task_id, json.loads(data) if data else {}))
    return out


def test_rate_waits_and_retries_are_events_with_their_times() -> None:
    fake = Scripted(latency=1.0, fail=fails(2))  # the second call fails once with a 500
    spec = build(tasks(3, retries=2), {"a": {"model": "gpt-4o-mini", "rate_limit": {"rpm": 2}}}, max_parallel=10)
    store = RunStore(":memory:")
    result = run_virtual(Runner(spec, store=store, providers={"a": fake}, cache=False, backoff_base=1.0,
                                backoff_cap=1.0).run())
    assert result.ok
    events = kinds(store, result.run_id or "")
    assert {"ready", "started", "done", "rate_wait", "retry"} <= set(events)
    waits = {task: data["seconds"] for _, task, data in events["rate_wait"]}
    # a burst of two calls, then one every 30 s: every wait the limiter imposed is an event
    assert sum(float(s) for s in waits.values()) == pytest.approx(sum(r.meta.get("limit_wait", 0.0)
                                                                       for r in result.records))
    (_, task, data), = events["retry"]
    assert task == "t1" and data["attempt"] == 1 and "HTTP 500" in str(data["error"])
    assert rec(result, "t1").meta["retry_s"] >= 1.0  # the failed 1 s attempt, plus its backoff
    # three answers priced as gpt-4o-mini; the failed attempt spent nothing
    assert result.cost_usd == pytest.approx(3 * PRICE)
    assert rec(result, "t0").meta["cost_usd"] == pytest.approx(PRICE)


def test_cost_feeds_metrics_sla_and_the_history() -> None:
    spec = build(tasks(4), {"a": {"model": "my-model"}}, prices={"my-model": {"input": 1000, "output": 2000}},
                 sla={"rules": ["cost_per_run < $0.05"], "interval": 100})
    store = RunStore(":memory:")
    registry = MetricsRegistry()
    result = run_virtual(Runner(spec, store=store, providers={"a": Scripted(latency=1.0)}, cache=False,
                                metrics=registry).run())
    cost = 4 * (10 * 1000 + 5 * 2000) / 1_000_000  # $0.08
    assert result.cost_usd == pytest.approx(cost)
    assert registry.snapshot()["counters"]["cost_usd_total"][0]["value"] == pytest.approx(cost)
    assert [a["rule"] for a in result.alerts] == ["cost_per_run < $0.05"]
    (run_id, _at, figures), = store.metric_history("t")
    assert run_id == result.run_id
    assert figures["cost_usd"] == pytest.approx(cost) and figures["tasks"] == 4
    assert figures["makespan_s"] == pytest.approx(1.0) and figures["p95_s"] == pytest.approx(1.0)
    assert figures["error_rate"] == 0.0 and figures["tokens"] == 60


def test_an_unpriced_model_has_no_cost_and_no_cost_figure() -> None:
    store = RunStore(":memory:")
    result = run_virtual(Runner(build(tasks(2), {"a": sim(0.5)}), store=store, cache=False).run())
    assert result.cost_usd is None
    (_, _, figures), = store.metric_history("t")
    assert "cost_usd" not in figures and figures["tasks"] == 2


def test_a_cache_hit_is_an_event(tmp_path: Path) -> None:
    spec = build(tasks(2), {"a": {"temperature": 0, "model": "gpt-4o-mini"}})
    with RunStore(tmp_path / "runs.db") as store:
        first = run_virtual(Runner(spec, store=store, providers={"a": Scripted(latency=1.0)}).run())
        second = run_virtual(Runner(spec, store=store, providers={"a": Scripted(latency=1.0)}).run())
        assert first.ok and second.ok
        hits = kinds(store, second.run_id or "")["cache_hit"]
        assert sorted(task or "" for _, task, _ in hits) == ["t0", "t1"]
        assert all(data["level"] for _, _, data in hits)
        assert "cache_hit" not in kinds(store, first.run_id or "")
        # a hit costs nothing and saves what the answer cost
        assert second.cost_usd is None
        assert rec(second, "t0").meta["saved_usd"] == pytest.approx(PRICE)


def test_a_real_time_run_samples_its_process(tmp_path: Path) -> None:
    spec = build(tasks(6), {"a": sim(0.1)}, max_parallel=2, telemetry={"interval": 0.05})
    with RunStore(tmp_path / "runs.db") as store:
        result = asyncio.run(Runner(spec, store=store, cache=False).run())
        samples = json.loads(store.get_extra(result.run_id or "", "resources") or "[]")
        (_, _, figures), = store.metric_history("t")
    assert len(samples) >= 3  # one at the start, one per 50 ms of a ~300 ms run, one at the end
    assert all(s["rss_mb"] > 5 and s["processes"] >= 1 for s in samples)
    assert [s["t"] for s in samples] == sorted(s["t"] for s in samples)
    # on the tasks' clock: seconds since the run started, not the event loop's monotonic time
    ends = max(r.ended_at or 0.0 for r in result.records)
    assert 0 <= samples[0]["t"] < 0.05 and samples[-1]["t"] < ends + 0.5
    assert result.resources["rss_peak_mb"] == max(s["rss_mb"] for s in samples)
    assert figures["rss_peak_mb"] == result.resources["rss_peak_mb"]


def test_sampling_can_be_turned_off(tmp_path: Path) -> None:
    spec = build(tasks(2), {"a": sim(0.01)}, telemetry={"resources": False})
    with RunStore(tmp_path / "runs.db") as store:
        result = asyncio.run(Runner(spec, store=store, cache=False).run())
        assert store.get_extra(result.run_id or "", "resources") is None
    assert result.resources == {} and result.resource_samples == []


def test_time_lost_is_counted_once_per_cause() -> None:
    from agentfleet.errors import ProviderTimeout

    # t0 and t1 share a 1-request-a-minute limit; t1 waits 60 s for it, then times out (2 s), then
    # retries: its limiter wait is rate-limit time, the 2 s timeout time, only the backoff retry time
    fake = Scripted(latency=1.0, fail=fails(2, error=lambda: ProviderTimeout("slow", provider="fake")))
    spec = build(tasks(2, retries=1), {"a": {"rate_limit": {"rpm": 1, "burst": 1}}}, max_parallel=10)
    result = run_virtual(Runner(spec, providers={"a": fake}, cache=False, backoff_base=1.0, backoff_cap=1.0).run())
    assert result.ok
    meta = rec(result, "t1").meta
    assert meta["limit_wait"] > 100  # ~60 s before each of its attempts (less the backoff after the first)
    assert meta["timeout_s"] == pytest.approx(1.0)  # the attempt itself, not the wait before it
    assert "retry_s" in meta and meta["retry_s"] <= 1.0 + 1e-9  # the backoff only
    total = rec(result, "t1").duration
    assert meta["limit_wait"] + meta["timeout_s"] + meta["retry_s"] <= total + 1e-6


def test_history_keeps_whole_runs_only_with_the_cache_rate_and_the_makespan_of_the_tasks(tmp_path: Path) -> None:
    spec = build(tasks(3), {"a": {"temperature": 0}})
    with RunStore(tmp_path / "runs.db") as store:
        run_virtual(Runner(spec, store=store, providers={"a": Scripted(latency=1.0)}).run())
        second = run_virtual(Runner(spec, store=store, providers={"a": Scripted(latency=1.0)}).run())
        off = Runner(spec, store=store, providers={"a": Scripted(latency=1.0)}, cache=False)
        off.history = False  # what agentfleet profile does
        unrecorded = run_virtual(off.run())
        history = {run_id: figures for run_id, _, figures in store.metric_history("t")}
    assert unrecorded.run_id not in history and len(history) == 2
    figures = history[second.run_id]
    assert figures["cache_hit_rate"] == 1.0
    # the tasks' own span, not the teardown after them (all three answered from the cache at t=0)
    ends = max(r.ended_at or 0.0 for r in second.records)
    assert figures["makespan_s"] == pytest.approx(ends)


def test_a_registry_outlives_the_run_without_holding_it() -> None:
    registry = MetricsRegistry()
    result = run_virtual(Runner(build(tasks(4), {"a": sim(1.0)}, max_parallel=2), metrics=registry,
                                cache=False).run())
    assert result.ok
    (row,) = registry.snapshot()["gauges"]["in_flight"]
    assert row["value"] == 0 and row["peak"] == 2
    assert registry._bound == {} and registry._collectors == []
