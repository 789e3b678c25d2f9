"""The runner: one workflow run from plan to stored result.

It owns what the scheduler deliberately does not know: providers, prompt assembly,
retries with backoff, per-task timeouts, output-schema checks, lifecycle hooks and
the run database. A task's result is committed to the store before the task is
reported done, so a run killed at any moment resumes without redoing finished work.
"""

from __future__ import annotations

import asyncio
import gc
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jinja2

from .._types import Clock, LoopClock, Provider, ProviderRequest, ProviderResponse, TaskRecord, TaskState
from ..errors import (
    AgentFleetError,
    ContextBudgetExceeded,
    MissingCredentials,
    OutputInvalid,
    PoolError,
    ProviderConfigError,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    TaskFailed,
    WorkerLost,
)
from ..plan import AGGREGATE_AGENT, Plan, Step, build_plan
from ..spec import AgentSpec, WorkflowSpec
from ..store import RunStore
from ._aggregate import Aggregator
from ._context import ArtifactView, HistoryMeter, estimate_tokens, fit_head_tail, make_preview, output_text
from ._hooks import HookFailure, HookRunner
from ._pool import AgentPool, PoolStatistics, WouldBlock
from ._prompt import PromptBook
from ._quality import REVIEW_SCHEMA, OutputChecks, feedback_prompt, parse_score, review_request
from ._scheduler import Instance, Scheduler, TaskEvent

__all__ = ["RunResult", "Runner", "backoff_delay"]

FLUSH_INTERVAL = 0.2  # seconds of run time between writes of buffered state changes


def backoff_delay(attempt: int, *, base: float, cap: float, rng: random.Random,
                  retry_after: float | None = None) -> float:
    """Exponential backoff with full jitter; never sooner than the server's Retry-After."""
    ceiling = min(cap, base * (2 ** (attempt - 1)))
    delay = rng.uniform(0, ceiling)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


@dataclass
class RunResult:
    """What a run produced: final states, outputs and where it is stored."""

    run_id: str | None
    name: str
    status: str  # succeeded | failed | interrupted
    records: list[TaskRecord]
    failure: str | None = None
    hook_failures: list[HookFailure] = field(default_factory=list)
    elapsed: float = 0.0
    max_parallel: int = 1
    latency_scale: float = 1.0
    providers: tuple[str, ...] = ()
    pools: dict[str, PoolStatistics] = field(default_factory=dict)

    @property
    def context_tokens(self) -> int:
        """Context tokens sent to every task of the run."""
        return sum(r.context_tokens for r in self.records)

    @property
    def naive_tokens(self) -> int:
        """What sending each task the full history of earlier outputs would have cost."""
        return sum(r.naive_tokens for r in self.records)

    @property
    def context_reduction(self) -> float | None:
        """Share of the naive baseline's context tokens saved, 0-1 (None when nothing was sent)."""
        naive = self.naive_tokens
        return (1 - self.context_tokens / naive) if naive else None

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    @property
    def outputs(self) -> dict[str, Any]:
        return {r.task_id: r.output for r in self.records if r.state == TaskState.DONE}

    def output(self, task_id: str) -> Any:
        """The output of a task (``id``), of one mapped instance (``id[i]``), or for a mapped
        step the list of its finished instances' outputs in item order (what a fan-in gets).
        KeyError if nothing by that id finished."""
        prefix = task_id + "["
        mapped = []
        for r in self.records:
            if r.state != TaskState.DONE:
                continue
            if r.task_id == task_id:
                return r.output
            if r.task_id.startswith(prefix):
                mapped.append((int(r.task_id[len(prefix):-1]), r.output))
        if mapped:
            return [out for _, out in sorted(mapped, key=lambda pair: pair[0])]
        raise KeyError(f"no finished task {task_id!r}")

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.records:
            out[r.state] = out.get(r.state, 0) + 1
        return out


