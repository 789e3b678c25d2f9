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
import jsonschema

from .._types import Clock, LoopClock, Provider, ProviderRequest, ProviderResponse, TaskRecord, TaskState
from ..errors import (
    AgentFleetError,
    MissingCredentials,
    OutputInvalid,
    ProviderConfigError,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    TaskFailed,
)
from ..plan import Plan, build_plan
from ..spec import WorkflowSpec
from ..store import RunStore
from ._hooks import HookFailure, HookRunner
from ._prompt import PromptBook, parse_output
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
        self._validators: dict[str, jsonschema.protocols.Validator] = {}
        for sid, step in self.plan.steps.items():
            schema = step.spec.output_schema if step.spec is not None else None
            if schema:
                cls = jsonschema.validators.validator_for(schema)
                try:
                    cls.check_schema(schema)
                except jsonschema.SchemaError as exc:
                    from ..errors import SpecError

                    file, line = self.spec.locate("tasks", step.index, "output_schema")
                    raise SpecError(f"invalid JSON schema: {exc.message}", file=file, line=line,
                                    field=f"tasks[{step.index}].output_schema") from None
                self._validators[sid] = cls(schema)
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

    def _build_providers(self) -> None:
        for name in self.spec.agents:
            self._build_provider(name)

    def _build_provider(self, name: str) -> None:
        if name in self._given_providers:
            self._providers[name] = self._given_providers[name]
            return
        if self._factory is None:
            from ..providers import build_provider

            factory: Callable[..., Provider] = build_provider
        else:
            factory = self._factory
        try:
            self._providers[name] = factory(self.spec.agents[name], clock=self.clock,
                                            latency_scale=self.latency_scale, seed=self.seed)
        except ProviderConfigError as exc:
            file, line = self.spec.locate("agents", name)
            where = f"{file}:{line}: " if line else (f"{file}: " if file != "<python>" else "")
            located = type(exc)(f"{where}{exc}")  # str(exc) already names the provider
            located.provider = exc.provider
            raise located from None

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
        for name, provider in self._providers.items():
            if name not in self._given_providers:
                await provider.aclose()

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
        scheduler = Scheduler(self.plan, self._execute, clock=self.clock, max_parallel=self.max_parallel,
                              policy=self.policy, admission=self.admission, previous=previous)
        self.scheduler = scheduler
        if self.store is not None:
            scheduler.subscribe(self._persist)
        for listener in self._listeners:
            scheduler.subscribe(listener)
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
        scheduler = self.scheduler
        assert scheduler is not None
        step = inst.step
        inputs: dict[str, Any] = {}
        for name in step.inputs:
            if step.map_kind == "zip" and name == step.map_source:
                inputs[name] = scheduler.twin(inst).record.output
            elif self.plan.steps[name].mapped:
                inputs[name] = scheduler.outputs(name)
            else:
                outs = scheduler.outputs(name)
                inputs[name] = outs[0] if outs else None
        return inputs

    async def _execute(self, inst: Instance) -> None:
        step = inst.step
        record = inst.record
        agent = self.spec.agents[step.agent]
        provider = self._providers[step.agent]
        record.provider = provider.name
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
        schema = step.spec.output_schema if step.spec is not None else None
        timeout = step.timeout
        if timeout is not None and agent.provider == "sim":
            timeout *= self.latency_scale  # --scale speeds up simulated latencies, not real ones
        clock = self.clock
        scheduler = self.scheduler
        assert scheduler is not None
        store = self.store if self.run_id is not None else None
        run_id = self.run_id or ""
        while True:
            record.attempts += 1
            attempt_start = scheduler.now() if store is not None else 0.0
            request = ProviderRequest(
                task_id=inst.id, agent=step.agent, model=agent.model, system=system, prompt=prompt,
                max_tokens=agent.max_tokens, temperature=agent.temperature, output_schema=schema,
                timeout=timeout, options={"attempt": record.attempts},
            )
            error: ProviderError
            try:
                if timeout is not None:
                    async with asyncio.timeout(timeout):
                        response = await provider.complete(request)
                else:
                    response = await provider.complete(request)
                output = self._output(step.id, response)
            except TimeoutError:
                error = ProviderTimeout(f"task {inst.id} exceeded its timeout of {timeout:g}s",
                                        provider=provider.name)
            except ProviderError as exc:
                error = exc
            else:
                record.output = output
                record.tokens_in += response.tokens_in
                record.tokens_out += response.tokens_out
                if store is not None:
                    # Durable before the scheduler counts the task done.
                    record.ended_at = scheduler.now()
                    store.record_attempt(run_id, self._session, record, "done", attempt_start,
                                         record.ended_at, None)
                    store.commit_result(run_id, self._session, record)
                if hooks[1]:
                    await self._fire("after_task", {
                        "task_id": inst.id, "agent": step.agent, "state": "done", "attempts": record.attempts,
                        "duration": scheduler.now() - (record.started_at or 0.0), "output": record.output,
                        "tokens_in": record.tokens_in, "tokens_out": record.tokens_out})
                return
            if store is not None:
                store.record_attempt(run_id, self._session, record, "failed", attempt_start,
                                     scheduler.now(), str(error))
            if error.retryable and record.attempts <= step.retries:
                retry_after = error.retry_after if isinstance(error, RateLimited) else None
                await clock.sleep(backoff_delay(record.attempts, base=self._backoff[0], cap=self._backoff[1],
                                                rng=self._rng, retry_after=retry_after))
                continue
            record.error = str(error)
            if hooks[2]:
                await self._fire("on_failure", {"task_id": inst.id, "agent": step.agent, "error": record.error,
                                                "attempts": record.attempts})
            raise error

    def _output(self, step_id: str, response: ProviderResponse) -> Any:
        validator = self._validators.get(step_id)
        if validator is None:
            return response.data if response.data is not None else response.text
        data = response.data
        if data is None:
            try:
                data = parse_output(response.text)
            except ValueError:
                snippet = response.text[:120].replace("\n", " ")
                raise OutputInvalid(f"output is not JSON but the task declares an output_schema: {snippet!r}",
                                    provider=response.provider) from None
        errors = sorted(validator.iter_errors(data), key=lambda e: list(e.path))
        if errors:
            first = errors[0]
            where = "/".join(str(p) for p in first.path) or "(root)"
            raise OutputInvalid(f"output does not match output_schema at {where}: {first.message}",
                                provider=response.provider)
        return data
