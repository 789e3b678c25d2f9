"""The bus contract: ``Message``, the ``Bus`` protocol both implementations satisfy, and its statistics.

# Design
# One interface, two transports. ``InProcessBus`` hands the very ``Message`` object to every
# matching subscription's queue; ``RedisBus`` sends JSON through a Redis stream so several
# processes share one bus. Code that publishes progress events or asks for work is written
# against ``Bus`` and does not know which one it has.
#
# ``Message`` is built once per publish and shared by every subscriber (it is frozen, so
# sharing is safe). A frozen dataclass's generated ``__init__`` pays for ``object.__setattr__``
# on every field, which was most of the cost of a publish on the in-process hot path (about
# 2 µs of 3); the bus builds messages with ``make_message`` instead (see there).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Literal, Protocol, Self, TypeAlias, runtime_checkable

if TYPE_CHECKING:
    from ._responder import Responder
    from ._subscription import Subscription

__all__ = ["NO_HEADERS", "Bus", "BusStatistics", "Handler", "Message", "Overflow", "make_message"]

Overflow: TypeAlias = Literal["block", "drop_oldest", "error"]
"""What a subscription does when its queue is full and a message arrives.

``block``: the publisher waits for space (``await publish``) or gets ``BusOverflow``
(``publish_nowait``); nothing is lost. ``drop_oldest``: the oldest queued message is discarded
and counted in ``dropped``. ``error``: the publisher gets ``BusOverflow`` naming the topic and
the subscription's pattern.
"""

Handler: TypeAlias = Callable[[Any], "Awaitable[Any] | Any"]
"""A responder's handler: called with a request's data, returns (or awaits to) the reply's data."""

NO_HEADERS: Mapping[str, str] = MappingProxyType({})


def _no_headers() -> Mapping[str, str]:
    return NO_HEADERS


@dataclass(slots=True)
class Message:
    """One published message, shared by every subscription it reached: treat it as read-only.

    ``id`` increases with every message of a bus (in-process: ``"1"``, ``"2"``...; Redis: the
    stream entry id and the index in it, ``"<ms>-<seq>:<i>"``, usable to resume reading).
    ``time`` is the publisher's clock when it published. ``reply_to`` and ``correlation``
    are set on requests. Not a frozen dataclass: a frozen ``__init__`` pays an
    ``object.__setattr__`` per field, several times the cost of the publish itself.
    """

    topic: str
    data: Any
    id: str
    time: float
    reply_to: str | None = None
    correlation: str | None = None
    headers: Mapping[str, str] = field(default_factory=_no_headers)


make_message = Message
"""Build a ``Message`` from all seven fields, positionally (the publish hot path)."""


@dataclass(frozen=True, slots=True)
class BusStatistics:
    """What one bus has done so far.

    ``published`` counts messages this bus published (requests included). ``delivered``,
    ``dropped`` and ``overflows`` sum its subscriptions' counters, closed ones included:
    messages handed to consumers, messages lost to ``drop_oldest`` (on Redis also to ``error``),
    and ``BusOverflow`` errors raised because a queue was full. ``subscriptions`` and
    ``responders`` are the open ones. ``requests`` counts ``request()`` calls and ``timeouts``
    those that raised ``BusTimeout``. ``backlog`` is messages accepted but not yet written to
    the transport (always 0 in-process).
    """

    published: int = 0
    delivered: int = 0
    dropped: int = 0
    overflows: int = 0
    subscriptions: int = 0
    responders: int = 0
    requests: int = 0
    timeouts: int = 0
    backlog: int = 0


@runtime_checkable
class Bus(Protocol):
    """A publish/subscribe bus with request/reply; ``InProcessBus`` and ``RedisBus`` implement it.

    Topics are dot-separated segments (``run.42.task.done``). A subscription pattern is a topic,
    or uses ``*`` for exactly one segment and a trailing ``>`` for one or more (NATS style).
    Every method raises ``BusClosed`` once the bus is closed. ``async with bus:`` connects
    (a no-op in-process) and closes.
    """

    def subscribe(self, pattern: str, *, maxsize: int = 1024, overflow: Overflow = "block") -> Subscription:
        """A new subscription receiving every message published from now on to a matching topic."""
        ...

    def publish_nowait(self, topic: str, data: Any, *, headers: Mapping[str, str] | None = None) -> int:
        """Publish without waiting; returns how many subscriptions the message reached.

        Raises ``BusOverflow`` instead of waiting when a ``block`` subscription is full.
        """
        ...

    async def publish(self, topic: str, data: Any, *, headers: Mapping[str, str] | None = None) -> int:
        """Publish, waiting for queue space where a ``block`` subscription is full."""
        ...

    async def request(
        self, topic: str, data: Any, *, timeout: float, headers: Mapping[str, str] | None = None
    ) -> Any:
        """Send a request to the topic's responder and return the data of its reply.

        Raises ``BusTimeout`` without a reply in ``timeout`` seconds, ``BusError`` when nobody
        serves the topic or the responder's handler raised.
        """
        ...

    def serve(self, topic: str, handler: Handler, *, maxsize: int = 1024) -> Responder:
        """Answer every request on ``topic`` (a pattern) with ``handler(data)``, until closed."""
        ...

    async def connect(self) -> None:
        """Make the bus usable (connect to the transport); idempotent."""
        ...

    async def aclose(self) -> None:
        """Close every subscription and responder, fail pending requests; idempotent."""
        ...

    @property
    def closed(self) -> bool:
        """True once ``aclose()`` has started."""
        ...

    def statistics(self) -> BusStatistics:
        """A snapshot of the bus's counters."""
        ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
