"""Post-run metrics: where the time of a run went, computed from its task records.

# Design
# ``analyze`` is a pure function of the records (no I/O, no clock), so the same numbers
# come out of a live run, a stored run and a hand-built test fixture.
#
# Which records count for what:
#   * A task *ran in this run* when it has both ``started_at`` and ``ended_at`` (with
#     ``ended_at >= started_at``) and is not ``resumed``. Its final state may be done,
#     failed, cancelled mid-flight or interrupted; skipped tasks and tasks cancelled before
#     they started have no start time and so never count. Only these tasks feed the
#     timing numbers: makespan, sum of task times, peak concurrency, critical path,
#     per-agent busy time and queue waits.
#   * ``resumed`` tasks finished in an earlier run of the same workflow; their times are
#     on that run's clock, so they are left out of every timing and token number of this
#     run and only counted (``counts`` by state and ``tasks_resumed``).
#   * Tokens and retries are summed over every non-resumed record: a task that failed or
#     was cancelled still spent them.
#
# Definitions (seconds are on the run's clock, relative to its start):
#   makespan          last ``ended_at`` - first ``started_at`` over tasks that ran.
#   total_task_time   sum of the durations (``ended_at - started_at``) of tasks that ran:
#                     what a strictly sequential run would have taken.
#   speedup           total_task_time / makespan (None when the makespan is 0).
#   peak_concurrency  the largest number of tasks running at one instant, from a sweep
#                     over the half-open intervals [started_at, ended_at): a task that
#                     starts exactly when another ends does not overlap it. Zero-length
#                     tasks count as one running task when nothing else overlaps.
#   efficiency        speedup / min(max_parallel, peak_concurrency), or speedup /
#                     peak_concurrency when max_parallel is not given: the share of the
#                     parallelism the run actually used that did useful work (1.0 means
#                     every slot in use was busy for the whole makespan). None when
#                     speedup is None or no task ran.
#   critical path     the measured chain that ended the run: start at the task that
#                     finished last; repeatedly step to the dependency (``depends_on``
#                     holds instance ids) that finished last, among dependencies that ran
#                     in this run; stop at a task with none. Ties go to the first in
#                     record order (for the end) or in ``depends_on`` order (for a step).
#                     Its length is the sum of the durations on the path; its queue wait
#                     the sum of their queue waits (``started_at - ready_at``), also shown
#                     as a share of the makespan.
#   utilisation       per agent, busy time / makespan: the mean number of that agent's
#                     instances at work, so it can exceed 1 when an agent runs tasks
#                     concurrently.
#   static comparison when any record has ``expected_latency > 0``: the longest path
#                     through the dependency graph of the non-resumed records weighted by
#                     ``expected_latency`` (the plan's predicted critical path), against
#                     the measured one. Expected latencies are taken to be unscaled
#                     (as declared in the spec), so the prediction for this run is
#                     ``predicted_length * latency_scale``. Ties at the end of the
#                     predicted path go to the task latest in dependency order.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._types import TaskRecord, TaskState

__all__ = [
    "AgentStats",
    "PathStep",
    "RunReport",
    "StaticComparison",
    "TaskContext",
    "analyze",
]

# Canonical order for ``RunReport.counts``; states not listed follow, sorted.
_STATE_ORDER = (
    TaskState.DONE,
    TaskState.FAILED,
    TaskState.SKIPPED,
    TaskState.CANCELLED,
    TaskState.INTERRUPTED,
    TaskState.RUNNING,
    TaskState.READY,
    TaskState.PENDING,
)


@dataclass(frozen=True, slots=True)
class PathStep:
    """One task on the measured critical path, with its service time and queue wait."""

    task_id: str
    agent: str
    duration: float
    queue_wait: float
    started_at: float
    ended_at: float


@dataclass(frozen=True, slots=True)
class AgentStats:
    """What one agent did in the run: its tasks, busy time, queue waits and tokens.

    ``tasks`` counts the agent's tasks that ran in this run; the queue wait figures are
    over those tasks. ``utilisation`` is busy / makespan (None when the makespan is 0).
    """

    agent: str
    tasks: int
    busy: float
    queue_wait_total: float
    queue_wait_mean: float
    queue_wait_max: float
    utilisation: float | None
    tokens_in: int
    tokens_out: int


@dataclass(frozen=True, slots=True)
class StaticComparison:
    """The plan's predicted critical path (from expected latencies) against the measured one.

    ``predicted_length`` is in unscaled seconds; ``predicted_scaled`` is what this run
    should take at best with its ``latency_scale``. Ratios above 1 mean slower than
    predicted; they are None when the prediction is 0.
    """

    predicted_path: tuple[str, ...]
    predicted_length: float
    predicted_scaled: float
    measured_length: float
    makespan_ratio: float | None
    path_ratio: float | None
    same_path: bool


@dataclass(frozen=True, slots=True)
class TaskContext:
    """Context tokens one task was sent, against the naive whole-history baseline."""

    task_id: str
    sent: int
    naive: int
    strategy: str | None = None  # truncate / summarize when a token budget cut it

    @property
    def reduction(self) -> float | None:
        return (1 - self.sent / self.naive) if self.naive else None


@dataclass(frozen=True, slots=True)
class RunReport:
    """Everything ``analyze`` measured about one run; see the module comment for definitions.

    Undefined ratios (a zero makespan, nothing ran) are None rather than 0 or infinity.
    """

    makespan: float
    first_start: float | None
    last_end: float | None
    total_task_time: float
    speedup: float | None
    peak_concurrency: int
    max_parallel: int | None
    efficiency: float | None
    critical_path: tuple[PathStep, ...]
    critical_path_length: float
    critical_path_queue_wait: float
    critical_path_queue_share: float | None
    agents: Mapping[str, AgentStats]
    time_to_first_result: float | None
    tokens_in: int
    tokens_out: int
    counts: Mapping[str, int]
    tasks_total: int
    tasks_ran: int
    tasks_resumed: int
    retries: int
    static: StaticComparison | None
    latency_scale: float
    providers: tuple[str, ...]
    context_tokens: int = 0
    naive_tokens: int = 0
    context: tuple[TaskContext, ...] = ()
    scores: Mapping[str, float] = field(default_factory=dict)
    rejections: int = 0
    pools: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: per provider+model (identity): calls, failures, 429s, breaker, adaptive limit, waits, hedges
    resilience: tuple[Mapping[str, Any], ...] = ()
    #: the response cache: hits (by level), coalesced calls, tokens and seconds saved
    cache: Mapping[str, Any] = field(default_factory=dict)
    #: seconds tasks spent waiting on rate limits / adaptive concurrency, in all and per agent
    limit_wait: float = 0.0
    limit_wait_by_agent: Mapping[str, float] = field(default_factory=dict)
    hedges: int = 0
    fallbacks: int = 0
    #: seconds tasks lost to retries (failed attempts, beyond their limiter wait, and their backoff) and to
    #: attempts that timed out (beyond their limiter wait; not counted as retry time too)
    retry_time: float = 0.0
    timeout_time: float = 0.0
    #: US dollars the provider calls cost (None: no model had a price) and the cache saved
    cost_usd: float | None = None
    saved_usd: float = 0.0

    @property
    def context_reduction(self) -> float | None:
        """Share of the naive baseline's context tokens not sent (0-1); None if nothing was measured."""
        return (1 - self.context_tokens / self.naive_tokens) if self.naive_tokens else None

    @property
    def mean_score(self) -> float | None:
        """The reviewers' mean score (0-10) over reviewed tasks."""
        return sum(self.scores.values()) / len(self.scores) if self.scores else None

    @property
    def tasks_done(self) -> int:
        """Tasks that finished successfully, resumed ones included."""
        return self.counts.get(TaskState.DONE, 0)

    @property
    def tasks_failed(self) -> int:
        """Tasks that failed for good."""
        return self.counts.get(TaskState.FAILED, 0)

    @property
    def simulated(self) -> bool:
        """Whether the ``sim`` provider produced any of this run (reports must say so)."""
        return "sim" in self.providers

    @property
    def unscaled_makespan(self) -> float:
        """The makespan with sim latencies at full scale (makespan / latency_scale)."""
        return self.makespan / self.latency_scale


