"""A responder: answers the requests sent to one topic with a handler, each in its own task.

# Design
# A responder is a subscription plus a pump task. Each request runs in its own task so one
# slow answer does not hold up the next; the reply goes back through the bus that owns the
# responder (``reply(request, data, error)``), which knows its transport: the in-process bus
# resolves the requester's future, ``RedisBus`` appends to the requester's reply stream.
# A handler that raises is answered with its error message, which the requester re-raises as
# ``BusError``: a failure is reported as a failure, not left to look like a timeout.
# Several responders on one topic all answer; the first reply wins.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._bus import Handler, Message
from ._subscription import Subscription

__all__ = ["Responder", "ResponderStatistics"]

Reply = Callable[[Message, Any, "str | None"], None]


@dataclass(frozen=True, slots=True)
class ResponderStatistics:
    """``handled`` requests answered with the handler's result, ``failed`` answered with its error,
    ``in_flight`` being handled now, ``ignored`` messages without ``reply_to`` (plain publishes)."""

    topic: str
    handled: int
    failed: int
    in_flight: int
    ignored: int
    closed: bool


class Responder:
    """Serves requests on ``topic`` until ``close()``; made by ``bus.serve(topic, handler)``."""

    def __init__(self, subscription: Subscription, handler: Handler, reply: Reply) -> None:
        self.topic = subscription.pattern
        self._sub = subscription
        self._handler = handler
        self._reply = reply
        self._tasks: set[asyncio.Task[None]] = set()
        self._handled = 0
        self._failed = 0
        self._ignored = 0
        self._on_close: list[Callable[[Responder], None]] = []
        self._pump = asyncio.get_running_loop().create_task(self._run(), name=f"responder {self.topic}")

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        async for msg in self._sub:
            if msg.reply_to is None or msg.correlation is None:
                self._ignored += 1
                continue
            task = loop.create_task(self._answer(msg))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _answer(self, msg: Message) -> None:
        try:
            result = self._handler(msg.data)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:  # noqa: BLE001 - the requester gets it as BusError
            self._failed += 1
            text = str(exc)
            self._reply(msg, None, f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
            return
        self._handled += 1
        self._reply(msg, result, None)

    @property
    def closed(self) -> bool:
        return self._sub.closed

    def close(self) -> None:
        """Stop serving: no new requests are taken and requests being handled are cancelled."""
        if self._sub.closed:
            return
        self._sub.close()
        self._pump.cancel()
        for task in self._tasks:
            task.cancel()
        for callback in self._on_close:
            callback(self)

    async def aclose(self) -> None:
        """``close()``, then wait until the pump and every handler task have finished."""
        self.close()
        await asyncio.gather(self._pump, *self._tasks, return_exceptions=True)

    def statistics(self) -> ResponderStatistics:
        return ResponderStatistics(
            topic=self.topic,
            handled=self._handled,
            failed=self._failed,
            in_flight=len(self._tasks),
            ignored=self._ignored,
            closed=self._sub.closed,
        )

    def __repr__(self) -> str:
        return f"<Responder {self.topic!r}{' closed' if self.closed else ''}>"
