"""The workflow spec as pydantic v2 models: what a YAML file or the Python builder produces.

Models forbid unknown fields so a typo (``dependson:``) is an error with its line,
not a silently ignored key. Cross-references (agent names, dependencies, inputs,
cycles) are checked later by ``agentfleet.plan``, which sees the whole graph.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator

__all__ = [
    "AgentSpec",
    "AggregateSpec",
    "BreakerSpec",
    "CacheSettings",
    "ContextSettings",
    "ContextSpec",
    "FallbackSpec",
    "GuardSpec",
    "HedgeSpec",
    "HookSpec",
    "HooksSpec",
    "LimitSpec",
    "MapSpec",
    "MemorySpec",
    "PoolSpec",
    "PriceSpec",
    "RememberSpec",
    "ResilienceSettings",
    "ReviewSpec",
    "SLASpec",
    "SettingsSpec",
    "TaskCacheSpec",
    "TaskSpec",
    "TelemetrySettings",
    "TierSpec",
    "WorkflowSpec",
]

_ID_PATTERN = r"^[A-Za-z0-9_][A-Za-z0-9_\-]{0,127}$"

DEFAULT_TIERS: dict[str, tuple[int, float]] = {
    # name: (priority, reserved share of max_parallel)
    "orchestrator": (3, 0.0),
    "primary": (2, 0.0),
    "secondary": (1, 0.0),
    "specialised": (0, 0.0),
}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, populate_by_name=True)


class PoolSpec(_Model):
    """An agent's pool of ready members (provider client, rendered prompt, worker process).

    ``size`` members are kept ready; under queue pressure the pool grows up to ``max``
    and shrinks back after ``idle_timeout``. ``prewarm`` starts members ahead of need
    (when the workflow is about to reach the agent); otherwise on first use. At most
    ``queue`` callers wait for a member; past that ``on_full`` decides: ``wait`` (for a
    queue place) or ``error`` (a PoolBackpressure error).
    """

    size: int = Field(1, ge=0, le=10_000)
    prewarm: bool = True
    max: int | None = Field(None, ge=1, le=100_000)
    queue: int = Field(10_000, ge=0, le=10_000_000)
    on_full: Literal["wait", "error"] = "wait"
    idle_timeout: float = Field(30.0, gt=0)
    health_interval: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _max_at_least_size(self) -> PoolSpec:
        if self.max is not None and self.max < self.size:
            raise ValueError(f"pool max ({self.max}) is smaller than its size ({self.size})")
        return self


class MemorySpec(_Model):
    """Persistent memory injected into an agent's system prompt (entries kept across runs)."""

    categories: list[str] | None = None  # None: every category
    team: str | None = None  # also inject this team's shared entries
    max_tokens: int = Field(800, ge=1, le=1_000_000)


class LimitSpec(_Model):
    """Client-side limits for one provider+model, shared by every agent that calls it.

    ``rpm`` requests and ``tpm`` tokens per minute (token buckets; tokens estimated before a
    call and settled with the provider's reported usage), at most ``max_concurrency`` calls in
    flight (a slot is held until the answer arrives). ``adaptive`` sizes concurrency from the
    provider's answers (AIMD; on by default for HTTP providers, starting at
    ``initial_concurrency``). ``shared`` shares the buckets through Redis (``settings.redis``)
    with every runner using the same provider+model.
    """

    rpm: float | None = Field(None, gt=0, allow_inf_nan=False)
    tpm: float | None = Field(None, gt=0, allow_inf_nan=False)
    max_concurrency: int | None = Field(None, ge=1, le=100_000)
    # requests an idle client may send at once (default: a minute's worth)
    burst: float | None = Field(None, gt=0, allow_inf_nan=False)
    adaptive: bool | None = None
    initial_concurrency: int = Field(16, ge=1, le=100_000)
    shared: bool = False


class FallbackSpec(_Model):
    """An alternative provider/model for an agent, tried when the primary is open or exhausted.

    ``quality`` weighs candidates when the agent routes by latency (higher is better)."""

    provider: str
    model: str
    options: dict[str, Any] = Field(default_factory=dict)
    quality: float = Field(1.0, ge=0)
    expected_latency: float | None = Field(None, ge=0)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        # "anthropic/claude-3-5-haiku" = {provider: anthropic, model: claude-3-5-haiku}
        if isinstance(value, str):
            provider, sep, model = value.partition("/")
            if not sep or not provider or not model:
                raise ValueError(f"a fallback is 'provider/model' or a mapping, got {value!r}")
            return {"provider": provider, "model": model}
        return value


