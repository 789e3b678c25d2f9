"""Every error agentfleet raises on purpose.

    AgentFleetError                 base; ``exit_code`` is what the CLI exits with
    ├── SpecError                   a workflow file or Python spec is wrong (exit 2)
    │   │                           .file .line .field say where
    │   └── PlanError               the graph is wrong: cycle, missing dependency,
    │                               unknown agent, input nobody produces (exit 2)
    ├── SchedulerError              the run could not proceed
    │   ├── TaskFailed              one task failed for good; .task_id .cause
    │   └── ContextBudgetExceeded   a task's context is over its token budget
    │                               and its strategy is ``fail``; .task_id
    ├── PoolError                   an agent pool could not serve; .agent
    │   ├── PoolBackpressure        the pool's wait queue is full (policy ``error``)
    │   └── SpawnFailed             no pool member could be started
    ├── BusError                    the message bus could not deliver; .topic
    │   ├── BusTimeout              a request got no reply in time
    │   ├── BusOverflow             a subscriber's queue is full (policy ``error``)
    │   └── BusClosed               the bus or subscription is closed
    ├── ProviderError               a provider call failed; .provider .retryable
    │   │                           .headers (rate-limit headers of an HTTP error)
    │   ├── ProviderConfigError     bad option, bad URL, bad module path (exit 2)
    │   │   └── MissingCredentials  the API key's environment variable is not set
    │   ├── ProviderTimeout         the call took longer than its timeout
    │   ├── RateLimited             429-style answer; .retry_after seconds or None
    │   ├── CircuitOpen             a circuit breaker refuses calls to a failing
    │   │                           provider; .retry_at (clock time it half-opens)
    │   ├── RetryBudgetExhausted    retries are over the retry budget's ratio; the
    │   │                           original failure is .cause
    │   ├── WorkerLost              a pooled worker died mid-call; retry on a fresh one
    │   └── OutputInvalid           the output did not match the task's schema,
    │                               validator or reviewer's minimum score
    ├── CacheError                  a cache level could not answer; .level (the
    │                               tiered cache counts it as a miss, never fails the call)
    ├── StoreError                  the run database is unusable; .path
    │   ├── RunNotFound             no run with that id (exit 2)
    │   └── ArtifactNotFound        no artifact or memory entry with that id (exit 2)
    └── HookError                   a lifecycle hook failed; .hook .event

User errors (spec, plan, config, unknown run) exit with 2; everything else with 1.
Each message names what went wrong and where, in one line a person can act on.
"""

from __future__ import annotations

__all__ = [
    "AgentFleetError",
    "ArtifactNotFound",
    "BusClosed",
    "BusError",
    "BusOverflow",
    "BusTimeout",
    "CacheError",
    "CircuitOpen",
    "ContextBudgetExceeded",
    "HookError",
    "MissingCredentials",
    "OutputInvalid",
    "PlanError",
    "PoolBackpressure",
    "PoolError",
    "ProviderConfigError",
    "ProviderError",
    "ProviderTimeout",
    "RateLimited",
    "RetryBudgetExhausted",
    "RunNotFound",
    "SchedulerError",
    "SpawnFailed",
    "SpecError",
    "StoreError",
    "TaskFailed",
    "WorkerLost",
]


class AgentFleetError(Exception):
    """Base of every agentfleet error."""

    exit_code = 1


class SpecError(AgentFleetError):
    """A workflow spec is invalid; carries the file, line and field when known."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        super().__init__(self._render())

    def _render(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line:
                where += f":{self.line}"
        parts = [p for p in (where, self.field) if p]
        prefix = ": ".join(parts)
        return f"{prefix}: {self.message}" if prefix else self.message


class PlanError(SpecError):
    """The workflow graph is invalid (cycle, unknown agent, missing dependency...)."""


class SchedulerError(AgentFleetError):
    """The scheduler could not complete the run."""


class TaskFailed(SchedulerError):
    """A task failed after all its retries."""

    def __init__(self, task_id: str, cause: str) -> None:
        self.task_id = task_id
        self.cause = cause
        super().__init__(f"task {task_id!r} failed: {cause}")


class ProviderError(AgentFleetError):
    """A provider call failed.

    ``headers`` holds the rate-limit related headers of the HTTP answer that caused it
    (lowercase names: ``x-ratelimit-*``, ``anthropic-ratelimit-*``, ``retry-after``,
    ``retry-after-ms``, ``date``) when it came from an HTTP error status; otherwise None.
    ``status`` is that HTTP status (None for failures below HTTP and for other providers).
    """

    retryable = True
    headers: dict[str, str] | None = None
    status: int | None = None

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        retryable: bool | None = None,
        headers: dict[str, str] | None = None,
        status: int | None = None,
    ) -> None:
        self.provider = provider
        if retryable is not None:
            self.retryable = retryable
        if headers is not None:
            self.headers = headers
        if status is not None:
            self.status = status
        super().__init__(f"{provider}: {message}" if provider else message)


class ProviderConfigError(ProviderError):
    """A provider is misconfigured: missing API key, bad URL, unknown module."""

    exit_code = 2
    retryable = False


class MissingCredentials(ProviderConfigError):
    """The environment variable holding a provider's API key is not set."""


