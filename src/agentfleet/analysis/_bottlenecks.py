"""Bottlenecks of a finished run: what held it back, what it cost and which setting to change.

# Design
# ``classify_bottlenecks``, ``recurring`` and ``what_if`` are pure functions of task records,
# the ``RunReport`` that ``analyze`` made of them and (optionally) the run's ``Plan``: no I/O,
# no clock. Numbers are on the run's clock (scaled sim latencies stay scaled).
#
# Which records count: the tasks that *ran in this run* (``analyze``'s rule: started, ended,
# not resumed), first record per task id. Dependencies on tasks outside that set (resumed,
# skipped) count as met from the start.
#
# The re-simulation (``what_if`` and every severity). A list scheduler replays the recorded
# DAG: each task takes its recorded duration (``ended_at - started_at``, so limit waits,
# retries and backoff are inside it); a task is ready once all its dependencies ended; free
# slots go to ready tasks in critical-path order (longest remaining path of durations to the
# end of the run, then record order), skipping a task whose agent is at its limit; completions
# at one instant are all processed before slots are refilled. It knows nothing of tiers and
# reservations, pool warm-up, rate limiters or retries (only of their recorded effect on
# durations), and a dependency cycle (impossible in a valid run) is broken by dropping the
# edges that close it. ``what_if(records)`` with no arguments uses the run's measured peak
# concurrency as the global limit and no per-agent limits, so it is an estimate of the run
# as scheduled, not a reproduction of its makespan: compare what-ifs with each other.
#
# Severity = seconds of makespan at stake, estimated as (simulated makespan as the run was
# limited) - (simulated makespan with the bottleneck removed), never below 0. "As limited"
# uses ``report.max_parallel`` (else the plan's ``settings.max_parallel``, else the measured
# peak concurrency) and per-agent ``max_concurrency`` from the plan; without a plan an agent
# whose tasks waited on it (below) is limited to its measured peak. Where the simulation
# cannot model the cause (tier reservations) or underestimates it, the critical path's own
# queue wait for that agent is used when larger: it is makespan spent waiting, measured.
#
# Where a queue wait came from: at the instant before a waiting task started, if the run had
# ``max_parallel`` tasks running the wait is "global"; else if its agent had its limit running
# (``max_concurrency`` from the plan, else the agent's measured peak) it is "agent"; else, when
# ``max_parallel`` is unknown and the measured peak was running, "global"; else "other" (tiers,
# reservations, a pool warming up). When two limits bind at once the run-wide one is named:
# raising the agent's alone would not have helped.
#
# A detection must clear the noise floor: its measured seconds > 0 and >= max(min_seconds,
# min_share * makespan). The list is sorted by severity, then kind (``BOTTLENECK_KINDS``
# order), then subject. The runtime's pseudo-agents (``(aggregate)``) have no settings and are
# left out of the per-agent kinds. The kinds (subject in brackets):
#   slow_task [task]       the step on the measured critical path with the longest service
#                          time (duration - limit_wait) takes > slow_task_share of the path's
#                          length (paths of 2+ tasks). If it is an outlier among its step's
#                          instances (> outlier_ratio x the median of 2+ peers) the advice is
#                          hedging / a timeout and the severity is the gain of it taking the
#                          peers' median; otherwise the advice is to split it or use a faster
#                          model and the severity is the gain of its step's service time going
#                          to 0 (an upper bound: what the step costs the makespan).
#   contention [agent]     queue wait dominates service time: the agent's total queue wait >=
#                          contention_ratio x its busy time, or the same on the critical path
#                          (its path steps' queue wait >= contention_ratio x their durations),
#                          and the agent is not overloaded (below). The advice follows the
#                          dominant cause: global -> settings.max_parallel (to the run's peak
#                          demand: most tasks ready or running at once); agent ->
#                          agents.A.max_concurrency; other -> tasks[S].tier / settings.tiers.
#                          Agents whose advice is the same ``settings.max_parallel`` change are
#                          reported once, under the agent that waited longest.
#   agent_overload [agent] the agent's own limit held its tasks back: "agent" waits clear the
#                          floor and its saturation (busy / (limit x its active span, first
#                          start to last end)) >= overload_utilisation. Advice: raise
#                          agents.A.max_concurrency to its peak demand (most of its tasks ready
#                          or running at once), at most the run's slot count (and at least one
#                          more than now); severity: the simulated gain of that.
#   rate_limit [agent]     ``meta["limit_wait"]`` summed over the agent's tasks (rate limiters
#                          and adaptive concurrency; the wait is inside the task's duration).
#                          Severity: the gain of those waits being 0. With the plan the advice
#                          names the field in force, merged as the runner merges it: one limiter
#                          per provider+model from settings.resilience.limits[provider], then
#                          [provider/model], then every sharing agent's rate_limit (so it may be
#                          another agent's); always also agents.A.fallbacks.
#   context_bloat [task]   context tokens > bloat_ratio x a reference and >= bloat_min_tokens.
#                          Reference: for an instance of a mapped step, the median of its
#                          sibling instances (bloat_min_peers or more); for a step, the median
#                          of the run's other steps
#                          (each step counted once, by its median, so a wide fan-out does not
#                          set the run's median; needs bloat_min_peers other steps). Severity:
#                          the gain if its duration shrank in proportion to the excess tokens
#                          (an upper bound: output length and model speed set latency too).
#   false_parallelism [task]  from ``analyze_plan(plan).false_parallel``: a step in the same
#                          ``phase`` as a step it (transitively) depends on, one entry per
#                          downstream step (its longest such chain). Static, so no floor.
#                          Severity: the gain of dropping the downstream step's dependencies
#                          on the chain.
#   retries [agent]        time lost to extra attempts and timeouts. Per task: a failed task
#                          that retried or timed out lost its whole service time; a finished
#                          task with N > 1 attempts lost its service time minus the median of
#                          its step's single-attempt peers, or (N-1)/N of it without peers.
#                          Advice by cause: timeouts -> the timeout setting that applies;
#                          mostly rejected answers -> the task's prompt / output schema;
#                          else agents.A.fallbacks.
#
# ``recurring`` takes per-run bottleneck lists, oldest first, and reports each (kind, subject)
# present in at least ``min_runs`` of them with its count, first and last run index.
"""

