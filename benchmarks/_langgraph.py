"""LangGraph on the workloads, written as its documentation teaches.

A ``StateGraph`` over a ``TypedDict`` state whose list and counter fields carry
reducers (``Annotated[list, operator.add]``), async nodes run with ``ainvoke`` on the
same event loop as everything else, fan-out with ``Send`` (one node, one Send per item)
or with parallel edges (one node per task, ``add_edge([...], join)`` to wait for all).
Compiling the graph happens in ``prepare`` and is reported as setup, not timed.
LangGraph executes in supersteps (Pregel/BSP): a step's nodes all finish before any
node of the next step starts, which is what workload (d) exposes.
"""

from __future__ import annotations

import asyncio
import operator
from collections.abc import Callable
from typing import Annotated, Any, TypedDict

from ._harness import Case
from ._sizes import Sizes

__all__ = ["CASES"]


class FanState(TypedDict, total=False):
    items: list[int]
    results: Annotated[list[Any], operator.add]
    total: int


class CountState(TypedDict, total=False):
    done: Annotated[int, operator.add]
    log: Annotated[list[str], operator.add]


async def _work(state: FanState) -> dict[str, Any]:
    return {"results": [None]}


async def _join(state: FanState) -> dict[str, Any]:
    return {"total": len(state["results"])}


def _check_total(n: int) -> Any:
    def check(out: dict[str, Any]) -> None:
        if out.get("total") != n:
            raise RuntimeError(f"join saw {out.get('total')} results, expected {n}")

    return check


def fanout(sizes: Sizes) -> Case:
    """(a) Send fan-out: one ``work`` node, one Send per item, then ``join``."""
    from langgraph.graph import END, START, StateGraph
    from langgraph.types import Send

    n = sizes.fanout

    def fan(state: FanState) -> list[Any]:  # LangGraph reads this hint: keep it resolvable
        return [Send("work", {"item": i}) for i in state["items"]]

    g = StateGraph(FanState)
    g.add_node("work", _work)
    g.add_node("join", _join)
    g.add_conditional_edges(START, fan, ["work"])
    g.add_edge("work", "join")
    g.add_edge("join", END)
    app = g.compile()
    items = list(range(n))

    async def run() -> dict[str, Any]:
        return await app.ainvoke({"items": items, "results": []}, {"recursion_limit": 100})

    return Case(run, _check_total(n), info={"style": "Send fan-out"})


def fanout_steps(sizes: Sizes) -> Case:
    """(a, steps) N nodes on parallel edges from START, joined by one waiting edge."""
    from langgraph.graph import END, START, StateGraph

    n = sizes.fanout_steps
    g = StateGraph(FanState)
    names = [f"t{i}" for i in range(n)]
    for name in names:
        g.add_node(name, _work)
        g.add_edge(START, name)
    g.add_node("join", _join)
    g.add_edge(names, "join")
    g.add_edge("join", END)
    app = g.compile()

    async def run() -> dict[str, Any]:
        return await app.ainvoke({"results": []}, {"recursion_limit": 100})

    return Case(run, _check_total(n), info={"style": "parallel edges"})


def chain(sizes: Sizes) -> Case:
    """(b) N nodes, each edge to the next; the counter reducer carries the state along."""
    from langgraph.graph import END, START, StateGraph

    n = sizes.chain

    async def step(state: CountState) -> dict[str, Any]:
        return {"done": 1}

    g = StateGraph(CountState)
    for i in range(n):
        g.add_node(f"s{i}", step)
        g.add_edge(START if i == 0 else f"s{i - 1}", f"s{i}")
    g.add_edge(f"s{n - 1}", END)
    app = g.compile()

    async def run() -> dict[str, Any]:
        return await app.ainvoke({"done": 0}, {"recursion_limit": n + 10})

    def check(out: dict[str, Any]) -> None:
        if out.get("done") != n:
            raise RuntimeError(f"chain ran {out.get('done')} steps, expected {n}")

    return Case(run, check)


def layers(sizes: Sizes) -> Case:
    """(c) L x W nodes; each node of a layer waits (edge list) for the whole previous layer."""
    from langgraph.graph import END, START, StateGraph

    latency = sizes.layer_latency

    async def task(state: CountState) -> dict[str, Any]:
        await asyncio.sleep(latency)
        return {"done": 1}

    g = StateGraph(CountState)
    prev: list[str] = []
    for k in range(sizes.layers):
        layer = [f"l{k}_{j}" for j in range(sizes.width)]
        for name in layer:
            g.add_node(name, task)
            if prev:
                g.add_edge(prev, name)
            else:
                g.add_edge(START, name)
        prev = layer
    for name in prev:
        g.add_edge(name, END)
    app = g.compile()
    total = sizes.layers * sizes.width

    async def run() -> dict[str, Any]:
        return await app.ainvoke({"done": 0}, {"recursion_limit": sizes.layers + 10})

    def check(out: dict[str, Any]) -> None:
        if out.get("done") != total:
            raise RuntimeError(f"ran {out.get('done')} tasks, expected {total}")

    return Case(run, check, info={"style": "parallel edges, waiting edges per layer"})


def no_barrier(sizes: Sizes) -> Case:
    """(d) START -> a0 -> ... -> a9 and START -> b, then join waits for a9 and b."""
    from langgraph.graph import END, START, StateGraph

    def sleeper(name: str, seconds: float) -> Any:
        async def node(state: CountState) -> dict[str, Any]:
            await asyncio.sleep(seconds)
            return {"log": [name]}

        return node

    g = StateGraph(CountState)
    prev = START
    for i in range(sizes.branch_steps):
        g.add_node(f"a{i}", sleeper(f"a{i}", sizes.branch_step_latency))
        g.add_edge(prev, f"a{i}")
        prev = f"a{i}"
    g.add_node("b", sleeper("b", sizes.branch_long))
    g.add_edge(START, "b")
    g.add_node("join", sleeper("join", 0.0))
    g.add_edge([prev, "b"], "join")
    g.add_edge("join", END)
    app = g.compile()

    async def run() -> dict[str, Any]:
        return await app.ainvoke({"log": []}, {"recursion_limit": sizes.branch_steps + 10})

    def check(out: dict[str, Any]) -> None:
        log = out.get("log", [])
        if len(log) != sizes.branch_steps + 2 or log[-1] != "join":
            raise RuntimeError(f"unexpected log {log!r}")

    return Case(run, check)


CASES: dict[str, Callable[[Sizes], Case]] = {
    "a": fanout,
    "a_steps": fanout_steps,
    "b": chain,
    "c": layers,
    "d": no_barrier,
}
