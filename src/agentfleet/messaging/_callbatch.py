"""CallBatcher: many concurrent callers, one call per batch of their items (an embeddings
endpoint, a batch API), each caller answered with its own result.

# Design
# ``Batcher`` (``_batch.py``) turns a stream into lists for one consumer; this is its mirror
# image for request/response: callers ``await batcher.submit(item)``, the batcher gathers items
# and makes one ``call(items)``, and result ``i`` answers the caller of item ``i``. A batch is
# sent when it holds ``max_size`` items or ``max_wait`` seconds (on the injected clock) after
# its first item arrived, whichever comes first; so a lone caller waits at most ``max_wait``.
#
# The decisions live in synchronous methods: ``submit_nowait`` appends and sends a full batch,
# the timer callback sends an aged one, ``_discard`` drops a cancelled caller. ``submit`` only
# waits on the caller's future. With the default loop clock the age limit is one ``call_later``
# per batch (no task per item); any other clock gets one sleeping task per batch.
#
# Failure is per batch: an exception from ``call``, or a result list of the wrong length, fails
# every caller of that batch with that one exception object. A caller cancelled before its batch
# is sent is removed from it (and counted); one cancelled after is simply not answered, the call
# goes on for the others. Batches do not wait for each other: several calls may be in flight.
# ``aclose()`` sends what is pending and waits for every call in flight.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from .._types import Clock, LoopClock
from ..errors import BusClosed

__all__ = ["CallBatcher", "CallBatcherStatistics"]

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class CallBatcherStatistics:
    """``batches`` sent holding ``items`` in all; why each was sent (``by_size``, ``by_time``,
    ``by_close``); ``errors``: batches whose call raised or returned the wrong number of results;
    ``cancelled``: callers dropped before their batch was sent; ``pending`` items in the batch
    being built; ``in_flight`` calls not yet returned."""

    batches: int
    items: int
    by_size: int
    by_time: int
    by_close: int
    errors: int
    cancelled: int
    pending: int
    in_flight: int


class _Waiter(Generic[T, R]):
    __slots__ = ("future", "item")

    def __init__(self, item: T, future: asyncio.Future[R]) -> None:
        self.item = item
        self.future = future


class CallBatcher(Generic[T, R]):
    """Batches concurrent ``submit(item)`` calls into one ``call(items)`` per batch.

    ``call`` takes the list of items and returns their results in the same order (a sequence
    of the same length).
    """

    def __init__(
        self,
        call: Callable[[list[T]], Awaitable[Sequence[R]]],
        *,
        max_size: int,
        max_wait: float,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(max_size, bool) or not isinstance(max_size, int) or max_size < 1:
            raise ValueError(f"max_size must be a positive integer, got {max_size!r}")
        if not (isinstance(max_wait, (int, float)) and math.isfinite(max_wait) and max_wait >= 0):
            raise ValueError(f"max_wait must be a finite number >= 0, got {max_wait!r}")
        self.max_size = max_size
        self.max_wait = float(max_wait)
        self._call = call
        self._clock: Clock = clock if clock is not None else LoopClock()
        self._loop_clock = type(self._clock) is LoopClock
        self._pending: list[_Waiter[T, R]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._alarm: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._closed = False
        self._batches = 0
        self._items = 0
        self._by_size = 0
        self._by_time = 0
        self._by_close = 0
        self._errors = 0
        self._cancelled = 0

    # -- decisions (synchronous) ---------------------------------------------------------------

    def submit_nowait(self, item: T) -> asyncio.Future[R]:
        """Add ``item`` to the batch being built (sending it if now full); its result's future.

        Raises ``BusClosed`` after ``aclose()``.
        """
        return self._add(item).future

    def _add(self, item: T) -> _Waiter[T, R]:
        if self._closed:
            raise BusClosed("the call batcher is closed")
        loop = asyncio.get_running_loop()
        waiter: _Waiter[T, R] = _Waiter(item, loop.create_future())
        self._pending.append(waiter)
        if len(self._pending) >= self.max_size:
            self._send("size")
        elif len(self._pending) == 1:
            self._arm(loop)
        return waiter

    def _discard(self, waiter: _Waiter[T, R]) -> None:
        """Drop a cancelled caller from the batch being built (nothing to do once it was sent)."""
        for i, pending in enumerate(self._pending):
            if pending is waiter:
                del self._pending[i]
                self._cancelled += 1
                if not self._pending:
                    self._disarm()
                return

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop_clock:
            self._timer = loop.call_later(self.max_wait, self._on_timer)
        else:
            self._alarm = loop.create_task(self._sleep_then_send(), name="call-batcher-timer")

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._alarm is not None:
            if self._alarm is not asyncio.current_task():
                self._alarm.cancel()
            self._alarm = None

    def _on_timer(self) -> None:
        self._timer = None
        self._send("time")

    async def _sleep_then_send(self) -> None:
        await self._clock.sleep(self.max_wait)
        self._send("time")

    def _send(self, reason: str) -> None:
        """Send the batch being built (without callers already cancelled) as one call."""
        self._disarm()
        batch = [w for w in self._pending if not w.future.done()]
        self._cancelled += len(self._pending) - len(batch)
        self._pending = []
        if not batch:
            return
        self._batches += 1
        self._items += len(batch)
        if reason == "size":
            self._by_size += 1
        elif reason == "time":
            self._by_time += 1
        else:
            self._by_close += 1
        task = asyncio.get_running_loop().create_task(self._run(batch), name="call-batcher-call")
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    def _settle(self, batch: list[_Waiter[T, R]], results: Sequence[R] | BaseException) -> None:
        """Answer every caller of ``batch`` still waiting, by position (or all with the error)."""
        if not isinstance(results, BaseException) and len(results) != len(batch):
            results = ValueError(f"the batch call returned {len(results)} results for {len(batch)} items")
        if isinstance(results, BaseException):
            self._errors += 1
            for waiter in batch:
                if not waiter.future.done():
                    waiter.future.set_exception(results)
            return
        for waiter, result in zip(batch, results, strict=True):
            if not waiter.future.done():
                waiter.future.set_result(result)

    # -- waiting (thin) ------------------------------------------------------------------------

    async def submit(self, item: T) -> R:
        """``item``'s result, once its batch has been sent and the call returned.

        Raises what the batch's call raised (or ``ValueError`` if it returned the wrong number
        of results); ``BusClosed`` after ``aclose()``.
        """
        waiter = self._add(item)
        try:
            return await waiter.future
        except asyncio.CancelledError:
            self._discard(waiter)
            raise

    async def _run(self, batch: list[_Waiter[T, R]]) -> None:
        try:
            results = await self._call([w.item for w in batch])
        except asyncio.CancelledError:
            for waiter in batch:
                waiter.future.cancel()
            raise
        except Exception as exc:  # noqa: BLE001 - handed to every caller of the batch
            self._settle(batch, exc)
        else:
            self._settle(batch, results)

    async def aclose(self) -> None:
        """Send what is pending, wait for every call in flight; later submits raise ``BusClosed``."""
        self._closed = True
        alarm = self._alarm
        if self._pending:
            self._send("close")
        self._disarm()
        if alarm is not None:
            await asyncio.wait([alarm])  # let the cancelled timer task finish
        while self._in_flight:
            # wait(), not gather(): cancelling aclose() must not cancel other callers' calls
            await asyncio.wait(list(self._in_flight))

    def statistics(self) -> CallBatcherStatistics:
        return CallBatcherStatistics(
            batches=self._batches,
            items=self._items,
            by_size=self._by_size,
            by_time=self._by_time,
            by_close=self._by_close,
            errors=self._errors,
            cancelled=self._cancelled,
            pending=len(self._pending),
            in_flight=len(self._in_flight),
        )
