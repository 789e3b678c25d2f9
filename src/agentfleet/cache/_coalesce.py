"""Single flight: concurrent identical calls share one underlying call.

# Design
# The first caller for a key (the leader) starts the factory as a task of its own and
# every caller, the leader included, awaits it through ``asyncio.shield``; so a caller that
# is cancelled leaves the shared call running for the others. When the last waiter is gone
# before the call ends, the call is cancelled (nobody wants its result). The key is freed
# as soon as the call finishes, so a later call runs afresh: this deduplicates concurrent
# work, it does not cache (the tiered cache does that). Every waiter gets the same result
# object, or the same exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["Coalescer", "CoalescerStatistics"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class CoalescerStatistics:
    """Calls asked for, underlying calls made, calls that joined one in flight, and keys in flight now."""

    calls: int
    runs: int
    joined: int
    in_flight: int


class _Flight:
    __slots__ = ("task", "waiters")

    def __init__(self, task: asyncio.Task[Any]) -> None:
        self.task = task
        self.waiters = 0


class Coalescer:
    """Runs at most one factory call per key at a time; concurrent callers share its outcome."""

    def __init__(self) -> None:
        self._flights: dict[Hashable, _Flight] = {}
        self._calls = 0
        self._runs = 0
        self._joined = 0

    async def run(self, key: Hashable, factory: Callable[[], Awaitable[T]]) -> T:
        """``await factory()``, or join the call already in flight for ``key``."""
        self._calls += 1
        flight = self._flights.get(key)
        if flight is None:
            flight = self._start(key, factory)
        else:
            self._joined += 1
        flight.waiters += 1
        try:
            result: T = await asyncio.shield(flight.task)
            return result
        except asyncio.CancelledError:
            if not flight.task.done() and flight.waiters == 1:
                flight.task.cancel()
            raise
        finally:
            flight.waiters -= 1

    def in_flight(self, key: Hashable) -> bool:
        """Whether a call for ``key`` is running now."""
        return key in self._flights

    def statistics(self) -> CoalescerStatistics:
        """Calls, underlying runs, joins and keys in flight."""
        return CoalescerStatistics(calls=self._calls, runs=self._runs, joined=self._joined,
                                   in_flight=len(self._flights))

    def _start(self, key: Hashable, factory: Callable[[], Awaitable[T]]) -> _Flight:
        async def call() -> T:
            return await factory()

        task = asyncio.get_running_loop().create_task(call(), name=f"coalesced call {key!r}")
        flight = _Flight(task)
        self._flights[key] = flight
        self._runs += 1

        def finished(done: asyncio.Task[Any]) -> None:
            if self._flights.get(key) is flight:
                del self._flights[key]
            if not done.cancelled():
                done.exception()  # retrieved here too, so a call whose waiters all left logs nothing

        task.add_done_callback(finished)
        return flight
