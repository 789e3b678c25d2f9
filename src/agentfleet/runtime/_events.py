"""Progress events on the message bus, batched at the source.

# Design
# Every task state change of a run is published on the run's bus under
# ``run.<key>.progress`` — the terminal display, ``--stream``, ``Runner.results()`` and
# any other process on a shared (Redis) bus read them there. A state change costs the
# scheduler one list append; the outbox publishes a batch when it holds ``size`` events or
# ``max_wait`` seconds after the first one arrived, so slow consumers see a few messages
# a second however many tasks finish, and the hot path stays free of per-event
# serialisation. ``flush()`` at the end of the run delivers the last partial batch.
#
# An event is ``(kind, task_id, agent, t)`` (a JSON array on Redis);
# kinds are the scheduler's: ready, started, done, failed, skipped, cancelled, interrupted.
# A batch whose subscriber is full (overflow policy ``block``) is handed to an async
# publish that waits for room, and later batches queue behind it: nothing is lost, the
# order is kept, and the scheduler never blocks.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ..errors import BusOverflow
from ..messaging import Bus
from ._scheduler import TaskEvent

__all__ = ["ProgressOutbox", "progress_topic"]


def progress_topic(key: str) -> str:
    """The topic a run's batched progress events are published on."""
    return f"run.{key}.progress"


class ProgressOutbox:
    """Collects a run's events and publishes them to ``topic`` in batches (size or max_wait)."""

    __slots__ = ("_bus", "_items", "_tail", "_timer", "max_wait", "published", "size", "topic")

    def __init__(self, bus: Bus, topic: str, *, size: int = 256, max_wait: float = 0.05) -> None:
        self._bus = bus
        self.topic = topic
        self.size = size
        self.max_wait = max_wait
        self._items: list[tuple[str, str, str, float]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._tail: asyncio.Task[None] | None = None  # the last batch that had to wait for room
        self.published = 0

    def add(self, kind: str, task_id: str, agent: str, t: float) -> None:
        items = self._items
        items.append((kind, task_id, agent, t))
        if len(items) >= self.size:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.max_wait, self.flush)

    def on_event(self, event: TaskEvent) -> None:
        """A scheduler listener: collect ``event``."""
        inst = event.instance
        self.add(event.kind, inst.id, inst.step.agent, event.time)

    def flush(self) -> None:
        """Publish what is collected now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._items:
            return
        batch, self._items = self._items, []
        self.published += len(batch)
        if self._tail is None or self._tail.done():
            try:
                self._bus.publish_nowait(self.topic, batch)
                return
            except BusOverflow:
                previous = None
        else:
            previous = self._tail  # a batch is still waiting for room: queue behind it, keep the order
        self._tail = asyncio.get_running_loop().create_task(self._publish_after(previous, batch))

    async def _publish_after(self, previous: asyncio.Task[None] | None, batch: list[Any]) -> None:
        if previous is not None:
            await asyncio.gather(previous, return_exceptions=True)
        await self._bus.publish(self.topic, batch)

    async def aclose(self) -> None:
        """Flush and wait until every batch is published (in order)."""
        self.flush()
        if self._tail is not None:
            await asyncio.gather(self._tail, return_exceptions=True)
