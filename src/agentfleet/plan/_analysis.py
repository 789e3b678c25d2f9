"""Static analysis of a Plan: critical path, width, depth, predicted speedup, false parallelism.

# Design
# Dynamic fan-outs are expanded to their expected instance count (declared ``expect``,
# the source schema's minItems/maxItems, or an assumed 3, flagged as assumed). The
# predicted makespan comes from a small discrete-event simulation of the plan under
# ``max_parallel`` and per-agent limits with critical-path-first admission, i.e. the
# same policy the scheduler uses, at expected latencies.
"""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass

from ._graph import Plan

__all__ = ["PlanAnalysis", "analyze_plan", "remaining_path"]


@dataclass(frozen=True, slots=True)
class FalseParallel:
    """Two tasks in the same phase where one (transitively) depends on the other."""

    phase: str
    upstream: str
    downstream: str
    chain: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PlanAnalysis:
    """What `agentfleet check` prints: the shape and predicted timing of a workflow."""

    steps: int
    instances: int
    critical_path: tuple[tuple[str, float], ...]  # (step id, expected latency) along the path
    critical_path_seconds: float
    width: int  # max tasks running at once with unlimited slots
    depth: int  # steps on the longest chain, counted
    sequential_seconds: float  # sum of all expected latencies
    predicted_makespan: float  # under max_parallel and per-agent limits
    predicted_speedup: float
    max_parallel: int
    false_parallel: tuple[FalseParallel, ...]
    assumed_counts: tuple[str, ...]  # steps whose fan-out size was guessed


def remaining_path(plan: Plan, latency: Mapping[str, float] | None = None) -> dict[str, float]:
    """Longest expected time from the start of each step to the end of the workflow."""
    lat = latency or {}
    out: dict[str, float] = {}
    for sid in reversed(plan.order):
        step = plan.steps[sid]
        own = lat.get(sid, step.expected_latency)
        tail = max((out[d] for d in plan.dependents[sid]), default=0.0)
        out[sid] = own + tail
    return out


def _expand(plan: Plan) -> tuple[list[str], dict[str, list[str]], dict[str, str]]:
    """Instance ids, their dependencies and their step, at expected fan-out sizes."""
    instances: dict[str, list[str]] = {}
    deps: dict[str, list[str]] = {}
    step_of: dict[str, str] = {}
    for sid in plan.order:
        step = plan.steps[sid]
        if step.map_kind == "zip" and step.map_source is not None:
            count = len(instances[step.map_source])
        else:
            count = step.expected_count
        names = [sid] if not step.mapped else [f"{sid}[{i}]" for i in range(count)]
        instances[sid] = names
        for n, name in enumerate(names):
            step_of[name] = sid
            own: list[str] = []
            for dep in step.deps:
                if step.map_kind == "zip" and dep == step.map_source:
                    twin = instances[dep]
                    if n < len(twin):
                        own.append(twin[n])
                else:
                    own.extend(instances[dep])
            deps[name] = own
    order = [name for sid in plan.order for name in instances[sid]]
    return order, deps, step_of


