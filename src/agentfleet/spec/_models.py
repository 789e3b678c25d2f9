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
    "HookSpec",
    "HooksSpec",
    "MapSpec",
    "PoolSpec",
    "SettingsSpec",
    "TaskSpec",
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
    """How many ready instances of an agent to keep (used by the pool layer)."""

    size: int = Field(1, ge=0, le=10_000)
    prewarm: bool = True
    max: int | None = Field(None, ge=1, le=100_000)


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
    expected_latency: float | None = Field(None, ge=0)
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    options: dict[str, Any] = Field(default_factory=dict)


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
