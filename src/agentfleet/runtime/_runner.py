"""The runner: one workflow run from plan to stored result.

It owns what the scheduler deliberately does not know: providers, prompt assembly,
retries with backoff, per-task timeouts, output-schema checks, lifecycle hooks and
the run database. A task's result is committed to the store before the task is
reported done, so a run killed at any moment resumes without redoing finished work.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import gc
import inspect
import json
import os
import random
import secrets
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jinja2

from .._types import Clock, LoopClock, Provider, ProviderRequest, ProviderResponse, TaskRecord, TaskState
from ..errors import (
    AgentFleetError,
    CacheError,
    CircuitOpen,
    ContextBudgetExceeded,
    MissingCredentials,
    OutputInvalid,
    PoolError,
    ProviderConfigError,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    RetryBudgetExhausted,
    SpecError,
    StoreError,
    TaskFailed,
    WorkerLost,
)
from ..messaging import Bus, InProcessBus, Subscription
from ..plan import AGGREGATE_AGENT, Plan, Step, build_plan
from ..resilience import HedgePolicy, RetryBudget
from ..spec import AgentSpec, WorkflowSpec
from ..store import RunStore
from ..telemetry._cost import Price, Pricing
from ..telemetry._resources import ProcessSampler, RunResources, summarize_resources
from ._aggregate import Aggregator
from ._context import (
    BLANK,
    ArtifactView,
    estimate_tokens,
    fit_head_tail,
    make_preview,
    output_text,
    whole_history_baseline,
)
from ._events import ProgressOutbox, progress_topic
from ._gateway import CachePlan, Gateway, GuardStatistics, Target, env_limits, limit_fields, merge_limits
from ._hooks import HookFailure, HookRunner
from ._pool import AgentPool, PoolStatistics, SlotPool
from ._prompt import PromptBook
from ._quality import REVIEW_SCHEMA, OutputChecks, feedback_prompt, parse_score, review_request
from ._scheduler import Instance, Scheduler, TaskEvent
from ._team import ask_topic, enter_team
from ._telemetry import RunMetrics

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


def _elapsed(now: Callable[[], float], origin: float) -> float:
    return now() - origin


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
    #: per provider+model: calls, failures, 429s, breaker, adaptive limit, limit waits, hedges
    resilience: list[GuardStatistics] = field(default_factory=list)
    #: the response cache this run: hits by level, coalesced calls, tokens and seconds saved
    cache: dict[str, Any] = field(default_factory=dict)
    #: the resource guard: how often it changed course, its lowest factor, how often it held tiers
    guard: dict[str, Any] = field(default_factory=dict)
    #: SLA alerts raised during the run and at its end (``settings.sla``), in order
    alerts: list[dict[str, Any]] = field(default_factory=list)
    #: the process and its children while the run went: the samples (t, cpu_percent, rss_mb, disk and
    #: network MB/s) and their peaks and means (``settings.telemetry``; empty when not sampled)
    resource_samples: list[dict[str, float]] = field(default_factory=list)
    resources: dict[str, float] = field(default_factory=dict)
    #: a run shared through Redis: this runner's claim id, tasks it executed, outcomes it adopted
    shared: dict[str, Any] = field(default_factory=dict)

    @property
    def cost_usd(self) -> float | None:
        """What the run's provider calls cost in US dollars (``settings.prices``), None when no model has a price."""
        costs = [r.meta["cost_usd"] for r in self.records if not r.resumed and "cost_usd" in r.meta]
        return sum(costs) if costs else None

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
        bus: Bus | None = None,
        run_key: str | None = None,
        cache: Any = None,
        resource_sampler: Any = None,
        metrics: Any = None,
        executor: str | None = None,
        ray_address: str | None = None,
        share: str | None = None,
        claim_ttl: float = 10.0,
    ) -> None:
        if isinstance(spec, WorkflowSpec) and latency_scale is not None:
            spec.settings.latency_scale = latency_scale
        with _no_cyclic_gc():  # the plan lives as long as the runner
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
        #: a Redis URL: this run's tasks are claimed there, so several runners (``agentfleet join``)
        #: share them and each task is executed once (``agentfleet.distributed.TaskClaims``)
        self.share = share
        self.claim_ttl = claim_ttl
        self.claims: Any = None
        #: the run this runner helps with instead of starting one (``agentfleet join``): ``run()`` joins it
        self.joining: str | None = None
        #: ``local`` or ``ray`` (agent pools as Ray actors; see ``agentfleet.distributed``)
        self.executor = executor or settings.executor
        if self.executor not in ("local", "ray"):
            raise SpecError(f"executor must be 'local' or 'ray', not {self.executor!r}", field="settings.executor")
        if self.executor == "ray" and provider_factory is None:
            from ..distributed import ray_provider_factory

            self._factory = ray_provider_factory(ray_address or settings.ray_address)
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
                file, line = self.spec.locate("tasks", step.index, "aggregate", "fold")
                self._aggregates[sid] = Aggregator(agg.fold, agg.initial, where=f"tasks[{step.index}].aggregate.fold",
                                                   file=file, line=line)
                self._folded_by.setdefault(agg.over, []).append(sid)
            remember = step.spec.remember if step.spec is not None else None
            if remember is not None and remember.ttl is not None:
                from ..store import parse_ttl

                try:
                    parse_ttl(remember.ttl)
                except ValueError as exc:
                    file, line = self.spec.locate("tasks", step.index, "remember", "ttl")
                    raise SpecError(str(exc), file=file, line=line,
                                    field=f"tasks[{step.index}].remember.ttl") from None
            cache_policy = step.spec.cache if step.spec is not None else None
            if cache_policy is not None and cache_policy.ttl is not None:
                _check_ttl(self.spec, cache_policy.ttl, "tasks", step.index, "cache", "ttl")
        _check_ttl(self.spec, self.spec.settings.cache.ttl, "settings", "cache", "ttl")
        self._hold_below()  # an unknown tier is an error now, not when the run starts
        self._sla_monitor = self._parse_sla()
        ctx = self.spec.settings.context
        self._artifact_threshold = ctx.artifact_threshold
        self._preview_chars = ctx.preview_chars
        self._out_tokens: dict[str, int] = {}  # instance id -> tokens of its output
        self._views: dict[str, ArtifactView] = {}  # instance id -> its large output, by reference
        # Per instance: tokens of its own instructions (system + prompt without inputs), for the
        # naive baseline, which adds the whole history to them.
        self._own_tokens: dict[str, int] = {}
        self._static_tokens: dict[str, int] = {}  # step -> tokens of its fixed prompt and system
        self._pools: dict[str, AgentPool | SlotPool] = {}
        self._warmable: set[str] = set()
        self._started_steps: set[str] = set()
        # per step: dependencies (steps) that have not started yet; 0 = warm its pools now
        self._unstarted_deps = {sid: len(step.deps) for sid, step in self.plan.steps.items()}
        self._warmed_steps: set[str] = set()
        self._artifacts: Any = None
        self._memory: Any = None
        self._spec_path = spec_path
        self._overrides = overrides or {}
        self._options = options or {}
        self._listeners: list[Callable[[TaskEvent], None]] = []
        #: The bus this run publishes its progress on (``run.<run_key>.progress``) and ends with
        #: ``run.<run_key>.end``; a private in-process bus unless one (e.g. Redis) is given.
        self.bus: Bus = bus if bus is not None else InProcessBus()
        self._bus_given = bus is not None
        self._streaming = False  # results() is reading the bus
        self.run_key = run_key or secrets.token_hex(6)
        self._watchers: list[Callable[[list[Any]], Any]] = []
        self.loop: asyncio.AbstractEventLoop | None = None  # the loop of the current run
        self.scheduler: Scheduler | None = None
        self.run_id: str | None = None
        self._session = 1
        self._hook_failures: list[HookFailure] = []
        self._last_flush = 0.0
        #: ``None``: the cache the settings describe; ``False``: no cache; a ``TieredCache``: that one
        self._cache_given = cache
        self._cache: Any = None
        self._cache_owned: list[Any] = []
        self._gateway = Gateway(clock=self.clock)
        self._fallback_specs: dict[str, AgentSpec] = {}  # "agent~N" -> the agent with its N-th fallback
        #: what the resource guard samples: given (tests), else psutil on a real-time loop
        self._sampler = resource_sampler
        self._guard_report: dict[str, Any] = {}
        #: a ``telemetry.MetricsRegistry`` this run writes into (``--metrics-port`` serves it)
        self.metrics = metrics
        self._run_metrics: RunMetrics | None = None
        self._pricing = Pricing({key: Price(p.input, p.output) for key, p in self.spec.settings.prices.items()})
        #: whether a stored run's figures go into the metric history (off under a profiler)
        self.history = True

    def subscribe(self, listener: Callable[[TaskEvent], None]) -> None:
        """Receive every task state change synchronously, as the scheduler makes it.

        For display and monitoring prefer ``watch`` (batched, over the bus)."""
        self._listeners.append(listener)

    def watch(self, callback: Callable[[list[Any]], Any]) -> None:
        """Receive the run's progress from the bus in batches of ``(kind, task_id, agent, t)``
        (lists of four after a trip through Redis).

        Called from the event loop, a batch at a time (at most every 50 ms, or per 256 events);
        every batch is delivered before ``run()`` returns."""
        self._watchers.append(callback)

    async def results(self, *, resume: str | None = None) -> AsyncIterator[TaskRecord]:
        """Run the workflow and yield each task's record (done or failed) as it finishes.

        The run goes on in the background while the caller consumes; its RunResult is
        ``self.result`` afterwards. To stop early, close the generator (``async with
        contextlib.aclosing(runner.results()) as results: ...``): that cancels the run,
        which stays resumable."""
        sub = self.bus.subscribe(f"run.{self.run_key}.>", maxsize=4096, overflow="block")
        self._streaming = True
        task = asyncio.get_running_loop().create_task(self.run(resume=resume))
        try:
            async for message in sub:
                if message.topic.endswith(".end"):
                    break
                scheduler = self.scheduler
                assert scheduler is not None
                for kind, task_id, _agent, _t in message.data:
                    if kind in ("done", "failed"):
                        yield scheduler.instances[task_id].record
            await task
        finally:
            sub.close()
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

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
            for n, fallback in enumerate(self.spec.agents[name].fallbacks, 1):
                alias = f"{name}~{n}"
                spec = self._fallback_spec(name, n, fallback)
                self._fallback_specs[alias] = spec
                self._build_provider(alias, spec)
                self._pools[alias] = self._make_pool(alias, spec)
        self._build_gateway()
        # Pools whose members have a cold start worth hiding (processes, connections).
        self._warmable = {name for name, pool in self._pools.items()
                          if isinstance(pool, AgentPool) and self._agent_spec(name).pool.prewarm}

    def _fallback_spec(self, name: str, n: int, fallback: Any) -> AgentSpec:
        """Agent ``name`` with its ``n``-th fallback's provider, model and options ("name~n")."""
        return self.spec.agents[name].model_copy(update={
            "name": f"{name}~{n}", "provider": fallback.provider, "model": fallback.model,
            "options": fallback.options, "fallbacks": [], "quality": fallback.quality,
            "expected_latency": fallback.expected_latency})

    def _agent_spec(self, name: str) -> AgentSpec:
        return self.spec.agents.get(name) or self._fallback_specs[name]

    def _build_gateway(self) -> None:
        """One guard per provider+model (shared by its agents), one route per agent: its primary and fallbacks."""
        settings = self.spec.settings.resilience
        gateway = Gateway(clock=self.clock, budget=RetryBudget(settings.retry_budget, settings.retry_budget_min))
        self._gateway = gateway
        breaker = (settings.breaker.failures, settings.breaker.window, settings.breaker.cooldown,
                   settings.breaker.half_open, settings.breaker.failure_rate)
        from_env = env_limits()
        names = [*self._agents_used(), *self._fallback_specs]
        # Every agent on one provider+model shares one limiter: the settings for the provider, then
        # for the provider/model, then each agent's own ``rate_limit``, then the environment.
        keys: dict[str, list[str]] = {}
        own: dict[str, list[dict[str, Any]]] = {}
        for name in names:
            agent = self._agent_spec(name)
            identity = self._identity(name, agent)
            kind = agent.provider.strip().lower()
            keys.setdefault(identity, [kind, f"{kind}/{agent.model}"])
            own.setdefault(identity, []).append(limit_fields(agent.rate_limit))
        layers: dict[str, list[dict[str, Any]]] = {}
        for identity, (kind, model_key) in keys.items():
            layers[identity] = [
                *(limit_fields(settings.limits[k]) for k in (kind, model_key) if k in settings.limits),
                *own[identity],
                *(from_env[k] for k in (kind, model_key) if k in from_env),
            ]
        for name in self._agents_used():
            agent = self.spec.agents[name]
            targets = [self._target(name, agent, layers, breaker)]
            targets += [self._target(f"{name}~{n}", self._fallback_specs[f"{name}~{n}"], layers, breaker)
                        for n in range(1, len(agent.fallbacks) + 1)]
            gateway.add_route(name, targets, agent.routing)

    def _identity(self, name: str, agent: AgentSpec) -> str:
        provider = self._providers[name]
        url = getattr(provider, "url", None)
        label = f"{provider.name}/{agent.model}"
        return f"{label}@{url}" if isinstance(url, str) and url else label

    def _target(self, name: str, agent: AgentSpec, layers: dict[str, list[dict[str, Any]]],
                breaker: tuple[int, float, float, int, float]) -> Target:
        provider = self._providers[name]
        identity = self._identity(name, agent)
        limits = merge_limits(layers[identity])
        shared = None
        if limits.get("shared"):
            shared = self._shared_limiter(identity, limits)
        http = bool(getattr(provider, "warm_path", None)) and name not in self._given_providers
        guard = self._gateway.guard(identity, limits=limits, http=http, breaker=breaker, shared=shared)
        hedge = agent.hedge
        policy = None
        if hedge is not None and hedge.after is None:
            policy = HedgePolicy(hedge.percentile, hedge.min_samples, window=max(hedge.window, hedge.min_samples))
        return Target(name=name, label=f"{provider.name}/{agent.model}", model=agent.model, pool=self._pools[name],
                      guard=guard, quality=agent.quality, expected_latency=agent.expected_latency,
                      hedge=policy, hedge_after=hedge.after if hedge is not None else None)

    def _shared_limiter(self, identity: str, limits: dict[str, Any]) -> Any:
        url = self.spec.settings.redis or os.environ.get("AGENTFLEET_REDIS")
        if not url:
            file, line = self.spec.locate("settings", "redis")
            raise SpecError(f"limits for {identity} are 'shared', which needs a Redis: set settings.redis "
                            "(or AGENTFLEET_REDIS) to a URL like redis://127.0.0.1:6379/0",
                            file=file, line=line, field="settings.redis")
        from ..resilience import SharedRateLimiter

        return SharedRateLimiter(url, identity, rpm=limits.get("rpm"), tpm=limits.get("tpm"),
                                 max_concurrency=limits.get("max_concurrency"), burst_requests=limits.get("burst"))

    def _make_pool(self, name: str, agent: AgentSpec) -> AgentPool | SlotPool:
        """A pool for ``agent``: members over one shared provider, or (command workers) one each."""
        p = agent.pool
        provider = self._providers[name]
        common: dict[str, Any] = dict(size=p.size, max=p.max, queue=p.queue, on_full=p.on_full,
                                      idle_timeout=p.idle_timeout, health_interval=p.health_interval, clock=self.clock)
        if self.executor == "ray" and name not in self._given_providers:
            # The members are the provider's Ray actors; here, slots bound the calls in flight.
            return SlotPool(name, provider, size=p.size, max=p.max, queue=p.queue, on_full=p.on_full,
                            clock=self.clock)
        if name not in self._given_providers and _one_process_per_member(agent):
            return AgentPool(name, lambda: self._new_provider(agent), **common)
        # HTTP providers share one client; warming each member opens one more pooled connection.
        if name not in self._given_providers and getattr(provider, "warm_path", None):
            return AgentPool(name, lambda: provider, shared=True, provider=provider, warm_each=True,
                             close_shared=False, **common)
        # Nothing to warm per member (sim, python, per-task command, given providers): slots.
        return SlotPool(name, provider, size=p.size, max=p.max, queue=p.queue, on_full=p.on_full, clock=self.clock)

    def _new_provider(self, agent: AgentSpec) -> Provider:
        if self._factory is None:
            from ..providers import build_provider

            return build_provider(agent, clock=self.clock, latency_scale=self.latency_scale, seed=self.seed)
        return self._factory(agent, clock=self.clock, latency_scale=self.latency_scale, seed=self.seed)

    def _build_provider(self, name: str, spec: AgentSpec | None = None) -> None:
        if name in self._given_providers:
            self._providers[name] = self._given_providers[name]
            return
        try:
            self._providers[name] = self._new_provider(spec if spec is not None else self.spec.agents[name])
        except ProviderConfigError as exc:
            base, _, nth = name.partition("~")
            file, line = (self.spec.locate("agents", base, "fallbacks", int(nth) - 1) if nth
                          else self.spec.locate("agents", name))
            where = f"{file}:{line}: " if line else (f"{file}: " if file != "<python>" else "")
            text = str(exc).replace(f"agent {name!r}", f"agent {base!r}, fallback {nth}") if nth else str(exc)
            located = type(exc)(f"{where}{text}")  # the message already names the provider
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
                for n, fallback in enumerate(self.spec.agents[name].fallbacks, 1):
                    alias = f"{name}~{n}"
                    try:
                        self._build_provider(alias, self._fallback_spec(name, n, fallback))
                    except MissingCredentials as exc:
                        warnings.append(str(exc))
        finally:
            await self._close_providers()
            self._providers.clear()
        return warnings

    async def _close_providers(self) -> None:
        await self._gateway.aclose()
        for pool in self._pools.values():
            await pool.aclose()
        for name, provider in self._providers.items():
            if name not in self._given_providers:
                await provider.aclose()
        for store in (self._artifacts, self._memory):
            if store is not None and self.store is None:
                store.close()

    # -- running ------------------------------------------------------------------------

    async def run(self, *, resume: str | None = None, start: str | None = None, join: str | None = None) -> RunResult:
        """Run the workflow to the end, or resume run ``resume`` from the store. ``start`` is a run
        row already in the store that this process has claimed (``RunStore.claim_queued``): it runs
        as that run's first session instead of a new row."""
        self._hooks.validate()
        join = join if join is not None else self.joining
        if join is not None and (self.store is None or self.share is None):
            raise AgentFleetError("joining a run needs its run store and the Redis it shares its tasks on")
        if (resume is not None or start is not None) and self.store is None:
            raise AgentFleetError(f"{'resuming' if resume is not None else 'starting a stored run'} needs a run store")
        # Providers first: a missing key or unknown provider is an error before any run row exists.
        try:
            if self._bus_given:
                await self.bus.connect()  # an unreachable Redis is one clear error, before anything runs
            self._build_providers()
            if self.executor == "ray":  # the actors start (processes, imports, providers) before the clock does
                await asyncio.gather(*(p.warm() for p in self._providers.values() if hasattr(p, "warm")))
            return await self._run(resume, start, join)
        finally:
            await self._close_providers()
            status = self.result.status if getattr(self, "result", None) is not None else "error"
            try:
                self.bus.publish_nowait(f"run.{self.run_key}.end", {"run_id": self.run_id, "status": status})
            except AgentFleetError:
                pass  # a full or closed bus must not turn a finished run into an error

    async def _run(self, resume: str | None, start: str | None = None, join: str | None = None) -> RunResult:
        previous: dict[str, TaskRecord] = {}
        await self._open_cache()  # an unusable cache is an error before any run row exists
        if join is not None:
            # Another runner owns the run row; this one helps with its tasks (same session).
            assert self.store is not None
            self.run_id = self.store.resolve(join)
            previous = {r.task_id: r for r in self.store.load_tasks(self.run_id) if r.state == TaskState.DONE}
            self._session = self.store.get_run(self.run_id).sessions
        elif resume is not None:
            assert self.store is not None
            self.run_id = self.store.resolve(resume)
            previous = {r.task_id: r for r in self.store.load_tasks(self.run_id) if r.state == TaskState.DONE}
            self._session = self.store.begin_session(self.run_id)
        elif start is not None:
            self.run_id = start
        elif self.store is not None:
            self.run_id = self.store.create_run(
                name=self.spec.name, spec_path=self._spec_path, spec_text=self.spec.source_text,
                overrides=self._overrides, options=self._options,
            )
        self.loop = asyncio.get_running_loop()
        self._open_stores()
        self._gateway.bind_time()
        limits = {name: float(pool.max * pool.per_member) for name, pool in self._pools.items()
                  if pool.max is not None}
        # Everything the scheduler builds lives for the whole run: no cyclic-GC passes over the
        # plan while it does (they were ~10% of a 10,000-step run's CPU, all spent in vain).
        with _no_cyclic_gc():
            scheduler = Scheduler(self.plan, self._execute, clock=self.clock, max_parallel=self.max_parallel,
                                  policy=self.policy, admission=self.admission, previous=previous,
                                  agent_limits=limits)
        self.scheduler = scheduler
        self._restore_context(previous)
        if self.share is not None and self.run_id is not None:
            from ..distributed import TaskClaims

            self.claims = TaskClaims(self.share, self.run_id, ttl=self.claim_ttl)
            scheduler._execute = self._execute_shared
        if self._warmable:
            scheduler.subscribe(self._lookahead)
        if self.store is not None:
            scheduler.subscribe(self._persist)
        if self.metrics is not None:
            self._run_metrics = RunMetrics(self.metrics, scheduler, self._pools)
            scheduler.subscribe(self._run_metrics.on_event)
        for listener in self._listeners:
            scheduler.subscribe(listener)
        responders = [self.bus.serve(ask_topic(self.run_key, name), functools.partial(self._answer, name))
                      for name in self._pools]
        outbox = ProgressOutbox(self.bus, progress_topic(self.run_key))
        if self._bus_given or self._watchers or self._streaming:
            # Progress goes on the bus when something can listen: a watcher, results(), or a bus
            # passed in (other processes, the service). A private bus nobody reads costs nothing.
            scheduler.subscribe(outbox.on_event)
        watching = self._start_watchers()
        monitor = await self._start_guard(scheduler)
        # One origin for the tasks' times, SLA alerts and resource samples: the run's t=0.
        origin = self.clock.now()
        since_start = functools.partial(_elapsed, self.clock.now, origin)
        watch = self._start_sla(scheduler, since_start)
        sampling = self._start_resources(since_start)
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
                        await scheduler.run(t0=origin)
                else:
                    await scheduler.run(t0=origin)
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
            if monitor is not None:
                await monitor.aclose()
            alerts = await watch.aclose() if watch is not None else []
            samples = await sampling.aclose() if sampling is not None else []
            if self._run_metrics is not None:
                self._run_metrics.close()
            records = [inst.record for inst in scheduler.instances.values()]
            self._measure_baseline(scheduler)
            result = RunResult(
                run_id=self.run_id, name=self.spec.name, status=status, records=records, failure=failure,
                hook_failures=self._hook_failures, elapsed=time.perf_counter() - wall0,
                max_parallel=self.max_parallel, latency_scale=self.latency_scale,
                providers=tuple(sorted({p.name for p in self._providers.values()})),
                pools=self.pool_statistics(), resilience=self._gateway.statistics(),
                cache=await self._close_cache(), guard=dict(self._guard_report), alerts=alerts,
                resource_samples=samples, resources=summarize_resources(samples),
            )
            self.result = result
            if self.claims is not None:
                result.shared = {"owner": self.claims.owner, "executed": self.claims.executed,
                                 "adopted": self.claims.adopted}
                await self.claims.aclose()
            for responder in responders:
                responder.close()
            outbox.flush()
            payload = {"run_id": self.run_id, "status": status, "failure": failure, "counts": result.counts()}
            if status != "interrupted":
                await self._fire("on_run_end", payload)
                await outbox.aclose()
                await self._stop_watchers(watching, drain=True)
            else:
                await self._stop_watchers(watching, drain=False)
            if self.store is not None and self.run_id is not None:
                for record in records:
                    self.store.note_task(self.run_id, self._session, record)
                self.store.finish_run(self.run_id, status, error=failure, summary={
                    "counts": result.counts(), "latency_scale": self.latency_scale,
                    "max_parallel": self.max_parallel, "context_tokens": result.context_tokens,
                    "naive_tokens": result.naive_tokens,
                    "pools": {name: dataclasses.asdict(stats) for name, stats in result.pools.items()},
                    "resilience": [dataclasses.asdict(stats) for stats in result.resilience],
                    "guard": self._guard_report, "alerts": alerts,
                    "cache": result.cache, "resources": result.resources, "cost_usd": result.cost_usd})
                self._keep_history(result)
        return result

    def _start_resources(self, now: Callable[[], float]) -> RunResources | None:
        """Sample the process and its children while the run goes (``settings.telemetry``): only for a
        stored run on a real clock (a virtual-time run's machine load says nothing about it)."""
        spec = self.spec.settings.telemetry
        if not spec.resources or self.store is None:
            return None
        if getattr(asyncio.get_running_loop(), "virtual_time", False):
            return None
        sampling = RunResources(ProcessSampler(), now=now, sleep=self.clock.sleep, interval=spec.interval)
        sampling.start()
        return sampling

    def _keep_history(self, result: RunResult) -> None:
        """The run's resource samples beside it, and its headline figures into the store's metric
        history (``agentfleet trends``, anomalies against earlier runs) when they describe a whole run
        made the usual way: not an interrupted one, not one resumed from an earlier session (its
        figures would cover part of the work) and not one under a profiler (``history = False``).
        A store error here is noted as a hook failure, never fatal: the run itself is stored."""
        assert self.store is not None and self.run_id is not None
        from ._sla import run_figures

        try:
            if result.resource_samples:
                self.store.put_extra(self.run_id, "resources", json.dumps(result.resource_samples))
            if (not self.history or result.status == "interrupted"
                    or any(r.resumed for r in result.records)):
                return
            ran = [r for r in result.records if r.started_at is not None and r.ended_at is not None]
            makespan = (max(r.ended_at or 0.0 for r in ran) - min(r.started_at or 0.0 for r in ran)) if ran else 0.0
            cache = result.cache
            figures = run_figures(result.records, elapsed=makespan, cache_hits=int(cache.get("hits", 0)),
                                  cache_lookups=int(cache.get("lookups", 0)))
            figures.update(result.resources)
            figures["latency_scale"] = float(self.latency_scale)
            self.store.record_metrics(self.run_id, self.spec.name, time.time(), figures)
        except (StoreError, sqlite3.Error, OSError) as exc:
            self._hook_failures.append(HookFailure(hook="metric history", event="on_run_end",
                                                   message=f"{type(exc).__name__}: {exc}"))

    async def _start_guard(self, scheduler: Scheduler) -> Any:
        """The local resource guard: under CPU or memory pressure, fewer CPU-bound (command, python)
        tasks at once and low tiers held back (see docs/resilience.md). None when off."""
        spec = self.spec.settings.resilience.guard
        if not spec.enabled:
            return None
        sampler = self._sampler
        if sampler is None:
            if getattr(asyncio.get_running_loop(), "virtual_time", False):
                return None  # the real machine's load says nothing about a virtual-time run
            from ..resilience import ResourceSampler

            sampler = ResourceSampler()
        cpu_bound = [name for name, agent in self.spec.agents.items()
                     if agent.provider.strip().lower() in ("command", "python")]
        hold = self._hold_below()
        if not cpu_bound and hold is None:
            return None
        from ..resilience import ResourceGuard, ResourceMonitor

        guard = ResourceGuard(cpu_high=spec.cpu, cpu_low=min(spec.cpu_low, spec.cpu), mem_high=spec.memory,
                              mem_low=min(spec.memory_low, spec.memory), hold_tiers_below=hold)
        report = self._guard_report
        report.update(changes=0, lowest_factor=1.0, held=0)

        def apply(decision: Any) -> None:
            report["changes"] += 1
            report["lowest_factor"] = min(report["lowest_factor"], decision.factor)
            report["held"] += int(decision.hold)
            scheduler.throttle(cpu_bound, decision.factor,
                               decision.hold_tiers_below if decision.hold else None)

        monitor = ResourceMonitor(guard, sampler, self.clock, interval=spec.interval, on_change=apply)
        await monitor.start()
        return monitor

    def _start_watchers(self) -> list[tuple[Subscription, asyncio.Task[None]]]:
        watching = []
        for callback in self._watchers:
            sub = self.bus.subscribe(progress_topic(self.run_key), maxsize=1024, overflow="block")
            watching.append((sub, asyncio.get_running_loop().create_task(_watch(sub, callback))))
        return watching

    async def _stop_watchers(self, watching: list[tuple[Subscription, asyncio.Task[None]]], *, drain: bool) -> None:
        if not watching:
            return
        if drain:
            # An empty batch marks the end: each watcher has had everything before it.
            await self.bus.publish(progress_topic(self.run_key), [])
            await asyncio.gather(*(task for _, task in watching), return_exceptions=True)
        for sub, task in watching:
            sub.close()
            if not task.done():
                task.cancel()

    # -- context, pools and folds around the scheduler --------------------------------

    def _store_path(self) -> str:
        """Where the artifact and memory stores live: beside the runs, or in memory without a run store."""
        return self.store.path if self.store is not None else ":memory:"

    def _artifact_store(self) -> Any:
        """The artifact store, opened on the first output large enough to need it (most runs never do)."""
        if self._artifacts is None:
            from ..store import ArtifactStore

            self._artifacts = ArtifactStore(self._store_path())
        return self._artifacts

    def _open_stores(self) -> None:
        """The memory store, when an agent reads memory or a task writes it."""
        from ..store import MemoryStore

        path = self._store_path()
        if self._memory is None and (any(a.memory is not None for a in self.spec.agents.values())
                                     or any(s.spec is not None and s.spec.remember is not None
                                            for s in self.plan.steps.values())):
            self._memory = MemoryStore(path)

    def _parse_sla(self) -> Any:
        """The SLA monitor of ``settings.sla`` (None without rules); a bad rule is a SpecError with its line."""
        sla = self.spec.settings.sla
        if sla is None or not sla.rules:
            return None
        from ..telemetry import SLAMonitor, parse_rule

        rules = []
        for n, text in enumerate(sla.rules):
            try:
                rules.append(parse_rule(text, where=f"settings.sla.rules[{n}]"))
            except SpecError as exc:
                file, line = self.spec.locate("settings", "sla", "rules", n)
                raise SpecError(str(exc), file=file, line=line, field=f"settings.sla.rules[{n}]") from None
        return SLAMonitor(rules)

    def _start_sla(self, scheduler: Scheduler, now: Callable[[], float]) -> Any:
        sla = self.spec.settings.sla
        if self._sla_monitor is None or sla is None:
            return None
        from ._sla import SLAWatch, sla_values

        def measure() -> dict[str, float | None]:
            stats = scheduler.statistics()
            cache = self._cache
            lookups = cache.statistics().gets if cache is not None else 0
            return sla_values((inst.record for inst in scheduler.instances.values()), ready=stats.ready,
                              running=stats.running, elapsed=scheduler.now(),
                              cache_hits=self._gateway.cache_counters.hits, cache_lookups=lookups)

        watch = SLAWatch(self._sla_monitor, clock=self.clock, now=now, interval=sla.interval, measure=measure,
                         webhook=sla.webhook, command=sla.command,
                         context={"workflow": self.spec.name, "run_id": self.run_id})
        watch.start()
        return watch

    def _hold_below(self) -> int | None:
        """The priority below which the resource guard holds tiers back (a tier name resolved)."""
        hold = self.spec.settings.resilience.guard.hold_below
        if not isinstance(hold, str):
            return hold
        tier = self.spec.settings.tiers.get(hold)
        if tier is None:
            file, line = self.spec.locate("settings", "resilience", "guard", "hold_below")
            raise SpecError(f"unknown tier {hold!r} (tiers: {', '.join(self.spec.settings.tiers)})",
                            file=file, line=line, field="settings.resilience.guard.hold_below")
        return tier.priority

    async def _open_cache(self) -> None:
        """The response cache the settings describe: L1 memory (one per process), L2 Redis when
        configured, L3 SQLite beside the runs. ``AGENTFLEET_CACHE=off`` (or ``--no-cache``) turns it off."""
        given = self._cache_given
        if given is False or self._cache is not None:
            return
        if given is not None:
            self._cache = given
        else:
            cfg = self.spec.settings.cache
            if not cfg.enabled or os.environ.get("AGENTFLEET_CACHE", "").strip().lower() in _OFF:
                return
            from ..cache import RedisCache, SqliteCache, TieredCache
            from ..store import parse_ttl

            levels: list[Any] = []
            if cfg.memory_entries and cfg.memory_bytes:
                levels.append(process_memory_cache(cfg.memory_entries, cfg.memory_bytes))
            if cfg.redis:
                redis = RedisCache(cfg.redis)
                self._cache_owned.append(redis)
                try:
                    await redis.lookup("agentfleet:ping", time.time())
                except CacheError as exc:
                    await redis.aclose()
                    file, line = self.spec.locate("settings", "cache", "redis")
                    raise SpecError(f"cannot use {redis.url} as the L2 cache ({exc}); start Redis or remove "
                                    "the setting", file=file, line=line, field="settings.cache.redis") from None
                levels.append(redis)
            if cfg.sqlite and self.store is not None:
                sqlite = (SqliteCache(self.store.path, max_bytes=cfg.sqlite_bytes) if cfg.sqlite_bytes
                          else SqliteCache(self.store.path))
                self._cache_owned.append(sqlite)
                levels.append(sqlite)
            if not levels:
                return
            self._cache = TieredCache(levels, default_ttl=parse_ttl(cfg.ttl))
        self._gateway.use_cache(self._cache, coalesce=self.spec.settings.resilience.coalesce)

    async def _close_cache(self) -> dict[str, Any]:
        """The run's cache figures; counters added to the persistent level; owned levels closed."""
        cache, self._cache = self._cache, None
        self._gateway.cache = None
        report: dict[str, Any] = {}
        if cache is not None:
            stats = cache.statistics()
            counters = self._gateway.cache_counters
            report = {
                "lookups": stats.gets, "hits": counters.hits, "misses": stats.misses, "writes": counters.writes,
                "unstorable": counters.unstorable,
                "coalesced": counters.coalesced, "saved_tokens": counters.saved_tokens,
                "saved_seconds": round(counters.saved_seconds, 6), "by_level": dict(counters.by_level),
                "levels": [{"name": level.name, "lookups": level.lookups, "hits": level.hits,
                            "misses": level.misses, "errors": level.errors,
                            "latency_mean": level.latency_mean, "latency_max": level.latency_max}
                           for level in stats.levels],
            }
            persistent = next((level for level in cache.levels if hasattr(level, "add_counters")), None)
            if persistent is not None:
                for level in stats.levels:
                    hits = counters.by_level.get(level.name, 0)
                    share = hits / counters.hits if counters.hits else 0.0
                    try:
                        persistent.add_counters(
                            level.name, hits=level.hits, misses=level.misses,
                            writes=counters.writes if level.name == "sqlite" else 0,
                            saved_tokens=round(counters.saved_tokens * share),
                            saved_seconds=counters.saved_seconds * share, lookup_seconds=level.latency_total)
                    except AgentFleetError:
                        pass  # figures are not worth failing a finished run for
        for level in self._cache_owned:
            closing = getattr(level, "aclose", None)
            if closing is not None:
                await closing()
            else:
                level.close()
        self._cache_owned.clear()
        return report

    def _restore_context(self, previous: dict[str, TaskRecord]) -> None:
        """On resume: finished outputs count as history, feed folds, and mark their steps started."""
        for record in previous.values():
            self._out_tokens[record.task_id] = record.tokens_out or estimate_tokens(output_text(record.output))
            sid, _, rest = record.task_id.partition("[")
            if sid not in self._started_steps:
                self._mark_started(sid)
            for agg in self._folded_by.get(sid, ()):
                self._aggregates[agg].add(record.output, int(rest[:-1]) if rest else 0)

    def _measure_baseline(self, scheduler: Scheduler) -> None:
        """Set each task's naive baseline: its own instructions plus every earlier output in full."""
        position = {sid: n for n, sid in enumerate(self.plan.order)}
        sent = sorted((i for i in scheduler.instances.values() if i.record.context_tokens),
                      key=lambda i: (position[i.step.id], i.index or 0))
        baseline = whole_history_baseline([(self._own_tokens.get(i.id, i.record.context_tokens),
                                             self._out_tokens.get(i.id, 0)) for i in sent])
        for inst, naive in zip(sent, baseline, strict=True):
            inst.record.naive_tokens = naive

    def _lookahead(self, event: TaskEvent) -> None:
        """DAG-aware pre-warming: when every dependency of a step has started, warm its pools."""
        if event.kind != "started":
            return
        sid = event.instance.step.id
        if sid in self._started_steps:
            return
        self._mark_started(sid)

    def _mark_started(self, sid: str) -> None:
        self._started_steps.add(sid)
        unstarted = self._unstarted_deps
        for user in self.plan.dependents[sid]:
            left = unstarted[user] - 1
            unstarted[user] = left
            if left == 0 and user not in self._warmed_steps:
                self._warm_for(self.plan.steps[user])

    def _warm_for(self, step: Step) -> None:
        """Ask the pools ``step`` will use for as many members as it can run at once."""
        self._warmed_steps.add(step.id)
        if not self._warmable:
            return  # slot pools only: nothing has a cold start
        task = step.spec
        names = [step.agent]
        if task is not None and task.review is not None:
            names.append(task.review.agent)
        if task is not None and task.context is not None and task.context.summarizer:
            names.append(task.context.summarizer)
        for name in names:
            if name not in self._warmable:
                continue
            pool = self._pools[name]
            limit = self.spec.agents[name].max_concurrency or self.max_parallel
            pool.prewarm(max(pool.size, min(step.expected_count, limit, self.max_parallel)))

    def _persist(self, event: TaskEvent) -> None:
        assert self.store is not None and self.run_id is not None
        record = event.instance.record
        if record.resumed and self.joining is not None:
            return  # finished before this runner joined: the owner's rows and events stand
        self.store.note_task(self.run_id, self._session, record)
        data = {"error": record.error} if record.error and event.kind in ("failed", "skipped", "cancelled") else None
        self.store.note_event(self.run_id, self._session, event.time, event.kind, record.task_id, data)
        # Results commit (with everything buffered) as they happen; other state changes are
        # written at most every FLUSH_INTERVAL of run time. No timer: nothing to cancel, and
        # no ticks perturbing a virtual clock.
        if event.time - self._last_flush >= FLUSH_INTERVAL:
            self._last_flush = event.time
            self.store.flush()

    def _spend(self, record: TaskRecord, response: ProviderResponse) -> None:
        """Count a provider answer's tokens against the task, and their cost when the model has a price."""
        record.tokens_in += response.tokens_in
        record.tokens_out += response.tokens_out
        cost = self._pricing.cost(response.provider, response.model, response.tokens_in, response.tokens_out)
        if cost:
            record.meta["cost_usd"] = record.meta.get("cost_usd", 0.0) + cost

    def _note_call(self, task_id: str, meta: dict[str, Any], started: float, waited_before: float) -> None:
        """Events for one provider call, in the store beside the state changes: the time it waited on a
        rate limiter or the adaptive gate (which happens at the start of the call), and a cache hit."""
        assert self.store is not None and self.run_id is not None
        waited = meta.get("limit_wait", 0.0) - waited_before
        if waited > 0.0:
            self.store.note_event(self.run_id, self._session, started, "rate_wait", task_id,
                                  {"seconds": round(waited, 6)})
        level = meta.get("cache")
        if level:
            self.store.note_event(self.run_id, self._session, started, "cache_hit", task_id, {"level": str(level)})

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
        aggregator = self._aggregates.get(step.id)
        if aggregator is not None and aggregator.error is not None:
            record.error = aggregator.error
            raise ProviderError(aggregator.error, provider="aggregate", retryable=False)
        agent = self.spec.agents[step.agent]
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
        if agent.memory is not None and self._memory is not None:
            system = self._with_memory(step.agent, agent, system)
        static = self._static_tokens.get(step.id)
        if static is not None:
            own = sent = static  # the same prompt and system for every instance: counted once per step
        else:
            system_tokens = estimate_tokens(system)
            sent = system_tokens + estimate_tokens(prompt)
            fixed_prompt = book.static_prompt(step.id) is not None
            own = system_tokens + estimate_tokens(self._own_prompt(inst)) if step.inputs and not fixed_prompt \
                else sent
            if fixed_prompt and book.static_system(step.agent) is not None and agent.memory is None:
                self._static_tokens[step.id] = sent
        self._own_tokens[inst.id] = own
        ctx = task.context if task is not None else None
        budget = ctx.max_tokens if ctx is not None and ctx.max_tokens else self.spec.settings.context.max_tokens
        if budget is not None:
            try:
                fitted = await self._fit_budget(inst, system, prompt, budget)
            except (ContextBudgetExceeded, ProviderError) as exc:
                record.error = str(exc)
                raise
            if fitted is not prompt:
                prompt = fitted
                sent = estimate_tokens(system) + estimate_tokens(prompt)
        schema = task.output_schema if task is not None else None
        timeout = step.timeout
        if timeout is not None and agent.provider == "sim":
            timeout *= self.latency_scale  # --scale speeds up simulated latencies, not real ones
        clock = self.clock
        scheduler = self.scheduler
        assert scheduler is not None
        store = self.store if self.run_id is not None else None
        run_id = self.run_id or ""
        enter_team(self, inst.id, step.agent)
        checked = task is not None and self._checks.has_checks(step)
        fixes = task.validation_retries if task is not None else 0
        base_prompt = prompt
        lost_once = False
        gateway = self._gateway
        route_at = 0  # the candidate (primary, then fallbacks) calls start from
        failures_before = 0  # failures counted against earlier candidates
        deadline = (task.deadline if task is not None else None) or timeout
        policy = task.cache if task is not None else None
        # Only a deterministic request (temperature 0) or a task that opts in can use the cache.
        caching = self._cache is not None and (policy is None or policy.enabled) and (
            agent.temperature == 0 or (policy is not None and policy.always))
        while True:
            record.attempts += 1
            began = clock.now()
            attempt_start = scheduler.now() if store is not None else 0.0
            request = ProviderRequest(
                task_id=inst.id, agent=step.agent, model=agent.model, system=system, prompt=prompt,
                max_tokens=agent.max_tokens, temperature=agent.temperature, output_schema=schema,
                timeout=timeout, options={"attempt": record.attempts},
            )
            plan = self._cache_plan(inst, request) if caching else None
            error: ProviderError | PoolError
            answer: Any = None
            waited_before = record.meta.get("limit_wait", 0.0)
            try:
                response = await gateway.call(step.agent, request, timeout=timeout, meta=record.meta,
                                              first=route_at, deadline=deadline, cache=plan)
                record.context_tokens = response.tokens_in or (
                    sent if prompt is base_prompt else estimate_tokens(system) + estimate_tokens(prompt))
                if plan is not None and (response.meta.get("cache") or record.meta.get("coalesced")):
                    # answered without a provider call of its own: what it would have cost is saved
                    record.meta["saved_tokens"] = response.tokens_in + response.tokens_out
                    saved = self._pricing.cost(response.provider, response.model, response.tokens_in,
                                               response.tokens_out)
                    if saved:
                        record.meta["saved_usd"] = saved
                else:
                    self._spend(record, response)
                    if self._run_metrics is not None:
                        self._run_metrics.provider_call(f"{response.provider}/{response.model}", response.latency)
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
                if store is not None:
                    self._note_call(inst.id, record.meta, attempt_start, waited_before)
                if plan is not None and not record.meta.get("coalesced"):
                    await gateway.remember(plan, response)
                await self._succeeded(inst, output, response, store, run_id, attempt_start)
                return
            if store is not None:
                self._note_call(inst.id, record.meta, attempt_start, waited_before)
                store.record_attempt(run_id, self._session, record, "failed", attempt_start,
                                     scheduler.now(), str(error))
            if self._run_metrics is not None and isinstance(error, RateLimited):
                self._run_metrics.rate_limited()
            # Time lost, each second counted once: the attempt's wait on the limiter is a rate-limit
            # wait (meta["limit_wait"]); the rest of an attempt that timed out is timeout time; the
            # rest of any other failed attempt, and the backoff after it, is retry time.
            accounted = record.meta.get("limit_wait", 0.0) - waited_before
            if isinstance(error, ProviderTimeout):
                timed_out = max(0.0, clock.now() - began - accounted)
                record.meta["timeout_s"] = record.meta.get("timeout_s", 0.0) + timed_out
                accounted += timed_out
            if isinstance(error, WorkerLost) and not lost_once:
                lost_once = True  # its worker died under it: once more, on a fresh member, at once
                continue
            failures = record.attempts - record.meta.get("rejected", 0)  # redone rejections are not retries
            if isinstance(error, ProviderError) and error.retryable:
                own = failures - failures_before  # failures on the current candidate
                more = route_at + 1 < gateway.candidates(step.agent)
                reopens = gateway.reopens_in(step.agent, route_at)
                # an open circuit with a fallback behind it: fail over now rather than wait it out
                if own <= step.retries and not (more and (isinstance(error, CircuitOpen) or reopens is not None)):
                    if gateway.budget.try_retry(clock.now()):
                        # Back off by the provider's health, not the task's luck: a provider that keeps
                        # answering others fails this task by chance (retry soon); one failing every
                        # caller backs everyone off exponentially.
                        streak = gateway.failure_streak(step.agent, route_at)
                        delay = self._retry_delay(max(1, min(own, streak)), error, reopens)
                        if store is not None:
                            store.note_event(run_id, self._session, scheduler.now(), "retry", inst.id,
                                             {"attempt": record.attempts, "delay": round(delay, 6),
                                              "error": str(error)[:300]})
                        await clock.sleep(delay)
                        lost = max(0.0, clock.now() - began - accounted)
                        record.meta["retry_s"] = record.meta.get("retry_s", 0.0) + lost
                        continue
                    spent = gateway.budget.statistics(clock.now())
                    error = RetryBudgetExhausted(
                        f"task {inst.id}: not retried, the run's retry budget is spent ({spent.retries} "
                        f"retries for {spent.requests} requests in the last {gateway.budget.window_s:g}s); last error: "
                        f"{error}", provider=record.provider, cause=error)
                if more:
                    # the primary is open or exhausted: the next fallback, at once
                    route_at += 1
                    failures_before = failures
                    record.meta["fallbacks"] = record.meta.get("fallbacks", 0) + 1
                    continue
            record.error = str(error)
            if hooks[2]:
                await self._fire("on_failure", {"task_id": inst.id, "agent": step.agent, "error": record.error,
                                                "attempts": record.attempts})
            raise error

    async def _execute_shared(self, inst: Instance) -> None:
        """``_execute`` under a claim in Redis: run the task if this runner claims it, else take the
        outcome of the runner that did (or claim it when that runner's claim lapses: it died)."""
        claims = self.claims
        record = inst.record
        while True:
            state, outcome = await claims.acquire(inst.id)
            if state == "owned":
                try:
                    await self._execute(inst)
                except asyncio.CancelledError:
                    await claims.release(inst.id)
                    raise
                except BaseException:
                    await claims.complete(inst.id, {"state": "failed", "error": record.error or "failed",
                                                    "attempts": record.attempts})
                    raise
                await claims.complete(inst.id, {"state": "done", "output": record.output, "attempts": record.attempts,
                                                "tokens_in": record.tokens_in, "tokens_out": record.tokens_out,
                                                "provider": record.provider, "meta": record.meta})
                return
            if state == "busy":
                outcome = await claims.wait(inst.id)
                if outcome is None:
                    continue  # its claimant died: claim it
            assert outcome is not None
            self._adopt(inst, outcome)
            return

    def _adopt(self, inst: Instance, outcome: dict[str, Any]) -> None:
        """Take the outcome another runner published for ``inst`` as this runner's own."""
        record = inst.record
        record.attempts = int(outcome.get("attempts") or 1)
        if outcome.get("state") != "done":
            record.error = str(outcome.get("error") or "failed in another runner")
            raise ProviderError(f"{inst.id} failed in another runner: {record.error}", provider=record.provider,
                                retryable=False)
        record.tokens_in = int(outcome.get("tokens_in") or 0)
        record.tokens_out = int(outcome.get("tokens_out") or 0)
        record.provider = str(outcome.get("provider") or record.provider)
        record.meta = {**record.meta, **dict(outcome.get("meta") or {}), "adopted": True}
        record.output = outcome.get("output")
        self._after_output(inst, record.output, record.tokens_out)
        if self.store is not None and self.run_id is not None and self.scheduler is not None:
            record.ended_at = self.scheduler.now()
            self.store.commit_result(self.run_id, self._session, record)  # the same row the claimant wrote

    def _retry_delay(self, failures: int, error: ProviderError, reopens_in: float | None) -> float:
        """Backoff with full jitter, never sooner than the server's Retry-After or the circuit's half-open."""
        wait = reopens_in
        if isinstance(error, RateLimited) and error.retry_after is not None:
            wait = max(wait or 0.0, error.retry_after)
        elif isinstance(error, CircuitOpen) and error.retry_at is not None:
            wait = max(wait or 0.0, error.retry_at - self.clock.now())
        return backoff_delay(failures, base=self._backoff[0], cap=self._backoff[1], rng=self._rng, retry_after=wait)

    def _cache_plan(self, inst: Instance, request: ProviderRequest) -> CachePlan | None:
        """The cache key and tags of a task's call, or None when its answer may not be reused."""
        from ..cache import cache_key, cacheable  # here, not at import: the cache package loads redis

        task = inst.step.spec
        policy = task.cache if task is not None else None
        if not cacheable(request, opt_in=policy is not None and policy.always):
            return None
        provider = self._providers[inst.step.agent]
        key = cache_key(request, provider=self._gateway.target(inst.step.agent, 0).guard.identity
                        if inst.step.agent in self._gateway.routes else provider.name)
        workflow = self.spec.name
        ttl = None
        if policy is not None and policy.ttl is not None:
            from ..store import parse_ttl

            ttl = parse_ttl(policy.ttl)
        sources = tuple(f"task:{workflow}/{dep}" for dep in inst.record.depends_on)
        if policy is not None:
            sources += tuple(policy.tags)
        return CachePlan(key=key, ttl=ttl, tags=(f"task:{workflow}/{inst.id}",), derived_from=sources)

    async def _answer(self, name: str, data: Any) -> str:
        """A teammate's question to agent ``name`` (over the bus), answered by a member of its pool."""
        agent = self.spec.agents[name]
        asked = data if isinstance(data, dict) else {"question": str(data)}
        task = str(asked.get("task", "?"))
        system = self._book.static_system(name)
        if system is None:
            system = self._book.system(name, task=task)
        request = ProviderRequest(
            task_id=f"{task}:ask:{name}", agent=name, model=agent.model, system=system,
            prompt=f"{asked.get('from', 'A teammate')} (working on {task}) asks you:\n{asked.get('question', '')}",
            max_tokens=agent.max_tokens, temperature=agent.temperature, timeout=agent.timeout,
            options={"asked_by": asked.get("from")})
        response = await self._gateway.call(name, request, timeout=agent.timeout)
        return response.text

    def _own_prompt(self, inst: Instance) -> str:
        """The prompt with every input blank: the task's own instructions, vars and item."""
        step = inst.step
        try:
            return self._book.prompt(step.id, task=inst.id, agent=step.agent,
                                     inputs=dict.fromkeys(step.inputs, BLANK), item=inst.item, index=inst.index)
        except (jinja2.TemplateError, TypeError, ValueError):
            return step.spec.prompt if step.spec is not None else ""

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
        if size > self._artifact_threshold:
            ref = self._artifact_store().put(output, run_id=self.run_id, task_id=inst.id if self.run_id else None)
            preview = make_preview(text or "", self._preview_chars)
            self._views[inst.id] = ArtifactView(inst.id, ref.digest, size, preview, output)
            inst.record.meta["artifact"] = ref.digest
        self._out_tokens[inst.id] = tokens_out or estimate_tokens(text if text is not None else output_text(output))
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
                                  timeout=reviewer.timeout,
                                  options={"review_of": inst.id, "attempt": inst.record.attempts})
        record = inst.record
        try:
            response = await self._gateway.call(review.agent, request, timeout=reviewer.timeout)
        except (ProviderError, TimeoutError) as exc:
            record.meta["review_error"] = str(exc) or type(exc).__name__
            return  # a reviewer that cannot answer does not fail the work it reviews
        self._spend(record, response)
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
        response = await self._gateway.call(summarizer, request, timeout=agent.timeout)
        self._spend(inst.record, response)
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
        if not text.strip():
            return  # nothing worth remembering
        key = None
        if remember.key:
            key = self._book.render_text(remember.key, task=inst.id, agent=inst.step.agent, item=inst.item,
                                         index=inst.index)
        owner, scope = (remember.team, "team") if remember.team else (inst.step.agent, "agent")
        self._memory.add(owner, remember.category, text, scope=scope, key=key, ttl=parse_ttl(remember.ttl),
                         source=f"run {self.run_id or '-'} task {inst.id}")


