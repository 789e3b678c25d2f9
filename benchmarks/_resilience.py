"""The resilience suite: ``python -m benchmarks --suite resilience [--quick]``.

Every figure is measured against ``tests/faultserver.py``, a real OpenAI-compatible HTTP
server on 127.0.0.1 that rate-limits and fails on purpose, through agentfleet's real OpenAI
provider (httpx, keep-alive), or through the real CLI in fresh processes:

1. goodput   the server admits ``rpm`` requests a minute (429 + Retry-After + x-ratelimit
             headers above it) and fails 30% of requests with 500/502 before its limiter (those
             cost no quota). agentfleet (client limit at the same rpm, retries with backoff, the
             default breaker and retry budget) vs a naive loop: a fixed number of workers that
             resend every failed request at once, the usual hand-written asyncio retry. Goodput =
             successful answers per minute / rpm.
2. cache     the parallel sprint example run twice with the CLI (``agentfleet run --json``) on one
             database, each in a new process: the second run's makespan and provider calls.
3. L1 hit    ``await TieredCache.get(key)`` on a memory hit, each call timed (perf_counter_ns).
4. coalesce  100 tasks asking the same deterministic question at once: server requests.
5. hedging   a server whose latency has a heavy tail (5% of answers 20x slower): p99 task latency
             with ``hedge: true`` vs without, same seed.
6. adaptive  a server that serves 8 requests at a time (429 above) and a client told nothing:
             the AIMD gate vs a fixed concurrency of 64.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from ._runtime import Row, run_figures

__all__ = ["run_resilience_suite"]

ROOT = Path(__file__).resolve().parent.parent


def _server(**config: Any) -> Any:
    sys.path.insert(0, str(ROOT))
    from tests.faultserver import FaultServer

    return FaultServer(**config)  # started by `with`


def _workflow(url: str, tasks: list[dict[str, Any]], agent: dict[str, Any], **settings: Any) -> Any:
    from agentfleet.spec import Workflow

    wf = Workflow("bench", **settings)
    wf.agent("a", provider="openai", model="fault-model",
             options={"base_url": url, "api_key_env": "AGENTFLEET_BENCH_KEY"}, **agent)
    for task in tasks:
        task = dict(task)
        wf.task(task.pop("id"), agent="a", **task)
    return wf.build()


def _run(spec: Any, **kw: Any) -> Any:
    from agentfleet.runtime import Runner

    os.environ.setdefault("AGENTFLEET_BENCH_KEY", "bench")
    return asyncio.run(Runner(spec, **kw).run())


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.5) - 1))]


# -- 1. goodput ---------------------------------------------------------------------------------


async def _naive(url: str, n: int, workers: int) -> dict[str, Any]:
    """The hand-written baseline: ``workers`` coroutines, each resends a failed request at once."""
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(n):
        queue.put_nowait(i)
    sent = 0
    ok = 0
    limits = httpx.Limits(max_connections=workers, max_keepalive_connections=workers)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30, trust_env=False) as client:
        async def worker() -> None:
            nonlocal sent, ok
            while True:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                body = {"model": "fault-model", "messages": [{"role": "user", "content": f"job {i}"}]}
                while True:
                    sent += 1
                    try:
                        response = await client.post("/chat/completions", json=body)
                    except httpx.HTTPError:
                        continue
                    if response.status_code == 200:
                        ok += 1
                        break

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(workers)))
        elapsed = time.perf_counter() - started
    return {"elapsed": elapsed, "sent": sent, "ok": ok}


def _goodput_rows(quick: bool, methods: dict[str, str], log: Console) -> list[Row]:
    rpm = 1800.0  # 30 requests/s
    n = 600 if quick else 900  # long enough that the first second's burst and the drain are small
    config = dict(rpm=rpm, error_rate=0.3, error_statuses=(500, 502), latency=0.05, seed=7)
    rows: list[Row] = []
    with _server(**config) as server:
        tasks = [{"id": f"t{i}", "prompt": f"job {i}", "retries": 20} for i in range(n)]
        spec = _workflow(server.url, tasks, {"temperature": 0.7, "rate_limit": {"rpm": rpm, "burst": rpm / 60}},
                         max_parallel=64, policy="continue")
        started = time.perf_counter()
        result = _run(spec, cache=False)
        wall = time.perf_counter() - started
        counts = server.counts()
        failed = sum(1 for r in result.records if r.state != "done")
        ok = counts.succeeded
        ends = [r.ended_at for r in result.records if r.ended_at is not None]
        starts = [r.started_at for r in result.records if r.started_at is not None]
        span = max(ends) - min(starts)
        ours = ok / (span / 60) / rpm
        ours_data = {"tasks": n, "failed": failed, "span_s": span, "wall_s": wall, "received": counts.received,
                     "rate_limited": counts.rate_limited, "faults": dict(counts.faults),
                     "duplicates": counts.duplicates, "goodput": ours}
        log.print(f"  goodput ours: {ours:.1%} of {rpm:g} rpm, {failed} failed, {counts.duplicates} duplicate "
                  f"answers, {counts.received} requests ({counts.rate_limited} 429s)")
        server.reset_counts()
        time.sleep(2.0)  # let the server's bucket refill: the naive loop starts from the same state
        naive = asyncio.run(_naive(server.url, n, 64))
        ncounts = server.counts()
        theirs = naive["ok"] / (naive["elapsed"] / 60) / rpm
        log.print(f"  goodput naive: {theirs:.1%}, {ncounts.received} requests ({ncounts.rate_limited} 429s)")
    rows.append(Row(
        key="goodput", figure="1 goodput at a fixed RPM with 30% 5xx",
        measured=[f"ours {ours:.1%} of the limit, {failed} failed, {ours_data['duplicates']} duplicate results",
                  f"{ours_data['received']:,} requests for {n:,} tasks ({ours_data['received'] / n:.2f}/task), "
                  f"{ours_data['rate_limited']} answered 429",
                  f"naive retry loop (64 workers): {theirs:.1%} of the limit, {ncounts.received:,} requests "
                  f"({ncounts.received / n:.2f}/task), {ncounts.rate_limited:,} answered 429",
                  f"requests sent: naive/ours = {ncounts.received / max(1, ours_data['received']):.2f}x"],
        target=">= 95% of the limit, 0 failed, 0 duplicates",
        verdict="PASS" if ours >= 0.95 and failed == 0 and ours_data["duplicates"] == 0 else "FAIL",
        method="goodput", data={"ours": ours_data, "naive": {**naive, "received": ncounts.received,
                                                              "rate_limited": ncounts.rate_limited,
                                                              "goodput": theirs}}))
    methods["goodput"] = (f"{n} tasks through the OpenAI provider to the fault server (rpm {rpm:g}, burst 1 s, "
                          "30% 500/502 before the limiter, 50 ms latency); client rate_limit rpm at the same figure "
                          "with a 1 s burst, retries 20, max_parallel 64; goodput = successful answers per minute "
                          "over the first start..last end / rpm. Naive: 64 workers, httpx, resend at once on any "
                          "failure")
    return rows


# -- 2. the sprint twice --------------------------------------------------------------------------


def _cli_run(db: str, scale: float) -> dict[str, Any]:
    command = [sys.executable, "-c", "from agentfleet.cli import main; main()", "run",
               str(ROOT / "examples" / "parallel_sprint.yaml"), "--db", db, "--json", "--scale", str(scale)]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600,
                          env={**os.environ, "AGENTFLEET_CACHE": ""})
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"agentfleet run failed: {done.stderr[-500:]}")
    payload = json.loads(done.stdout)
    report = payload["report"]
    calls = sum(int(g.get("calls", 0)) for g in report.get("resilience", []))
    return {"wall_s": wall, "makespan": report["makespan"], "calls": calls, "cache": report.get("cache", {})}


def _cache_rows(quick: bool, methods: dict[str, str], log: Console) -> list[Row]:
    scale = 0.2 if quick else 1.0
    with tempfile.TemporaryDirectory() as tmp:
        db = str(Path(tmp) / "runs.db")
        first = _cli_run(db, scale)
        second = _cli_run(db, scale)
    ratio = first["makespan"] / second["makespan"] if second["makespan"] > 0 else float("inf")
    wall_ratio = first["wall_s"] / second["wall_s"]
    log.print(f"  sprint: first {first['makespan']:.3f}s ({first['calls']} calls), second "
              f"{second['makespan'] * 1000:.1f} ms ({second['calls']} calls)")
    methods["cache"] = (f"examples/parallel_sprint.yaml (sim, latency scale {scale:g}, temperature 0) run twice with "
                        "`agentfleet run --json` on one database, each in a new Python process (so the second run "
                        "reads L3 SQLite, then L1); makespan from the report; provider calls = calls through the "
                        "gateway; wall = the whole process, interpreter start included")
    hits = second["cache"].get("by_level", {})
    return [Row(key="cache", figure="2 parallel sprint, second run (warm cache)",
                measured=[f"{ratio:,.0f}x faster ({first['makespan']:.2f}s -> {second['makespan'] * 1000:.1f} ms), "
                          f"{second['calls']} provider calls",
                          f"first run {first['calls']} calls; hits {hits}",
                          f"whole process {first['wall_s']:.2f}s -> {second['wall_s']:.2f}s ({wall_ratio:.1f}x, "
                          "interpreter start included)"],
                target=">= 10x faster, 0 provider calls",
                verdict="PASS" if ratio >= 10 and second["calls"] == 0 else "FAIL", method="cache",
                data={"first": first, "second": second, "ratio": ratio})]


# -- 3. L1 hit latency -----------------------------------------------------------------------------


def _l1_rows(quick: bool, methods: dict[str, str]) -> list[Row]:
    from agentfleet.cache import MemoryCache, TieredCache

    cache = TieredCache([MemoryCache()])
    n = 20_000 if quick else 200_000

    async def measure() -> list[int]:
        await cache.put("k", {"text": "x" * 400, "model": "m", "provider": "p", "tokens_in": 1, "tokens_out": 1})
        clock = time.perf_counter_ns
        out = [0] * n
        get = cache.get
        for i in range(n):
            t0 = clock()
            await get("k")
            out[i] = clock() - t0
        return out

    samples = asyncio.run(measure())
    p50, p99 = _p(samples, 0.5) / 1000, _p(samples, 0.99) / 1000
    methods["l1"] = (f"{n:,} x `await TieredCache.get(key)` on an L1 (memory) hit inside one coroutine, each timed "
                     "with perf_counter_ns (the timer's own ~50 ns included)")
    return [Row(key="l1", figure="3 L1 cache hit latency", measured=[f"p99 {p99:.2f} µs", f"p50 {p50:.2f} µs"],
                target="p99 < 5 µs", verdict="PASS" if p99 < 5 else "FAIL", method="l1",
                data={"p50_us": p50, "p99_us": p99, "n": n})]


# -- 4. coalescing -----------------------------------------------------------------------------------


def _coalesce_rows(methods: dict[str, str]) -> list[Row]:
    from agentfleet.cache import MemoryCache, TieredCache

    with _server(latency=0.2, seed=3) as server:
        spec = _workflow(server.url, [{"id": "ask", "prompt": "the same question", "map": {"over": list(range(100))}}],
                         {"temperature": 0}, max_parallel=200)
        result = _run(spec, cache=TieredCache([MemoryCache()]))
        received = server.counts().received
    ok = sum(1 for r in result.records if r.state == "done")
    methods["coalesce"] = ("one mapped step, 100 instances with the same prompt at temperature 0, max_parallel 200, "
                           "OpenAI provider -> fault server (200 ms latency); POSTs the server received")
    return [Row(key="coalesce", figure="4 100 identical concurrent requests",
                measured=[f"{received} provider call{'s' if received != 1 else ''}", f"{ok}/100 tasks done"],
                target="exactly 1 call", verdict="PASS" if received == 1 and ok == 100 else "FAIL",
                method="coalesce", data={"received": received, "done": ok})]


# -- 5. hedging ----------------------------------------------------------------------------------------


def _hedge_rows(quick: bool, methods: dict[str, str], log: Console) -> list[Row]:
    n = 300 if quick else 1000
    out: dict[str, dict[str, float]] = {}
    for label, hedge in (("without", None), ("with", {"percentile": 0.95, "min_samples": 20})):
        with _server(latency=0.05, tail_p=0.05, tail_mult=20.0, seed=11) as server:
            agent: dict[str, Any] = {"temperature": 0.7}
            if hedge is not None:
                agent["hedge"] = hedge
            spec = _workflow(server.url, [{"id": "t", "prompt": "q {{ item }}", "map": {"over": list(range(n))}}],
                             agent, max_parallel=16)
            result = _run(spec, cache=False)
            durations = [r.duration for r in result.records if r.state == "done"]
            received = server.counts().received
        out[label] = {"p50": _p(durations, 0.5), "p99": _p(durations, 0.99), "mean": statistics.fmean(durations),
                      "requests": received, "hedges": sum(int(r.meta.get("hedges", 0)) for r in result.records)}
        log.print(f"  hedging {label}: p99 {out[label]['p99'] * 1000:.0f} ms, {received} requests")
    ratio = out["without"]["p99"] / out["with"]["p99"]
    methods["hedging"] = (f"{n} tasks, max_parallel 16, fault server latency 50 ms with 5% of answers x20 (1 s); "
                          "hedge: p95 of the agent's recent latencies, after 20 samples; task latency = record "
                          "duration")
    w, wo = out["with"], out["without"]
    return [Row(key="hedging", figure="5 hedged requests on a heavy latency tail",
                measured=[f"p99 {wo['p99'] * 1000:.0f} ms -> {w['p99'] * 1000:.0f} ms ({ratio:.1f}x lower)",
                          f"p50 {wo['p50'] * 1000:.0f} -> {w['p50'] * 1000:.0f} ms; {int(w['hedges'])} hedges, "
                          f"requests {int(wo['requests'])} -> {int(w['requests'])} "
                          f"(+{(w['requests'] / wo['requests'] - 1):.0%})"],
                target="report", verdict="REPORT", method="hedging", data=out)]


# -- 6. adaptive concurrency ----------------------------------------------------------------------------


def _adaptive_rows(quick: bool, methods: dict[str, str], log: Console) -> list[Row]:
    n = 150 if quick else 300
    out: dict[str, dict[str, Any]] = {}
    for label, adaptive in (("adaptive", True), ("fixed", False)):
        with _server(max_concurrency=8, latency=0.2, seed=13) as server:
            tasks = [{"id": f"t{i}", "prompt": f"job {i}", "retries": 20} for i in range(n)]
            spec = _workflow(server.url, tasks, {"temperature": 0.7, "pool": {"size": 64, "max": 64},
                                                 "rate_limit": {"adaptive": adaptive}},
                             max_parallel=64, policy="continue")
            started = time.perf_counter()
            result = _run(spec, cache=False)
            wall = time.perf_counter() - started
            counts = server.counts()
        out[label] = {"wall_s": wall, "received": counts.received, "rate_limited": counts.rate_limited,
                      "failed": sum(1 for r in result.records if r.state != "done"),
                      "limit": result.resilience[0].adaptive_limit}
        log.print(f"  adaptive {label}: {counts.rate_limited} 429s of {counts.received} requests, "
                  f"{out[label]['failed']} failed, {wall:.2f}s")
    a, f = out["adaptive"], out["fixed"]
    methods["adaptive"] = (f"{n} tasks, max_parallel 64, a pool of 64; the fault server serves 8 at a time "
                           "(429 above, Retry-After 200 ms), 200 ms latency; no client limits configured. adaptive: "
                           "the default AIMD gate for HTTP providers; fixed: adaptive: false")
    return [Row(key="adaptive", figure="6 adaptive concurrency, server limit unknown to the client",
                measured=[f"AIMD: {a['rate_limited']} 429s / {a['received']} requests, {a['failed']} failed, "
                          f"settled at {a['limit']} in flight, {a['wall_s']:.2f}s",
                          f"fixed 64: {f['rate_limited']} 429s / {f['received']} requests, {f['failed']} failed "
                          f"(retry budget), {f['wall_s']:.2f}s"],
                target="report", verdict="REPORT", method="adaptive", data=out)]


def run_resilience_suite(console: Console, log: Console, *, quick: bool, env: dict[str, Any]) -> dict[str, Any]:
    """Measure every figure, print the table and the method lines; return the JSON entry."""
    methods: dict[str, str] = {}
    return run_figures(console, log, suite="resilience", label="Resilience suite", quick=quick, env=env,
                       methods=methods, figures=[
                           ("goodput", lambda: _goodput_rows(quick, methods, log)),
                           ("cache", lambda: _cache_rows(quick, methods, log)),
                           ("l1", lambda: _l1_rows(quick, methods)),
                           ("coalesce", lambda: _coalesce_rows(methods)),
                           ("hedging", lambda: _hedge_rows(quick, methods, log)),
                           ("adaptive", lambda: _adaptive_rows(quick, methods, log))])
