"""``agentfleet tune``: search the settings that matter with short runs, keep the best by the user's
objective under their limits.

# Design
# A candidate is the settings the search may change: ``max_parallel``, each agent's
# ``max_concurrency`` (for agents that declare one, or all agents when asked) and hedging per
# agent (for HTTP providers, where a second request can win). The search is coordinate descent
# (pure: it takes the evaluation as a function, so tests drive it with a formula): from the
# workflow as written, try one rung up and one down on one dimension's ladder with the others
# held (and one rung up on the slots and every cap together, for limits that bind together), keep
# the better, go on to the next dimension, and repeat rounds (from the new values) until
# a round improves nothing or the trial budget is spent. A change must beat the best by 2% to
# count. Each evaluation is the median of ``runs`` short runs. The score is the
# objective's figure (lower is better): makespan, p95 task latency, cost, or a weighted sum of the
# three as ratios to the starting point (``mix``). Limits make a candidate infeasible rather than
# worse: more than ``max_parallel_limit`` slots, more than ``max_cost`` per run. Every trial is kept,
# so the report can show the trade-off (makespan against cost) and the overlay file carries only
# what differs from the workflow as written.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = ["Candidate", "Measured", "Space", "Trial", "TuneResult", "overlay", "score", "tune"]

OBJECTIVES = ("makespan", "p95", "cost", "mix")


@dataclass(frozen=True)
class Candidate:
    max_parallel: int
    caps: tuple[tuple[str, int], ...] = ()  # (agent, max_concurrency), sorted
    hedge: tuple[str, ...] = ()  # agents with hedging on, sorted

    def cap(self, agent: str) -> int | None:
        return dict(self.caps).get(agent)

    def with_cap(self, agent: str, value: int) -> Candidate:
        caps = dict(self.caps)
        caps[agent] = value
        return replace(self, caps=tuple(sorted(caps.items())))

    def with_hedge(self, agent: str, on: bool) -> Candidate:
        agents = set(self.hedge)
        (agents.add if on else agents.discard)(agent)
        return replace(self, hedge=tuple(sorted(agents)))

    def describe(self) -> str:
        parts = [f"max_parallel {self.max_parallel}"]
        parts += [f"{a}.max_concurrency {c}" for a, c in self.caps]
        parts += [f"{a}.hedge" for a in self.hedge]
        return ", ".join(parts)


@dataclass(frozen=True)
class Measured:
    makespan: float
    p95: float
    cost: float | None


@dataclass(frozen=True)
class Trial:
    candidate: Candidate
    measured: Measured
    score: float
    feasible: bool
    why_not: str | None = None


@dataclass(frozen=True)
class Space:
    """The ladders the search walks: values for max_parallel and per capped agent, hedgeable agents."""

    max_parallel: tuple[int, ...]
    caps: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    hedgeable: tuple[str, ...] = ()


@dataclass
class TuneResult:
    start: Trial
    best: Trial
    trials: list[Trial]
    objective: str

    @property
    def improvement(self) -> float | None:
        """The best score against the start's, as a ratio - 1 (-0.3: 30% better)."""
        return self.best.score / self.start.score - 1 if self.start.score > 0 else None

    def pareto(self) -> list[Trial]:
        """Feasible trials no other beats on both makespan and cost (cost None counts as 0)."""
        feasible = [t for t in self.trials if t.feasible]
        front: list[Trial] = []
        for t in feasible:
            cost = t.measured.cost or 0.0
            dominated = any((o.measured.makespan <= t.measured.makespan and (o.measured.cost or 0.0) <= cost)
                            and (o.measured.makespan < t.measured.makespan or (o.measured.cost or 0.0) < cost)
                            for o in feasible)
            if not dominated and all(f.candidate != t.candidate for f in front):
                front.append(t)
        return sorted(front, key=lambda t: t.measured.makespan)


