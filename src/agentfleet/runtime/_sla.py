"""SLA rules during a run: measure, evaluate, deliver (``settings.sla``).

# Design
# ``sla_values`` measures the figures the rules name from what the run already has (the task
# records, the scheduler's counts, the gateway's cache counters); it sorts the finished
# durations once per evaluation, a couple of milliseconds for 10,000 tasks at one evaluation a
# second. ``SLAWatch`` evaluates every ``interval`` seconds on the run's clock and once more at
# the end with an ``SLAMonitor`` (edge-triggered: one alert per violation, one per recovery).
# Every alert lands in the run's result (``RunResult.alerts``, the summary and the stored
# run); with ``webhook`` it is POSTed as JSON, with ``command`` run with the JSON in
# ``$AGENTFLEET_ALERT``. A webhook or command that fails is noted in the alert, never fails
# the run. ``cost_per_run`` sums the tasks' ``meta["cost_usd"]`` (priced by ``telemetry.Pricing``);
# a run whose models have no price never measures it, and a rule on it stays silent.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
from collections.abc import Callable, Iterable
from typing import Any

from .._types import Clock, TaskRecord, TaskState

__all__ = ["HISTORY_FIGURES", "SLAWatch", "run_figures", "sla_values"]


def _quantile(ordered: list[float], q: float) -> float | None:
    if not ordered:
        return None
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def sla_values(records: Iterable[TaskRecord], *, ready: int, running: int, elapsed: float,
               cache_hits: int = 0, cache_lookups: int = 0) -> dict[str, float | None]:
    """The figures SLA rules can name (``telemetry.METRICS``), None where not measurable yet."""
    durations: list[float] = []
    waits: list[float] = []
    done = failed = attempts = retries = tokens = 0
    limit_wait = task_time = 0.0
    cost: float | None = None
    for r in records:
        if r.resumed:
            continue
        spent = r.meta.get("cost_usd") if r.meta else None
        if spent is not None:
            cost = (cost or 0.0) + float(spent)
        if r.started_at is not None:
            waits.append(r.queue_wait)
        if r.state == TaskState.DONE:
            done += 1
        elif r.state == TaskState.FAILED:
            failed += 1
        else:
            continue
        if r.started_at is not None and r.ended_at is not None:
            durations.append(r.duration)
            task_time += r.duration
        attempts += r.attempts
        retries += max(0, r.attempts - 1)
        tokens += r.tokens_in + r.tokens_out
        limit_wait += float(r.meta.get("limit_wait", 0.0))
    durations.sort()
    waits.sort()
    finished = done + failed
    hit_rate = cache_hits / cache_lookups if cache_lookups else None
    return {
        "p50_task_latency": _quantile(durations, 0.5),
        "p95_task_latency": _quantile(durations, 0.95),
        "p99_task_latency": _quantile(durations, 0.99),
        "max_task_latency": durations[-1] if durations else None,
        "makespan": elapsed,
        "queue_wait_p95": _quantile(waits, 0.95),
        "error_rate": failed / finished if finished else None,
        "retry_rate": retries / attempts if attempts else None,
        "cache_hit_rate": hit_rate,
        "rate_limit_share": limit_wait / task_time if task_time > 0 else None,
        "queue_depth": float(ready),
        "in_flight": float(running),
        "failed_tasks": float(failed),
        "tokens_per_run": float(tokens),
        "cost_per_run": cost,
    }


#: the metric history kept per run (``agentfleet trends``): stored name -> the ``sla_values`` figure
HISTORY_FIGURES = {
    "makespan_s": "makespan", "p50_s": "p50_task_latency", "p95_s": "p95_task_latency",
    "p99_s": "p99_task_latency", "max_s": "max_task_latency", "queue_wait_p95_s": "queue_wait_p95",
    "error_rate": "error_rate", "retry_rate": "retry_rate", "cache_hit_rate": "cache_hit_rate",
    "rate_limit_share": "rate_limit_share", "failed": "failed_tasks", "tokens": "tokens_per_run",
    "cost_usd": "cost_per_run",
}


def run_figures(records: list[TaskRecord], *, elapsed: float, cache_hits: int = 0,
                cache_lookups: int = 0) -> dict[str, float]:
    """A finished run's headline figures for the metric history (``HISTORY_FIGURES``; unmeasured ones
    left out), plus the number of tasks that ran."""
    values = sla_values(records, ready=0, running=0, elapsed=elapsed, cache_hits=cache_hits,
                        cache_lookups=cache_lookups)
    out = {name: float(v) for name, key in HISTORY_FIGURES.items() if (v := values.get(key)) is not None}
    out["tasks"] = float(sum(1 for r in records if not r.resumed and r.started_at is not None))
    return out


class SLAWatch:
    """Evaluates ``monitor`` (a ``telemetry.SLAMonitor``) during a run and delivers its alerts."""

    def __init__(self, monitor: Any, *, clock: Clock, interval: float, measure: Any,
                 webhook: str | None = None, command: str | None = None, context: dict[str, Any] | None = None,
                 now: Callable[[], float] | None = None) -> None:
        self.monitor = monitor
        self.clock = clock
        self.now = now or clock.now  # alert times: seconds since the run started
        self.interval = interval
        self.measure = measure  # () -> dict of values
        self.webhook = webhook
        self.command = command
        self.context = context or {}
        self.alerts: list[dict[str, Any]] = []
        self._task: asyncio.Task[None] | None = None
        self._deliveries: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="agentfleet sla watch")

    async def _loop(self) -> None:
        while True:
            await self.clock.sleep(self.interval)
            self.check()

    def check(self) -> None:
        """Evaluate now; alert on every change."""
        now = self.now()
        for change in self.monitor.update(self.measure(), now):
            alert = {**self.context, "rule": change.rule.text, "metric": change.rule.metric,
                     "threshold": change.rule.threshold, "value": change.value, "at": now,
                     "recovered": change.recovered, "message": change.message}
            self.alerts.append(alert)
            if self.webhook or self.command:
                task = asyncio.get_running_loop().create_task(self._deliver(alert))
                self._deliveries.add(task)
                task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, alert: dict[str, Any]) -> None:
        body = json.dumps({k: v for k, v in alert.items() if k != "delivery"}, default=str)
        problems: list[str] = []
        if self.webhook:
            import httpx

            try:
                async with httpx.AsyncClient(timeout=5.0) as client:
                    response = await client.post(self.webhook, content=body,
                                                 headers={"content-type": "application/json"})
                if response.status_code >= 400:
                    problems.append(f"webhook answered HTTP {response.status_code}")
            except httpx.HTTPError as exc:
                problems.append(f"webhook {self.webhook}: {type(exc).__name__}: {exc}")
        if self.command:
            try:
                proc = await asyncio.create_subprocess_shell(
                    self.command, env={**os.environ, "AGENTFLEET_ALERT": body},
                    stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
                try:
                    _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
                    problems.append("alert command timed out after 30s")
                else:
                    if proc.returncode:
                        tail = err.decode("utf-8", "replace").strip()[-200:]
                        problems.append(f"alert command exited {proc.returncode}: {tail}")
            except OSError as exc:
                problems.append(f"alert command could not start: {exc}")
        if problems:
            alert["delivery"] = "; ".join(problems)

    async def aclose(self) -> list[dict[str, Any]]:
        """Stop the loop, evaluate once more (the run's final figures), wait for deliveries."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self.check()
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries), return_exceptions=True)
        return self.alerts