from __future__ import annotations

import heapq
import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from statistics import median
from typing import TYPE_CHECKING, Literal

from .._types import TaskRecord, TaskState
from ._metrics import RunReport, _ran
from ._render import format_seconds

if TYPE_CHECKING:
    from ..plan import Plan

__all__ = [
    "BOTTLENECK_KINDS",
    "Bottleneck",
    "BottleneckKind",
    "Pattern",
    "Thresholds",
    "WhatIf",
    "classify_bottlenecks",
    "recurring",
    "what_if",
    "what_if_scenarios",
]

BottleneckKind = Literal[
    "slow_task", "contention", "rate_limit", "context_bloat", "agent_overload", "false_parallelism", "retries"
]

#: Every kind, in the order used to break severity ties.
BOTTLENECK_KINDS: tuple[BottleneckKind, ...] = (
    "slow_task",
    "agent_overload",
    "contention",
    "rate_limit",
    "retries",
    "context_bloat",
    "false_parallelism",
)
_KIND_RANK = {kind: i for i, kind in enumerate(BOTTLENECK_KINDS)}


@dataclass(frozen=True, slots=True)
class Thresholds:
    """When a measurement counts as a bottleneck; see the module comment for each rule."""

    min_seconds: float = 0.0  # absolute noise floor for measured seconds
    min_share: float = 0.05  # ... and as a share of the makespan
    slow_task_share: float = 0.5  # of the critical path's length
    outlier_ratio: float = 2.0  # an instance this many times its siblings' median is an outlier
    contention_ratio: float = 1.0  # queue wait / service time
    overload_utilisation: float = 0.9  # busy share of an agent's slots over its active span
    bloat_ratio: float = 3.0  # context tokens / the reference median
    bloat_min_tokens: int = 4000  # never context bloat below this many tokens
    bloat_min_peers: int = 2  # peers needed for a reference median

    def __post_init__(self) -> None:
        if self.min_seconds < 0 or not 0 <= self.min_share <= 1:
            raise ValueError("min_seconds must be >= 0 and min_share within 0-1")
        if not 0 < self.slow_task_share <= 1 or not 0 < self.overload_utilisation <= 1:
            raise ValueError("slow_task_share and overload_utilisation must be within (0, 1]")
        if self.outlier_ratio <= 1 or self.bloat_ratio <= 1 or self.contention_ratio <= 0:
            raise ValueError("outlier_ratio and bloat_ratio must be > 1, contention_ratio > 0")
        if self.bloat_min_tokens < 0 or self.bloat_min_peers < 1:
            raise ValueError("bloat_min_tokens must be >= 0 and bloat_min_peers >= 1")


_DEFAULT_THRESHOLDS = Thresholds()


@dataclass(frozen=True, slots=True)
class Bottleneck:
    """One thing that held a run back.

    ``severity`` is the estimated seconds of makespan at stake; ``subject`` a task id (or step
    id) or an agent name; ``setting`` the spec path the ``recommendation`` changes.
    """

    kind: BottleneckKind
    severity: float
    subject: str
    evidence: str
    recommendation: str
    setting: str = ""


@dataclass(frozen=True, slots=True)
class Pattern:
    """A bottleneck seen in ``count`` of the runs given to ``recurring`` (indices, oldest = 0)."""

    kind: BottleneckKind
    subject: str
    count: int
    first: int
    last: int
    latest: Bottleneck  # its most recent occurrence (evidence and advice)


# -- the re-simulation ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Graph:
    ids: tuple[str, ...]  # record order
    agent: Mapping[str, str]
    deps: Mapping[str, tuple[str, ...]]


def _timed(records: Iterable[TaskRecord]) -> list[TaskRecord]:
    """The records that ran in this run, first per task id."""
    seen: set[str] = set()
    out: list[TaskRecord] = []
    for record in records:
        if _ran(record) and record.task_id not in seen:
            seen.add(record.task_id)
            out.append(record)
    return out


def _graph(timed: Sequence[TaskRecord]) -> _Graph:
    ids = tuple(r.task_id for r in timed)
    known = set(ids)
    raw = {r.task_id: tuple(dict.fromkeys(d for d in r.depends_on if d in known and d != r.task_id)) for r in timed}
    # Kahn's order; what is left sits on a cycle: keep only edges to tasks placed before it.
    indegree = {t: len(ds) for t, ds in raw.items()}
    users: dict[str, list[str]] = {t: [] for t in ids}
    for t, ds in raw.items():
        for d in ds:
            users[d].append(t)
    order = [t for t in ids if indegree[t] == 0]
    for t in order:  # grows while walked
        for u in users[t]:
            indegree[u] -= 1
            if indegree[u] == 0:
                order.append(u)
    deps = dict(raw)
    if len(order) < len(ids):
        placed = set(order)
        for t in ids:
            if t not in placed:
                deps[t] = tuple(d for d in raw[t] if d in placed)
                placed.add(t)
                order.append(t)
    return _Graph(ids=ids, agent={r.task_id: r.agent for r in timed}, deps=deps)