def ladder(current: int, *, floor: int = 1, ceiling: int = 100_000) -> tuple[int, ...]:
    """Values around ``current``: quarters up to eight times, bounded."""
    values = {current, max(floor, current // 4), max(floor, current // 2), current * 2, current * 4, current * 8}
    return tuple(sorted(v for v in values if floor <= v <= ceiling))


def score(measured: Measured, objective: str, weights: Mapping[str, float], start: Measured | None) -> float:
    """Lower is better. ``mix``: the weighted sum of each figure as a ratio to the start's."""
    if objective == "makespan":
        return measured.makespan
    if objective == "p95":
        return measured.p95
    if objective == "cost":
        return measured.cost or 0.0
    if objective != "mix":
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    base = start or measured
    total = 0.0
    for key, weight in weights.items():
        value = getattr(measured, key) or 0.0
        ref = getattr(base, key) or 0.0
        total += weight * (value / ref if ref > 0 else (0.0 if value == 0 else math.inf))
    return total


def tune(evaluate: Callable[[Candidate], Measured], start: Candidate, space: Space, *, objective: str = "makespan",
         weights: Mapping[str, float] | None = None, budget: int = 30, max_parallel_limit: int | None = None,
         max_cost: float | None = None, progress: Callable[[int, Trial], None] | None = None) -> TuneResult:
    """Coordinate descent from ``start`` over ``space`` (see the module notes); ``budget`` trials at most."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if budget < 1:
        raise ValueError(f"budget must be >= 1, got {budget!r}")
    weights = dict(weights or {"makespan": 1.0, "p95": 0.0, "cost": 1.0})
    seen: dict[Candidate, Trial] = {}
    trials: list[Trial] = []
    first: list[Measured] = []

    def trial(candidate: Candidate) -> Trial | None:
        if candidate in seen:
            return seen[candidate]
        if len(trials) >= budget:
            return None
        measured = evaluate(candidate)
        if not first:
            first.append(measured)
        why = None
        if max_parallel_limit is not None and candidate.max_parallel > max_parallel_limit:
            why = f"max_parallel {candidate.max_parallel} > limit {max_parallel_limit}"
        elif max_cost is not None and measured.cost is not None and measured.cost > max_cost:
            why = f"cost ${measured.cost:.4f} > limit ${max_cost:.4f}"
        t = Trial(candidate, measured, score(measured, objective, weights, first[0]), why is None, why)
        seen[candidate] = t
        trials.append(t)
        if progress is not None:
            progress(len(trials), t)
        return t

    begin = trial(start)
    assert begin is not None
    best = begin

    def better(t: Trial | None) -> bool:
        return t is not None and t.feasible and (not best.feasible or t.score < best.score * 0.98)

    improved = True
    while improved and len(trials) < budget:
        improved = False
        dims: list[Callable[[Candidate], Sequence[Candidate]]] = [
            lambda c: [replace(c, max_parallel=v) for v in _steps(space.max_parallel, c.max_parallel)]]
        for agent, values in space.caps.items():
            dims.append(lambda c, a=agent, vs=values: [c.with_cap(a, v)  # type: ignore[misc]
                                                       for v in _steps(vs, c.cap(a) or vs[0])])
        for agent in space.hedgeable:
            dims.append(lambda c, a=agent: [c.with_hedge(a, a not in c.hedge)])  # type: ignore[misc]
        if space.caps:
            # limits that bind together (slots and an agent's cap) only move together
            dims.append(lambda c: _together(c, space))
        for neighbours in dims:
            for candidate in neighbours(best.candidate):
                t = trial(candidate)
                if better(t):
                    assert t is not None
                    best = t
                    improved = True
    return TuneResult(start=begin, best=best, trials=trials, objective=objective)


def _together(c: Candidate, space: Space) -> list[Candidate]:
    """One rung up on max_parallel and on every tuned agent's cap at once."""
    up = _steps(space.max_parallel, c.max_parallel)[:1]
    if not up or up[0] <= c.max_parallel:
        return []
    moved = replace(c, max_parallel=up[0])
    for agent, values in space.caps.items():
        higher = [v for v in values if v > (c.cap(agent) or c.max_parallel)]
        if higher:
            moved = moved.with_cap(agent, higher[0])
    return [moved]


def _steps(ladder_values: Sequence[int], current: int) -> list[int]:
    """The ladder's next value up, then down, from ``current``: a hill climb moves one rung at a time
    (a round that improves moves on from the new value; the trials stay few)."""
    up = [v for v in ladder_values if v > current]
    down = [v for v in ladder_values if v < current]
    return ([up[0]] if up else []) + ([down[-1]] if down else [])


def overlay(start: Candidate, best: Candidate) -> dict[str, Any]:
    """What differs from the workflow as written, as an include file's mapping."""
    out: dict[str, Any] = {}
    if best.max_parallel != start.max_parallel:
        out["settings"] = {"max_parallel": best.max_parallel}
    agents: dict[str, dict[str, Any]] = {}
    for agent, cap in best.caps:
        if start.cap(agent) != cap:
            agents.setdefault(agent, {})["max_concurrency"] = cap
    for agent in sorted(set(best.hedge) ^ set(start.hedge)):
        agents.setdefault(agent, {})["hedge"] = agent in best.hedge
    if agents:
        out["agents"] = agents
    return out


def median_measured(runs: Sequence[Measured]) -> Measured:
    costs = [r.cost for r in runs if r.cost is not None]
    return Measured(statistics.median(r.makespan for r in runs), statistics.median(r.p95 for r in runs),
                    statistics.median(costs) if costs else None)
