"""The project's own benchmarks as ``agentfleet bench`` targets (``benchmarks/suite.yaml``).

Each function does one unit of work and is timed by ``agentfleet bench`` (calibrated loops, several
worker processes, stored samples, compared with a baseline). Workloads are built once per process
(untimed), as the engine suite does: the timed part is what a user waits for.
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

from ._harness import Case
from ._ours import chain as _chain
from ._ours import fanout as _fanout
from ._ours import layers as _layers
from ._sizes import FULL, QUICK


@cache
def _case(name: str, quick: bool) -> Case:
    sizes = QUICK if quick else FULL
    return {"fanout": _fanout, "chain": _chain, "layers": _layers}[name](sizes)


def _run(name: str, quick: bool = False) -> None:
    case = _case(name, quick)
    case.check(asyncio.run(case.run()))


def fanout(quick: bool = False) -> None:
    """(a) one mapped step of 10,000 no-op tasks (1,000 quick) and a join."""
    _run("fanout", quick)


def chain(quick: bool = False) -> None:
    """(b) a chain of 1,000 no-op steps (200 quick)."""
    _run("chain", quick)


def layers(quick: bool = False) -> None:
    """(c) layered fan-outs on sleeping python agents: the makespan against the critical path."""
    _run("layers", quick)


@cache
def _metrics_case(n: int) -> tuple[Any, Any]:
    from agentfleet import Workflow

    from ._ours import _noop, run_options

    wf = Workflow("fanout", max_parallel=n)
    wf.agent("noop", provider="python", function=_noop, inline=True)
    wf.task("work", agent="noop", map=list(range(n)))
    wf.task("join", agent="noop", inputs=["work"])
    return wf.build(), run_options()


def fanout_metrics(n: int = 10_000) -> None:
    """(a) with a MetricsRegistry fed on every state change (what --metrics-port costs)."""
    from agentfleet.runtime import Runner
    from agentfleet.telemetry import MetricsRegistry

    spec, options = _metrics_case(n)
    result = asyncio.run(Runner(spec, metrics=MetricsRegistry(), cache=False, **options).run())
    if not result.ok:
        raise RuntimeError(result.failure)


@cache
def _histogram_values(n: int) -> list[float]:
    import random

    rng = random.Random(1)
    return [rng.lognormvariate(-3, 1) for _ in range(n)]


def histogram_record(n: int = 10_000) -> None:
    """LatencyHistogram.record_many over n lognormal durations."""
    from agentfleet.telemetry import LatencyHistogram

    LatencyHistogram().record_many(_histogram_values(n))


def bus_roundtrip(n: int = 10_000) -> None:
    """n messages published on the in-process bus and received by one subscriber."""
    from agentfleet.messaging import InProcessBus

    async def go() -> None:
        bus = InProcessBus()
        sub = bus.subscribe("t", maxsize=n + 1)
        for i in range(n):
            await bus.publish("t", i)
        for _ in range(n):
            await sub.get()
        sub.close()

    asyncio.run(go())
