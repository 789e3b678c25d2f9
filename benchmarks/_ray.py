"""Ray (local) on the workloads: remote calls whose dependencies are ObjectRefs.

``ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)`` once, on first
use, after the other engines have run (so Ray's daemons do not share the CPUs with
them); the init time is stored with the results. No-op workloads use ``@ray.remote``
tasks, passing upstream ObjectRefs as arguments so Ray resolves the dependencies.
Fixed-latency workloads use one async actor (``max_concurrency=1000``) whose method
sleeps with ``asyncio.sleep``, again with ObjectRef arguments as the dependencies:
``@ray.remote`` tasks that sleep would be capped at ``num_cpus=2`` at a time, which
measures the CPU reservation, not the scheduler (Ray's own advice for I/O-bound
concurrency is async actors).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from ._harness import Case
from ._sizes import Sizes

__all__ = ["CASES", "ensure", "shutdown"]

_state: dict[str, Any] = {}


def ensure() -> float:
    """Start local Ray once; the seconds it took (0 when already running)."""
    import ray

    if "init_s" in _state:
        return 0.0
    t0 = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)

    @ray.remote
    def noop(*deps: Any) -> None:
        return None

    @ray.remote
    def join(*results: Any) -> int:
        return len(results)

    @ray.remote(max_concurrency=1000)  # type: ignore[call-overload]
    class Sleeper:
        async def run(self, seconds: float, *deps: Any) -> None:
            if seconds > 0:
                await asyncio.sleep(seconds)

    _state.update(noop=noop, join=join, Sleeper=Sleeper)
    init_s = time.perf_counter() - t0
    _state["init_s"] = init_s
    return init_s


def shutdown() -> None:
    if "init_s" in _state:
        import ray

        ray.shutdown()
        _state.clear()


def _sleeper() -> Any:
    import ray

    if "sleeper" not in _state:
        actor = _state["Sleeper"].remote()
        ray.get(actor.run.remote(0.0))
        _state["sleeper"] = actor
    return _state["sleeper"]


def fanout(sizes: Sizes) -> Case:
    """(a) N no-op tasks; the join task takes all N ObjectRefs as arguments."""
    import ray

    ensure()
    noop, join = _state["noop"], _state["join"]
    n = sizes.fanout

    def run() -> int:
        refs = [noop.remote(i) for i in range(n)]
        return int(ray.get(join.remote(*refs)))

    def check(out: int) -> None:
        if out != n:
            raise RuntimeError(f"join saw {out} results, expected {n}")

    return Case(run, check, info={"style": "@ray.remote tasks"})


def chain(sizes: Sizes) -> Case:
    """(b) N no-op tasks, each taking the previous one's ObjectRef."""
    import ray

    ensure()
    noop = _state["noop"]
    n = sizes.chain

    def run() -> int:
        ref = noop.remote()
        for _ in range(n - 1):
            ref = noop.remote(ref)
        ray.get(ref)
        return n

    return Case(run, None, info={"style": "@ray.remote tasks"})


def layers(sizes: Sizes) -> Case:
    """(c) each task of a layer takes every ObjectRef of the previous layer."""
    import ray

    ensure()
    actor = _sleeper()

    def run() -> int:
        prev: list[Any] = []
        for _ in range(sizes.layers):
            prev = [actor.run.remote(sizes.layer_latency, *prev) for _ in range(sizes.width)]
        ray.get(prev)
        return sizes.layers * sizes.width

    return Case(run, None, info={"style": "async actor, max_concurrency=1000"})


def no_barrier(sizes: Sizes) -> Case:
    """(d) a chain of ObjectRefs on one side, one long call on the other, then the join."""
    import ray

    ensure()
    actor = _sleeper()

    def run() -> None:
        a = actor.run.remote(sizes.branch_step_latency)
        for _ in range(sizes.branch_steps - 1):
            a = actor.run.remote(sizes.branch_step_latency, a)
        b = actor.run.remote(sizes.branch_long)
        ray.get(actor.run.remote(0.0, a, b))

    return Case(run, None, info={"style": "async actor, max_concurrency=1000"})


CASES: dict[str, Callable[[Sizes], Case]] = {
    "a": fanout,
    "b": chain,
    "c": layers,
    "d": no_barrier,
}