def analyze_plan(plan: Plan, *, max_parallel: int | None = None) -> PlanAnalysis:
    """Analyse ``plan`` at its expected latencies."""
    settings = plan.spec.settings
    slots = max_parallel or settings.max_parallel
    order, deps, step_of = _expand(plan)
    lat = {name: plan.steps[step_of[name]].expected_latency for name in order}

    # Unlimited slots: earliest start/finish, critical path, width.
    finish: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for name in order:
        best = max(deps[name], key=finish.__getitem__, default=None)
        start = finish[best] if best is not None else 0.0
        finish[name] = start + lat[name]
        via[name] = best
    end = max(order, key=lambda n: finish[n]) if order else None
    path: list[str] = []
    node = end
    while node is not None:
        path.append(node)
        node = via[node]
    path.reverse()
    cp_seconds = finish[end] if end else 0.0
    events: list[tuple[float, int]] = []
    for name in order:
        events.append((finish[name] - lat[name], 1))
        events.append((finish[name], -1))
    events.sort(key=lambda e: (e[0], e[1]))
    width = cur = 0
    for _, delta in events:
        cur += delta
        width = max(width, cur)

    # Depth in steps (count), on the step graph.
    depth_of: dict[str, int] = {}
    for sid in plan.order:
        depth_of[sid] = 1 + max((depth_of[d] for d in plan.steps[sid].deps), default=0)
    depth = max(depth_of.values(), default=0)

    sequential = sum(lat.values())
    predicted = _simulate(plan, order, deps, step_of, lat, slots)

    false_parallel = _false_parallel(plan)
    return PlanAnalysis(
        steps=len(plan.order),
        instances=len(order),
        critical_path=tuple((n, lat[n]) for n in path),
        critical_path_seconds=cp_seconds,
        width=width,
        depth=depth,
        sequential_seconds=sequential,
        predicted_makespan=predicted,
        predicted_speedup=(sequential / predicted) if predicted > 0 else 1.0,
        max_parallel=slots,
        false_parallel=false_parallel,
        assumed_counts=tuple(s.id for s in plan.steps.values() if s.count_assumed),
    )


def _simulate(plan: Plan, order: list[str], deps: dict[str, list[str]], step_of: dict[str, str],
              lat: dict[str, float], slots: int) -> float:
    rank = remaining_path(plan)
    limits = {s.agent: 10**9 for s in plan.steps.values()}
    limits.update({name: (a.max_concurrency or 10**9) for name, a in plan.spec.agents.items()})
    waiting = {n: len(deps[n]) for n in order}
    users: dict[str, list[str]] = {n: [] for n in order}
    for n in order:
        for d in deps[n]:
            users[d].append(n)
    seq = {n: i for i, n in enumerate(order)}

    def key(n: str) -> tuple[int, float, int]:
        step = plan.steps[step_of[n]]
        return (-step.priority, -rank[step.id], seq[n])

    ready = [key(n) + (n,) for n in order if waiting[n] == 0]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    busy: dict[str, int] = {a: 0 for a in limits}
    now = 0.0
    done = 0
    while done < len(order):
        held = []
        while ready and len(running) < slots:
            item = heapq.heappop(ready)
            name = item[-1]
            agent = plan.steps[step_of[name]].agent
            if busy[agent] >= limits[agent]:
                held.append(item)
                continue
            busy[agent] += 1
            heapq.heappush(running, (now + lat[name], name))
        for item in held:
            heapq.heappush(ready, item)
        if not running:
            break
        now, name = heapq.heappop(running)
        busy[plan.steps[step_of[name]].agent] -= 1
        done += 1
        for user in users[name]:
            waiting[user] -= 1
            if waiting[user] == 0:
                heapq.heappush(ready, key(user) + (user,))
    return now


def _false_parallel(plan: Plan) -> tuple[FalseParallel, ...]:
    ancestors: dict[str, dict[str, str | None]] = {}
    for sid in plan.order:
        # ancestor -> the direct dep through which it is reached (for the chain).
        anc: dict[str, str | None] = {}
        for d in plan.steps[sid].deps:
            anc.setdefault(d, None)
            for a in ancestors[d]:
                anc.setdefault(a, d)
        ancestors[sid] = anc
    out: list[FalseParallel] = []
    for sid in plan.order:
        phase = plan.steps[sid].phase
        if phase is None:
            continue
        for up in ancestors[sid]:
            if plan.steps[up].phase == phase:
                chain = [sid]
                node = sid
                while node != up:
                    nxt = ancestors[node][up]
                    node = nxt if nxt is not None else up
                    chain.append(node)
                out.append(FalseParallel(phase=phase, upstream=up, downstream=sid, chain=tuple(reversed(chain))))
    return tuple(out)
