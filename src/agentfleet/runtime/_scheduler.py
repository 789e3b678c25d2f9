"""The event-driven DAG scheduler: a task starts the moment its last dependency finishes.

# Design
# There are no phases or supersteps. Each step of the plan is a *group* of instances
# (one, or one per mapped item). Completing an instance decrements counters on what
# waits for it and pushes newly ready instances onto per-agent ready heaps; ``_pump``
# then starts as many as the limits allow, synchronously, in the completion callback,
# so no time passes between "dependency done" and "dependant started".
#
# Admission order when slots are scarce: higher tier first, then (policy
# ``critical_path``) the longest remaining path to the end of the workflow, measured
# step latencies replacing expected ones as they become known, else FIFO order.
# Limits: a global ``max_parallel``, a per-agent ``max_concurrency`` and tier
# reservations (a tier's reserved slots cannot be taken by lower tiers).
#
# Dependencies between groups: a mapped step reading another mapped step *per item*
# (``zip``) waits only for its twin instance; every other dependency waits for the
# whole upstream group (fan-in). Dynamic fan-outs are expanded when their source
# finishes. Fan-out modes ``first`` and ``quorum`` finish a group early and cancel
# the losers. On failure, ``fail_fast`` cancels everything; ``continue`` skips only
# what depends on the failure.
#
# The scheduler does not know what a task *is*: it calls ``execute(instance)`` and
# treats a return as success and an exception as failure. Results, retries, timeouts,
# the store and providers live in the runner.
"""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from .._types import Clock, LoopClock, TaskRecord, TaskState
from ..plan import Plan, Step, remaining_path

__all__ = ["Instance", "Scheduler", "SchedulerStats", "TaskEvent"]


class Instance:
    """One runnable task instance (``step`` or ``step[i]``)."""

    __slots__ = ("group", "id", "index", "item", "pruned", "record", "step", "task", "twin_users", "waiting")

    def __init__(self, iid: str, step: Step, index: int | None, item: Any, record: TaskRecord,
                 group: _Group) -> None:
        self.id = iid
        self.step = step
        self.index = index
        self.item = item
        self.record = record
        self.waiting = 0  # per-instance dependencies not yet done (zip twin)
        self.twin_users: list[Instance] = []
        self.group = group
        self.task: asyncio.Task[None] | None = None
        self.pruned = False  # skipped because a race/quorum it belonged to was already won


class _Group:
    __slots__ = (
        "complete",
        "done",
        "expanded",
        "failed",
        "final",
        "instances",
        "pending",
        "pruned",
        "seq",
        "step",
        "succeeded",
        "users",
        "zip_users",
    )

    def __init__(self, step: Step) -> None:
        self.step = step
        self.instances: list[Instance] = []
        self.expanded = False
        self.pending = 0  # group-level dependencies not complete
        self.pruned = 0  # instances skipped because a race/quorum upstream was already won
        self.done = 0
        self.failed = 0
        self.final = 0
        self.complete = False
        self.succeeded = False
        self.users: list[_Group] = []  # groups waiting for this whole group
        self.zip_users: list[_Group] = []  # groups mapping per item over this one


class TaskEvent(NamedTuple):
    """A state change of a task instance, as the scheduler saw it (immutable; a NamedTuple
    because one is built per state change, three per task, and a frozen dataclass costs
    three times as much to build)."""

    kind: str  # ready | started | done | failed | skipped | cancelled | interrupted
    instance: Instance
    time: float


@dataclass(frozen=True, slots=True)
class SchedulerStats:
    """Counters of a scheduler, for telemetry and the progress display."""

    total: int
    pending: int
    ready: int
    running: int
    done: int
    failed: int
    skipped: int
    cancelled: int
    peak_running: int


Execute = Callable[[Instance], Awaitable[None]]
Listener = Callable[[TaskEvent], None]