def _ran(record: TaskRecord) -> bool:
    """Whether the record's timing belongs to this run (see the module comment)."""
    return (
        not record.resumed
        and record.started_at is not None
        and record.ended_at is not None
        and record.ended_at >= record.started_at
    )


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator > 0 else None


def _peak_concurrency(timed: Sequence[TaskRecord]) -> int:
    events: list[tuple[float, int]] = []
    for record in timed:
        assert record.started_at is not None and record.ended_at is not None
        if record.ended_at > record.started_at:
            events.append((record.started_at, 1))
            events.append((record.ended_at, -1))
    # Ends (-1) sort before starts (+1) at the same instant: intervals are half-open.
    events.sort()
    running = peak = 0
    for _, delta in events:
        running += delta
        peak = max(peak, running)
    if timed and peak == 0:
        peak = 1  # only zero-length tasks ran
    return peak


def _critical_path(timed: Sequence[TaskRecord]) -> tuple[PathStep, ...]:
    if not timed:
        return ()
    by_id = {r.task_id: r for r in timed}

    def end(record: TaskRecord) -> float:
        assert record.ended_at is not None
        return record.ended_at

    current: TaskRecord | None = timed[0]
    for record in timed[1:]:
        assert current is not None
        if end(record) > end(current):
            current = record
    steps: list[PathStep] = []
    seen: set[str] = set()
    while current is not None and current.task_id not in seen:
        seen.add(current.task_id)
        assert current.started_at is not None and current.ended_at is not None
        steps.append(
            PathStep(
                task_id=current.task_id,
                agent=current.agent,
                duration=current.duration,
                queue_wait=current.queue_wait,
                started_at=current.started_at,
                ended_at=current.ended_at,
            )
        )
        latest: TaskRecord | None = None
        for dep_id in current.depends_on:
            dep = by_id.get(dep_id)
            if dep is not None and (latest is None or end(dep) > end(latest)):
                latest = dep
        current = latest
    steps.reverse()
    return tuple(steps)


