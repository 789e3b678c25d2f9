"""agentfleet: run teams of agents in parallel, as fast as their dependencies allow.

The public API; everything else is private to the package.
"""

from __future__ import annotations

from ._api import load, run, run_async
from .errors import (
    AgentFleetError,
    HookError,
    OutputInvalid,
    PlanError,
    ProviderConfigError,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    RunNotFound,
    SchedulerError,
    SpecError,
    StoreError,
    TaskFailed,
)
from .runtime import Runner, RunResult
from .spec import AgentSpec as Agent
from .spec import TaskSpec as Task
from .spec import Workflow, WorkflowSpec

__version__ = "0.1.0"

__all__ = [
    "Agent",
    "AgentFleetError",
    "HookError",
    "OutputInvalid",
    "PlanError",
    "ProviderConfigError",
    "ProviderError",
    "ProviderTimeout",
    "RateLimited",
    "RunNotFound",
    "RunResult",
    "Runner",
    "SchedulerError",
    "SpecError",
    "StoreError",
    "Task",
    "TaskFailed",
    "Workflow",
    "WorkflowSpec",
    "__version__",
    "load",
    "run",
    "run_async",
]
