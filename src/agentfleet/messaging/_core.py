"""What every bus shares: the subscription registry, responders, pending requests and counters.

# Design
# The transports differ only in how a message travels from ``publish`` to the subscriptions
# (a direct call in-process, a Redis stream and a reader task for ``RedisBus``). Everything
# on either side of that trip lives here once: patterns and the topic cache, subscriptions
# and their counters, responders, the futures of requests waiting for replies.
#
# Closed subscriptions still count in ``statistics()``: drained ones are folded into totals;
# ones with messages still queued (a reader may yet take them) are kept until they drain or
# the bus closes.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

from .._types import Clock, LoopClock
from ..errors import BusClosed, BusError, BusTimeout
from ._bus import BusStatistics, Handler, Message, Overflow
from ._deadline import Deadline
from ._pattern import Router, compile_pattern
from ._responder import Responder
from ._subscription import Subscription

__all__ = ["BusCore"]


class BusCore:
    """Base of ``InProcessBus`` and ``RedisBus``; not a bus by itself."""

    def __init__(self, clock: Clock | None) -> None:
        self._clock: Clock = clock if clock is not None else LoopClock()
        self._now: Callable[[], float] = self._clock.now if clock is not None else self._bind_loop_clock
        self._router = Router()
        self._cache = self._router.cache
        self._sub_seq = 0
        self._closed = False
        self._pending: dict[str, asyncio.Future[Any]] = {}
        self._correlations = 0
        self._responders: set[Responder] = set()
        self._published = 0
        self._requests = 0
        self._timeouts = 0
        self._retired = [0, 0, 0]  # delivered, dropped, overflows of drained closed subscriptions
        self._draining: list[Subscription] = []

    def _bind_loop_clock(self) -> float:
        """The default clock's first reading: bind ``_now`` to the running loop's ``time`` for good.

        ``LoopClock.now()`` looks the loop up on every call; a bus belongs to the loop it is
        first used on (like asyncio's own primitives), so the lookup is done once. On a
        standard loop ``loop.time`` is ``time.monotonic``, which is called directly.
        """
        loop = asyncio.get_running_loop()
        if type(loop).time is asyncio.BaseEventLoop.time:
            self._now = time.monotonic
        else:
            self._now = loop.time
        return self._now()

    # -- subscriptions -----------------------------------------------------------------------

    def subscribe(self, pattern: str, *, maxsize: int = 1024, overflow: Overflow = "block") -> Subscription:
        """A new subscription to every message published from now on to a topic matching ``pattern``."""
        return self._subscribe(pattern, maxsize=maxsize, overflow=overflow, serving=False)

    def _subscribe(self, pattern: str, *, maxsize: int, overflow: Overflow, serving: bool) -> Subscription:
        if self._closed:
            raise BusClosed("bus is closed", topic=pattern)
        segments = compile_pattern(pattern)
        self._sub_seq += 1
        sub = Subscription(
            pattern, maxsize=maxsize, overflow=overflow, seq=self._sub_seq, detach=self._detach, serving=serving
        )
        self._router.add(sub, segments)
        return sub

    def _detach(self, sub: Subscription) -> None:
        self._router.remove(sub)
        self._draining.append(sub)
        self._retire()

    def _retire(self) -> None:
        retired = self._retired
        keep = []
        for sub in self._draining:
            if sub._queue and not self._closed:
                keep.append(sub)
                continue
            retired[0] += sub._delivered
            retired[1] += sub._dropped
            retired[2] += sub._overflows
        self._draining = keep

    # -- request / reply ---------------------------------------------------------------------

    def serve(self, topic: str, handler: Handler, *, maxsize: int = 1024) -> Responder:
        """Answer every request sent to ``topic`` (a pattern) with ``handler(data)`` until closed.

        The handler may be sync or async; what it returns is the reply's data, what it raises
        reaches the requester as ``BusError``. Requests wait for space when ``maxsize`` are queued.
        """
        sub = self._subscribe(topic, maxsize=maxsize, overflow="block", serving=True)
        responder = Responder(sub, handler, self._reply)
        self._responders.add(responder)
        responder._on_close.append(self._responder_closed)
        return responder

    def _responder_closed(self, responder: Responder) -> None:
        self._responders.discard(responder)

    def _reply(self, request: Message, data: Any, error: str | None) -> None:
        """Send a responder's answer to ``request.reply_to`` (transport-specific)."""
        raise NotImplementedError

    async def _exchange(self, topic: str, timeout: float, send: Callable[[str], Awaitable[object]]) -> Any:
        """One request/reply: ``send(correlation)`` puts the request out (transport-specific), then
        wait for its reply; the whole exchange is bounded by ``timeout`` on the bus clock."""
        self._correlations += 1
        correlation = str(self._correlations)
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[correlation] = fut
        try:
            async with Deadline(self._clock, timeout):
                await send(correlation)
                return await fut
        except TimeoutError:
            self._timeouts += 1
            raise BusTimeout(f"no reply within {timeout:g} s", topic=topic) from None
        finally:
            del self._pending[correlation]

    def _resolve(self, correlation: str | None, topic: str, data: Any, error: str | None) -> None:
        """A reply arrived: resolve its request's future (late or duplicate replies are ignored)."""
        fut = self._pending.get(correlation or "")
        if fut is None or fut.done():
            return
        if error is None:
            fut.set_result(data)
        else:
            fut.set_exception(BusError(f"responder failed: {error}", topic=topic))

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once ``aclose()`` has started."""
        return self._closed

    async def connect(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError

    def _close_local(self) -> list[Responder]:
        """Close responders and subscriptions and fail pending requests; returns the responders."""
        responders = list(self._responders)
        for responder in responders:
            responder.close()
        for sub in self._router.all():
            sub.close()
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(BusClosed("bus closed while waiting for a reply"))
        return responders

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def statistics(self) -> BusStatistics:
        """A snapshot of the bus's counters (see ``BusStatistics``)."""
        self._retire()
        subs = self._router.all() + self._draining
        delivered, dropped, overflows = self._retired
        return BusStatistics(
            published=self._published,
            delivered=delivered + sum(s._delivered for s in subs),
            dropped=dropped + sum(s._dropped for s in subs),
            overflows=overflows + sum(s._overflows for s in subs),
            subscriptions=sum(1 for s in subs if not s._serving and not s._closed),
            responders=len(self._responders),
            requests=self._requests,
            timeouts=self._timeouts,
            backlog=self._backlog_size(),
        )

    def _backlog_size(self) -> int:
        return 0
