"""The public API of ``agentfleet.messaging`` is exactly what its ``__init__`` exports."""

from __future__ import annotations

import agentfleet.messaging as messaging


class TestExports:
    """``__all__`` is pinned and every name resolves."""

    def test_all_is_pinned(self) -> None:
        """__all__ lists the public names and nothing private."""
        assert sorted(messaging.__all__) == sorted([
            "Batcher", "BatcherStatistics", "Bus", "BusStatistics", "CallBatcher", "CallBatcherStatistics",
            "Handler", "InProcessBus", "Message", "Overflow", "RedisBus", "Responder", "ResponderStatistics",
            "Subscription", "SubscriptionStatistics",
        ])

    def test_every_name_resolves(self) -> None:
        """Every exported name is an attribute of the package."""
        for name in messaging.__all__:
            assert getattr(messaging, name) is not None
