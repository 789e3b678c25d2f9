"""agentfleet on the workloads: the Python builder, ``run_async`` with no store.

No-op tasks use the ``python`` provider with an inline no-op callable (called on the
event loop, no thread hop); fixed-latency tasks use an async python callable that does
``await asyncio.sleep(s)``, exactly what the floor and the peers run, so the tasks' own
time is known and what is measured beyond it is the runtime. Row (c') runs (c) on the
``sim`` provider (``latency: {fixed: s}``) instead, to show what the simulator adds.
The spec is built and validated in ``prepare`` (untimed, like compiling a LangGraph
graph); the timed run includes planning the DAG, building the
providers, scheduling and the records, i.e. everything ``run_async`` does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import agentfleet
from agentfleet import Workflow

from ._harness import Case
from ._sizes import Sizes

__all__ = ["CASES", "provider_path", "run_options"]


def _noop(request: Any) -> None:
    return None


def _sleeper(seconds: float) -> Any:
    """An async agent function that takes exactly ``seconds`` (like the floor's tasks)."""

    async def sleep(request: Any) -> None:
        await asyncio.sleep(seconds)

    sleep.__qualname__ = f"sleep_{seconds:g}s"
    return sleep


def _latency_agent(wf: Workflow, name: str, seconds: float, provider: str) -> None:
    """An agent whose every task takes ``seconds``: an async python sleep, or the sim."""
    if provider == "sim":
        wf.agent(name, provider="sim", latency={"fixed": seconds})
    else:
        wf.agent(name, provider="python", function=_sleeper(seconds), expected_latency=seconds)


# -- provider path --------------------------------------------------------------------
# The providers package is developed alongside this suite. The real one is used when it
# builds and runs a probe workflow; otherwise a minimal stand-in with the same contract
# keeps the suite usable, and every result says which one ran.

class _InlinePython:
    name = "python"

    def __init__(self, function: Any) -> None:
        self._function = function

    async def complete(self, request: Any) -> Any:
        from agentfleet._types import ProviderResponse

        result = self._function(request)
        if asyncio.iscoroutine(result):
            result = await result
        return ProviderResponse("", self.name, request.model, data=result)

    async def aclose(self) -> None:
        return None


def _standin_factory(agent: Any, **kwargs: Any) -> Any:
    if agent.provider == "python":
        return _InlinePython(agent.options["function"])
    from agentfleet.providers._sim import SimProvider

    return SimProvider.from_agent(agent, **kwargs)


_PATH: str | None = None


def provider_path() -> str:
    """``library`` if agentfleet's own providers run the probe, else why not."""
    global _PATH
    if _PATH is None:
        try:
            wf = Workflow("probe", max_parallel=4)
            wf.agent("noop", provider="python", function=_noop, inline=True)
            wf.agent("sim", provider="sim", latency={"fixed": 0.001})
            wf.task("a", agent="noop")
            wf.task("b", agent="sim", depends_on=["a"])
            result = asyncio.run(agentfleet.run_async(wf.build(), store=None))
            if not result.ok:
                raise RuntimeError(result.failure)
            _PATH = "library"
        except Exception as exc:  # noqa: BLE001 - any failure means: use the stand-in
            _PATH = f"stand-in ({type(exc).__name__}: {exc})"
    return _PATH


def run_options() -> dict[str, Any]:
    return {} if provider_path() == "library" else {"provider_factory": _standin_factory}


def _case(spec: agentfleet.WorkflowSpec, expected: int, **options: Any) -> Case:
    opts = {**run_options(), **options}

    async def run() -> agentfleet.RunResult:
        return await agentfleet.run_async(spec, store=None, **opts)

    def check(result: agentfleet.RunResult) -> None:
        if not result.ok:
            raise RuntimeError(f"run {result.status}: {result.failure}")
        done = result.counts().get("done", 0)
        if done != expected:
            raise RuntimeError(f"{done} tasks done, expected {expected}")

    return Case(run, check, info={"provider_path": provider_path()})


# -- workloads --------------------------------------------------------------------------

def fanout(sizes: Sizes) -> Case:
    """(a) one mapped step of N no-op items, then a join that receives all N outputs."""
    n = sizes.fanout
    wf = Workflow("fanout", max_parallel=n)
    wf.agent("noop", provider="python", function=_noop, inline=True)
    wf.task("work", agent="noop", map=list(range(n)))
    wf.task("join", agent="noop", inputs=["work"])
    return _case(wf.build(), n + 1)


def fanout_steps(sizes: Sizes) -> Case:
    """(a, steps) N separate no-op steps, then a join that receives all N outputs."""
    n = sizes.fanout_steps
    wf = Workflow("fanout_steps", max_parallel=n)
    wf.agent("noop", provider="python", function=_noop, inline=True)
    ids = [wf.task(f"t{i}", agent="noop") for i in range(n)]
    wf.task("join", agent="noop", inputs=ids)
    return _case(wf.build(), n + 1)


def chain(sizes: Sizes) -> Case:
    """(b) N no-op steps, each receiving the previous one's output."""
    n = sizes.chain
    wf = Workflow("chain")
    wf.agent("noop", provider="python", function=_noop, inline=True)
    prev: str | None = None
    for i in range(n):
        prev = wf.task(f"s{i}", agent="noop", inputs=[prev] if prev else [])
    return _case(wf.build(), n)


def layers(sizes: Sizes, provider: str = "python") -> Case:
    """(c) L mapped layers of W fixed-latency tasks; each waits for the whole previous layer."""
    wf = Workflow("layers", max_parallel=max(50, sizes.width))
    _latency_agent(wf, "worker", sizes.layer_latency, provider)
    prev: str | None = None
    for k in range(sizes.layers):
        prev = wf.task(f"layer{k}", agent="worker", map=list(range(sizes.width)),
                       depends_on=[prev] if prev else [])
    return _case(wf.build(), sizes.layers * sizes.width)


def no_barrier(sizes: Sizes) -> Case:
    """(d) branch A: a chain of short tasks; branch B: one long task; then a join."""
    wf = Workflow("no_barrier", max_parallel=16)
    _latency_agent(wf, "quick", sizes.branch_step_latency, "python")
    _latency_agent(wf, "slow", sizes.branch_long, "python")
    wf.agent("noop", provider="python", function=_noop, inline=True)
    prev: str | None = None
    for i in range(sizes.branch_steps):
        prev = wf.task(f"a{i}", agent="quick", depends_on=[prev] if prev else [])
    wf.task("b", agent="slow")
    assert prev is not None
    wf.task("join", agent="noop", inputs=[prev, "b"])
    return _case(wf.build(), sizes.branch_steps + 2)


def admission(sizes: Sizes, mode: str) -> Case:
    """(e) short independent tasks (ready first) and one long chain, on few slots."""
    wf = Workflow("admission", max_parallel=sizes.admission_slots, admission=mode)
    _latency_agent(wf, "worker", sizes.admission_latency, "python")
    # Declared first, so they are ready (and first in FIFO order) before the chain's head.
    wf.task("short", agent="worker", map=list(range(sizes.admission_short)))
    prev: str | None = None
    for i in range(sizes.admission_chain):
        prev = wf.task(f"chain{i}", agent="worker", depends_on=[prev] if prev else [])
    case = _case(wf.build(), sizes.admission_short + sizes.admission_chain)
    case.info["admission"] = mode
    return case


CASES: dict[str, Callable[[Sizes], Case]] = {
    "a": fanout,
    "a_steps": fanout_steps,
    "b": chain,
    "c": layers,
    "c_sim": lambda s: layers(s, "sim"),
    "d": no_barrier,
    "e_cp": lambda s: admission(s, "critical_path"),
    "e_fifo": lambda s: admission(s, "fifo"),
}
