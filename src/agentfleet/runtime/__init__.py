"""The execution engine: scheduler, runner, agent pools, context assembly, aggregation, hooks."""

from __future__ import annotations

from ._aggregate import BUILTIN_FOLDS, Aggregator
from ._context import ArtifactView, fit_head_tail, whole_history_baseline
from ._pool import AgentPool, PoolMember, PoolStatistics, WouldBlock
from ._runner import Runner, RunResult, backoff_delay
from ._scheduler import Instance, Scheduler, SchedulerStats, TaskEvent
from ._team import TeamContext, team

__all__ = [
    "BUILTIN_FOLDS",
    "AgentPool",
    "Aggregator",
    "ArtifactView",
    "Instance",
    "PoolMember",
    "PoolStatistics",
    "RunResult",
    "Runner",
    "Scheduler",
    "SchedulerStats",
    "TaskEvent",
    "TeamContext",
    "WouldBlock",
    "backoff_delay",
    "fit_head_tail",
    "team",
    "whole_history_baseline",
]
