"""The resilience package's public names."""

from __future__ import annotations

import agentfleet.errors
import agentfleet.resilience


class TestExports:
    def test_every_name_resolves(self) -> None:
        """Every name in ``__all__`` is an attribute and none is private."""
        for name in agentfleet.resilience.__all__:
            assert not name.startswith("_")
            assert getattr(agentfleet.resilience, name) is not None

    def test_errors_all_is_sorted_and_complete(self) -> None:
        """errors.__all__ stays sorted and names the new resilience errors."""
        names = agentfleet.errors.__all__
        assert names == sorted(names)
        assert {"CircuitOpen", "RetryBudgetExhausted"} <= set(names)
        assert not agentfleet.errors.RetryBudgetExhausted("x").retryable