class HedgeSpec(_Model):
    """Hedged requests: when a call has not answered after the ``percentile`` of recent latencies
    (or a fixed ``after`` seconds), send one identical request more and keep the first answer."""

    percentile: float = Field(0.95, gt=0, lt=1)
    after: float | None = Field(None, gt=0)
    min_samples: int = Field(20, ge=1, le=100_000)
    window: int = Field(1000, ge=1, le=1_000_000)


class BreakerSpec(_Model):
    """Circuit breaker per provider+model: open when ``window`` seconds hold at least ``failures``
    failures that are at least ``failure_rate`` of the calls; half-open ``cooldown`` seconds later
    with ``half_open`` probe calls."""

    failures: int = Field(5, ge=1, le=1_000_000)
    failure_rate: float = Field(0.5, ge=0, le=1)
    window: float = Field(30.0, gt=0)
    cooldown: float = Field(15.0, ge=0)
    half_open: int = Field(1, ge=1, le=10_000)


class GuardSpec(_Model):
    """The local resource guard: above ``cpu`` (or ``memory``) use of the machine, CPU-bound agents
    (command, python) run fewer at once and tiers below ``hold_below`` wait; both recover below
    the ``*_low`` marks."""

    enabled: bool = True
    cpu: float = Field(0.9, gt=0, le=1)
    cpu_low: float = Field(0.7, gt=0, le=1)
    memory: float = Field(0.9, gt=0, le=1)
    memory_low: float = Field(0.8, gt=0, le=1)
    interval: float = Field(0.5, gt=0)
    hold_below: str | int | None = "primary"  # tier name or priority; lower tiers wait under pressure


