"""A timeout measured on an injected ``Clock``, for ``request()``.

# Design
# ``asyncio.timeout`` reads the loop's clock; the bus takes its time from a ``Clock`` so a
# request timeout follows the same clock as everything else (a virtual-time loop in tests, a
# fake clock in a simulation). An alarm task sleeps on the clock and cancels the waiting task;
# the cancellation is turned back into ``TimeoutError`` with ``Task.uncancel`` so a real
# cancellation from outside still propagates (the pattern ``asyncio.timeout`` uses).
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from .._types import Clock

__all__ = ["Deadline"]


class Deadline:
    """``async with Deadline(clock, seconds):`` raises ``TimeoutError`` if the body outlives it."""

    __slots__ = ("_clock", "_fired", "_seconds", "_task", "_timer")

    def __init__(self, clock: Clock, seconds: float) -> None:
        self._clock = clock
        self._seconds = seconds
        self._fired = False
        self._task: asyncio.Task[object] | None = None
        self._timer: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Deadline:
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("Deadline needs a running task")
        self._task = task
        self._timer = asyncio.get_running_loop().create_task(self._alarm())
        return self

    async def _alarm(self) -> None:
        await self._clock.sleep(self._seconds)
        self._fired = True
        assert self._task is not None
        self._task.cancel()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._timer is not None and self._task is not None
        self._timer.cancel()
        if self._fired and exc_type is asyncio.CancelledError and self._task.uncancel() == 0:
            raise TimeoutError from None