def _predicted_path(records: Sequence[TaskRecord]) -> tuple[tuple[str, ...], float]:
    """Longest path by ``expected_latency`` (Kahn's order, so no recursion limit)."""
    by_id: dict[str, TaskRecord] = {}
    for record in records:
        by_id.setdefault(record.task_id, record)
    deps = {tid: [d for d in r.depends_on if d in by_id and d != tid] for tid, r in by_id.items()}
    indegree = {tid: len(ds) for tid, ds in deps.items()}
    children: dict[str, list[str]] = {tid: [] for tid in by_id}
    for tid, ds in deps.items():
        for dep in ds:
            children[dep].append(tid)
    order = [tid for tid in by_id if indegree[tid] == 0]
    best: dict[str, float] = {}
    prev: dict[str, str | None] = {}
    for tid in order:  # ``order`` grows while we walk it
        chosen: str | None = None
        for dep in deps[tid]:
            if dep in best and (chosen is None or best[dep] > best[chosen]):
                chosen = dep
        best[tid] = by_id[tid].expected_latency + (best[chosen] if chosen is not None else 0.0)
        prev[tid] = chosen
        for child in children[tid]:
            indegree[child] -= 1
            if indegree[child] == 0:
                order.append(child)
    if not best:
        return (), 0.0
    # Ties at the end go to the task latest in dependency order, so a zero-latency
    # tail (a release step with no estimate) stays on the predicted path.
    last = order[0]
    for tid in order:
        if tid in best and best[tid] >= best[last]:
            last = tid
    path: list[str] = []
    node: str | None = last
    while node is not None:
        path.append(node)
        node = prev[node]
    path.reverse()
    return tuple(path), best[last]


def _agent_stats(
    records: Sequence[TaskRecord], timed: Sequence[TaskRecord], makespan: float
) -> dict[str, AgentStats]:
    ran: dict[str, list[TaskRecord]] = {}
    spent: dict[str, list[TaskRecord]] = {}
    for record in records:
        ran.setdefault(record.agent, [])
        spent.setdefault(record.agent, [])
        if not record.resumed:
            spent[record.agent].append(record)
    for record in timed:
        ran[record.agent].append(record)
    out: dict[str, AgentStats] = {}
    for name in sorted(ran):
        waits = [r.queue_wait for r in ran[name]]
        busy = sum(r.duration for r in ran[name])
        total_wait = sum(waits)
        out[name] = AgentStats(
            agent=name,
            tasks=len(waits),
            busy=busy,
            queue_wait_total=total_wait,
            queue_wait_mean=total_wait / len(waits) if waits else 0.0,
            queue_wait_max=max(waits, default=0.0),
            utilisation=_ratio(busy, makespan),
            tokens_in=sum(r.tokens_in for r in spent[name]),
            tokens_out=sum(r.tokens_out for r in spent[name]),
        )
    return out


def _counts(records: Sequence[TaskRecord]) -> dict[str, int]:
    raw: dict[str, int] = {}
    for record in records:
        raw[record.state] = raw.get(record.state, 0) + 1
    ordered = {s: raw[s] for s in _STATE_ORDER if s in raw}
    ordered.update({s: raw[s] for s in sorted(raw) if s not in ordered})
    return ordered


