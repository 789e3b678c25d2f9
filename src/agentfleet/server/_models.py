"""The service's request and response bodies (the OpenAPI schema is generated from these)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "Error", "Health", "Ready", "RunAccepted", "RunDetail", "RunList", "RunOptions", "RunRequest", "RunSummary",
    "Stats", "TaskView", "ValidationErrorBody", "WorkflowList", "WorkflowView",
]

RunStatus = Literal["queued", "running", "succeeded", "failed", "interrupted", "cancelled", "stopped"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RunOptions(_Strict):
    """How to run: the same knobs as ``agentfleet run``'s flags."""

    scale: float | None = Field(None, gt=0, le=1000, description="sim latency scale (0.1 = ten times faster)")
    seed: int | None = Field(None, ge=0, le=2**31 - 1, description="seed of the sim provider and retries' jitter")
    max_parallel: int | None = Field(None, ge=1, le=100_000, description="tasks running at once")


class RunRequest(_Strict):
    """A run to start: a workflow by name (``GET /v1/workflows``) or inline YAML, plus inputs."""

    workflow: str | None = Field(None, min_length=1, max_length=200, description="a workflow's name")
    yaml: str | None = Field(None, min_length=1, description="the workflow itself, as YAML text")
    inputs: dict[str, Any] = Field(default_factory=dict, max_length=200,
                                   description="values for the workflow's vars (like --set)")
    options: RunOptions = Field(default_factory=RunOptions)

    @model_validator(mode="after")
    def _one_source(self) -> RunRequest:
        if (self.workflow is None) == (self.yaml is None):
            raise ValueError("give exactly one of 'workflow' (a name from GET /v1/workflows) and 'yaml'")
        return self


class Links(BaseModel):
    self: str
    events: str
    report: str
    dashboard: str


class RunAccepted(BaseModel):
    id: str
    status: Literal["queued"]
    workflow: str
    created_at: float
    links: Links


class RunSummary(BaseModel):
    id: str
    workflow: str
    status: RunStatus
    created_at: float
    started_at: float | None
    ended_at: float | None
    duration: float | None = Field(description="seconds from start to end; null until it ends")
    error: str | None
    counts: dict[str, int]
    cost_usd: float | None


class TaskView(BaseModel):
    id: str
    agent: str
    state: str
    ready_at: float | None
    started_at: float | None
    ended_at: float | None
    attempts: int
    tokens_in: int
    tokens_out: int
    provider: str
    error: str | None
    output: Any = None


class RunDetail(RunSummary):
    sessions: int
    max_parallel: int | None
    scale: float | None
    tasks: list[TaskView]


class RunList(BaseModel):
    runs: list[RunSummary]
    next_cursor: str | None


class CancelAnswer(BaseModel):
    id: str
    status: Literal["cancelled", "cancelling"]


class WorkflowView(BaseModel):
    name: str
    file: str
    description: str
    vars: dict[str, Any]
    tasks: int


class WorkflowList(BaseModel):
    workflows: list[WorkflowView]


class Stats(BaseModel):
    """The service at a glance: runs in the database by status, the queue, runners, open streams."""

    runs: dict[str, int]
    queued: int
    runners: int
    streams: int


class Health(BaseModel):
    status: Literal["ok"]


class Ready(BaseModel):
    status: Literal["ready", "starting", "degraded"]
    workers: int
    queued: int


class Error(BaseModel):
    """Every error but validation: what went wrong, in one line."""

    detail: str
    id: str | None = Field(None, description="for a 500: the id of the traceback in the server's log")


class FieldError(BaseModel):
    loc: list[str | int]
    msg: str
    type: str


class ValidationErrorBody(BaseModel):
    """422: each problem with the path of the field it is about."""

    detail: list[FieldError]


class Report(BaseModel):
    """What ``agentfleet report --json`` prints for the run."""

    model_config = ConfigDict(extra="allow")
    run_id: str
    workflow: str
    status: str
    report: dict[str, Any]
    bottlenecks: list[dict[str, Any]]
