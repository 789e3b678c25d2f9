"""The floor: the same workloads written with bare asyncio, as fast as Python goes.

Every task is a real ``asyncio.Task`` (what any DAG engine on asyncio must create), so
the ratio ours/floor is the cost of everything a scheduler adds: the DAG bookkeeping,
admission, records, provider calls, events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ._harness import Case
from ._sizes import Sizes

__all__ = ["CASES"]


async def _noop(item: Any) -> Any:
    return None


async def _join(results: list[Any]) -> int:
    return len(results)


def fanout(sizes: Sizes, *, steps: bool = False) -> Case:
    n = sizes.fanout_steps if steps else sizes.fanout

    async def run() -> int:
        # gather wraps each coroutine in a Task; the join receives every result.
        results = await asyncio.gather(*(_noop(i) for i in range(n)))
        return await _join(results)

    def check(out: int) -> None:
        if out != n:
            raise RuntimeError(f"join saw {out} results, expected {n}")

    return Case(run, check)


def chain(sizes: Sizes) -> Case:
    n = sizes.chain

    async def run() -> int:
        value: Any = None
        done = 0
        for _ in range(n):
            value = await asyncio.create_task(_noop(value))
            done += 1
        return done

    def check(out: int) -> None:
        if out != n:
            raise RuntimeError(f"chain ran {out} steps, expected {n}")

    return Case(run, check)


def layers(sizes: Sizes) -> Case:
    async def run() -> int:
        done = 0
        for _ in range(sizes.layers):
            await asyncio.gather(*(asyncio.sleep(sizes.layer_latency) for _ in range(sizes.width)))
            done += sizes.width
        return done

    def check(out: int) -> None:
        if out != sizes.layers * sizes.width:
            raise RuntimeError(f"ran {out} tasks")

    return Case(run, check)


def no_barrier(sizes: Sizes) -> Case:
    async def branch_a() -> str:
        for _ in range(sizes.branch_steps):
            await asyncio.sleep(sizes.branch_step_latency)
        return "a"

    async def branch_b() -> str:
        await asyncio.sleep(sizes.branch_long)
        return "b"

    async def run() -> list[str]:
        return list(await asyncio.gather(branch_a(), branch_b()))

    def check(out: list[str]) -> None:
        if out != ["a", "b"]:
            raise RuntimeError(f"unexpected result {out!r}")

    return Case(run, check)


CASES: dict[str, Callable[[Sizes], Case]] = {
    "a": lambda s: fanout(s),
    "a_steps": lambda s: fanout(s, steps=True),
    "b": chain,
    "c": layers,
    "d": no_barrier,
}