class ProviderTimeout(ProviderError):
    """A provider call exceeded its timeout."""


class RateLimited(ProviderError):
    """The provider answered 'too many requests'."""

    def __init__(self, message: str, *, provider: str = "", retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message, provider=provider, retryable=True)


class CircuitOpen(ProviderError):
    """A circuit breaker is open (or its half-open probes are all out): the call was not made.

    ``retry_at`` is the clock time at which the breaker will admit a probe. Retryable, but
    only after ``retry_at``; retrying sooner is refused again without touching the provider."""

    def __init__(self, message: str, *, provider: str = "", retry_at: float | None = None) -> None:
        self.retry_at = retry_at
        super().__init__(message, provider=provider, retryable=True)


class RetryBudgetExhausted(ProviderError):
    """A retry was refused because retries already exceed the budget's share of requests.

    Not retryable: the budget exists to stop retry storms against a struggling provider.
    ``cause`` is the failure that would have been retried."""

    retryable = False

    def __init__(self, message: str, *, provider: str = "", cause: BaseException | None = None) -> None:
        self.cause = cause
        super().__init__(message, provider=provider, retryable=False)


class WorkerLost(ProviderError):
    """A pooled worker (a long-lived command process) died or stopped answering mid-call.

    Retryable: the pool retires the member and the call goes to a fresh one."""


class OutputInvalid(ProviderError):
    """A task's output did not satisfy its declared output schema, validator or review."""


class ContextBudgetExceeded(SchedulerError):
    """A task's assembled context is over its token budget and its strategy is ``fail``."""

    exit_code = 1

    def __init__(self, message: str, *, task_id: str = "", tokens: int = 0, budget: int = 0) -> None:
        self.task_id = task_id
        self.tokens = tokens
        self.budget = budget
        super().__init__(message)


class PoolError(AgentFleetError):
    """An agent pool could not serve a request."""

    def __init__(self, message: str, *, agent: str = "") -> None:
        self.agent = agent
        super().__init__(f"pool {agent!r}: {message}" if agent else message)


class PoolBackpressure(PoolError):
    """The pool's bounded wait queue is full and its policy is ``error``."""


class SpawnFailed(PoolError):
    """A pool member could not be started (and no healthy member is left to serve)."""


class BusError(AgentFleetError):
    """The message bus could not deliver."""

    def __init__(self, message: str, *, topic: str = "") -> None:
        self.topic = topic
        super().__init__(f"topic {topic!r}: {message}" if topic else message)


class BusTimeout(BusError):
    """A request on the bus got no reply within its timeout."""


class BusOverflow(BusError):
    """A subscriber's bounded queue is full and its overflow policy is ``error``."""


class BusClosed(BusError):
    """The bus or the subscription is closed."""


class CacheError(AgentFleetError):
    """A cache level could not answer (Redis down, a damaged entry); ``.level`` names it.

    The tiered cache treats it as a miss for that level and counts it: a cache must never
    fail the call it is there to speed up.
    """

    def __init__(self, message: str, *, level: str = "") -> None:
        self.level = level
        super().__init__(f"cache level {level}: {message}" if level else message)


class StoreError(AgentFleetError):
    """The run database cannot be used."""

    def __init__(self, message: str, *, path: str = "") -> None:
        self.path = path
        super().__init__(f"{path}: {message}" if path else message)


class RunNotFound(StoreError):
    """No run has the requested id."""

    exit_code = 2


class ArtifactNotFound(StoreError):
    """No artifact (or memory entry) has the requested id or digest prefix."""

    exit_code = 2


class HookError(AgentFleetError):
    """A lifecycle hook raised or exited non-zero."""

    def __init__(self, message: str, *, hook: str = "", event: str = "") -> None:
        self.hook = hook
        self.event = event
        super().__init__(f"hook {hook!r} on {event}: {message}")
