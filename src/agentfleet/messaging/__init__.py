"""The message bus: publish/subscribe with NATS-style patterns, request/reply, batching.

    Bus             the protocol both implementations satisfy
    InProcessBus    asyncio, one process; the hot path allocates one Message per publish
    RedisBus        several processes through a Redis stream (JSON data)
    Subscription    a bounded queue with an overflow policy, read as an async iterator
    Responder       answers the requests sent to a topic (``bus.serve``)
    Batcher         lists of messages flushed by size or age, for slow consumers
    CallBatcher     concurrent callers' items sent as one call per batch (embeddings,
                    batch APIs), each caller answered with its own result

Topics are dot-separated (``run.42.task.done``); patterns use ``*`` for one segment and a
trailing ``>`` for one or more. See docs/messaging.md.
"""

from __future__ import annotations

from ._batch import Batcher, BatcherStatistics
from ._bus import Bus, BusStatistics, Handler, Message, Overflow
from ._callbatch import CallBatcher, CallBatcherStatistics
from ._memory import InProcessBus
from ._redis import RedisBus
from ._responder import Responder, ResponderStatistics
from ._subscription import Subscription, SubscriptionStatistics

__all__ = [
    "Batcher",
    "BatcherStatistics",
    "Bus",
    "BusStatistics",
    "CallBatcher",
    "CallBatcherStatistics",
    "Handler",
    "InProcessBus",
    "Message",
    "Overflow",
    "RedisBus",
    "Responder",
    "ResponderStatistics",
    "Subscription",
    "SubscriptionStatistics",
]