def _simulate(
    graph: _Graph,
    duration: Mapping[str, float],
    slots: int | None,
    caps: Mapping[str, int],
    drop: Mapping[str, frozenset[str]] | None = None,
) -> float:
    """Makespan of list-scheduling ``graph`` (see the module comment); ``drop`` removes edges."""
    if not graph.ids:
        return 0.0
    deps = graph.deps
    if drop:
        deps = {t: tuple(d for d in ds if d not in drop.get(t, ())) for t, ds in deps.items()}
    users: dict[str, list[str]] = {t: [] for t in graph.ids}
    for t in graph.ids:
        for d in deps[t]:
            users[d].append(t)
    # Remaining path, in reverse topological order (deps were made acyclic by _graph).
    indegree = {t: len(deps[t]) for t in graph.ids}
    order = [t for t in graph.ids if indegree[t] == 0]
    for t in order:
        for u in users[t]:
            indegree[u] -= 1
            if indegree[u] == 0:
                order.append(u)
    rank: dict[str, float] = {}
    for t in reversed(order):
        rank[t] = duration[t] + max((rank[u] for u in users[t]), default=0.0)
    seq = {t: i for i, t in enumerate(graph.ids)}

    waiting = {t: len(deps[t]) for t in graph.ids}
    ready: dict[str, list[tuple[float, int, str]]] = {}
    busy: dict[str, int] = {}
    offers: list[tuple[tuple[float, int, str], str]] = []  # (head of an agent's queue, agent); may be stale

    def offer(agent: str) -> None:
        queue = ready.get(agent)
        if queue and busy.get(agent, 0) < caps.get(agent, math.inf):
            heapq.heappush(offers, (queue[0], agent))

    def make_ready(t: str) -> None:
        agent = graph.agent[t]
        heapq.heappush(ready.setdefault(agent, []), (-rank[t], seq[t], t))
        offer(agent)

    for t in graph.ids:
        if waiting[t] == 0:
            make_ready(t)
    running: list[tuple[float, int, str]] = []
    now = 0.0
    limit = slots if slots is not None else math.inf
    while True:
        while offers and len(running) < limit:
            head, agent = heapq.heappop(offers)
            queue = ready[agent]
            if not queue or queue[0] != head or busy.get(agent, 0) >= caps.get(agent, math.inf):
                continue  # stale
            heapq.heappop(queue)
            busy[agent] = busy.get(agent, 0) + 1
            t = head[2]
            heapq.heappush(running, (now + duration[t], seq[t], t))
            offer(agent)
        if not running:
            return now
        now = running[0][0]
        while running and running[0][0] == now:
            _, _, t = heapq.heappop(running)
            agent = graph.agent[t]
            busy[agent] -= 1
            for u in users[t]:
                waiting[u] -= 1
                if waiting[u] == 0:
                    make_ready(u)
            offer(agent)


def _peak(intervals: Iterable[tuple[float, float]]) -> int:
    """Most half-open intervals overlapping at one instant (1 when only empty ones exist)."""
    events: list[tuple[float, int]] = []
    any_interval = False
    for start, end in intervals:
        any_interval = True
        if end > start:
            events.append((start, 1))
            events.append((end, -1))
    events.sort()
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    return max(peak, 1) if any_interval else 0


def _span(record: TaskRecord) -> tuple[float, float]:
    assert record.started_at is not None and record.ended_at is not None
    return record.started_at, record.ended_at


def _demand_span(record: TaskRecord) -> tuple[float, float]:
    """Ready (or started) to end: when the task wanted a slot."""
    start, end = _span(record)
    ready = record.ready_at if record.ready_at is not None and record.ready_at <= start else start
    return ready, end


def what_if(
    records: Sequence[TaskRecord],
    *,
    concurrency: int | None = None,
    agent_speedup: Mapping[str, float] | None = None,
    agent_concurrency: Mapping[str, int] | None = None,
) -> float:
    """Re-simulate the makespan of the recorded DAG with other limits or faster agents.

    ``concurrency`` is the global slot count (default: the run's measured peak concurrency);
    ``agent_speedup`` divides the durations of an agent's tasks (2.0 = twice as fast);
    ``agent_concurrency`` caps agents (default: none). List scheduling in critical-path order
    over the tasks that ran; see the module comment for the assumptions. Pure.
    """
    if concurrency is not None and concurrency < 1:
        raise ValueError(f"concurrency must be >= 1, got {concurrency!r}")
    speedup = dict(agent_speedup or {})
    for agent, factor in speedup.items():
        if not factor > 0 or math.isinf(factor):
            raise ValueError(f"agent_speedup[{agent!r}] must be a finite number > 0, got {factor!r}")
    caps = dict(agent_concurrency or {})
    for agent, cap in caps.items():
        if cap < 1:
            raise ValueError(f"agent_concurrency[{agent!r}] must be >= 1, got {cap!r}")
    timed = _timed(records)
    if not timed:
        return 0.0
    slots = concurrency if concurrency is not None else _peak(_span(r) for r in timed)
    duration = {r.task_id: r.duration / speedup.get(r.agent, 1.0) for r in timed}
    return _simulate(_graph(timed), duration, slots, caps)


@dataclass(frozen=True, slots=True)
class WhatIf:
    """One re-simulated change: ``makespan`` with it against ``baseline`` (the same replay without it)."""

    scenario: str
    setting: str
    makespan: float
    baseline: float

    @property
    def change(self) -> float | None:
        """Relative change of the makespan (-0.25: a quarter shorter); None for a zero baseline."""
        return self.makespan / self.baseline - 1 if self.baseline > 0 else None