class ResilienceSettings(_Model):
    """How provider calls absorb rate limits and faults (see docs/resilience.md)."""

    limits: dict[str, LimitSpec] = Field(default_factory=dict)  # "provider" or "provider/model"
    retry_budget: float = Field(1.0, ge=0, le=100)  # retries as a share of first attempts (per run)
    retry_budget_min: float = Field(1.0, ge=0)  # retries per second always allowed
    breaker: BreakerSpec = Field(default_factory=lambda: BreakerSpec())
    guard: GuardSpec = Field(default_factory=lambda: GuardSpec())
    coalesce: bool = True

    @field_validator("guard", mode="before")
    @classmethod
    def _guard_switch(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value


class CacheSettings(_Model):
    """The tiered response cache. L1 memory and L3 SQLite (the run database) are on by default;
    L2 Redis when ``redis`` is set. ``ttl`` is the default lifetime (seconds or "7d")."""

    enabled: bool = True
    ttl: float | str | None = "30d"
    memory_entries: int = Field(10_000, ge=0, le=100_000_000)
    memory_bytes: int = Field(64 * 2**20, ge=0)
    sqlite: bool = True
    sqlite_bytes: int | None = Field(None, ge=0)
    redis: str | None = None


class SLASpec(_Model):
    """SLA rules checked while a run goes (every ``interval`` seconds) and at its end, e.g.
    ``"p95_task_latency < 30s"``, ``"error_rate < 5%"``; a violation (and its recovery) is logged in
    the run's result, POSTed as JSON to ``webhook`` and handed to ``command`` (``$AGENTFLEET_ALERT``)."""

    rules: list[str] = Field(default_factory=list)
    webhook: str | None = None
    command: str | None = None
    interval: float = Field(1.0, gt=0)

    @model_validator(mode="before")
    @classmethod
    def _rules_only(cls, value: Any) -> Any:
        return {"rules": value} if isinstance(value, (list, str)) else value

    @field_validator("rules", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @field_validator("webhook")
    @classmethod
    def _http(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"webhook must be an http:// or https:// URL, got {value!r}")
        return value


class TelemetrySettings(_Model):
    """What a run records about itself beyond its tasks: ``resources`` samples the CPU, memory, disk
    and network I/O of the process and its children every ``interval`` seconds (stored with the run,
    charted in ``agentfleet report --html``)."""

    resources: bool = True
    interval: float = Field(0.5, ge=0.05, le=3600)


class PriceSpec(_Model):
    """A model's price in US dollars per million tokens (``settings.prices``), over the built-in list prices."""

    input: float = Field(ge=0)
    output: float = Field(0.0, ge=0)


class TaskCacheSpec(_Model):
    """A task's cache policy: ``enabled`` false never reads or writes the cache; ``always`` caches
    non-deterministic answers too (temperature above 0); ``tags`` mark what the answer derives from
    (``agentfleet cache invalidate TAG`` drops it and everything downstream)."""

    enabled: bool = True
    always: bool = False
    ttl: float | str | None = None
    tags: list[str] = Field(default_factory=list)


class AgentSpec(_Model):
    """A persona: who it is, what backs it and its limits."""

    name: str = Field("", pattern=r"^$|" + _ID_PATTERN)
    extends: str | None = None
    role: str = ""
    system: str = ""
    provider: str = "sim"
    model: str = "sim-default"
    tier: str = "primary"
    max_concurrency: int | None = Field(None, ge=1, le=100_000)
    timeout: float | None = Field(None, gt=0)
    retries: int = Field(0, ge=0, le=100)
    pool: PoolSpec = Field(default_factory=lambda: PoolSpec())
    memory: MemorySpec | None = None
    expected_latency: float | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    options: dict[str, Any] = Field(default_factory=dict)
    rate_limit: LimitSpec | None = None  # this agent's provider+model (merged with settings.resilience.limits)
    fallbacks: list[FallbackSpec] = Field(default_factory=list)
    routing: Literal["ordered", "latency"] = "ordered"
    quality: float = Field(1.0, ge=0)
    hedge: HedgeSpec | None = None

    @field_validator("hedge", mode="before")
    @classmethod
    def _hedge_switch(cls, value: Any) -> Any:
        if value is True:
            return {}
        return None if value is False else value


class MapSpec(_Model):
    """Fan-out: one task instance per item.

    ``over`` is a literal list, ``vars.NAME`` (a list variable), ``TASK`` / ``TASK.field``
    (a list in an upstream task's output, expanded when that task finishes) or the id of
    another mapped task (one instance per instance of it, each waiting only on its twin).
    """

    over: list[Any] | str
    mode: Literal["all", "first", "quorum"] = "all"
    quorum: int | None = Field(None, ge=1)
    expect: int | None = Field(None, ge=0, le=1_000_000)
    max_items: int = Field(10_000, ge=1, le=1_000_000)

    @model_validator(mode="after")
    def _quorum_given(self) -> MapSpec:
        if self.mode == "quorum" and self.quorum is None:
            raise ValueError("mode 'quorum' needs 'quorum: K' (how many successes end the fan-out)")
        if self.mode != "quorum" and self.quorum is not None:
            raise ValueError("'quorum' is only meaningful with mode: quorum")
        return self


class ContextSpec(_Model):
    """What a task's context may hold and what happens when it is too big.

    ``full`` names inputs passed in full even when large (others above the run's
    ``settings.context.artifact_threshold`` arrive as a reference with a preview).
    ``max_tokens`` bounds the rendered prompt plus system prompt; over it, ``strategy``
    ``truncate`` keeps the head and tail of the prompt, ``summarize`` asks the agent
    ``summarizer`` to shorten it (then truncates if still over), ``fail`` fails the task
    with a clear error.
    """

    full: list[str] | Literal["all"] = Field(default_factory=list)
    max_tokens: int | None = Field(None, ge=1)
    strategy: Literal["truncate", "summarize", "fail"] = "truncate"
    summarizer: str | None = None

    @field_validator("full", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) and value != "all" else value

    @model_validator(mode="after")
    def _summarizer_given(self) -> ContextSpec:
        if self.strategy == "summarize" and not self.summarizer:
            raise ValueError("strategy 'summarize' needs 'summarizer: AGENT' (the agent that shortens inputs)")
        return self


class ReviewSpec(_Model):
    """A reviewer agent scores the output 0-10; below ``min_score`` the task is redone."""

    agent: str
    min_score: float = Field(0.0, ge=0, le=10)
    criteria: str = ""


class RememberSpec(_Model):
    """After success, store (part of) the output in the agent's persistent memory."""

    category: str = "project_context"
    ttl: str | float | None = None  # "30d", "12h", seconds, or None for permanent
    key: str | None = None  # same key replaces the entry (e.g. "{{ task }}")
    team: str | None = None  # store in this team's shared memory instead of the agent's
    max_chars: int = Field(2000, ge=1)


class AggregateSpec(_Model):
    """Fold a mapped step's results one by one as they finish (no waiting for all).

    ``fold`` is a built-in (``list``, ``concat``, ``merge``, ``sum``, ``count``,
    ``extend``) or ``module:function`` called as ``fn(acc, output, index) -> acc``.
    The task's ``inputs.<over>`` is the folded value; a task with no ``agent`` just
    outputs it.
    """

    over: str
    fold: str = "list"
    initial: Any = None


class TaskSpec(_Model):
    """One step of the workflow (several instances when it has ``map``)."""

    id: str = Field(pattern=_ID_PATTERN)
    agent: str
    prompt: str = ""
    depends_on: list[str] = Field(default_factory=list)
    inputs: list[str] = Field(default_factory=list)
    map: MapSpec | None = None
    output_schema: dict[str, Any] | None = None
    phase: str | None = None
    timeout: float | None = Field(None, gt=0)
    retries: int | None = Field(None, ge=0, le=100)
    tier: str | None = None
    expected_latency: float | None = Field(None, ge=0)
    context: ContextSpec | None = None
    validator: str | None = None  # "module:function": None/True ok, False/str/raise = rejected
    review: ReviewSpec | None = None
    validation_retries: int = Field(2, ge=0, le=20)
    remember: RememberSpec | None = None
    aggregate: AggregateSpec | None = None
    cache: TaskCacheSpec | None = None
    deadline: float | None = Field(None, gt=0)  # for routing by latency; default: timeout

    @field_validator("cache", mode="before")
    @classmethod
    def _cache_switch(cls, value: Any) -> Any:
        if isinstance(value, bool):
            return {"enabled": value}
        return {"enabled": True, "always": True} if value == "always" else value

    @field_validator("review", mode="before")
    @classmethod
    def _review_shorthand(cls, value: Any) -> Any:
        return {"agent": value} if isinstance(value, str) else value

    @field_validator("remember", mode="before")
    @classmethod
    def _remember_shorthand(cls, value: Any) -> Any:
        if value is True:
            return {}
        return {"category": value} if isinstance(value, str) else value

    @field_validator("aggregate", mode="before")
    @classmethod
    def _aggregate_shorthand(cls, value: Any) -> Any:
        return {"over": value} if isinstance(value, str) else value

    @model_validator(mode="before")
    @classmethod
    def _aggregate_needs_no_agent(cls, value: Any) -> Any:
        # Only an aggregate task may leave out ``agent`` (the runtime folds its input itself).
        if isinstance(value, dict) and "agent" not in value and value.get("aggregate") is not None:
            return {**value, "agent": ""}
        return value

    @field_validator("map", mode="before")
    @classmethod
    def _map_shorthand(cls, value: Any) -> Any:
        if isinstance(value, (list, str)):
            return {"over": value}
        return value

    @field_validator("depends_on", "inputs", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            value = [value]
        if isinstance(value, list):
            return [str(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
        return value

    @field_validator("id", "agent", mode="before")
    @classmethod
    def _number_as_name(cls, value: Any) -> Any:
        # ``id: 1`` in YAML is an int; a number is a fine task id.
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


class TierSpec(_Model):
    """A priority tier; ``reserve`` is the share of ``max_parallel`` only it (or higher) may use."""

    priority: int = 0
    reserve: float = Field(0.0, ge=0.0, le=1.0)


class HookSpec(_Model):
    """A lifecycle hook: a Python callable (``module:function``) or a shell command."""

    python: str | None = None
    command: str | None = None
    timeout: float = Field(30.0, gt=0)

    @model_validator(mode="after")
    def _exactly_one(self) -> HookSpec:
        if (self.python is None) == (self.command is None):
            raise ValueError("a hook needs exactly one of 'python: module:function' or 'command: ...'")
        return self

    @property
    def label(self) -> str:
        return self.python or self.command or ""


class HooksSpec(_Model):
    """Hooks per lifecycle event; each event takes one hook or a list."""

    before_task: list[HookSpec] = Field(default_factory=list)
    after_task: list[HookSpec] = Field(default_factory=list)
    on_failure: list[HookSpec] = Field(default_factory=list)
    on_run_end: list[HookSpec] = Field(default_factory=list)

    @field_validator("before_task", "after_task", "on_failure", "on_run_end", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        if value is None:
            return []
        if isinstance(value, (str, dict)):
            value = [value]
        out = []
        for item in value:
            if isinstance(item, str):
                item = {"python": item} if _looks_like_callable(item) else {"command": item}
            out.append(item)
        return out


def _looks_like_callable(text: str) -> bool:
    module, sep, _ = text.partition(":")
    return bool(sep) and " " not in text and module.replace(".", "").replace("_", "").isalnum()


class ContextSettings(_Model):
    """Run-wide context defaults: when outputs travel by reference, and how big a preview is."""

    artifact_threshold: int = Field(2000, ge=0)  # characters; 0 = every output by reference
    preview_chars: int = Field(240, ge=0, le=100_000)
    max_tokens: int | None = Field(None, ge=1)  # default per-task budget


class SettingsSpec(_Model):
    """Run-wide scheduling settings."""

    max_parallel: int = Field(16, ge=1, le=1_000_000)
    policy: Literal["fail_fast", "continue"] = "fail_fast"
    admission: Literal["critical_path", "fifo"] = "critical_path"
    timeout: float | None = Field(None, gt=0)
    tiers: dict[str, TierSpec] = Field(
        default_factory=lambda: {k: TierSpec(priority=p, reserve=r) for k, (p, r) in DEFAULT_TIERS.items()}
    )
    latency_scale: float = Field(1.0, gt=0)
    context: ContextSettings = Field(default_factory=lambda: ContextSettings())
    resilience: ResilienceSettings = Field(default_factory=lambda: ResilienceSettings())
    cache: CacheSettings = Field(default_factory=lambda: CacheSettings())
    redis: str | None = None  # Redis URL for limits shared across runners (``shared: true``)
    #: where agents' provider calls run: ``local`` (this process's event loop) or ``ray`` (each
    #: agent's pool as Ray actors, on the cluster at ``ray_address`` or a local one)
    executor: Literal["local", "ray"] = "local"
    ray_address: str | None = None
    sla: SLASpec | None = None
    #: USD per million tokens by ``provider/model`` or ``model``: the cost of a run (and ``cost_per_run``
    #: SLA rules) for models the built-in table lacks or at your own rates
    prices: dict[str, PriceSpec] = Field(default_factory=dict)
    telemetry: TelemetrySettings = Field(default_factory=lambda: TelemetrySettings())

    @field_validator("cache", mode="before")
    @classmethod
    def _cache_switch(cls, value: Any) -> Any:
        return {"enabled": value} if isinstance(value, bool) else value


class WorkflowSpec(_Model):
    """A whole workflow: agents, tasks, settings, variables and hooks."""

    name: str = "workflow"
    description: str = ""
    version: int = 1
    vars: dict[str, Any] = Field(default_factory=dict)
    settings: SettingsSpec = Field(default_factory=lambda: SettingsSpec())
    agents: dict[str, AgentSpec]
    tasks: list[TaskSpec] = Field(min_length=1)
    hooks: HooksSpec = Field(default_factory=lambda: HooksSpec())

    # Where the spec came from, so graph errors found later can name file and line.
    _file: str = PrivateAttr(default="<python>")
    _lines: dict[tuple[object, ...], int] = PrivateAttr(default_factory=dict)
    _source: str | None = PrivateAttr(default=None)

    def locate(self, *path: object) -> tuple[str, int | None]:
        """The file and line of a path like ``("tasks", 3, "agent")`` (nearest known ancestor)."""
        for end in range(len(path), -1, -1):
            line = self._lines.get(tuple(path[:end]))
            if line is not None:
                return self._file, line
        return self._file, None

    @property
    def source_text(self) -> str | None:
        """The YAML text this spec was parsed from, when it came from YAML."""
        return self._source

    @field_validator("agents", mode="before")
    @classmethod
    def _agents_named(cls, value: Any) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, agent in value.items():
                if isinstance(agent, dict):
                    agent = {**agent}
                    agent.setdefault("name", key)
                out[key] = agent
            return out
        return value
