"""Feeding a run's task events into a ``MetricsRegistry`` (``Runner(metrics=...)``, ``--metrics-port``).

# Design
# A scheduler listener, subscribed only when a registry is given, so a run without metrics pays
# nothing. Per event it moves the two gauges from the scheduler's own counts (ready, running)
# rather than keeping a second tally that could drift; a final state adds to ``tasks_total``
# and, for a task that ran in this session, records its duration by agent and by step, its
# tokens, its retries and where the cache answered it. Provider call latency and 429s are
# recorded by the runner where it sees each call (``provider_call``, ``rate_limited``).
"""

from __future__ import annotations

from typing import Any

from .._types import TaskState
from ._scheduler import Scheduler, TaskEvent

__all__ = ["RunMetrics"]

_FINAL = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.SKIPPED, TaskState.CANCELLED})


class RunMetrics:
    """Writes one run's progress into ``registry`` (a ``agentfleet.telemetry.MetricsRegistry``)."""

    __slots__ = ("registry", "scheduler")

    def __init__(self, registry: Any, scheduler: Scheduler) -> None:
        self.registry = registry
        self.scheduler = scheduler

    def on_event(self, event: TaskEvent) -> None:
        registry = self.registry
        stats = self.scheduler.statistics()
        registry.set_gauge("queue_depth", stats.ready)
        registry.set_gauge("in_flight", stats.running)
        kind = event.kind
        if kind not in _FINAL:
            return
        record = event.instance.record
        registry.inc("tasks_total", 1, state=kind)
        if record.resumed or record.started_at is None:
            return
        duration = record.duration
        registry.observe("agent", record.agent, duration)
        registry.observe("task_kind", event.instance.step.id, duration)
        if record.tokens_in:
            registry.inc("tokens_total", record.tokens_in, direction="input")
        if record.tokens_out:
            registry.inc("tokens_total", record.tokens_out, direction="output")
        if record.attempts > 1:
            registry.inc("retries_total", record.attempts - 1)
        level = record.meta.get("cache")
        if level:
            registry.inc("cache_hits_total", 1, level=str(level))

    def provider_call(self, identity: str, seconds: float) -> None:
        self.registry.observe("provider", identity, seconds)

    def rate_limited(self) -> None:
        self.registry.inc("rate_limited_total", 1)