def what_if_scenarios(records: Sequence[TaskRecord], *, max_parallel: int | None = None,
                      caps: Mapping[str, int] | None = None, agents: int = 3) -> list[WhatIf]:
    """The usual questions, answered by ``what_if``: twice ``max_parallel`` (default: the
    concurrency the run reached), each agent capped by ``caps`` (its ``max_concurrency``) with
    twice its cap, and each of the ``agents`` busiest agents twice as fast. Both sides come from
    the same replay (the measured durations, list-scheduled under ``max_parallel`` and ``caps``),
    so the change is the setting's alone. Pure."""
    timed = _timed(records)
    if not timed:
        return []
    caps = {agent: cap for agent, cap in (caps or {}).items() if cap >= 1}
    slots = max_parallel if max_parallel is not None and max_parallel >= 1 else _peak(_span(r) for r in timed)
    baseline = what_if(records, concurrency=slots, agent_concurrency=caps)
    out = [WhatIf(f"max_parallel {slots} -> {2 * slots}", "settings.max_parallel",
                  what_if(records, concurrency=2 * slots, agent_concurrency=caps), baseline)]
    busy: dict[str, float] = {}
    for r in timed:
        if not _pseudo(r.agent):
            busy[r.agent] = busy.get(r.agent, 0.0) + r.duration
    ranked = sorted(busy, key=lambda a: -busy[a])
    for agent in [a for a in ranked if a in caps][:agents]:
        wider = {**caps, agent: 2 * caps[agent]}
        out.append(WhatIf(f"{agent} max_concurrency {caps[agent]} -> {2 * caps[agent]}",
                          f"agents.{agent}.max_concurrency",
                          what_if(records, concurrency=slots, agent_concurrency=wider), baseline))
    for agent in ranked[:agents]:
        out.append(WhatIf(f"{agent} twice as fast", f"agents.{agent}.model",
                          what_if(records, concurrency=slots, agent_speedup={agent: 2.0}, agent_concurrency=caps),
                          baseline))
    return out


# -- classification ------------------------------------------------------------------------


def _step(task_id: str) -> str:
    return task_id.partition("[")[0]


def _limit_wait(record: TaskRecord) -> float:
    try:
        return max(0.0, float(record.meta.get("limit_wait", 0.0) or 0.0))
    except (TypeError, ValueError):
        return 0.0


def _int_meta(record: TaskRecord, key: str) -> int:
    try:
        return int(record.meta.get(key, 0) or 0)
    except (TypeError, ValueError):
        return 0


def _pct(part: float, whole: float) -> str:
    return f"{part / whole * 100:.0f}%" if whole > 0 else "n/a"


def _tokens(n: float) -> str:
    return f"{round(n):,}"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _pseudo(agent: str) -> bool:
    """The runtime's own pseudo-agents (``(aggregate)``) have no settings to change."""
    return agent.startswith("(")


_Cause = Literal["global", "agent", "other"]
_HANDOVER = 0.005  # seconds between a slot freed and the next task taking it, on a real clock


class _Run:
    """What every detector needs, computed once."""

    def __init__(self, records: Sequence[TaskRecord], report: RunReport, plan: Plan | None,
                 th: Thresholds) -> None:
        self.report = report
        self.plan = plan
        self.th = th
        self.timed = _timed(records)
        self.by_id = {r.task_id: r for r in self.timed}
        self.graph = _graph(self.timed)
        self.duration = {r.task_id: r.duration for r in self.timed}
        self.floor = max(th.min_seconds, th.min_share * report.makespan)
        self.by_agent: dict[str, list[TaskRecord]] = {}
        self.by_step: dict[str, list[TaskRecord]] = {}
        for r in self.timed:
            self.by_agent.setdefault(r.agent, []).append(r)
            self.by_step.setdefault(_step(r.task_id), []).append(r)

        settings = plan.spec.settings if plan is not None else None
        self.global_known: int | None = report.max_parallel or (settings.max_parallel if settings else None)
        self.peak = _peak(_span(r) for r in self.timed)
        self.global_cap = self.global_known or self.peak or None
        self.global_demand = _peak(_demand_span(r) for r in self.timed)
        self.agent_peak = {a: _peak(_span(r) for r in rs) for a, rs in self.by_agent.items()}
        self.agent_demand = {a: _peak(_demand_span(r) for r in rs) for a, rs in self.by_agent.items()}
        # The agent limit queue waits are judged against: the plan's, else the measured peak.
        self.agent_limit: dict[str, int | None] = {}
        for agent in self.by_agent:
            if plan is not None:
                spec = plan.spec.agents.get(agent)
                self.agent_limit[agent] = spec.max_concurrency if spec is not None else None
            else:
                self.agent_limit[agent] = self.agent_peak[agent]
        self.waits = self._attribute()
        caps: dict[str, int] = {}
        for agent, limit in self.agent_limit.items():
            if limit is not None and (plan is not None or self.waits[agent]["agent"] > 0):
                caps[agent] = limit
        self.caps = caps
        self.path_wait: dict[str, float] = {}
        self.path_busy: dict[str, float] = {}
        for step in report.critical_path:
            self.path_wait[step.agent] = self.path_wait.get(step.agent, 0.0) + step.queue_wait
            self.path_busy[step.agent] = self.path_busy.get(step.agent, 0.0) + step.duration
        self._base: float | None = None

    # -- helpers

    def significant(self, seconds: float) -> bool:
        return seconds > 0 and seconds >= self.floor

    def _attribute(self) -> dict[str, dict[_Cause, float]]:
        starts = sorted(r.started_at for r in self.timed if r.started_at is not None)
        ends = sorted(r.ended_at for r in self.timed if r.ended_at is not None)
        mine: dict[str, tuple[list[float], list[float]]] = {
            a: (sorted(_span(r)[0] for r in rs), sorted(_span(r)[1] for r in rs)) for a, rs in self.by_agent.items()
        }
        out: dict[str, dict[_Cause, float]] = {a: {"global": 0.0, "agent": 0.0, "other": 0.0} for a in self.by_agent}
        for r in self.timed:
            wait = r.queue_wait
            if wait <= 0:
                continue
            s, _ = _span(r)
            # Running just before s, counting a task that ended a moment earlier: on a real clock
            # the slot it freed is taken microseconds later, not at the same instant.
            freed = s - _HANDOVER
            everyone = bisect_left(starts, s) - bisect_left(ends, freed)
            a_starts, a_ends = mine[r.agent]
            own = bisect_left(a_starts, s) - bisect_left(a_ends, freed)
            limit = self.agent_limit[r.agent]
            cause: _Cause
            if self.global_known is not None and everyone >= self.global_known:
                cause = "global"
            elif limit is not None and own >= limit:
                cause = "agent"
            elif self.global_known is None and self.peak and everyone >= self.peak:
                cause = "global"
            else:
                cause = "other"
            out[r.agent][cause] += wait
        return out

    def base(self) -> float:
        if self._base is None:
            self._base = _simulate(self.graph, self.duration, self.global_cap, self.caps)
        return self._base

    def gain(self, *, duration: Mapping[str, float] | None = None, slots: int | None = None,
             caps: Mapping[str, int] | None = None, drop: Mapping[str, frozenset[str]] | None = None) -> float:
        """Simulated makespan saved by a change (durations overriding some tasks', limits, edges)."""
        if not self.timed:
            return 0.0
        dur = self.duration if duration is None else {**self.duration, **duration}
        new = _simulate(self.graph, dur, slots if slots is not None else self.global_cap,
                        self.caps if caps is None else caps, drop)
        return round(max(0.0, self.base() - new), 9)

    def step_spec_timeout(self, step: str, agent: str) -> tuple[str, float | None]:
        """The per-task timeout setting that applies to ``step`` (the task's, else its agent's) and its value."""
        if self.plan is not None:
            plan_step = self.plan.steps.get(step)
            task = plan_step.spec if plan_step is not None else None
            if task is not None and task.timeout is not None:
                return f"tasks[{step}].timeout", task.timeout
            spec = self.plan.spec.agents.get(agent)
            if spec is not None and spec.timeout is not None:
                return f"agents.{agent}.timeout", spec.timeout
        return f"agents.{agent}.timeout", None


