"""The execution engine: scheduler, runner, prompt assembly and lifecycle hooks."""

from __future__ import annotations

from ._runner import Runner, RunResult, backoff_delay
from ._scheduler import Instance, Scheduler, SchedulerStats, TaskEvent

__all__ = [
    "Instance",
    "RunResult",
    "Runner",
    "Scheduler",
    "SchedulerStats",
    "TaskEvent",
    "backoff_delay",
]
