"""Helpers shared by the runtime tests: build a spec from dicts, run it on virtual time, find a record."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from agentfleet._types import ProviderRequest, TaskRecord
from agentfleet.runtime import Runner, RunResult
from agentfleet.spec import Workflow, WorkflowSpec
from agentfleet.testing import run_virtual

AgentFn = Callable[[ProviderRequest], Awaitable[Any]]


def build(tasks: list[dict[str, Any]], agents: dict[str, dict[str, Any]], *,
          hooks: dict[str, list[str]] | None = None, **settings: Any) -> WorkflowSpec:
    """A validated spec from task dicts (``id``; ``agent`` unless it aggregates) and agent keyword dicts."""
    wf = Workflow("t", **settings)
    for name, fields in agents.items():
        wf.agent(name, **fields)
    for t in tasks:
        t = dict(t)
        wf.task(t.pop("id"), agent=t.pop("agent", ""), **t)
    for event, targets in (hooks or {}).items():
        for target in targets:
            wf.hook(event, target)
    return wf.build()


def run(spec: WorkflowSpec, **kw: Any) -> RunResult:
    """Run ``spec`` to the end on a fresh virtual-time loop."""
    return run_virtual(Runner(spec, **kw).run())


def rec(result: RunResult, task_id: str) -> TaskRecord:
    """The record of ``task_id`` in ``result``."""
    for r in result.records:
        if r.task_id == task_id:
            return r
    raise KeyError(task_id)


def python(function: Callable[..., Any], **fields: Any) -> dict[str, Any]:
    """A python agent calling ``function``."""
    return {"provider": "python", "function": function, **fields}


def sim(latency: float, **options: Any) -> dict[str, Any]:
    """A sim agent with a fixed latency."""
    return {"provider": "sim", "latency": {"fixed": latency}, **options}
