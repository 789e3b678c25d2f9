"""A subscription: a bounded queue of messages with an overflow policy, read as an async iterator.

# Design
# The queue is a ``collections.deque`` with a deque of waiter futures for readers (one made
# only when a reader finds the queue empty) and one for publishers waiting for space
# (``block`` policy), as in anyio's memory object streams. Delivering a message is an append
# and, when a reader is parked, one ``set_result``: no future or task per message.
#
# The bus decides *whether* a message may be queued (it checks every matching subscription
# before it delivers to any, so a publish is all-or-nothing); the subscription only queues,
# evicts for ``drop_oldest`` and counts.
#
# ``close()`` stops new deliveries at once but lets the reader drain what is already queued:
# iteration ends after the last queued message, so a consumer (or a ``Batcher``) shutting
# down loses nothing that reached it.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from ..errors import BusClosed, BusError, BusOverflow
from ._bus import Message, Overflow

__all__ = ["Subscription", "SubscriptionStatistics"]

_POLICIES = ("block", "drop_oldest", "error")


@dataclass(frozen=True, slots=True)
class SubscriptionStatistics:
    """One subscription's counters.

    ``delivered``: messages handed to the consumer. ``dropped``: messages lost because the queue
    was full (``drop_oldest`` evictions; on ``RedisBus`` also ``error``-policy overflows, since
    the publisher is elsewhere). ``overflows``: ``BusOverflow`` errors raised because this queue
    was full. ``queued`` is the current queue length and ``max_queued`` its high-water mark.
    """

    pattern: str
    overflow: Overflow
    maxsize: int
    delivered: int
    dropped: int
    overflows: int
    queued: int
    max_queued: int
    closed: bool


class Subscription:
    """Messages published to topics matching ``pattern``, in publish order.

    Read with ``async for msg in sub``, ``await sub.get()`` or ``sub.get_nowait()``.
    ``get_nowait()`` returns ``None`` when the queue is empty (cheaper than an exception in a
    draining loop). Once closed, the messages already queued are still returned; after them
    ``get()``/``get_nowait()`` raise ``BusClosed`` and iteration ends.
    Made by ``bus.subscribe()``; usable as a context manager that closes it.
    """

    __slots__ = (
        "_alert",
        "_closed",
        "_delivered",
        "_detach",
        "_dropped",
        "_failure",
        "_getters",
        "_max_queued",
        "_overflows",
        "_putters",
        "_queue",
        "_seq",
        "_serving",
        "_strict",
        "maxsize",
        "overflow",
        "pattern",
    )

    def __init__(
        self,
        pattern: str,
        *,
        maxsize: int,
        overflow: Overflow,
        seq: int,
        detach: Callable[[Subscription], None],
        serving: bool = False,
    ) -> None:
        if overflow not in _POLICIES:
            raise ValueError(f"overflow must be one of {', '.join(_POLICIES)}, got {overflow!r}")
        if not isinstance(maxsize, int) or maxsize < 1:
            raise ValueError(f"maxsize must be a positive integer, got {maxsize!r}")
        self.pattern = pattern
        self.maxsize = maxsize
        self.overflow: Overflow = overflow
        self._strict = overflow != "drop_oldest"
        self._seq = seq
        self._detach = detach
        self._serving = serving
        self._queue: deque[Message] = deque()
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._closed = False
        self._alert: BusError | None = None  # raised once by the next get (Redis ``error`` overflow)
        self._failure: BusError | None = None  # raised after the queue drains (transport lost)
        self._delivered = 0
        self._dropped = 0
        self._overflows = 0
        self._max_queued = 0

    # -- reading -----------------------------------------------------------------------------

    def get_nowait(self) -> Message | None:
        """The next message, or ``None`` if none is queued; ``BusClosed`` once closed and drained."""
        if self._alert is not None:
            alert, self._alert = self._alert, None
            raise alert
        q = self._queue
        if q:
            msg = q.popleft()
            self._delivered += 1
            if self._putters:
                self._wake_putter()
            return msg
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise BusClosed(f"subscription {self.pattern!r} is closed", topic=self.pattern)
        return None

    async def get(self) -> Message:
        """The next message, waiting for one; ``BusClosed`` once closed and drained."""
        while True:
            msg = self.get_nowait()
            if msg is not None:
                return msg
            await self._readable()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Message:
        while True:
            q = self._queue
            if q and self._alert is None:  # the hot path, inlined
                msg = q.popleft()
                self._delivered += 1
                if self._putters:
                    self._wake_putter()
                return msg
            try:
                got = self.get_nowait()
            except BusClosed:
                raise StopAsyncIteration from None
            if got is not None:
                return got
            await self._readable()

    def _readable_now(self) -> bool:
        return bool(self._queue) or self._closed or self._alert is not None or self._failure is not None

    async def _readable(self) -> None:
        """Wait until a message is queued or the subscription ends (may wake spuriously)."""
        fut = self._park()
        if fut is None:
            return
        try:
            await fut
        except asyncio.CancelledError:
            self._unpark(fut)
            if fut.done() and not fut.cancelled():
                self._wake_getter()  # we were woken but will not read: pass the wakeup on
            raise

    def _park(self) -> asyncio.Future[None] | None:
        """Register a reader's wait: a future woken by the next message or by close; None if readable now."""
        if self._readable_now():
            return None
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._getters.append(fut)
        return fut

    def _unpark(self, fut: asyncio.Future[None]) -> None:
        """Forget a wait that ended another way (timeout, cancellation)."""
        try:
            self._getters.remove(fut)
        except ValueError:
            pass

    def _wake_getter(self) -> None:
        getters = self._getters
        while getters:
            fut = getters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _wake_getters(self) -> None:
        getters, self._getters = self._getters, deque()
        for fut in getters:
            if not fut.done():
                fut.set_result(None)

    # -- writing (called by the bus) ---------------------------------------------------------

    def _push(self, msg: Message) -> None:
        """Queue ``msg``; evicts the oldest when full (only ``drop_oldest`` queues get here full)."""
        q = self._queue
        if len(q) >= self.maxsize:
            q.popleft()
            self._dropped += 1
        q.append(msg)
        n = len(q)
        if n > self._max_queued:
            self._max_queued = n
        if self._getters:
            self._wake_getter()

    def _full(self) -> bool:
        return len(self._queue) >= self.maxsize

    def _overflow_error(self, topic: str) -> BusOverflow:
        """Count an overflow and return the error that reports it."""
        self._overflows += 1
        hint = "; await publish() waits for space" if self.overflow == "block" else ""
        return BusOverflow(
            f"subscription {self.pattern!r} is full ({self.maxsize} queued, overflow {self.overflow!r}){hint}",
            topic=topic,
        )

    def _lose(self, topic: str) -> None:
        """A message for this full ``error`` queue was lost: count it, tell the reader at its next get."""
        self._dropped += 1
        self._alert = self._overflow_error(topic)
        self._wake_getters()

    def _fail(self, error: BusError) -> None:
        """The transport is gone: the reader gets ``error`` once the queue is drained."""
        if self._failure is None and not self._closed:
            self._failure = error
        self._wake_getters()
        self._wake_putters()

    async def _wait_space(self) -> None:
        """Wait until the queue has room or the subscription is closed (may wake spuriously)."""
        if self._closed or len(self._queue) < self.maxsize:
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._putters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self._wake_putter()  # we were woken but will not use the space: pass it on
            else:
                try:
                    self._putters.remove(fut)
                except ValueError:
                    pass
            raise

    def _wake_putter(self) -> None:
        putters = self._putters
        while putters:
            fut = putters.popleft()
            if not fut.done():
                fut.set_result(None)
                return

    def _wake_putters(self) -> None:
        putters, self._putters = self._putters, deque()
        for fut in putters:
            if not fut.done():
                fut.set_result(None)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Stop receiving; queued messages can still be read, then iteration ends. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._detach(self)
        self._wake_getters()
        self._wake_putters()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def statistics(self) -> SubscriptionStatistics:
        return SubscriptionStatistics(
            pattern=self.pattern,
            overflow=self.overflow,
            maxsize=self.maxsize,
            delivered=self._delivered,
            dropped=self._dropped,
            overflows=self._overflows,
            queued=len(self._queue),
            max_queued=self._max_queued,
            closed=self._closed,
        )

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._queue)}/{self.maxsize} queued"
        return f"<Subscription {self.pattern!r} {self.overflow} {state}>"