@contextlib.contextmanager
def _no_cyclic_gc() -> Iterator[None]:
    """Pause the cyclic GC while building long-lived structures (restores the previous state)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def _watch(sub: Subscription, callback: Callable[[list[Any]], Any]) -> None:
    async for message in sub:
        if not message.data:
            return
        done = callback(message.data)
        if inspect.isawaitable(done):
            await done


def _check_ttl(spec: WorkflowSpec, value: Any, *path: Any) -> None:
    from ..store import parse_ttl

    try:
        parse_ttl(value)
    except ValueError as exc:
        file, line = spec.locate(*path)
        field_name = ".".join(f"[{p}]" if isinstance(p, int) else p for p in path).replace(".[", "[")
        raise SpecError(str(exc), file=file, line=line, field=field_name) from None


_OFF = frozenset({"0", "off", "false", "no"})
_MEMORY_CACHES: dict[tuple[int, int], Any] = {}


def process_memory_cache(entries: int, size: int) -> Any:
    """The L1 cache of this process for a size (runs in one process share their answers)."""
    cache = _MEMORY_CACHES.get((entries, size))
    if cache is None:
        from ..cache import MemoryCache

        cache = _MEMORY_CACHES[(entries, size)] = MemoryCache(max_entries=entries, max_bytes=size)
    return cache


def _one_process_per_member(agent: AgentSpec) -> bool:
    """A command agent in worker mode: each pool member owns its own long-lived process."""
    return agent.provider.strip().lower() == "command" and agent.options.get("mode") == "worker"