# -- the detectors -------------------------------------------------------------------------


def _slow_task(run: _Run) -> list[Bottleneck]:
    path = run.report.critical_path
    length = run.report.critical_path_length
    if len(path) < 2 or length <= 0:
        return []
    service = {s.task_id: max(0.0, s.duration - _limit_wait(run.by_id[s.task_id])) if s.task_id in run.by_id
               else s.duration for s in path}
    top = path[0]
    for s in path[1:]:
        if service[s.task_id] > service[top.task_id]:
            top = s
    took = service[top.task_id]
    if not (took > run.th.slow_task_share * length and run.significant(took)):
        return []
    step, agent = _step(top.task_id), top.agent
    share = f"{format_seconds(took)} of the {format_seconds(length)} critical path ({_pct(took, length)})"
    siblings = [r for r in run.by_step.get(step, []) if r.task_id != top.task_id]
    if len(siblings) >= 2:
        typical = median(r.duration - _limit_wait(r) for r in siblings)
        if took > run.th.outlier_ratio * typical:
            lw = _limit_wait(run.by_id[top.task_id]) if top.task_id in run.by_id else 0.0
            severity = run.gain(duration={top.task_id: typical + lw})
            return [Bottleneck(
                kind="slow_task", severity=severity, subject=top.task_id,
                evidence=(f"{top.task_id} ({agent}) took {share}, against a median of {format_seconds(typical)} "
                          f"for the other {len(siblings)} instances of {step}"),
                recommendation=(f"enable agents.{agent}.hedge (a second request when a call is slower than usual) "
                                f"or set tasks[{step}].timeout so a stuck call is retried: {top.task_id} took "
                                f"{format_seconds(took)} where its siblings took {format_seconds(typical)}"),
                setting=f"agents.{agent}.hedge",
            )]
    zeroed = {r.task_id: _limit_wait(r) for r in run.by_step.get(step, [])}
    severity = run.gain(duration=zeroed)
    return [Bottleneck(
        kind="slow_task", severity=severity, subject=top.task_id,
        evidence=f"{top.task_id} ({agent}) took {share}",
        recommendation=(f"split tasks[{step}] into smaller tasks that can run in parallel (map:) or set "
                        f"agents.{agent}.model to a faster model: {top.task_id} is {share}"),
        setting=f"agents.{agent}.model",
    )]


