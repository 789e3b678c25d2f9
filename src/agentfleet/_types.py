"""Shared types: the clock, the provider contract and the records a run produces.

Everything here is data or a Protocol; no I/O. Downstream layers (runtime, store,
analysis) speak these types so none of them needs another's internals.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "Clock",
    "LoopClock",
    "Provider",
    "ProviderRequest",
    "ProviderResponse",
    "TaskRecord",
    "TaskState",
]


@runtime_checkable
class Clock(Protocol):
    """A source of monotonic time in seconds and a way to wait on it.

    The default is the running event loop's clock; tests run on a virtual-time loop
    (``agentfleet.testing.run_virtual``) so timing is exact and costs no wall time.
    """

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class LoopClock:
    """The running asyncio loop's monotonic clock (virtual when the loop is virtual)."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@dataclass(slots=True)
class ProviderRequest:
    """One call to a model or program: everything a provider needs, already rendered.

    Treat it as read-only. It is not a frozen dataclass because one is built per call and a
    frozen ``__init__`` (an ``object.__setattr__`` per field) costs four times as much.
    """

    task_id: str
    agent: str
    model: str
    system: str
    prompt: str
    max_tokens: int | None = None
    temperature: float | None = None
    output_schema: dict[str, Any] | None = None
    timeout: float | None = None
    stream: bool = False
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class ProviderResponse:
    """A provider's answer: the text, parsed JSON when there is any, and token counts.

    Treat it as read-only (not frozen for the same reason as ``ProviderRequest``)."""

    text: str
    provider: str
    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    data: Any = None
    latency: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Provider(Protocol):
    """What runs a task's prompt: an LLM API, a program, a Python callable or the sim.

    ``name`` is the label written in every report (``sim`` is always ``sim``).
    ``complete`` raises ``agentfleet.errors.ProviderError`` subclasses on failure;
    ``RateLimited`` and ``ProviderTimeout`` are retryable, ``ProviderConfigError`` is not.
    """

    name: str

    async def complete(self, request: ProviderRequest) -> ProviderResponse: ...

    async def aclose(self) -> None: ...


class TaskState:
    """The states a task instance moves through (stored as these strings)."""

    PENDING = "pending"
    READY = "ready"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"  # an upstream task failed, or a fan-out race was already won
    CANCELLED = "cancelled"  # fail-fast or Ctrl-C stopped it
    INTERRUPTED = "interrupted"  # was running when the run stopped; resume reruns it

    FINAL = frozenset({DONE, FAILED, SKIPPED, CANCELLED})


@dataclass(slots=True)
class TaskRecord:
    """What happened to one task instance in a run; the unit the store and reports use.

    Times are seconds on the run's clock, relative to the run's start.
    ``ready_at`` is when the last dependency finished (queue wait = started_at - ready_at).
    """

    task_id: str
    agent: str
    state: str = TaskState.PENDING
    depends_on: tuple[str, ...] = ()
    tier: str = ""
    ready_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    attempts: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    output: Any = None
    error: str | None = None
    provider: str = ""
    expected_latency: float = 0.0
    resumed: bool = False
    context_tokens: int = 0  # tokens of context sent (provider usage where given, else estimated)
    naive_tokens: int = 0  # what passing the whole history of earlier outputs would have sent
    score: float | None = None  # the reviewer's score, 0-10, when the task declares a review
    meta: dict[str, Any] = field(default_factory=dict)  # validation rounds, context strategy, artifacts

    @property
    def duration(self) -> float:
        if self.started_at is None or self.ended_at is None:
            return 0.0
        return self.ended_at - self.started_at

    @property
    def queue_wait(self) -> float:
        if self.started_at is None or self.ready_at is None:
            return 0.0
        return max(0.0, self.started_at - self.ready_at)
