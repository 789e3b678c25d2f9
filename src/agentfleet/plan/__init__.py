"""The validated DAG of a workflow and its static analysis; pure functions, no I/O."""

from __future__ import annotations

from ._analysis import FalseParallel, PlanAnalysis, analyze_plan, remaining_path
from ._graph import AGGREGATE_AGENT, Plan, Step, build_plan, template_env

__all__ = [
    "AGGREGATE_AGENT",
    "FalseParallel",
    "Plan",
    "PlanAnalysis",
    "Step",
    "analyze_plan",
    "build_plan",
    "remaining_path",
    "template_env",
]
