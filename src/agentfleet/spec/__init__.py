"""Workflow specs: pydantic models, YAML loading with line numbers, persona templates."""

from __future__ import annotations

from ._builder import Workflow
from ._loader import load_workflow, parse_workflow, validate_data
from ._models import (
    AgentSpec,
    AggregateSpec,
    BreakerSpec,
    CacheSettings,
    ContextSettings,
    ContextSpec,
    FallbackSpec,
    GuardSpec,
    HedgeSpec,
    HookSpec,
    HooksSpec,
    LimitSpec,
    MapSpec,
    MemorySpec,
    PoolSpec,
    RememberSpec,
    ResilienceSettings,
    ReviewSpec,
    SettingsSpec,
    TaskCacheSpec,
    TaskSpec,
    TierSpec,
    WorkflowSpec,
)
from ._templates import persona, persona_names

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
    "RememberSpec",
    "ResilienceSettings",
    "ReviewSpec",
    "SettingsSpec",
    "TaskCacheSpec",
    "TaskSpec",
    "TierSpec",
    "Workflow",
    "WorkflowSpec",
    "load_workflow",
    "parse_workflow",
    "persona",
    "persona_names",
    "validate_data",
]
