"""Batching: turn a stream of messages into lists, flushed by size or by age, never losing the tail.

# Design
# Slow consumers (a terminal, a SQLite store) want progress events in batches: one write per
# 64 events instead of 64 writes. A batch is flushed when it holds ``size`` items or when
# ``max_wait`` seconds (on the injected clock) have passed since its first item arrived,
# whichever comes first; so a lone event waits at most ``max_wait``.
#
# From a ``Subscription`` the batcher drains synchronously with ``get_nowait()`` and only parks
# when the queue is empty: with the default loop clock the age limit is a ``call_later`` on
# the park future, so there is no task or future per item. Any other async iterable works
# too, through a task per awaited item raced against the clock.
#
# ``aclose()`` never loses the final partial batch. It closes the subscription, which still
# yields what is already queued and then ends, so the pump delivers those messages and the
# partial batch before it stops. (For other sources the wait for the next item is cancelled
# and the partial batch is delivered.) A callback that raises does not stop the pump: the
# error is counted and ``aclose()`` re-raises the first one once everything is flushed, so a
# failing consumer is loud without starving the ones after it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from .._types import Clock, LoopClock
from ..errors import BusClosed, BusError, BusOverflow
from ._subscription import Subscription

__all__ = ["Batcher", "BatcherStatistics"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BatcherStatistics:
    """``batches`` emitted holding ``items`` in all; how each was flushed (``by_size``, ``by_time``,
    ``by_close`` for the final partial one); ``pending`` items in the batch being built;
    ``errors`` raised by the callback or the source; ``running`` while a ``start()`` pump is alive."""

    batches: int
    items: int
    by_size: int
    by_time: int
    by_close: int
    pending: int
    errors: int
    running: bool


async def _one(iterator: AsyncIterator[T]) -> T:
    return await anext(iterator)


def _wake(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class Batcher(Generic[T]):
    """Lists of up to ``size`` items from ``source``, each flushed at most ``max_wait`` s after its first item.

    ``async for batch in Batcher(sub, size=64, max_wait=0.1): ...`` or, as a background
    consumer, ``batcher.start(callback)`` then ``await batcher.aclose()``. Closing the batcher
    closes a ``Subscription`` source (the batcher owns it) after delivering what it had queued.
    """

    def __init__(
        self,
        source: AsyncIterable[T],
        *,
        size: int = 64,
        max_wait: float = 0.1,
        clock: Clock | None = None,
    ) -> None:
        if not isinstance(size, int) or size < 1:
            raise ValueError(f"size must be a positive integer, got {size!r}")
        if max_wait < 0:
            raise ValueError(f"max_wait must be >= 0, got {max_wait!r}")
        self.size = size
        self.max_wait = max_wait
        self._clock: Clock = clock if clock is not None else LoopClock()
        self._loop_clock = type(self._clock) is LoopClock
        self._source = source
        self._sub = source if isinstance(source, Subscription) else None
        self._iter: AsyncIterator[T] | None = None
        self._next: asyncio.Task[T] | None = None  # generic sources: the item being awaited
        self._batch: list[T] = []
        self._first_at = 0.0
        self._ended = False
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._waiting = False
        self._errors: list[Exception] = []
        self._batches = 0
        self._items = 0
        self._by_size = 0
        self._by_time = 0
        self._by_close = 0

    # -- iteration ---------------------------------------------------------------------------

    def __aiter__(self) -> Batcher[T]:
        return self

    async def __anext__(self) -> list[T]:
        if self._sub is not None:
            return cast("list[T]", await self._next_from_subscription(self._sub))
        return await self._next_from_iterable()

    def _emit(self, reason: str) -> list[T]:
        batch, self._batch = self._batch, []
        self._batches += 1
        self._items += len(batch)
        if reason == "size":
            self._by_size += 1
        elif reason == "time":
            self._by_time += 1
        else:
            self._by_close += 1
        return batch

    async def _next_from_subscription(self, sub: Subscription) -> list[Any]:
        batch: list[Any] = self._batch
        size = self.size
        now = self._clock.now
        while True:
            while len(batch) < size and not self._ended:
                try:
                    msg = sub.get_nowait()
                except BusClosed:
                    self._ended = True
                    break
                if msg is None:
                    break
                if not batch:
                    self._first_at = now()
                batch.append(msg)
            if len(batch) >= size:
                return self._emit("size")
            if self._ended:
                if batch:
                    return self._emit("close")
                raise StopAsyncIteration
            if not batch:
                await sub._readable()
                continue
            remaining = self._first_at + self.max_wait - now()
            if remaining <= 0:
                return self._emit("time")
            await self._park(sub, remaining)

    async def _park(self, sub: Subscription, remaining: float) -> None:
        """Wait for the next message or for ``remaining`` seconds, whichever comes first."""
        fut = sub._park()
        if fut is None:
            return
        if self._loop_clock:
            handle = asyncio.get_running_loop().call_later(remaining, _wake, fut)
            try:
                await fut
            finally:
                handle.cancel()
                sub._unpark(fut)
            return
        alarm = asyncio.get_running_loop().create_task(self._alarm(fut, remaining))
        try:
            await fut
        finally:
            alarm.cancel()
            sub._unpark(fut)

    async def _alarm(self, fut: asyncio.Future[None], seconds: float) -> None:
        await self._clock.sleep(seconds)
        _wake(fut)

    async def _next_from_iterable(self) -> list[T]:
        batch = self._batch
        if self._iter is None:
            self._iter = aiter(self._source)
        iterator = self._iter
        loop = asyncio.get_running_loop()
        while len(batch) < self.size and not self._ended:
            nxt = self._next
            if not batch:  # nothing to flush yet: wait for an item however long it takes
                self._next = None
                try:
                    item = await (anext(iterator) if nxt is None else nxt)
                except StopAsyncIteration:
                    self._ended = True
                    break
                self._first_at = self._clock.now()
                batch.append(item)
                continue
            if nxt is None:
                nxt = self._next = loop.create_task(_one(iterator))
            remaining = self._first_at + self.max_wait - self._clock.now()
            if remaining <= 0:
                return self._emit("time")
            if not nxt.done():
                alarm = loop.create_task(self._clock.sleep(remaining))
                try:
                    await asyncio.wait((nxt, alarm), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    alarm.cancel()
                if not nxt.done():
                    return self._emit("time")
            self._next = None
            try:
                batch.append(nxt.result())
            except StopAsyncIteration:
                self._ended = True
        if len(batch) >= self.size:
            return self._emit("size")
        if batch:
            return self._emit("close")
        raise StopAsyncIteration

    # -- background consumer -----------------------------------------------------------------

    def start(self, callback: Callable[[list[T]], Awaitable[object] | object]) -> None:
        """Call ``callback(batch)`` (sync or async) for every batch in a background task until ``aclose()``."""
        if self._task is not None:
            raise RuntimeError("this Batcher is already started")
        if self._stopping:
            raise BusClosed("the batcher is closed")
        self._task = asyncio.get_running_loop().create_task(self._pump(callback), name="batcher")

    async def _pump(self, callback: Callable[[list[T]], Awaitable[object] | object]) -> None:
        # aclose() cancels the pump only while it waits on a non-subscription source, never
        # while the callback runs, so a batch handed to the callback is never interrupted.
        try:
            while not (self._stopping and self._sub is None):
                self._waiting = True
                try:
                    batch = await self.__anext__()
                except StopAsyncIteration:
                    return
                except BusOverflow as exc:  # an ``error`` subscription lost a message: report, go on
                    self._errors.append(exc)
                    continue
                except BusError as exc:  # the transport is gone: deliver what we have, then stop
                    self._errors.append(exc)
                    break
                finally:
                    self._waiting = False
                await self._call(callback, batch)
        except asyncio.CancelledError:
            if not self._stopping:
                raise
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()
        await self._flush_rest(callback)

    async def _flush_rest(self, callback: Callable[[list[T]], Awaitable[object] | object]) -> None:
        """Deliver what a cancelled wait left behind: the partial batch and an item already received."""
        nxt, self._next = self._next, None
        if nxt is not None:
            if nxt.done() and not nxt.cancelled() and nxt.exception() is None:
                self._batch.append(nxt.result())
            else:
                nxt.cancel()
        if self._batch:
            await self._call(callback, self._emit("close"))

    async def _call(self, callback: Callable[[list[T]], Awaitable[object] | object], batch: list[T]) -> None:
        try:
            result = callback(batch)
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # noqa: BLE001 - counted, re-raised by aclose(); the pump goes on
            self._errors.append(exc)

    async def aclose(self) -> None:
        """Stop: deliver everything already received (the final partial batch too), then end the pump.

        Raises ``BusError`` if the callback (or the source) failed on any batch, chained to the first failure.
        """
        self._stopping = True
        if self._sub is not None:
            self._sub.close()  # the pump drains what is queued, flushes, and ends
        elif self._task is not None and self._waiting:
            self._task.cancel()
        task = self._task
        if task is not None:
            try:
                await task
            except asyncio.CancelledError:
                if not task.cancelled():
                    raise
        elif self._next is not None:
            self._next.cancel()
        if self._errors:
            first = self._errors[0]
            raise BusError(f"batcher had {len(self._errors)} error(s); first: {first!r}") from first

    def statistics(self) -> BatcherStatistics:
        return BatcherStatistics(
            batches=self._batches,
            items=self._items,
            by_size=self._by_size,
            by_time=self._by_time,
            by_close=self._by_close,
            pending=len(self._batch),
            errors=len(self._errors),
            running=self._task is not None and not self._task.done(),
        )
