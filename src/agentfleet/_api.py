"""The library's front door: load a workflow, run it, get the result."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from typing import Any

from ._types import TaskRecord
from .runtime import Runner, RunResult
from .spec import Workflow, WorkflowSpec, load_workflow
from .store import RunStore

__all__ = ["load", "run", "run_async", "runner_for", "stream"]

WorkflowLike = str | os.PathLike[str] | WorkflowSpec | Workflow


def load(path: str | os.PathLike[str], *, overrides: dict[str, Any] | None = None) -> WorkflowSpec:
    """Load and validate a workflow file (``overrides`` replace ``vars`` entries)."""
    return load_workflow(path, overrides=overrides)


def _spec(workflow: WorkflowLike, overrides: dict[str, Any] | None) -> tuple[WorkflowSpec, str | None]:
    if isinstance(workflow, Workflow):
        return workflow.build(), None
    if isinstance(workflow, WorkflowSpec):
        return workflow, None
    return load_workflow(workflow, overrides=overrides), os.fspath(workflow)


@contextlib.contextmanager
def _runner(workflow: WorkflowLike, overrides: dict[str, Any] | None, store: RunStore | str | None,
            options: dict[str, Any]) -> Iterator[Runner]:
    """A Runner for ``workflow``; a store given as a path is opened here and closed afterwards."""
    spec, path = _spec(workflow, overrides)
    db = RunStore(store) if isinstance(store, str) else store
    try:
        yield Runner(spec, store=db, spec_path=path, overrides=overrides, **options)
    finally:
        if isinstance(store, str) and db is not None:
            db.close()


async def run_async(workflow: WorkflowLike, *, overrides: dict[str, Any] | None = None,
                    store: RunStore | str | None = None, **options: Any) -> RunResult:
    """Run a workflow on the current event loop; see ``Runner`` for ``options``."""
    with _runner(workflow, overrides, store, options) as runner:
        return await runner.run()


def run(workflow: WorkflowLike, *, overrides: dict[str, Any] | None = None,
        store: RunStore | str | None = None, **options: Any) -> RunResult:
    """Run a workflow to the end and return its result (no store unless one is given)."""
    return asyncio.run(run_async(workflow, overrides=overrides, store=store, **options))


async def stream(workflow: WorkflowLike, *, overrides: dict[str, Any] | None = None,
                 store: RunStore | str | None = None, **options: Any) -> AsyncIterator[TaskRecord]:
    """Run a workflow and yield each task's record the moment it finishes (done or failed).

    ::

        async for record in agentfleet.stream("examples/parallel_sprint.yaml"):
            print(record.task_id, record.state, record.output)

    Closing the generator early (``contextlib.aclosing``) cancels the rest of the run, which
    stays resumable when a store is given.
    """
    with _runner(workflow, overrides, store, options) as runner:
        async for record in runner.results():
            yield record


def runner_for(spec: WorkflowSpec, store: RunStore | None, options: dict[str, Any], *, spec_path: str | None,
               overrides: dict[str, Any]) -> Runner:
    """A Runner configured by the run options a run row stores (``agentfleet run``'s flags, or a
    service submission's ``options``), so that ``resume`` repeats them."""
    for agent in spec.agents.values():  # --provider and friends point every agent elsewhere
        if options.get("provider"):
            agent.provider = options["provider"]
        if options.get("model"):
            agent.model = options["model"]
        if options.get("base_url"):
            agent.options = {**agent.options, "base_url": options["base_url"]}
    return Runner(spec, store=store, max_parallel=options.get("max_parallel"), policy=options.get("policy"),
                  admission=options.get("admission"), latency_scale=options.get("scale"),
                  seed=options.get("seed") or 0, spec_path=spec_path, overrides=overrides, options=options,
                  cache=False if options.get("no_cache") else None, executor=options.get("executor"),
                  ray_address=options.get("ray_address"), share=options.get("share"),
                  claim_ttl=_claim_ttl())


def _claim_ttl() -> float:
    """Seconds a shared run's task claim lives without a heartbeat (``AGENTFLEET_CLAIM_TTL``, default 10)."""
    raw = os.environ.get("AGENTFLEET_CLAIM_TTL") or "10"
    try:
        ttl = float(raw)
    except ValueError:
        ttl = -1.0
    if not 0.1 <= ttl <= 3600:
        from .errors import SpecError

        raise SpecError(f"AGENTFLEET_CLAIM_TTL must be seconds between 0.1 and 3600, not {raw!r}")
    return ttl