class Scheduler:
    """Runs a Plan's instances through ``execute`` as fast as dependencies and limits allow."""

    def __init__(
        self,
        plan: Plan,
        execute: Execute,
        *,
        clock: Clock | None = None,
        max_parallel: int | None = None,
        policy: str | None = None,
        admission: str | None = None,
        previous: Mapping[str, TaskRecord] | None = None,
        outputs: Callable[[Instance], Any] | None = None,
        agent_limits: Mapping[str, float] | None = None,
    ) -> None:
        settings = plan.spec.settings
        self.plan = plan
        self._execute = execute
        self._clock = clock or LoopClock()
        self.max_parallel = max_parallel or settings.max_parallel
        self.policy = policy or settings.policy
        self.admission = admission or settings.admission
        self._previous = dict(previous or {})
        self._output_of = outputs or (lambda inst: inst.record.output)
        self._listeners: list[Listener] = []
        self._groups: dict[str, _Group] = {sid: _Group(plan.steps[sid]) for sid in plan.order}
        self.instances: dict[str, Instance] = {}
        # Agents of the spec, plus the pseudo-agent of agent-less (aggregate) steps.
        agents = list(plan.spec.agents) + sorted({s.agent for s in plan.steps.values()} - set(plan.spec.agents))
        self._ready: dict[str, list[tuple[Any, ...]]] = {name: [] for name in agents}
        self._ready_count = 0
        self._agent_running: dict[str, int] = {name: 0 for name in agents}
        self._agent_limit: dict[str, float] = {name: math.inf for name in agents}
        for name, a in plan.spec.agents.items():
            self._agent_limit[name] = a.max_concurrency or math.inf
        for name, limit in (agent_limits or {}).items():
            # e.g. a pool's ``max``: admitting more would only park tasks in the pool's queue
            self._agent_limit[name] = min(self._agent_limit.get(name, math.inf), limit)
        self._base_limit = dict(self._agent_limit)  # before any resource-guard throttling
        self._held_below: int | None = None  # tiers with a lower priority wait (resource guard)
        tiers = settings.tiers
        self._tier_running: dict[str, int] = {t: 0 for t in tiers}
        self._tier_reserve = {
            t: (max(1, math.floor(spec.reserve * self.max_parallel)) if spec.reserve > 0 else 0)
            for t, spec in tiers.items()
        }
        self._tier_priority = {t: spec.priority for t, spec in tiers.items()}
        self._has_reserve = any(self._tier_reserve.values())
        # A tier's reservation holds only while it still has work to come (open groups).
        self._tier_open: dict[str, int] = {t: 0 for t in tiers}
        for sid in plan.order:
            self._tier_open[plan.steps[sid].tier] += 1
        self._rank = remaining_path(plan)
        self._scale = settings.latency_scale
        self._measured: dict[str, list[float]] = {}  # step -> [sum of durations, count]
        self._rerank = len(plan.order) <= 500
        self._rank_stale = False
        self._deps_cache: dict[str, tuple[str, ...]] = {}
        self._fan_in = {
            sid for sid, st in plan.steps.items()
            if any(plan.steps[d].mapped and not (st.map_kind == "zip" and d == st.map_source) for d in st.deps)
        }
        self._seq = 0
        self.running = 0
        self.peak_running = 0
        self.peak_ready = 0
        self._counts = {s: 0 for s in (TaskState.DONE, TaskState.FAILED, TaskState.SKIPPED, TaskState.CANCELLED)}
        self._t0 = 0.0
        self._time: Callable[[], float] = self._clock.now
        self._finished: asyncio.Future[None] | None = None
        self._open_groups = len(self._groups)
        self.failure: tuple[str, str] | None = None  # first failure: (instance id, error)
        self.fatal: Exception | None = None  # an event listener (store, display) failed
        self._aborting = False
        self._stopping = False
        self._doomed: list[asyncio.Task[None]] = []

    # -- public -------------------------------------------------------------------

    def subscribe(self, listener: Listener) -> None:
        """Call ``listener`` synchronously on every task state change."""
        self._listeners.append(listener)

    def now(self) -> float:
        """Seconds since the run started, on the run's clock."""
        return self._time() - self._t0

    def throttle(self, agents: Iterable[str], factor: float, hold_below: int | None) -> None:
        """Resource pressure: ``agents`` (CPU-bound ones) get ``factor`` of their usual parallelism
        (of ``max_parallel`` when unlimited; never below 1), and tiers with a priority below
        ``hold_below`` start nothing new (unless nothing runs at all). ``factor=1, hold_below=None``
        lifts it. Running tasks are never stopped."""
        for name in agents:
            base = self._base_limit.get(name, math.inf)
            if factor >= 1.0:
                self._agent_limit[name] = base
            else:
                ceiling = base if base != math.inf else float(self.max_parallel)
                self._agent_limit[name] = max(1.0, math.floor(ceiling * factor))
        self._held_below = hold_below
        if self._finished is not None and not self._finished.done():
            self._pump()

    def statistics(self) -> SchedulerStats:
        total = len(self.instances)
        done = self._counts[TaskState.DONE]
        failed = self._counts[TaskState.FAILED]
        skipped = self._counts[TaskState.SKIPPED]
        cancelled = self._counts[TaskState.CANCELLED]
        return SchedulerStats(
            total=total,
            pending=total - done - failed - skipped - cancelled - self.running - self._ready_count,
            ready=self._ready_count,
            running=self.running,
            done=done,
            failed=failed,
            skipped=skipped,
            cancelled=cancelled,
            peak_running=self.peak_running,
        )

    def outputs(self, step_id: str) -> list[Any]:
        """Outputs of a step's finished instances, in item order (what a fan-in receives)."""
        return [self._output_of(i) for i in self._groups[step_id].instances if i.record.state == TaskState.DONE]

    def finished(self, step_id: str) -> list[Instance]:
        """A step's instances that finished successfully, in item order."""
        return [i for i in self._groups[step_id].instances if i.record.state == TaskState.DONE]

    def twin(self, inst: Instance) -> Instance:
        """The instance a per-item (zip) instance waits on."""
        return self._groups[inst.step.map_source].instances[inst.index]  # type: ignore[index]

    def expected_total(self) -> int:
        """Instances known now plus the expected size of fan-outs not yet expanded."""
        total = len(self.instances)
        for group in self._groups.values():
            if not group.expanded:
                total += group.step.expected_count
        return total

    async def run(self, t0: float | None = None) -> None:
        """Run to completion. Cancelling this coroutine cancels every running task."""
        self._loop = asyncio.get_running_loop()
        if type(self._clock) is LoopClock:
            self._time = asyncio.get_running_loop().time  # skip the per-call loop lookup
        self._t0 = self._clock.now() if t0 is None else t0
        self._finished = asyncio.get_running_loop().create_future()
        for group in self._groups.values():
            for dep in group.step.deps:
                upstream = self._groups[dep]
                if group.step.map_kind == "zip" and dep == group.step.map_source:
                    upstream.zip_users.append(group)
                else:
                    upstream.users.append(group)
                    group.pending += 1
        for sid in self.plan.order:
            group = self._groups[sid]
            if group.step.map_kind in ("none", "static"):
                self._expand(group, list(group.step.static_items) if group.step.mapped else [None])
        self._pump()
        if self._open_groups == 0 and not self._finished.done():
            self._finished.set_result(None)
        try:
            await self._finished
        except asyncio.CancelledError:
            self._stopping = True  # a cancelled task must not start queued work on its way out
            await self._cancel_running(TaskState.INTERRUPTED)
            raise
        finally:
            if self._aborting:
                for task in self._doomed:
                    try:
                        await task
                    except (asyncio.CancelledError, Exception):  # noqa: BLE001 - torn down on purpose
                        pass

    # -- graph ----------------------------------------------------------------------

    def _expand(self, group: _Group, items: list[Any]) -> None:
        step = group.step
        group.expanded = True
        if step.map_kind == "zip":
            source = self._groups[step.map_source]  # type: ignore[index]
            twins = source.instances
        else:
            twins = []
        for n, item in enumerate(items):
            iid = step.id if not step.mapped else f"{step.id}[{n}]"
            twin = twins[n] if twins else None
            deps = self._instance_deps(step, twin)
            record = TaskRecord(task_id=iid, agent=step.agent, depends_on=deps, tier=step.tier,
                                expected_latency=step.expected_latency / self._scale)
            inst = Instance(iid, step, n if step.mapped else None, item, record, group)
            group.instances.append(inst)
            self.instances[iid] = inst
            if twin is not None and twin.record.state != TaskState.DONE:
                inst.waiting = 1
                twin.twin_users.append(inst)
        for user in group.zip_users:
            self._expand(user, [twin.item for twin in group.instances])
        if not items:
            self._check_group(group)
            return
        for inst in list(group.instances):
            if group.complete:
                break
            prev = self._previous.get(inst.id)
            if prev is not None and prev.state == TaskState.DONE:
                self._restore(inst, prev)
            elif group.pending == 0 and inst.waiting == 0:
                self._make_ready(inst)

    def _instance_deps(self, step: Step, twin: Instance | None) -> tuple[str, ...]:
        """Instance ids an instance waited on. Whole-group parts are built once per step and
        shared by all its instances, so W x W fan-ins cost W ids, not W squared."""
        shared = self._deps_cache.get(step.id)
        if shared is None:
            ids: list[str] = []
            complete = True
            for dep in step.deps:
                if step.map_kind == "zip" and dep == step.map_source:
                    continue
                upstream = self._groups[dep]
                complete = complete and upstream.complete
                if upstream.step.mapped:
                    ids.extend([i.id for i in upstream.instances])
                else:
                    ids.append(dep)
            shared = tuple(ids)
            if complete:
                self._deps_cache[step.id] = shared
        if twin is not None:
            return (twin.id, *shared)
        return shared

    def _restore(self, inst: Instance, prev: TaskRecord) -> None:
        record = inst.record
        record.state = TaskState.DONE
        record.output = prev.output
        record.tokens_in, record.tokens_out = prev.tokens_in, prev.tokens_out
        record.attempts = prev.attempts
        record.started_at, record.ended_at, record.ready_at = prev.started_at, prev.ended_at, prev.ready_at
        record.provider = prev.provider
        record.resumed = True
        self._counts[TaskState.DONE] += 1
        self._emit("done", inst)
        self._after_final(inst)

    # -- readiness and admission -------------------------------------------------------

    def _make_ready(self, inst: Instance) -> None:
        step = inst.step
        if step.id in self._fan_in:
            # Fan-ins learn their upstream instances only now that those exist.
            inst.record.depends_on = self._instance_deps(step, self.twin(inst) if step.map_kind == "zip" else None)
        inst.record.state = TaskState.READY
        inst.record.ready_at = self.now()
        self._seq += 1
        step = inst.step
        if self.admission == "critical_path":
            key = (-step.priority, -self._rank[step.id], self._seq, inst)
        else:
            key = (-step.priority, 0.0, self._seq, inst)
        heapq.heappush(self._ready[step.agent], key)
        self._ready_count += 1
        if self._ready_count > self.peak_ready:
            self.peak_ready = self._ready_count
        self._emit("ready", inst)

    def _admissible_tier(self, tier: str) -> bool:
        if not self._has_reserve:
            return True
        priority = self._tier_priority[tier]
        blocked = 0
        for other, reserve in self._tier_reserve.items():
            if reserve and self._tier_open[other] and self._tier_priority[other] > priority:
                blocked += max(0, reserve - self._tier_running[other])
        # Never stall: with nothing running, the best ready task may always start.
        return self.running == 0 or self.running + blocked < self.max_parallel

    def _pump(self) -> None:
        if self._aborting or self._stopping:
            return
        if self._rank_stale and self._ready_count > self.max_parallel - self.running:
            # Order only matters when there are more ready tasks than free slots.
            self._rerank_now()
        ready = self._ready
        while self._ready_count and self.running < self.max_parallel:
            best: tuple[Any, ...] | None = None
            best_agent = ""
            for agent, heap in ready.items():
                if heap and self._agent_running[agent] < self._agent_limit[agent]:
                    head = heap[0]
                    if best is None or head[:3] < best[:3]:
                        best, best_agent = head, agent
            if best is None:
                return
            inst: Instance = best[3]
            held = self._held_below
            if held is not None and self.running and self._tier_priority.get(inst.step.tier, 0) < held:
                return  # the resource guard holds low tiers back; everything ranked below waits too
            if not self._admissible_tier(inst.step.tier):
                # The best candidate is held back by a higher tier's reservation; so is
                # everything of its tier or lower, and higher tiers would have sorted first.
                return
            heapq.heappop(ready[best_agent])
            self._ready_count -= 1
            self._start(inst)

    def _start(self, inst: Instance) -> None:
        self.running += 1
        if self.running > self.peak_running:
            self.peak_running = self.running
        self._agent_running[inst.step.agent] += 1
        self._tier_running[inst.step.tier] += 1
        record = inst.record
        record.state = TaskState.RUNNING
        record.started_at = self.now()
        self._emit("started", inst)
        inst.task = self._loop.create_task(self._drive(inst))

    async def _drive(self, inst: Instance) -> None:
        try:
            await self._execute(inst)
        except asyncio.CancelledError:
            self._release(inst)
            self._pump()
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a task is that task's failure
            self._release(inst)
            inst.record.ended_at = self.now()
            self._finalize(inst, TaskState.FAILED, inst.record.error or f"{type(exc).__name__}: {exc}")
        else:
            self._release(inst)
            inst.record.ended_at = self.now()
            self._finalize(inst, TaskState.DONE)
        self._pump()

    def _release(self, inst: Instance) -> None:
        self.running -= 1
        self._agent_running[inst.step.agent] -= 1
        self._tier_running[inst.step.tier] -= 1
        inst.task = None

    # -- completion ---------------------------------------------------------------------

    def _finalize(self, inst: Instance, state: str, error: str | None = None) -> None:
        record = inst.record
        if record.state in TaskState.FINAL:
            return
        record.state = state
        if error is not None and record.error is None:
            record.error = error
        self._counts[state] += 1
        self._emit(state, inst)
        if state == TaskState.DONE and self._rerank:
            self._learn(inst)
        if state == TaskState.FAILED and self.failure is None and inst.step.mode == "all":
            self.failure = (inst.id, record.error or "failed")
        # In a race or quorum a single loss is not the group's failure; that case
        # aborts from _complete_group when the group as a whole has lost.
        if (state == TaskState.FAILED and self.policy == "fail_fast" and not self._aborting
                and inst.group.step.mode == "all"):
            self._abort()
        self._after_final(inst)

    def _after_final(self, inst: Instance) -> None:
        group = inst.group
        state = inst.record.state
        for user in inst.twin_users:
            if user.record.state in TaskState.FINAL:
                continue
            if state == TaskState.DONE:
                user.waiting -= 1
                if user.waiting == 0 and user.group.pending == 0 and not user.group.complete:
                    self._make_ready(user)
            elif inst.pruned:
                # Its twin lost a race that was won: nothing to do for this item, not a failure.
                self._dequeue(user)
                user.pruned = True
                self._finalize(user, TaskState.SKIPPED, f"{inst.id} was not needed ({inst.step.mode} fan-out)")
            else:
                self._finalize(user, TaskState.SKIPPED, f"upstream task {inst.id} {state}")
        group.final += 1
        if inst.pruned:
            group.pruned += 1
        if state == TaskState.DONE:
            group.done += 1
        elif state == TaskState.FAILED:
            group.failed += 1
        self._check_group(group)

    def _check_group(self, group: _Group) -> None:
        if group.complete or not group.expanded:
            return
        step = group.step
        n = len(group.instances)
        if step.mode == "quorum" and (step.quorum or 1) > n:
            self._fail_group(group, f"quorum {step.quorum} but {step.id} has only {n} item(s)")
            return
        if step.mode == "first":
            need = 1 if n else 0
        elif step.mode == "quorum":
            need = step.quorum or 1
        else:
            need = n
        finished = group.final == n
        if step.mode == "all":
            if not finished:
                return
            succeeded = group.done == n - group.pruned
        else:
            won = group.done >= need
            lost = (n - group.failed) < need or (finished and not won)
            if not (won or lost or finished):
                return
            succeeded = won
            if won:
                for other in group.instances:
                    if other.record.state not in TaskState.FINAL:
                        if other.task is not None:
                            other.task.cancel()
                        self._dequeue(other)
                        other.pruned = True
                        self._finalize(other, TaskState.SKIPPED, f"{step.mode} fan-out already satisfied")
                    if group.complete:
                        return
        self._complete_group(group, succeeded)

    def _complete_group(self, group: _Group, succeeded: bool, reason: str | None = None) -> None:
        group.complete = True
        group.succeeded = succeeded
        self._open_groups -= 1
        step = group.step
        self._tier_open[step.tier] -= 1
        if not succeeded and step.mode != "all" and self.failure is None:
            # A lost race or quorum is the step's failure (single losses were not).
            self.failure = (step.id, reason or f"{step.mode} fan-out of {step.id} did not succeed")
        if not succeeded and self.policy == "fail_fast" and not self._aborting and step.mode != "all":
            self._abort()
        for user in group.users:
            if succeeded:
                user.pending -= 1
                if user.pending == 0:
                    self._group_unblocked(user)
            else:
                self._skip_group(user, f"upstream task {step.id} failed")
        for user in group.zip_users:
            if not user.expanded:
                self._skip_group(user, f"upstream task {step.id} failed")
        if self._open_groups == 0 and self._finished is not None and not self._finished.done():
            self._finished.set_result(None)

    def _fail_group(self, group: _Group, reason: str) -> None:
        """Fail a group as a whole (its instances are skipped with ``reason``)."""
        if self.failure is None:
            self.failure = (group.step.id, reason)
        for inst in list(group.instances):
            if inst.record.state not in TaskState.FINAL:
                if inst.task is not None:
                    inst.task.cancel()
                self._dequeue(inst)
                self._finalize(inst, TaskState.SKIPPED, reason)
        if not group.complete:
            self._complete_group(group, False, reason)
            if self.policy == "fail_fast" and not self._aborting:
                self._abort()

    def _group_unblocked(self, group: _Group) -> None:
        step = group.step
        if step.map_kind == "dynamic":
            source = self._groups[step.map_source]  # type: ignore[index]
            try:
                items = self._items_from(source, step)
            except ValueError as exc:
                group.expanded = True
                inst_record = TaskRecord(task_id=step.id, agent=step.agent, tier=step.tier,
                                         depends_on=tuple(i.id for i in source.instances))
                inst = Instance(step.id, step, None, None, inst_record, group)
                group.instances.append(inst)
                self.instances[step.id] = inst
                inst_record.started_at = inst_record.ended_at = self.now()
                self._finalize(inst, TaskState.FAILED, str(exc))
                return
            self._expand(group, items)
            return
        if not group.expanded:
            return  # zip groups expand with their source; static ones at start
        for inst in group.instances:
            if inst.record.state == TaskState.PENDING and inst.waiting == 0:
                self._make_ready(inst)

    def _items_from(self, source: _Group, step: Step) -> list[Any]:
        outputs = [self._output_of(i) for i in source.instances if i.record.state == TaskState.DONE]
        value: Any = outputs[0] if not source.step.mapped and outputs else outputs
        where = ".".join((source.step.id, *step.map_field))
        for part in step.map_field:
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            else:
                raise ValueError(f"map over {where}: the output of {source.step.id!r} has no field {part!r}")
        if isinstance(value, str):
            value = [line for line in (v.strip() for v in value.splitlines()) if line]
        if not isinstance(value, list):
            raise ValueError(f"map over {where}: expected a list, got {type(value).__name__}")
        if len(value) > step.max_items:
            raise ValueError(f"map over {where}: {len(value)} items, more than max_items={step.max_items}")
        return value

    def _skip_group(self, group: _Group, reason: str) -> None:
        if group.complete:
            return
        if not group.expanded:
            group.expanded = True
            # Never expanded: record one placeholder so the skip is visible.
            record = TaskRecord(task_id=group.step.id, agent=group.step.agent, tier=group.step.tier)
            inst = Instance(group.step.id, group.step, None, None, record, group)
            group.instances.append(inst)
            self.instances[inst.id] = inst
        for inst in list(group.instances):
            if inst.record.state not in TaskState.FINAL:
                self._dequeue(inst)
                self._finalize(inst, TaskState.SKIPPED, reason)
        if not group.complete:
            self._complete_group(group, False)

    def _dequeue(self, inst: Instance) -> None:
        if inst.record.state == TaskState.READY:
            heap = self._ready[inst.step.agent]
            for n, entry in enumerate(heap):
                if entry[3] is inst:
                    heap[n] = heap[-1]
                    heap.pop()
                    heapq.heapify(heap)
                    self._ready_count -= 1
                    break

    def _abort(self) -> None:
        """fail_fast: stop starting work and cancel what runs; the rest is cancelled."""
        self._aborting = True
        for heap in self._ready.values():
            heap.clear()
        self._ready_count = 0
        for inst in list(self.instances.values()):
            if inst.record.state in (TaskState.READY, TaskState.PENDING):
                self._finalize(inst, TaskState.CANCELLED, "cancelled: fail_fast after " +
                               (self.failure[0] if self.failure else "a failure"))
        for group in list(self._groups.values()):
            if not group.complete and not group.expanded:
                self._skip_group(group, "cancelled: fail_fast")
        for inst in list(self.instances.values()):
            if inst.task is not None:
                inst.task.cancel()
                self._doomed.append(inst.task)
                inst.record.ended_at = self.now()
                self._finalize(inst, TaskState.CANCELLED, "cancelled: fail_fast after " +
                               (self.failure[0] if self.failure else "a failure"))
        # run() awaits the cancelled tasks in its finally block.
        if self._finished is not None and not self._finished.done():
            self._finished.set_result(None)

    async def _cancel_running(self, state: str) -> None:
        tasks = []
        for inst in self.instances.values():
            if inst.task is not None:
                inst.task.cancel()
                tasks.append((inst, inst.task))
        for inst, task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001 - we are tearing down
                pass
            if inst.record.state not in TaskState.FINAL:
                inst.record.ended_at = self.now()
                inst.record.state = state
                if state == TaskState.CANCELLED:
                    self._counts[TaskState.CANCELLED] += 1
                self._emit(state, inst)
        if state == TaskState.INTERRUPTED:
            for inst in self.instances.values():
                if inst.record.state == TaskState.READY:
                    inst.record.state = TaskState.PENDING

    # -- learning -----------------------------------------------------------------------

    def _learn(self, inst: Instance) -> None:
        step_id = inst.step.id
        seen = self._measured.get(step_id)
        if seen is not None:
            seen[0] += inst.record.duration
            seen[1] += 1
            return
        self._measured[step_id] = [inst.record.duration, 1.0]
        if self.admission == "critical_path":
            self._rank_stale = True

    def _rerank_now(self) -> None:
        """Recompute remaining paths from measured latencies and reorder the ready heaps."""
        self._rank_stale = False
        latencies = {sid: total / count for sid, (total, count) in self._measured.items()}
        self._rank = remaining_path(self.plan, latencies)
        for agent, heap in self._ready.items():
            if heap:
                self._ready[agent] = [
                    (k[0], -self._rank[k[3].step.id], k[2], k[3]) for k in heap
                ]
                heapq.heapify(self._ready[agent])

    # -- events -------------------------------------------------------------------------

    def _emit(self, kind: str, inst: Instance) -> None:
        if self._listeners:
            event = TaskEvent(kind, inst, self.now())
            for listener in self._listeners:
                try:
                    listener(event)
                except Exception as exc:  # noqa: BLE001 - a broken sink (e.g. the store) stops the run
                    self._sink_failed(exc)

    def _sink_failed(self, exc: Exception) -> None:
        """An event listener raised: record it once and stop the run (nothing is lost silently)."""
        if self.fatal is None:
            self.fatal = exc
            if not self._aborting:
                self._abort()