def _queues(run: _Run) -> list[Bottleneck]:
    th = run.th
    out: list[Bottleneck] = []
    global_entries: list[tuple[float, str, Bottleneck]] = []
    for agent, stats in run.report.agents.items():
        if _pseudo(agent) or agent not in run.waits:
            continue
        causes = run.waits[agent]
        total = stats.queue_wait_total
        busy = stats.busy
        tasks = _plural(stats.tasks, "task")
        on_path = run.path_wait.get(agent, 0.0)
        limit = run.agent_limit.get(agent)
        # Enough for every task of the agent ready at once, but no more than the run's slots.
        wanted = min(run.agent_demand[agent], run.global_cap or run.agent_demand[agent])
        raised_to = max((limit or run.agent_peak[agent]) + 1, wanted)

        # agent_overload: its own limit held its tasks back while its slots were full.
        if run.significant(causes["agent"]) and limit is not None:
            first = min(_span(r)[0] for r in run.by_agent[agent])
            last = max(_span(r)[1] for r in run.by_agent[agent])
            span = last - first
            saturation = busy / (limit * span) if span > 0 else None
            if saturation is not None and saturation >= th.overload_utilisation:
                severity = max(run.gain(caps={**run.caps, agent: raised_to}), on_path)
                now = (f"from {limit} to {raised_to}" if run.plan is not None
                       else f"to {raised_to} (it never ran more than {limit} at once)")
                out.append(Bottleneck(
                    kind="agent_overload", severity=severity, subject=agent,
                    evidence=(f"agent {agent} kept its {limit} slot{'s' if limit != 1 else ''} "
                              f"{_pct(saturation, 1)} busy over its active {format_seconds(span)}; its {tasks} "
                              f"waited {format_seconds(causes['agent'])} in the queue for it "
                              f"({format_seconds(busy)} of work)"),
                    recommendation=(f"raise agents.{agent}.max_concurrency {now}: its tasks waited "
                                    f"{format_seconds(causes['agent'])} in the queue, with up to "
                                    f"{run.agent_demand[agent]} ready at once"),
                    setting=f"agents.{agent}.max_concurrency",
                ))
                continue

        # contention: queue wait dominates service time, overall or on the critical path.
        path_busy = run.path_busy.get(agent, 0.0)
        overall = run.significant(total) and total >= th.contention_ratio * busy
        critical = run.significant(on_path) and on_path >= th.contention_ratio * path_busy
        if not (overall or critical):
            continue
        cause: _Cause = max(("global", "agent", "other"), key=lambda c: causes[c])
        where = (f"its {tasks} waited {format_seconds(total)} in the queue against {format_seconds(busy)} of work"
                 if overall else
                 f"on the critical path its tasks waited {format_seconds(on_path)} in the queue against "
                 f"{format_seconds(path_busy)} of work")
        if overall and on_path > 0:
            where += f" ({format_seconds(on_path)} of the wait on the critical path)"
        if cause == "global":
            cap = run.global_cap or 1
            new = max(cap + 1, run.global_demand)
            severity = max(run.gain(slots=new), on_path)
            now = (f"from {run.global_known} to {new}" if run.global_known is not None
                   else f"to {new} (the run never had more than {cap} tasks running)")
            bottleneck = Bottleneck(
                kind="contention", severity=severity, subject=agent,
                evidence=f"agent {agent}: {where}, mostly for a free run slot ({format_seconds(causes['global'])})",
                recommendation=(f"raise settings.max_parallel {now}: up to {run.global_demand} tasks were ready "
                                f"or running at once and agent {agent}'s tasks waited "
                                f"{format_seconds(causes['global'])} for a slot"),
                setting="settings.max_parallel",
            )
            global_entries.append((causes["global"], agent, bottleneck))
            continue
        if cause == "agent":
            limit_now = limit or run.agent_peak[agent]
            severity = max(run.gain(caps={**run.caps, agent: raised_to}), on_path)
            now = (f"from {limit_now} to {raised_to}" if run.plan is not None
                   else f"to {raised_to} (it never ran more than {limit_now} at once)")
            out.append(Bottleneck(
                kind="contention", severity=severity, subject=agent,
                evidence=f"agent {agent}: {where}, mostly for one of its own slots",
                recommendation=(f"raise agents.{agent}.max_concurrency {now}: its tasks waited "
                                f"{format_seconds(causes['agent'])} for one of its slots"),
                setting=f"agents.{agent}.max_concurrency",
            ))
            continue
        waited: dict[str, float] = {}
        for r in run.by_agent[agent]:
            waited[_step(r.task_id)] = waited.get(_step(r.task_id), 0.0) + r.queue_wait
        step = max(waited, key=lambda s: waited[s])
        out.append(Bottleneck(
            kind="contention", severity=on_path, subject=agent,
            evidence=(f"agent {agent}: {where}, while neither the run's nor the agent's limit was full "
                      f"({format_seconds(causes['other'])})"),
            recommendation=(f"give tasks[{step}] a higher tier (tasks[{step}].tier) or shrink the reserve of "
                            f"the tiers above it in settings.tiers: its tasks waited "
                            f"{format_seconds(waited[step])} with free slots"),
            setting=f"tasks[{step}].tier",
        ))
    if global_entries:
        global_entries.sort(key=lambda e: (-e[0], e[1]))
        lead = global_entries[0][2]
        if len(global_entries) > 1:
            others = ", ".join(f"{a} {format_seconds(w)}" for w, a, _ in global_entries[1:])
            lead = replace(lead, evidence=f"{lead.evidence}; other agents waiting for run slots: {others}")
        out.append(lead)
    return out


def _limit_setting(run: _Run, agent: str) -> tuple[str, str]:
    """The setting that rate-limits ``agent`` and a note of its value ("" when no limit is declared).

    Mirrors the runner: every agent on one provider+model shares one limiter, merged from
    ``settings.resilience.limits[provider]``, then ``[provider/model]``, then each of those
    agents' ``rate_limit`` (a later layer wins); the environment (AGENTFLEET_LIMITS) is not
    visible here.
    """
    plan = run.plan
    spec = plan.spec.agents.get(agent) if plan is not None else None
    if plan is None or spec is None:
        providers = sorted({r.provider for r in run.by_agent.get(agent, []) if r.provider})
        where = f" for provider {providers[0]!r}" if len(providers) == 1 else ""
        return f"agents.{agent}.rate_limit", (f"rpm / tpm / max_concurrency, or the settings.resilience.limits "
                                              f"entry{where}")
    kind = spec.provider.strip().lower()
    limits = plan.spec.settings.resilience.limits
    layers = [(f"settings.resilience.limits[{k!r}]", limits[k]) for k in (kind, f"{kind}/{spec.model}") if k in limits]
    used = {agent}
    for step in plan.steps.values():
        used.add(step.agent)
        task = step.spec
        if task is not None and task.review is not None:
            used.add(task.review.agent)
        if task is not None and task.context is not None and task.context.summarizer:
            used.add(task.context.summarizer)
    sharing = [name for name, other in plan.spec.agents.items()  # in spec order, as the runner merges them
               if name in used and other.provider.strip().lower() == kind and other.model == spec.model]
    layers += [(f"agents.{name}.rate_limit", lim) for name in sharing
               if (lim := plan.spec.agents[name].rate_limit) is not None]
    for field in ("rpm", "tpm", "max_concurrency"):
        for base, lim in reversed(layers):
            value = getattr(lim, field)
            if value is not None:
                shared = "" if base.startswith(("settings.", f"agents.{agent}.")) else f", shared with {agent}"
                return f"{base}.{field}", f"now {value:g}{shared}"
    return f"settings.resilience.limits[{f'{kind}/{spec.model}'!r}]", ""  # no explicit limit: adaptive