class Runner:
    """Runs one workflow (or resumes one) with its providers, hooks and store."""

    def __init__(
        self,
        spec: WorkflowSpec | Plan,
        *,
        store: RunStore | None = None,
        clock: Clock | None = None,
        providers: dict[str, Provider] | None = None,
        provider_factory: Callable[..., Provider] | None = None,
        max_parallel: int | None = None,
        policy: str | None = None,
        admission: str | None = None,
        latency_scale: float | None = None,
        seed: int = 0,
        backoff_base: float = 0.25,
        backoff_cap: float = 30.0,
        spec_path: str | None = None,
        overrides: dict[str, Any] | None = None,
        options: dict[str, Any] | None = None,
    ) -> None:
        if isinstance(spec, WorkflowSpec) and latency_scale is not None:
            spec.settings.latency_scale = latency_scale
        self.plan = spec if isinstance(spec, Plan) else build_plan(spec)
        self.spec = self.plan.spec
        self.store = store
        self.clock = clock or LoopClock()
        settings = self.spec.settings
        self.max_parallel = max_parallel or settings.max_parallel
        self.policy = policy or settings.policy
        self.admission = admission or settings.admission
        self.latency_scale = latency_scale if latency_scale is not None else settings.latency_scale
        self.seed = seed
        self._backoff = (backoff_base, backoff_cap)
        self._rng = random.Random(seed)
        self._given_providers = providers or {}
        self._factory = provider_factory
        self._providers: dict[str, Provider] = {}
        self._book = PromptBook(self.plan)
        self._hooks = HookRunner(self.spec.hooks)
        self._task_hooks = tuple(self._hooks.has(e) for e in ("before_task", "after_task", "on_failure"))
        self._checks = OutputChecks(self.plan)
        self._aggregates: dict[str, Aggregator] = {}  # aggregate step -> its running fold
        self._folded_by: dict[str, list[str]] = {}  # mapped step -> aggregate steps folding it
        for sid, step in self.plan.steps.items():
            agg = step.spec.aggregate if step.spec is not None else None
            if agg is not None:
                self._aggregates[sid] = Aggregator(agg.fold, agg.initial, where=f"tasks[{step.index}].aggregate.fold")
                self._folded_by.setdefault(agg.over, []).append(sid)
        ctx = self.spec.settings.context
        self._artifact_threshold = ctx.artifact_threshold
        self._preview_chars = ctx.preview_chars
        self._history = HistoryMeter()
        self._views: dict[str, ArtifactView] = {}  # instance id -> its large output, by reference
        # The task's own instructions, for the naive baseline (template text, no inputs).
        self._own_tokens = {
            sid: estimate_tokens((step.spec.prompt if step.spec is not None else "")
                                 + (self.spec.agents[step.agent].system if step.agent in self.spec.agents else ""))
            for sid, step in self.plan.steps.items()
        }
        self._pools: dict[str, AgentPool] = {}
        self._started_steps: set[str] = set()
        self._warmed_steps: set[str] = set()
        self._artifacts: Any = None
        self._memory: Any = None
        self._spec_path = spec_path
        self._overrides = overrides or {}
        self._options = options or {}
        self._listeners: list[Callable[[TaskEvent], None]] = []
        self.scheduler: Scheduler | None = None
        self.run_id: str | None = None
        self._session = 1
        self._hook_failures: list[HookFailure] = []
        self._last_flush = 0.0

    def subscribe(self, listener: Callable[[TaskEvent], None]) -> None:
        """Receive every task state change (the progress display uses this)."""
        self._listeners.append(listener)

    # -- providers ----------------------------------------------------------------------

    def _agents_used(self) -> list[str]:
        """Agents that run tasks, review outputs or summarise context (pools are built for these)."""
        used: set[str] = set()
        for step in self.plan.steps.values():
            if step.agent != AGGREGATE_AGENT:
                used.add(step.agent)
            task = step.spec
            if task is not None:
                if task.review is not None:
                    used.add(task.review.agent)
                if task.context is not None and task.context.summarizer:
                    used.add(task.context.summarizer)
        return [name for name in self.spec.agents if name in used]

    def _build_providers(self) -> None:
        for name in self.spec.agents:
            self._build_provider(name)
        for name in self._agents_used():
            self._pools[name] = self._make_pool(name, self.spec.agents[name])

    def _make_pool(self, name: str, agent: AgentSpec) -> AgentPool:
        """A pool for ``agent``: members over one shared provider, or (command workers) one each."""
        p = agent.pool
        provider = self._providers[name]
        common: dict[str, Any] = dict(size=p.size, max=p.max, queue=p.queue, on_full=p.on_full,
                                      idle_timeout=p.idle_timeout, health_interval=p.health_interval, clock=self.clock)
        if name not in self._given_providers and _one_process_per_member(agent):
            return AgentPool(name, lambda: self._new_provider(agent), **common)
        # HTTP providers share one client; warming each member opens one more pooled connection.
        warm_each = name not in self._given_providers and bool(getattr(provider, "warm_path", None))
        return AgentPool(name, lambda: provider, shared=True, provider=provider, warm_each=warm_each,
                         close_shared=False, **common)

    def _new_provider(self, agent: AgentSpec) -> Provider:
        if self._factory is None:
            from ..providers import build_provider

            return build_provider(agent, clock=self.clock, latency_scale=self.latency_scale, seed=self.seed)
        return self._factory(agent, clock=self.clock, latency_scale=self.latency_scale, seed=self.seed)

    def _build_provider(self, name: str) -> None:
        if name in self._given_providers:
            self._providers[name] = self._given_providers[name]
            return
        try:
            self._providers[name] = self._new_provider(self.spec.agents[name])
        except ProviderConfigError as exc:
            file, line = self.spec.locate("agents", name)
            where = f"{file}:{line}: " if line else (f"{file}: " if file != "<python>" else "")
            located = type(exc)(f"{where}{exc}")  # str(exc) already names the provider
            located.provider = exc.provider
            raise located from None

    def pool_statistics(self) -> dict[str, PoolStatistics]:
        """Each agent pool's counters (spawns, failures, waits), for reports and telemetry."""
        return {name: pool.statistics() for name, pool in self._pools.items()}

    async def preflight(self) -> list[str]:
        """Everything ``run`` would reject before starting, without running: hooks, providers
        (built and closed, no network). Raises for errors; returns warnings (a missing API key,
        which may well be set where the workflow really runs)."""
        self._hooks.validate()
        warnings: list[str] = []
        try:
            for name in self.spec.agents:
                try:
                    self._build_provider(name)
                except MissingCredentials as exc:
                    warnings.append(str(exc))
        finally:
            await self._close_providers()
            self._providers.clear()
        return warnings

    async def _close_providers(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
        for name, provider in self._providers.items():
            if name not in self._given_providers:
                await provider.aclose()
        for store in (self._artifacts, self._memory):
            if store is not None and self.store is None:
                store.close()

    # -- running ------------------------------------------------------------------------

    async def run(self, *, resume: str | None = None) -> RunResult:
        """Run the workflow to the end, or resume run ``resume`` from the store."""
        self._hooks.validate()
        if resume is not None and self.store is None:
            raise AgentFleetError("resuming needs a run store")
        # Providers first: a missing key or unknown provider is an error before any run row exists.
        try:
            self._build_providers()
            return await self._run(resume)
        finally:
            await self._close_providers()

    async def _run(self, resume: str | None) -> RunResult:
        previous: dict[str, TaskRecord] = {}
        if resume is not None:
            assert self.store is not None
            self.run_id = self.store.resolve(resume)
            previous = {r.task_id: r for r in self.store.load_tasks(self.run_id) if r.state == TaskState.DONE}
            self._session = self.store.begin_session(self.run_id)
        elif self.store is not None:
            self.run_id = self.store.create_run(
                name=self.spec.name, spec_path=self._spec_path, spec_text=self.spec.source_text,
                overrides=self._overrides, options=self._options,
            )
        self._open_stores()
        limits = {name: float(pool.max * pool.per_member) for name, pool in self._pools.items()
                  if pool.max is not None}
        scheduler = Scheduler(self.plan, self._execute, clock=self.clock, max_parallel=self.max_parallel,
                              policy=self.policy, admission=self.admission, previous=previous,
                              agent_limits=limits)
        self.scheduler = scheduler
        self._restore_context(previous)
        scheduler.subscribe(self._lookahead)
        if self.store is not None:
            scheduler.subscribe(self._persist)
        for listener in self._listeners:
            scheduler.subscribe(listener)
        for step in self.plan.steps.values():
            if not step.deps:
                self._warm_for(step)
        wall0 = time.perf_counter()
        # The plan, records and providers live for the whole run; freezing them keeps the
        # cyclic GC from re-traversing them on every collection (30-40% of the runtime's
        # own CPU on 10,000-step plans). Refcounting still frees them; unfreeze at the end.
        gc.freeze()
        status = "failed"
        failure: str | None = None
        try:
            try:
                if self.spec.settings.timeout is not None:
                    all_sim = all(a.provider == "sim" for a in self.spec.agents.values())
                    async with asyncio.timeout(self.spec.settings.timeout * (self.latency_scale if all_sim else 1)):
                        await scheduler.run()
                else:
                    await scheduler.run()
            except TimeoutError:
                failure = f"run timed out after {self.spec.settings.timeout:g}s"
                for inst in scheduler.instances.values():
                    record = inst.record
                    if record.state == TaskState.INTERRUPTED:
                        record.state, record.error = TaskState.CANCELLED, failure
                    elif record.state in (TaskState.PENDING, TaskState.READY):
                        record.state, record.error = TaskState.SKIPPED, failure
            else:
                if scheduler.fatal is not None:
                    failure = f"run stopped: {scheduler.fatal}"
                elif scheduler.failure is None:
                    status = "succeeded"
                else:
                    failure = str(TaskFailed(*scheduler.failure))
                    others = [i.id for i in scheduler.instances.values()
                              if i.record.state == TaskState.FAILED and i.id != scheduler.failure[0]]
                    if others:
                        shown = ", ".join(others[:5]) + (", ..." if len(others) > 5 else "")
                        failure += f" (and {len(others)} more failed: {shown})"
        except asyncio.CancelledError:
            status = "interrupted"
            failure = "interrupted (Ctrl-C or SIGTERM); resume with: agentfleet resume " + (self.run_id or "")
            raise
        finally:
            gc.unfreeze()
            records = [inst.record for inst in scheduler.instances.values()]
            result = RunResult(
                run_id=self.run_id, name=self.spec.name, status=status, records=records, failure=failure,
                hook_failures=self._hook_failures, elapsed=time.perf_counter() - wall0,
                max_parallel=self.max_parallel, latency_scale=self.latency_scale,
                providers=tuple(sorted({p.name for p in self._providers.values()})),
                pools=self.pool_statistics(),
            )
            self.result = result
            payload = {"run_id": self.run_id, "status": status, "failure": failure, "counts": result.counts()}
            if status != "interrupted":
                await self._fire("on_run_end", payload)
            if self.store is not None and self.run_id is not None:
                for record in records:
                    self.store.note_task(self.run_id, self._session, record)
                self.store.finish_run(self.run_id, status, error=failure, summary={
                    "counts": result.counts(), "latency_scale": self.latency_scale,
                    "max_parallel": self.max_parallel})
        return result

    # -- context, pools and folds around the scheduler --------------------------------

    def _open_stores(self) -> None:
        """The artifact and memory stores live beside the runs (in memory without a run store)."""
        from ..store import ArtifactStore, MemoryStore

        path = self.store.path if self.store is not None else ":memory:"
        if self._artifacts is None:
            self._artifacts = ArtifactStore(path)
        if self._memory is None and (any(a.memory is not None for a in self.spec.agents.values())
                                     or any(s.spec is not None and s.spec.remember is not None
                                            for s in self.plan.steps.values())):
            self._memory = MemoryStore(path)

    def _restore_context(self, previous: dict[str, TaskRecord]) -> None:
        """On resume: finished outputs count as history, feed folds, and mark their steps started."""
        for record in previous.values():
            self._history.add(record.tokens_out or estimate_tokens(output_text(record.output)))
            sid, _, rest = record.task_id.partition("[")
            self._started_steps.add(sid)
            for agg in self._folded_by.get(sid, ()):
                self._aggregates[agg].add(record.output, int(rest[:-1]) if rest else 0)

    def _lookahead(self, event: TaskEvent) -> None:
        """DAG-aware pre-warming: when every dependency of a step has started, warm its pools."""
        if event.kind != "started":
            return
        sid = event.instance.step.id
        if sid in self._started_steps:
            return
        self._started_steps.add(sid)
        started = self._started_steps
        for user in self.plan.dependents[sid]:
            if user not in self._warmed_steps and all(d in started for d in self.plan.steps[user].deps):
                self._warm_for(self.plan.steps[user])

    def _warm_for(self, step: Step) -> None:
        """Ask the pools ``step`` will use for as many members as it can run at once."""
        self._warmed_steps.add(step.id)
        task = step.spec
        names = [step.agent]
        if task is not None and task.review is not None:
            names.append(task.review.agent)
        if task is not None and task.context is not None and task.context.summarizer:
            names.append(task.context.summarizer)
        for name in names:
            pool = self._pools.get(name)
            if pool is None or not self.spec.agents[name].pool.prewarm:
                continue
            limit = self.spec.agents[name].max_concurrency or self.max_parallel
            pool.prewarm(max(pool.size, min(step.expected_count, limit, self.max_parallel)))

    def _persist(self, event: TaskEvent) -> None:
        assert self.store is not None and self.run_id is not None
        record = event.instance.record
        self.store.note_task(self.run_id, self._session, record)
        data = {"error": record.error} if record.error and event.kind in ("failed", "skipped", "cancelled") else None
        self.store.note_event(self.run_id, self._session, event.time, event.kind, record.task_id, data)
        # Results commit (with everything buffered) as they happen; other state changes are
        # written at most every FLUSH_INTERVAL of run time. No timer: nothing to cancel, and
        # no ticks perturbing a virtual clock.
        if event.time - self._last_flush >= FLUSH_INTERVAL:
            self._last_flush = event.time
            self.store.flush()

    async def _fire(self, event: str, payload: dict[str, Any]) -> None:
        if not self._hooks.has(event):
            return
        payload = {"run_id": self.run_id, **payload}
        failures = await self._hooks.fire(event, payload)
        if failures:
            self._hook_failures.extend(failures)
            if self.store is not None and self.run_id is not None:
                for f in failures:
                    self.store.note_event(self.run_id, self._session, self.scheduler.now() if self.scheduler else 0.0,
                                          "hook_failed", payload.get("task_id"),
                                          {"hook": f.hook, "event": f.event, "message": f.message})

    def _inputs_for(self, inst: Instance) -> dict[str, Any]:
        """The declared inputs of ``inst``: large outputs as references unless ``context.full``."""
        scheduler = self.scheduler
        assert scheduler is not None
        step = inst.step
        task = step.spec
        full: list[str] | str = task.context.full if task is not None and task.context is not None else []
        folded = task.aggregate.over if task is not None and task.aggregate is not None else None
        views = self._views
        inputs: dict[str, Any] = {}
        for name in step.inputs:
            whole = full == "all" or name in full
            if name == folded:
                inputs[name] = self._aggregates[step.id].value
            elif step.map_kind == "zip" and name == step.map_source:
                twin = scheduler.twin(inst)
                inputs[name] = twin.record.output if whole else views.get(twin.id, twin.record.output)
            else:
                outs = [i.record.output if whole else views.get(i.id, i.record.output)
                        for i in scheduler.finished(name)]
                if self.plan.steps[name].mapped:
                    inputs[name] = outs
                else:
                    inputs[name] = outs[0] if outs else None
        return inputs

    async def _execute(self, inst: Instance) -> None:
        step = inst.step
        record = inst.record
        if step.agent == AGGREGATE_AGENT:
            await self._finish_aggregate(inst)
            return
        agent = self.spec.agents[step.agent]
        pool = self._pools[step.agent]
        record.provider = self._providers[step.agent].name
        hooks = self._task_hooks
        if hooks[0]:
            await self._fire("before_task", {"task_id": inst.id, "agent": step.agent})
        book = self._book
        prompt = book.static_prompt(step.id)
        try:
            if prompt is None:
                prompt = book.prompt(step.id, task=inst.id, agent=step.agent,
                                     inputs=self._inputs_for(inst) if step.inputs else {}, item=inst.item,
                                     index=inst.index)
            system = book.static_system(step.agent)
            if system is None:
                system = book.system(step.agent, task=inst.id)
        except jinja2.TemplateError as exc:
            file, line = self.spec.locate("tasks", step.index, "prompt")
            where = f"{file}:{line}" if line else file
            record.error = f"prompt of {inst.id} ({where}) could not be rendered: {exc}"
            raise
        task = step.spec
        record.naive_tokens = self._own_tokens[step.id] + self._history.tokens
        if agent.memory is not None and self._memory is not None:
            system = self._with_memory(step.agent, agent, system)
        ctx = task.context if task is not None else None
        budget = ctx.max_tokens if ctx is not None and ctx.max_tokens else self.spec.settings.context.max_tokens
        if budget is not None:
            try:
                prompt = await self._fit_budget(inst, system, prompt, budget)
            except (ContextBudgetExceeded, ProviderError) as exc:
                record.error = str(exc)
                raise
        schema = task.output_schema if task is not None else None
        timeout = step.timeout
        if timeout is not None and agent.provider == "sim":
            timeout *= self.latency_scale  # --scale speeds up simulated latencies, not real ones
        clock = self.clock
        scheduler = self.scheduler
        assert scheduler is not None
        store = self.store if self.run_id is not None else None
        run_id = self.run_id or ""
        checked = task is not None and self._checks.has_checks(step)
        fixes = task.validation_retries if task is not None else 0
        base_prompt = prompt
        lost_once = False
        while True:
            record.attempts += 1
            attempt_start = scheduler.now() if store is not None else 0.0
            request = ProviderRequest(
                task_id=inst.id, agent=step.agent, model=agent.model, system=system, prompt=prompt,
                max_tokens=agent.max_tokens, temperature=agent.temperature, output_schema=schema,
                timeout=timeout, options={"attempt": record.attempts},
            )
            error: ProviderError | PoolError
            answer: Any = None
            try:
                response = await self._call(pool, request, timeout)
                record.context_tokens = response.tokens_in or (estimate_tokens(system) + estimate_tokens(prompt))
                record.tokens_in += response.tokens_in
                record.tokens_out += response.tokens_out
                answer = response.text
                output = self._checks.parse(step.id, response)
                if checked:
                    answer = output
                    await self._checks.validate(step.id, inst.id, output)
                    if task is not None and task.review is not None:
                        await self._review(inst, base_prompt, output)
            except TimeoutError:
                error = ProviderTimeout(f"task {inst.id} exceeded its timeout of {timeout:g}s",
                                        provider=record.provider)
            except OutputInvalid as exc:
                error = exc
                rounds = record.meta.get("rejected", 0)
                record.meta["rejected"] = rounds + 1
                record.meta["last_rejection"] = str(exc)
                if rounds < fixes:
                    if store is not None:
                        store.record_attempt(run_id, self._session, record, "rejected", attempt_start,
                                             scheduler.now(), str(exc))
                    prompt = feedback_prompt(base_prompt, str(exc), answer)
                    continue
            except (ProviderError, PoolError) as exc:
                error = exc
            else:
                await self._succeeded(inst, output, response, store, run_id, attempt_start)
                return
            if store is not None:
                store.record_attempt(run_id, self._session, record, "failed", attempt_start,
                                     scheduler.now(), str(error))
            if isinstance(error, WorkerLost) and not lost_once:
                lost_once = True  # its worker died under it: once more, on a fresh member, at once
                continue
            if isinstance(error, ProviderError) and error.retryable and record.attempts <= step.retries:
                retry_after = error.retry_after if isinstance(error, RateLimited) else None
                await clock.sleep(backoff_delay(record.attempts, base=self._backoff[0], cap=self._backoff[1],
                                                rng=self._rng, retry_after=retry_after))
                continue
            record.error = str(error)
            if hooks[2]:
                await self._fire("on_failure", {"task_id": inst.id, "agent": step.agent, "error": record.error,
                                                "attempts": record.attempts})
            raise error

    async def _call(self, pool: AgentPool, request: ProviderRequest, timeout: float | None) -> ProviderResponse:
        """One provider call on a pool member (the wait for a member is not part of the timeout)."""
        try:
            member = pool.acquire_nowait()
        except WouldBlock:
            member = await pool.acquire()
        lost = False
        try:
            if timeout is not None:
                async with asyncio.timeout(timeout):
                    return await member.provider.complete(request)
            return await member.provider.complete(request)
        except WorkerLost:
            lost = True
            raise
        finally:
            pool.release(member, lost=lost)

    async def _succeeded(self, inst: Instance, output: Any, response: ProviderResponse, store: RunStore | None,
                         run_id: str, attempt_start: float) -> None:
        record = inst.record
        step = inst.step
        record.output = output
        self._after_output(inst, output, response.tokens_out)
        scheduler = self.scheduler
        assert scheduler is not None
        if store is not None:
            # Durable before the scheduler counts the task done.
            record.ended_at = scheduler.now()
            store.record_attempt(run_id, self._session, record, "done", attempt_start, record.ended_at, None)
            store.commit_result(run_id, self._session, record)
        task = step.spec
        if task is not None and task.remember is not None and self._memory is not None:
            self._remember(inst, task.remember, output)
        if self._task_hooks[1]:
            await self._fire("after_task", {
                "task_id": inst.id, "agent": step.agent, "state": "done", "attempts": record.attempts,
                "duration": scheduler.now() - (record.started_at or 0.0), "output": record.output,
                "tokens_in": record.tokens_in, "tokens_out": record.tokens_out})

    def _after_output(self, inst: Instance, output: Any, tokens_out: int) -> None:
        """A finished output: by reference when large, into the history and into any fold."""
        text = output if isinstance(output, str) else None
        size = len(text) if text is not None else -1
        if size < 0 or size > self._artifact_threshold:
            text = output_text(output)
            size = len(text)
        if size > self._artifact_threshold and self._artifacts is not None:
            ref = self._artifacts.put(output, run_id=self.run_id, task_id=inst.id if self.run_id else None)
            preview = make_preview(text or "", self._preview_chars)
            self._views[inst.id] = ArtifactView(inst.id, ref.digest, size, preview, output)
            inst.record.meta["artifact"] = ref.digest
        self._history.add(tokens_out or estimate_tokens(text if text is not None else output_text(output)))
        folds = self._folded_by.get(inst.step.id)
        if folds:
            for sid in folds:
                self._aggregates[sid].add(output, inst.index or 0)

    async def _finish_aggregate(self, inst: Instance) -> None:
        """An agent-less aggregate task: its output is the fold, already computed."""
        aggregator = self._aggregates[inst.step.id]
        if aggregator.error is not None:
            inst.record.error = aggregator.error
            raise ProviderError(aggregator.error, provider="aggregate", retryable=False)
        inst.record.provider = "aggregate"
        inst.record.attempts += 1
        value = aggregator.value
        response = ProviderResponse(text=output_text(value), provider="aggregate", model="", data=value)
        scheduler = self.scheduler
        assert scheduler is not None
        await self._succeeded(inst, value, response, self.store if self.run_id is not None else None,
                              self.run_id or "", scheduler.now())

    async def _review(self, inst: Instance, instructions: str, output: Any) -> None:
        """Have the task's reviewer score ``output``; below the minimum is a rejection."""
        task = inst.step.spec
        assert task is not None and task.review is not None
        review = task.review
        reviewer = self.spec.agents[review.agent]
        system, prompt = review_request(instructions, output, review.criteria)
        request = ProviderRequest(task_id=f"{inst.id}:review", agent=review.agent, model=reviewer.model,
                                  system=system, prompt=prompt, max_tokens=reviewer.max_tokens,
                                  temperature=reviewer.temperature, output_schema=REVIEW_SCHEMA,
                                  timeout=reviewer.timeout, options={"review_of": inst.id})
        record = inst.record
        try:
            response = await self._call(self._pools[review.agent], request, reviewer.timeout)
        except (ProviderError, TimeoutError) as exc:
            record.meta["review_error"] = str(exc) or type(exc).__name__
            return  # a reviewer that cannot answer does not fail the work it reviews
        record.tokens_in += response.tokens_in
        record.tokens_out += response.tokens_out
        score, reason = parse_score(response)
        if score is None:
            record.meta["review_error"] = reason
            return
        record.score = score
        record.meta["review"] = reason[:500]
        if score < review.min_score:
            raise OutputInvalid(f"reviewer {review.agent!r} scored it {score:g}/10, below the minimum "
                                f"{review.min_score:g}: {reason[:300]}", provider="review", retryable=False)

    async def _fit_budget(self, inst: Instance, system: str, prompt: str, budget: int) -> str:
        """``prompt`` within ``budget`` tokens (with the system prompt), by the task's strategy."""
        used = estimate_tokens(system) + estimate_tokens(prompt)
        if used <= budget:
            return prompt
        task = inst.step.spec
        ctx = task.context if task is not None else None
        strategy = ctx.strategy if ctx is not None else "truncate"
        room = budget - estimate_tokens(system)
        if strategy == "fail" or room <= 0:
            why = "the system prompt alone fills it" if room <= 0 else "its strategy is 'fail'"
            raise ContextBudgetExceeded(
                f"task {inst.id}: context is ~{used:,} tokens, over its budget of {budget:,} ({why}); "
                "raise context.max_tokens, pass fewer inputs in full, or use strategy truncate/summarize",
                task_id=inst.id, tokens=used, budget=budget)
        record = inst.record
        record.meta["context_before"] = used
        applied = "truncate"
        if strategy == "summarize" and ctx is not None and ctx.summarizer:
            prompt = await self._summarize(inst, prompt, room, ctx.summarizer)
            applied = "summarize"
            if estimate_tokens(prompt) > room:
                applied = "summarize+truncate"
        prompt = fit_head_tail(prompt, room)
        record.meta["context_strategy"] = applied
        return prompt

    async def _summarize(self, inst: Instance, text: str, room: int, summarizer: str) -> str:
        agent = self.spec.agents[summarizer]
        request = ProviderRequest(
            task_id=f"{inst.id}:summarize", agent=summarizer, model=agent.model,
            system=("You shorten a task description and its inputs so they fit a token budget. Keep the "
                    "instructions, every requirement, name, number and decision; drop repetition and filler."),
            prompt=f"Shorten the following to at most {room} tokens (about {room * 4} characters):\n\n{text}",
            max_tokens=room, temperature=agent.temperature, timeout=agent.timeout,
        )
        response = await self._call(self._pools[summarizer], request, agent.timeout)
        inst.record.tokens_in += response.tokens_in
        inst.record.tokens_out += response.tokens_out
        return response.text

    def _with_memory(self, name: str, agent: AgentSpec, system: str) -> str:
        from ..store import render_memory

        spec = agent.memory
        assert spec is not None and self._memory is not None
        entries = self._memory.for_agent(name, team=spec.team, categories=spec.categories,
                                         max_chars=spec.max_tokens * 4)
        if not entries:
            return system
        return f"{system}\n\n{render_memory(entries)}" if system else render_memory(entries)

    def _remember(self, inst: Instance, remember: Any, output: Any) -> None:
        from ..store import parse_ttl

        assert self._memory is not None
        text = output_text(output)[: remember.max_chars]
        key = None
        if remember.key:
            key = self._book.render_text(remember.key, task=inst.id, agent=inst.step.agent, item=inst.item,
                                         index=inst.index)
        owner, scope = (remember.team, "team") if remember.team else (inst.step.agent, "agent")
        self._memory.add(owner, remember.category, text, scope=scope, key=key, ttl=parse_ttl(remember.ttl),
                         source=f"run {self.run_id or '-'} task {inst.id}")


def _one_process_per_member(agent: AgentSpec) -> bool:
    """A command agent in worker mode: each pool member owns its own long-lived process."""
    return agent.provider.strip().lower() == "command" and agent.options.get("mode") == "worker"
