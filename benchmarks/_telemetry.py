"""The telemetry suite: ``python -m benchmarks --suite telemetry [--quick]``.

What watching a run costs, on the engine suite's workload (a): one mapped step of 10,000 no-op
python tasks and a join (1,000 with ``--quick``), where the runtime's own per-task work is all
there is to measure, so any telemetry cost shows at its largest. Five configurations, run
interleaved (ABCDE ABCDE ...) so machine drift spreads over all of them; the median of each:

1. off          ``Runner(spec)``: no store, no metrics (the engine suite's row (a)).
2. metrics      ``Runner(spec, metrics=MetricsRegistry())``: every state change feeds the
                histograms, counters and gauges that ``--metrics-port`` serves.
3. metrics+otel 2 and an OpenTelemetry span per task and per run (``RunTracer`` with the SDK's
                in-memory exporter: span creation and processing, no network).
4. stored       a SQLite run store (WAL, a temp file): every event, attempt and result persisted,
                resource sampling off. The CLI's default persistence, the base for 5.
5. stored+all   4 with everything on: events including waits, retries and cache hits, resource
                sampling every 0.5 s, the metric history, metrics and OpenTelemetry spans.

Targets: 2/1, 3/1 and 5/4 under 1.3x (issue 5: "telemetry on vs off ... under 1.3x").
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console

from ._ours import _noop, run_options
from ._runtime import Row, run_figures

__all__ = ["run_telemetry_suite"]

TARGET = 1.3


def _spec(n: int) -> Any:
    from agentfleet import Workflow

    wf = Workflow("fanout", max_parallel=n)
    wf.agent("noop", provider="python", function=_noop, inline=True)
    wf.task("work", agent="noop", map=list(range(n)))
    wf.task("join", agent="noop", inputs=["work"])
    return wf.build()


def _tracer() -> Any:
    """A RunTracer with an in-memory exporter, or None when the otel extra is not installed."""
    try:
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        from agentfleet.telemetry import make_tracer
    except ImportError:
        return None
    return make_tracer(InMemorySpanExporter())


def _configs(n: int, tmp: Path) -> dict[str, Callable[[], float]]:
    from agentfleet.runtime import Runner
    from agentfleet.store import RunStore
    from agentfleet.telemetry import MetricsRegistry

    spec = _spec(n)
    options = run_options()
    counter = [0]

    def timed(store: bool, metrics: bool, otel: bool, resources: bool) -> float:
        spec.settings.telemetry.resources = resources
        db = None
        if store:
            counter[0] += 1
            db = RunStore(tmp / f"runs-{counter[0]}.db")
        runner = Runner(spec, store=db, metrics=MetricsRegistry() if metrics else None, cache=False, **options)
        tracer = _tracer() if otel else None
        if tracer is not None:
            tracer.attach(runner)
        gc.collect()
        t0 = time.perf_counter()
        result = asyncio.run(runner.run())
        if tracer is not None:
            tracer.finish(result)
        elapsed = time.perf_counter() - t0
        if db is not None:
            db.close()
        if result.counts().get("done") != n + 1:
            raise RuntimeError(f"run {result.status}: {result.counts()}")
        return elapsed

    return {
        "off": lambda: timed(False, False, False, False),
        "metrics": lambda: timed(False, True, False, False),
        "metrics+otel": lambda: timed(False, True, True, False),
        "stored": lambda: timed(True, False, False, False),
        "stored+all": lambda: timed(True, True, True, True),
    }


def _overhead_rows(quick: bool, methods: dict[str, str], log: Console) -> list[Row]:
    n = 1_000 if quick else 10_000
    repeat = 3 if quick else 7
    with tempfile.TemporaryDirectory(prefix="agentfleet-bench-") as tmp:
        configs = _configs(n, Path(tmp))
        times: dict[str, list[float]] = {name: [] for name in configs}
        for fn in configs.values():  # one warm-up each: imports, first-run caches
            fn()
        for i in range(repeat):
            for name, fn in configs.items():
                times[name].append(fn())
            log.print(f"  [dim]round {i + 1}/{repeat}: "
                      + ", ".join(f"{k} {v[-1] * 1000:.0f} ms" for k, v in times.items()) + "[/]")
    med = {name: statistics.median(v) for name, v in times.items()}
    otel = _tracer() is not None
    methods["overhead"] = (f"workload (a): {n:,} no-op tasks + join; {repeat} interleaved rounds of the five "
                           "configurations after one warm-up each; medians; per-task cost = (median - off) / tasks")
    rows = []
    for name, base, label in (("metrics", "off", "metrics registry fed on every state change"),
                              ("metrics+otel", "off", "metrics + an OpenTelemetry span per task"),
                              ("stored+all", "stored", "everything on, stored run (events, resources, history, "
                                                       "metrics, spans) vs stored run")):
        if "otel" in name or name == "stored+all":
            if not otel:
                label += " (otel extra missing: spans not included)"
        ratio = med[name] / med[base]
        per_task = (med[name] - med[base]) / (n + 1) * 1e6
        rows.append(Row(
            "overhead", f"telemetry: {name} vs {base}",
            [f"{ratio:.2f}x ({med[name] * 1000:.0f} ms vs {med[base] * 1000:.0f} ms)",
             f"+{per_task:.1f} µs per task; {label}"],
            f"< {TARGET}x", "PASS" if ratio < TARGET else "FAIL", "overhead",
            {"ratio": ratio, "median_s": med[name], "base_median_s": med[base], "per_task_us": per_task,
             "samples_s": times[name], "base_samples_s": times[base]}))
    return rows


def run_telemetry_suite(console: Console, log: Console, *, quick: bool, env: dict[str, Any]) -> dict[str, Any]:
    """Measure every figure, print the table and the method lines; return the JSON entry."""
    methods: dict[str, str] = {}
    return run_figures(console, log, suite="telemetry", label="Telemetry suite", quick=quick, env=env,
                       methods=methods, figures=[("overhead", lambda: _overhead_rows(quick, methods, log))])