def _rate_limits(run: _Run) -> list[Bottleneck]:
    out: list[Bottleneck] = []
    for agent, records in run.by_agent.items():
        if _pseudo(agent):
            continue
        waits = {r.task_id: _limit_wait(r) for r in records if _limit_wait(r) > 0}
        total = sum(waits.values())
        if not run.significant(total):
            continue
        worst = max(waits, key=lambda t: waits[t])
        severity = run.gain(duration={t: run.duration[t] - w for t, w in waits.items()})
        setting, note = _limit_setting(run, agent)
        if note:
            recommendation = (f"raise {setting} ({note}) or add agents.{agent}.fallbacks: its tasks waited "
                              f"{format_seconds(total)} on rate limits")
        else:  # no declared limit: the adaptive (AIMD) concurrency backed off after the provider's 429s
            recommendation = (f"add agents.{agent}.fallbacks or raise the provider's quota (then declare it in "
                              f"{setting}): its adaptive concurrency limit held calls back for "
                              f"{format_seconds(total)}")
            setting = f"agents.{agent}.fallbacks"
        out.append(Bottleneck(
            kind="rate_limit", severity=severity, subject=agent,
            evidence=(f"{_plural(len(waits), 'task')} of agent {agent} waited {format_seconds(total)} on rate limits "
                      f"or adaptive concurrency (longest: {worst}, {format_seconds(waits[worst])})"),
            recommendation=recommendation,
            setting=setting,
        ))
    return out


def _median_without(ordered: Sequence[float], value: float) -> float:
    """The median of sorted ``ordered`` with one occurrence of ``value`` left out (len >= 2)."""
    skip = bisect_left(ordered, value)
    n = len(ordered) - 1

    def at(j: int) -> float:
        return ordered[j] if j < skip else ordered[j + 1]

    mid = n // 2
    return at(mid) if n % 2 else (at(mid - 1) + at(mid)) / 2


def _context_bloat(run: _Run) -> list[Bottleneck]:
    th = run.th
    with_tokens = [r for r in run.timed if r.context_tokens > 0]
    by_step: dict[str, list[TaskRecord]] = {}
    for r in with_tokens:
        by_step.setdefault(_step(r.task_id), []).append(r)
    step_median = {s: median(r.context_tokens for r in rs) for s, rs in by_step.items()}
    out: list[Bottleneck] = []

    def found(subject: str, step: str, sent: float, reference: float, against: str,
              members: Sequence[TaskRecord]) -> None:
        shrink = {r.task_id: run.duration[r.task_id] * min(1.0, reference / r.context_tokens)
                  for r in members if r.context_tokens > reference}
        severity = run.gain(duration=shrink)
        task = run.plan.steps[step].spec if run.plan is not None and step in run.plan.steps else None
        budget = task.context.max_tokens if task is not None and task.context is not None else None
        action = (f"lower tasks[{step}].context.max_tokens (now {budget:,})" if budget
                  else f"set tasks[{step}].context.max_tokens")
        strategy = next((str(r.meta["context_strategy"]) for r in members if r.meta.get("context_strategy")), None)
        cut = f" (already cut by {strategy})" if strategy else ""
        out.append(Bottleneck(
            kind="context_bloat", severity=severity, subject=subject,
            evidence=f"{subject} was sent {_tokens(sent)} context tokens{cut}, {sent / reference:.1f}x {against}",
            recommendation=(f"{action} or pass fewer inputs in full (tasks[{step}].context.full, "
                            f"tasks[{step}].inputs): {_tokens(sent)} tokens vs a median of {_tokens(reference)}"),
            setting=f"tasks[{step}].context.max_tokens",
        ))

    # Instances far above their siblings.
    for step, members in by_step.items():
        if len(members) - 1 < th.bloat_min_peers:
            continue
        ordered = sorted(r.context_tokens for r in members)
        for r in members:
            reference = _median_without(ordered, r.context_tokens)
            if r.context_tokens >= th.bloat_min_tokens and r.context_tokens > th.bloat_ratio * reference:
                found(r.task_id, step, r.context_tokens, reference,
                      f"the median of the other {len(members) - 1} instances of {step}", [r])
    # Steps far above the run's other steps.
    for step, own in step_median.items():
        others = [m for s, m in step_median.items() if s != step]
        if len(others) < th.bloat_min_peers:
            continue
        reference = median(others)
        if own >= th.bloat_min_tokens and own > th.bloat_ratio * reference:
            members = by_step[step]
            subject = members[0].task_id if len(members) == 1 else step
            against = f"the median of the run's other {len(others)} steps"
            found(subject, step, own, reference, against, members)
    return out


def _false_parallelism(run: _Run) -> list[Bottleneck]:
    if run.plan is None:
        return []
    from ..plan import analyze_plan  # only with a plan: keeps analysis free of the plan's imports

    longest: dict[str, tuple[str, ...]] = {}
    phase_of: dict[str, str] = {}
    for fp in analyze_plan(run.plan).false_parallel:
        if len(fp.chain) > len(longest.get(fp.downstream, ())):
            longest[fp.downstream] = fp.chain
            phase_of[fp.downstream] = fp.phase
    out: list[Bottleneck] = []
    for downstream, chain in longest.items():
        upstream_steps = frozenset(chain[:-1])
        drop = {r.task_id: frozenset(d for d in run.graph.deps.get(r.task_id, ()) if _step(d) in upstream_steps)
                for r in run.by_step.get(downstream, [])}
        severity = run.gain(drop=drop) if any(drop.values()) else 0.0
        direct = chain[-2]
        out.append(Bottleneck(
            kind="false_parallelism", severity=severity, subject=downstream,
            evidence=(f"tasks {chain[0]} and {downstream} are both in phase {phase_of[downstream]!r} yet run one "
                      f"after the other ({' -> '.join(chain)})"),
            recommendation=(f"drop {direct} from tasks[{downstream}].depends_on if {downstream} does not need its "
                            f"output, or move {downstream} to a later phase (tasks[{downstream}].phase)"),
            setting=f"tasks[{downstream}].depends_on",
        ))
    return out


