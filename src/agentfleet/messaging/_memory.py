"""The in-process bus: subscriptions are deques in this process, messages are shared, not copied.

# Design
# The hot path is ``publish_nowait``: one cached topic → subscriptions lookup, a pass that
# checks no strict (``block``/``error``) subscription is full, one ``Message`` built with
# ``make_message`` and an append per subscription. No future or task is created per message;
# a parked reader is woken with one ``set_result``.
#
# A publish is all-or-nothing: every matching subscription is checked before any receives
# the message, so ``BusOverflow`` means nobody got it and retrying cannot duplicate it.
# ``await publish`` waits on the full ``block`` subscription's space and retries; that is the
# only place a publisher waits. ``publish_nowait`` never waits: it raises ``BusOverflow``
# (naming the topic and the full subscription) rather than lose a message a ``block``
# subscriber was promised.
#
# Requests are ordinary messages with ``reply_to`` (this bus's inbox) and ``correlation``;
# replies resolve the requester's future directly. A request to a topic no responder serves
# fails at once with ``BusError("no responder")`` instead of waiting for its timeout.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .._types import Clock
from ..errors import BusClosed, BusError
from ._bus import NO_HEADERS, Message, make_message
from ._core import BusCore
from ._subscription import Subscription

__all__ = ["InProcessBus"]


class InProcessBus(BusCore):
    """A ``Bus`` inside one process (asyncio). ``clock`` stamps messages and times requests.

    Subscribers receive the publisher's ``data`` object itself (not a copy): treat it as
    read-only. ``publish`` returns the number of subscriptions the message was queued on.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        super().__init__(clock)
        self._inbox = f"_inbox.{id(self):x}"

    def _publish(
        self,
        topic: str,
        data: Any,
        headers: Mapping[str, str] | None,
        reply_to: str | None,
        correlation: str | None,
    ) -> int | Subscription:
        """Deliver to every matching subscription, or return the full ``block`` one (nothing delivered)."""
        if self._closed:
            raise BusClosed("bus is closed", topic=topic)
        subs = self._cache.get(topic)
        if subs is None:
            subs = self._router.resolve(topic)
        if len(subs) == 1:  # the common case, written out flat: this is the hot path
            sub = subs[0]
            q = sub._queue
            n = len(q)
            if n >= sub.maxsize:
                if sub.overflow == "block":
                    return sub
                if sub._strict:
                    raise sub._overflow_error(topic)
                q.popleft()
                sub._dropped += 1
                n -= 1
            self._published = seq = self._published + 1
            q.append(
                make_message(
                    topic,
                    data,
                    str(seq),
                    self._now(),
                    reply_to,
                    correlation,
                    NO_HEADERS if headers is None else MappingProxyType(dict(headers)),
                )
            )
            if n >= sub._max_queued:
                sub._max_queued = n + 1
            if sub._getters:
                sub._wake_getter()
            return 1
        # several subscriptions (or none): check them all before delivering to any
        for sub in subs:
            if sub._strict and len(sub._queue) >= sub.maxsize:
                if sub.overflow == "block":
                    return sub
                raise sub._overflow_error(topic)
        self._published = seq = self._published + 1
        if not subs:
            return 0
        msg = make_message(
            topic,
            data,
            str(seq),
            self._now(),
            reply_to,
            correlation,
            NO_HEADERS if headers is None else MappingProxyType(dict(headers)),
        )
        for sub in subs:
            sub._push(msg)
        return len(subs)

    def publish_nowait(self, topic: str, data: Any, *, headers: Mapping[str, str] | None = None) -> int:
        """Publish now; raises ``BusOverflow`` (and delivers to nobody) if a ``block`` subscription is full."""
        result = self._publish(topic, data, headers, None, None)
        if result.__class__ is int:
            return result
        assert isinstance(result, Subscription)
        raise result._overflow_error(topic)

    async def publish(self, topic: str, data: Any, *, headers: Mapping[str, str] | None = None) -> int:
        """Publish, waiting while a ``block`` subscription is full."""
        while True:
            result = self._publish(topic, data, headers, None, None)
            if result.__class__ is int:
                return result
            assert isinstance(result, Subscription)
            await result._wait_space()

    async def _publish_waiting(
        self,
        topic: str,
        data: Any,
        headers: Mapping[str, str] | None,
        reply_to: str | None,
        correlation: str | None,
    ) -> int:
        while True:
            result = self._publish(topic, data, headers, reply_to, correlation)
            if isinstance(result, int):
                return result
            await result._wait_space()

    def _reply(self, request: Message, data: Any, error: str | None) -> None:
        self._resolve(request.correlation, request.topic, data, error)

    async def request(
        self, topic: str, data: Any, *, timeout: float, headers: Mapping[str, str] | None = None
    ) -> Any:
        """Send ``data`` to the topic's responder; its reply's data, or ``BusTimeout``/``BusError``."""
        if self._closed:
            raise BusClosed("bus is closed", topic=topic)
        self._requests += 1
        if not any(sub._serving for sub in self._router.match(topic)):
            raise BusError("no responder", topic=topic)
        return await self._exchange(
            topic, timeout, lambda correlation: self._publish_waiting(topic, data, headers, self._inbox, correlation))

    async def connect(self) -> None:
        """Nothing to connect in-process; ``BusClosed`` if the bus is closed."""
        if self._closed:
            raise BusClosed("bus is closed")

    async def aclose(self) -> None:
        """Close every subscription (queued messages stay readable) and responder; fail pending requests."""
        if self._closed:
            return
        self._closed = True
        responders = self._close_local()
        await asyncio.gather(*(r.aclose() for r in responders), return_exceptions=True)

    def __repr__(self) -> str:
        return f"<InProcessBus{' closed' if self._closed else ''}>"
