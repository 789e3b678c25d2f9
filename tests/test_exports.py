"""The public API is exactly what agentfleet/__init__.py exports."""

from __future__ import annotations

import agentfleet


class TestExports:
    def test_all_is_pinned(self) -> None:
        """__all__ lists the public names and nothing private."""
        assert sorted(agentfleet.__all__) == sorted([
            "Agent", "AgentFleetError", "HookError", "OutputInvalid", "PlanError", "ProviderConfigError",
            "ProviderError", "ProviderTimeout", "RateLimited", "RunNotFound", "RunResult", "Runner",
            "SchedulerError", "SpecError", "StoreError", "Task", "TaskFailed", "Workflow", "WorkflowSpec",
            "__version__", "load", "run", "run_async", "stream", "team",
        ])

    def test_every_name_resolves(self) -> None:
        """Every exported name is an attribute of the package."""
        for name in agentfleet.__all__:
            assert getattr(agentfleet, name) is not None

    def test_user_errors_exit_2(self) -> None:
        """Spec, plan, config and unknown-run errors are user errors (exit 2)."""
        assert agentfleet.SpecError("x").exit_code == 2
        assert agentfleet.PlanError("x").exit_code == 2
        assert agentfleet.ProviderConfigError("x").exit_code == 2
        assert agentfleet.RunNotFound("x").exit_code == 2
        assert agentfleet.TaskFailed("t", "boom").exit_code == 1