def _timed_out(record: TaskRecord) -> bool:
    error = (record.error or "").lower()
    return "timeout" in error or "timed out" in error


def _retries(run: _Run) -> list[Bottleneck]:
    typical: dict[str, float] = {}  # per step: the median service time of its clean first attempts
    for step, members in run.by_step.items():
        clean = [max(0.0, p.duration - _limit_wait(p)) for p in members
                 if p.attempts <= 1 and p.state == TaskState.DONE]
        if clean:
            typical[step] = median(clean)
    out: list[Bottleneck] = []
    for agent, records in run.by_agent.items():
        if _pseudo(agent):
            continue
        lost: dict[str, float] = {}
        extra = rejected = timeouts = 0
        for r in records:
            service = max(0.0, r.duration - _limit_wait(r))
            retried = r.attempts > 1
            if r.state == TaskState.FAILED and (retried or _timed_out(r)):
                lost[r.task_id] = service
            elif retried:
                peer = typical.get(_step(r.task_id))
                lost[r.task_id] = (max(0.0, service - peer) if peer is not None
                                   else service * (r.attempts - 1) / r.attempts)
            else:
                continue
            extra += max(0, r.attempts - 1)
            rejected += _int_meta(r, "rejected")
            timeouts += _timed_out(r)
        total = sum(lost.values())
        if not run.significant(total):
            continue
        severity = run.gain(duration={t: run.duration[t] - s for t, s in lost.items()})
        worst = max(lost, key=lambda t: lost[t])
        step = _step(worst)
        what = f"{_plural(extra, 'extra attempt')}" + (f", {_plural(timeouts, 'timeout')}" if timeouts else "")
        evidence = (f"agent {agent} lost {format_seconds(total)} to {what} over {_plural(len(lost), 'task')} "
                    f"(most: {worst}, {format_seconds(lost[worst])}, {_plural(run.by_id[worst].attempts, 'attempt')})")
        if timeouts:
            setting, value = run.step_spec_timeout(step, agent)
            now = f" (now {value:g} s)" if value is not None else ""
            recommendation = (f"raise {setting}{now} or split the work: {_plural(timeouts, 'task')} ended on a "
                              f"timeout and {format_seconds(total)} went to attempts that produced nothing")
        elif rejected * 2 >= max(1, extra):
            setting = f"tasks[{step}].prompt"
            recommendation = (f"tighten tasks[{step}].prompt (or its output_schema / validator) so answers pass "
                              f"the first time: {_plural(rejected, 'answer')} were rejected and redone, "
                              f"{format_seconds(total)} lost")
        else:
            setting = f"agents.{agent}.fallbacks"
            recommendation = (f"add agents.{agent}.fallbacks (another provider/model to fail over to) or fix what "
                              f"fails: {what} cost {format_seconds(total)}")
        out.append(Bottleneck(kind="retries", severity=severity, subject=agent, evidence=evidence,
                              recommendation=recommendation, setting=setting))
    return out


def classify_bottlenecks(
    records: Sequence[TaskRecord],
    report: RunReport,
    *,
    plan: Plan | None = None,
    thresholds: Thresholds = _DEFAULT_THRESHOLDS,
) -> list[Bottleneck]:
    """The run's bottlenecks, most severe first (see the module comment for every rule).

    ``report`` is ``analyze(records, ...)``; ``plan`` (the run's ``Plan``) adds the declared
    limits, the settings in force and false parallelism. Pure: no I/O, no clock.
    """
    run = _Run(records, report, plan, thresholds)
    found = [
        *_slow_task(run),
        *_queues(run),
        *_rate_limits(run),
        *_retries(run),
        *_context_bloat(run),
        *_false_parallelism(run),
    ]
    found.sort(key=lambda b: (-b.severity, _KIND_RANK.get(b.kind, len(_KIND_RANK)), b.subject))
    return found


def recurring(history: Sequence[Sequence[Bottleneck]], *, min_runs: int = 3) -> list[Pattern]:
    """Bottlenecks (same kind and subject) found in at least ``min_runs`` of the runs in ``history``.

    ``history`` holds one list per run, oldest first; a pattern's ``first`` and ``last`` are
    indices into it. Most frequent first, then most recent.
    """
    if min_runs < 1:
        raise ValueError(f"min_runs must be >= 1, got {min_runs!r}")
    seen: dict[tuple[str, str], list[int]] = {}
    latest: dict[tuple[str, str], Bottleneck] = {}
    for index, bottlenecks in enumerate(history):
        for b in bottlenecks:
            key = (b.kind, b.subject)
            runs = seen.setdefault(key, [])
            if not runs or runs[-1] != index:
                runs.append(index)
                latest[key] = b
    patterns = [
        Pattern(kind=latest[key].kind, subject=key[1], count=len(runs), first=runs[0], last=runs[-1],
                latest=latest[key])
        for key, runs in seen.items()
        if len(runs) >= min_runs
    ]
    patterns.sort(key=lambda p: (-p.count, -p.last, _KIND_RANK.get(p.kind, len(_KIND_RANK)), p.subject))
    return patterns
