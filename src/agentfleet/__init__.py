"""agentfleet: run teams of agents in parallel, as fast as their dependencies allow.

The public API; everything else is private to the package. Names are imported on first
use (PEP 562), so ``import agentfleet.worker`` in a command worker, or ``agentfleet
--help``, does not pay for pydantic, httpx and the runtime.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from ._api import load, run, run_async, stream
    from .runtime import Runner, RunResult, team
    from .spec import AgentSpec as Agent
    from .spec import TaskSpec as Task
    from .spec import Workflow, WorkflowSpec

__version__ = "0.1.0"

# name -> (module, attribute) for the names imported on first use
_LAZY: dict[str, tuple[str, str]] = {
    "load": ("._api", "load"),
    "run": ("._api", "run"),
    "run_async": ("._api", "run_async"),
    "stream": ("._api", "stream"),
    "Runner": (".runtime", "Runner"),
    "RunResult": (".runtime", "RunResult"),
    "team": (".runtime", "team"),
    "Agent": (".spec", "AgentSpec"),
    "Task": (".spec", "TaskSpec"),
    "Workflow": (".spec", "Workflow"),
    "WorkflowSpec": (".spec", "WorkflowSpec"),
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'agentfleet' has no attribute {name!r}")
    value = getattr(importlib.import_module(target[0], __name__), target[1])
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
    "stream",
    "team",
]