def analyze(
    records: Sequence[TaskRecord],
    *,
    max_parallel: int | None = None,
    latency_scale: float = 1.0,
    providers: Iterable[str] = (),
    pools: Mapping[str, Mapping[str, Any]] | None = None,
    resilience: Sequence[Mapping[str, Any]] | None = None,
    cache: Mapping[str, Any] | None = None,
) -> RunReport:
    """Measure a run from its task records: makespan, speedup, critical path, agents, tokens.

    ``max_parallel`` is the run's global concurrency limit (it caps the parallelism
    efficiency is measured against); ``latency_scale`` and ``providers`` are carried into
    the report so it can label simulated, scaled-down runs. The providers named in the
    records are added to ``providers``. Pure: no I/O, no clock.
    """
    if latency_scale <= 0:
        raise ValueError(f"latency_scale must be > 0, got {latency_scale!r}")
    if max_parallel is not None and max_parallel < 1:
        raise ValueError(f"max_parallel must be >= 1, got {max_parallel!r}")

    timed = [r for r in records if _ran(r)]
    live = [r for r in records if not r.resumed]
    starts = [r.started_at for r in timed if r.started_at is not None]
    ends = [r.ended_at for r in timed if r.ended_at is not None]
    first_start = min(starts) if starts else None
    last_end = max(ends) if ends else None
    makespan = last_end - first_start if first_start is not None and last_end is not None else 0.0

    total_task_time = sum(r.duration for r in timed)
    speedup = _ratio(total_task_time, makespan)
    peak = _peak_concurrency(timed)
    used = min(max_parallel, peak) if max_parallel is not None else peak
    efficiency = speedup / used if speedup is not None and used > 0 else None

    path = _critical_path(timed)
    path_length = sum(step.duration for step in path)
    path_wait = sum(step.queue_wait for step in path)

    done_ends = [r.ended_at for r in timed if r.state == TaskState.DONE and r.ended_at is not None]

    static: StaticComparison | None = None
    if any(r.expected_latency > 0 for r in live):
        predicted_path, predicted_length = _predicted_path(live)
        predicted_scaled = predicted_length * latency_scale
        static = StaticComparison(
            predicted_path=predicted_path,
            predicted_length=predicted_length,
            predicted_scaled=predicted_scaled,
            measured_length=path_length,
            makespan_ratio=_ratio(makespan, predicted_scaled),
            path_ratio=_ratio(path_length, predicted_scaled),
            same_path=_steps_of(predicted_path) == _steps_of(step.task_id for step in path),
        )

    all_providers = set(providers) | {r.provider for r in records if r.provider}
    return RunReport(
        makespan=makespan,
        first_start=first_start,
        last_end=last_end,
        total_task_time=total_task_time,
        speedup=speedup,
        peak_concurrency=peak,
        max_parallel=max_parallel,
        efficiency=efficiency,
        critical_path=path,
        critical_path_length=path_length,
        critical_path_queue_wait=path_wait,
        critical_path_queue_share=_ratio(path_wait, makespan),
        agents=_agent_stats(records, timed, makespan),
        time_to_first_result=min(done_ends) if done_ends else None,
        tokens_in=sum(r.tokens_in for r in live),
        tokens_out=sum(r.tokens_out for r in live),
        counts=_counts(records),
        tasks_total=len(records),
        tasks_ran=len(timed),
        tasks_resumed=sum(1 for r in records if r.resumed),
        retries=sum(max(0, r.attempts - 1) for r in live),
        static=static,
        latency_scale=latency_scale,
        providers=tuple(sorted(all_providers)),
        context_tokens=sum(r.context_tokens for r in live if r.naive_tokens),
        naive_tokens=sum(r.naive_tokens for r in live if r.naive_tokens),
        context=tuple(TaskContext(r.task_id, r.context_tokens, r.naive_tokens, r.meta.get("context_strategy"))
                      for r in live if r.naive_tokens),
        scores={r.task_id: r.score for r in records if r.score is not None},
        rejections=sum(int(r.meta.get("rejected", 0)) for r in live),
        pools=dict(pools or {}),
        resilience=tuple(resilience or ()),
        cache=dict(cache or {}),
        limit_wait=sum(float(r.meta.get("limit_wait", 0.0)) for r in live),
        limit_wait_by_agent=_limit_waits(live),
        hedges=sum(int(r.meta.get("hedges", 0)) for r in live),
        fallbacks=sum(int(r.meta.get("fallbacks", 0)) for r in live),
        retry_time=sum(float(r.meta.get("retry_s", 0.0)) for r in live),
        timeout_time=sum(float(r.meta.get("timeout_s", 0.0)) for r in live),
        cost_usd=_cost(live),
        saved_usd=sum(float(r.meta.get("saved_usd", 0.0)) for r in live),
    )


def _cost(records: Sequence[TaskRecord]) -> float | None:
    costs = [float(r.meta["cost_usd"]) for r in records if "cost_usd" in r.meta]
    return sum(costs) if costs else None


def _limit_waits(records: Iterable[TaskRecord]) -> dict[str, float]:
    waits: dict[str, float] = {}
    for r in records:
        wait = r.meta.get("limit_wait")
        if wait:
            waits[r.agent] = waits.get(r.agent, 0.0) + float(wait)
    return waits


def _steps_of(task_ids: Iterable[str]) -> tuple[str, ...]:
    """The step ids along a path of instances (``implement[2]`` -> ``implement``).

    With equal expected latencies every instance of a fan-out ties in the prediction, so
    the chain is compared by step, not by which instance happened to be slowest.
    """
    return tuple(t.partition("[")[0] for t in task_ids)
