"""The Redis bus: one bus shared by several processes, through one Redis stream per namespace.

# Design: Streams, not pub/sub
# Every message of a namespace is appended (XADD, trimmed with ``MAXLEN ~``) to one stream,
# ``<namespace>:bus``; each ``RedisBus`` runs one reader task that XREAD-BLOCKs that stream
# and its own reply stream and hands messages to its local subscriptions, matching topics
# client-side with the same matcher as the in-process bus.
#
# * Latency: XREAD BLOCK returns as soon as an entry is appended, so a message costs about
#   the same two loopback round trips as PUBLISH/SUBSCRIBE (see benchmarks/_bus.py).
# * Durability and replay: pub/sub forgets a message once sent, so a subscriber that
#   reconnects has lost what was published meanwhile. A stream keeps the last ``maxlen``
#   entries and every message id names its stream entry, so a reader can resume from the
#   last id it saw (the hook for a later ``since=``).
# * Patterns: Redis pattern subscriptions are globs whose ``*`` also crosses dots, so they
#   would need client-side filtering anyway. Reading the namespace's one stream, every bus
#   sees every topic and ``*``/``>`` match exactly as in-process, with no registry of
#   topics to keep in sync. The cost: every bus reads all of its namespace's traffic; use
#   namespaces to partition unrelated traffic.
# * Backpressure: a slow pub/sub client makes Redis buffer its output until the
#   client-output-buffer limit disconnects it, losing messages silently. With a stream, a
#   full ``block`` subscription just pauses this bus's reader: entries wait in Redis (until
#   trimmed past ``maxlen``), and nothing is dropped that a policy did not ask to drop.
#
# Throughput: redis-py parses replies in pure Python (unless hiredis is installed), about
# 15,000 stream entries/s on a small machine. One writer task therefore packs consecutive
# publishes into one entry (a JSON array, up to ``_ENTRY_BYTES``) and pipelines its
# writes, so at high rates an entry carries many messages and parsing cost is amortised;
# at low rates each entry carries one. A message's id is ``"<entry id>:<index>"``.
#
# Semantics that differ from the in-process bus, because publisher and subscribers are in
# different processes: ``publish`` returns the number of subscriptions *on this bus* the
# topic matches (remote ones are unknown); publishing waits only for room in this bus's
# write backlog (``max_backlog``), never for a subscriber; a full subscription applies its
# policy in the reader: ``block`` pauses the reader, ``drop_oldest`` evicts, ``error``
# drops the message and raises ``BusOverflow`` to the *subscriber*'s next ``get()``.
#
# Data travels as JSON (tuples arrive as lists); data that is not JSON-serialisable is a
# ``BusError`` at publish time. Requests carry ``reply_to`` = this bus's reply stream; the
# responder XADDs its answer there. Responders are counted per pattern in the hash
# ``<namespace>:responders`` so a request nobody serves fails at once with "no responder";
# the count is kept by the responders' buses, so a process killed without closing its bus
# leaves a stale entry and requests to it time out instead (``BusTimeout``).
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections import deque
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, TypeAlias, cast

import redis.asyncio as aredis
from redis.exceptions import RedisError, ResponseError

from .._redact import redact
from .._types import Clock
from ..errors import BusClosed, BusError, BusOverflow
from ._bus import NO_HEADERS, Handler, Message, make_message
from ._core import BusCore
from ._pattern import compile_pattern, matches
from ._responder import Responder
from ._subscription import Subscription

__all__ = ["RedisBus"]

_PUBLISH, _REPLY, _COUNT = 0, 1, 2  # kinds of queued writes
_INBOX_PREFIX = "_inbox."
_INBOX_MAXLEN = 1_000
_INBOX_TTL = 300  # seconds a reply stream outlives its last reply (its bus deletes it on close)
_WRITE_BATCH = 512  # writes per pipeline round trip
_ENTRY_BYTES = 256 * 1024  # a stream entry holds consecutive publishes up to this size

_Entries: TypeAlias = "list[tuple[str, dict[str, str]]]"
_XReadResponse: TypeAlias = "list[tuple[str, _Entries]] | dict[str, _Entries] | None"


class RedisBus(BusCore):
    """A ``Bus`` shared by every process that uses the same Redis and ``namespace``.

    Connect with ``await bus.connect()`` or ``async with RedisBus(...) as bus``; ``publish`` and
    ``request`` also connect on first use, while ``publish_nowait`` on a bus that is not
    connected raises ``BusError`` (it cannot wait for the connection). ``subscribe`` and ``serve``
    work before connecting and receive what is published once connected.

    ``maxlen`` bounds the namespace's stream (approximately, in entries of 1 to 512 messages).
    ``max_backlog`` bounds messages accepted but not yet written (``publish_nowait`` raises
    ``BusOverflow`` beyond it, ``publish`` waits). ``flush()`` waits until everything published
    so far is in Redis; ``aclose()`` flushes, waiting at most ``close_timeout`` seconds.
    ``block_ms`` is how long one XREAD waits before asking again (it bounds ``aclose()``'s wait
    for the reader when Redis stops answering).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "agentfleet",
        clock: Clock | None = None,
        maxlen: int = 100_000,
        max_backlog: int = 10_000,
        connect_timeout: float = 2.0,
        read_count: int = 1_000,
        block_ms: int = 1_000,
        close_timeout: float = 5.0,
    ) -> None:
        super().__init__(clock)
        if not namespace or any(c in namespace for c in " \n"):
            raise ValueError(f"namespace must be a non-empty word, got {namespace!r}")
        self.url = url
        self.namespace = namespace
        self._maxlen = maxlen
        self._max_backlog = max_backlog
        self._connect_timeout = connect_timeout
        self._read_count = read_count
        self._block_ms = block_ms
        self._close_timeout = close_timeout
        self._id = f"{os.getpid():x}.{uuid.uuid4().hex[:12]}"
        self._stream = f"{namespace}:bus"
        self._inbox = f"{namespace}:inbox:{self._id}"
        self._reply_to = f"{_INBOX_PREFIX}{self._id}"
        self._responders_key = f"{namespace}:responders"
        self._client: aredis.Redis | None = None
        self._connect_lock = asyncio.Lock()
        self._reader: asyncio.Task[None] | None = None
        self._writer: asyncio.Task[None] | None = None
        self._backlog: deque[tuple[int, str, Any]] = deque()
        self._writer_wake: asyncio.Future[None] | None = None
        self._enqueued = 0
        self._written = 0
        self._write_waiters: list[tuple[int, asyncio.Future[None]]] = []  # flush(): (target, future)
        self._space_waiters: list[asyncio.Future[None]] = []  # publish() waiting for backlog room
        self._failure: BusError | None = None
        self._stopping = False  # aclose() asks the reader and writer to finish
        self._registered: set[Responder] = set()

    # -- connection ---------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._client is not None and self._failure is None

    async def connect(self) -> None:
        """Connect to Redis and start the reader and writer; one ``BusError`` naming the URL if unreachable."""
        if self._closed:
            raise BusClosed("bus is closed")
        if self._client is not None:
            if self._failure is not None:
                raise self._failure
            return
        async with self._connect_lock:
            if self._client is not None or self._closed:
                return
            try:
                client = aredis.Redis.from_url(
                    self.url,
                    decode_responses=True,
                    socket_connect_timeout=self._connect_timeout,
                    socket_timeout=self._block_ms / 1000 + 5,  # a blocking XREAD must not time out
                )
            except ValueError as exc:
                raise BusError(f"cannot use Redis at {redact(self.url)}: {exc}") from None
            try:
                await client.ping()
                try:
                    info = await client.xinfo_stream(self._stream)
                    last_id = str(info["last-generated-id"])
                except ResponseError:  # no such key: nothing published in this namespace yet
                    last_id = "0-0"
            except (RedisError, OSError) as exc:
                await client.aclose()
                raise BusError(f"cannot use Redis at {redact(self.url)}: {exc}") from None
            self._client = client
            loop = asyncio.get_running_loop()
            self._reader = loop.create_task(self._read_loop(client, last_id), name=f"redis bus reader {self._id}")
            self._writer = loop.create_task(self._write_loop(client), name=f"redis bus writer {self._id}")
            for responder in self._responders:
                self._register(responder)

    def _check_usable(self, topic: str) -> None:
        if self._closed:
            raise BusClosed("bus is closed", topic=topic)
        if self._failure is not None:
            raise self._failure
        if self._client is None:
            raise BusError(
                f"RedisBus for {redact(self.url)} is not connected: await bus.connect() or use 'async with' first",
                topic=topic,
            )

    # -- publishing ---------------------------------------------------------------------------

    def _encode(self, data: Any, topic: str) -> str:
        try:
            return json.dumps(data, separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise BusError(f"data is not JSON-serialisable, and RedisBus sends JSON: {exc}", topic=topic) from None

    def _enqueue(
        self,
        topic: str,
        data: Any,
        headers: Mapping[str, str] | None,
        reply_to: str | None,
        correlation: str | None,
    ) -> int:
        subs = self._cache.get(topic)
        if subs is None:
            subs = self._router.resolve(topic)
        if reply_to is None and not headers:
            body = self._encode([topic, self._now(), data], topic)
        else:
            extra = dict(headers) if headers else None
            body = self._encode([topic, self._now(), data, reply_to, correlation, extra], topic)
        self._write(_PUBLISH, "", body)
        self._published += 1
        return len(subs)

    def _write(self, kind: int, key: str, payload: Any) -> None:
        self._backlog.append((kind, key, payload))
        self._enqueued += 1
        self._wake_writer()

    def _wake_writer(self) -> None:
        wake = self._writer_wake
        if wake is not None:
            self._writer_wake = None
            if not wake.done():
                wake.set_result(None)

    def publish_nowait(self, topic: str, data: Any, *, headers: Mapping[str, str] | None = None) -> int:
        """Queue the message for Redis; returns the local subscriptions it matches.

        Raises ``BusOverflow`` when ``max_backlog`` messages are already waiting to be written.
        """
        self._check_usable(topic)
        if len(self._backlog) >= self._max_backlog:
            raise BusOverflow(
                f"{len(self._backlog)} messages are waiting to be written to Redis at {redact(self.url)} "
                f"(max_backlog {self._max_backlog}); await publish() waits for room",
                topic=topic,
            )
        return self._enqueue(topic, data, headers, None, None)

    async def publish(self, topic: str, data: Any, *, headers: Mapping[str, str] | None = None) -> int:
        """Queue the message for Redis, waiting while the write backlog is full; connects if needed."""
        if self._client is None:
            await self.connect()
        await self._backlog_room(topic)
        return self._enqueue(topic, data, headers, None, None)

    async def _backlog_room(self, topic: str) -> None:
        while True:
            self._check_usable(topic)
            if len(self._backlog) < self._max_backlog:
                return
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._space_waiters.append(fut)
            await fut

    async def flush(self) -> None:
        """Wait until every message published so far (and every reply) has been written to Redis."""
        await self._written_up_to(self._enqueued)

    async def _written_up_to(self, target: int) -> None:
        while self._written < target:
            if self._failure is not None:
                raise self._failure
            if self._writer is None or self._writer.done():
                raise BusClosed("bus closed before everything was written") if self._closed else BusError(
                    f"RedisBus for {redact(self.url)} is not connected"
                )
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._write_waiters.append((target, fut))
            await fut

    async def _write_loop(self, client: aredis.Redis) -> None:
        backlog = self._backlog
        loop = asyncio.get_running_loop()
        maxlen = self._maxlen
        stream = self._stream
        while True:
            if not backlog:
                if self._stopping:
                    return
                wake = self._writer_wake = loop.create_future()
                await wake
                continue
            n = min(len(backlog), _WRITE_BATCH)
            pipe = client.pipeline(transaction=False)
            bodies: list[str] = []
            size = 0
            for _ in range(n):
                kind, key, payload = backlog.popleft()
                if kind == _PUBLISH:
                    if size + len(payload) > _ENTRY_BYTES and bodies:
                        pipe.xadd(stream, {"m": f"[{','.join(bodies)}]"}, maxlen=maxlen, approximate=True)
                        bodies, size = [], 0
                    bodies.append(payload)
                    size += len(payload) + 1
                    continue
                if bodies:  # keep publishes and other writes in order
                    pipe.xadd(stream, {"m": f"[{','.join(bodies)}]"}, maxlen=maxlen, approximate=True)
                    bodies, size = [], 0
                if kind == _REPLY:
                    pipe.xadd(key, payload, maxlen=_INBOX_MAXLEN, approximate=True)
                    pipe.expire(key, _INBOX_TTL)
                else:
                    pipe.hincrby(key, payload[0], payload[1])
            if bodies:
                pipe.xadd(stream, {"m": f"[{','.join(bodies)}]"}, maxlen=maxlen, approximate=True)
            try:
                await pipe.execute()
            except (RedisError, OSError) as exc:
                self._lost(exc)
                return
            self._written += n
            self._wake_writers()

    def _wake_writers(self) -> None:
        if self._space_waiters:
            waiters, self._space_waiters = self._space_waiters, []
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)
        if self._write_waiters:
            keep = []
            for target, fut in self._write_waiters:
                if target <= self._written or self._failure is not None:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    keep.append((target, fut))
            self._write_waiters = keep

    # -- receiving ----------------------------------------------------------------------------

    async def _read_loop(self, client: aredis.Redis, last_id: str) -> None:
        stream, inbox = self._stream, self._inbox
        positions: dict[Any, Any] = {stream: last_id, inbox: "0-0"}
        while not self._stopping:
            try:
                response = cast(
                    "_XReadResponse", await client.xread(positions, count=self._read_count, block=self._block_ms)
                )
            except (RedisError, OSError) as exc:
                self._lost(exc)
                return
            for key, entries in (response.items() if isinstance(response, dict) else response or ()):
                if key == inbox:
                    for entry_id, fields in entries:
                        positions[inbox] = entry_id
                        self._on_reply(fields)
                    continue
                for entry_id, fields in entries:
                    positions[stream] = entry_id
                    try:
                        items = json.loads(fields["m"])
                    except (KeyError, ValueError):
                        continue  # not written by a RedisBus: skip it
                    for index, item in enumerate(items):
                        msg = self._decode(entry_id, index, item)
                        if msg is None:
                            continue
                        subs = self._cache[msg.topic]  # _decode resolved it
                        i = self._deliver(msg, subs, 0)
                        while i < len(subs):  # a full ``block`` subscription: wait for room, then go on
                            await subs[i]._wait_space()
                            i = self._deliver(msg, subs, i)

    def _decode(self, entry_id: str, index: int, item: Any) -> Message | None:
        """The message ``item`` of a stream entry, or None if no local subscription wants it."""
        try:
            topic = item[0]
            subs = self._cache.get(topic)
            if subs is None:
                subs = self._router.resolve(topic)
            if not subs:
                return None
            if len(item) == 3:
                return make_message(topic, item[2], f"{entry_id}:{index}", item[1], None, None, NO_HEADERS)
            _, sent, data, reply_to, correlation, headers = item
            headers = MappingProxyType(headers) if headers else NO_HEADERS
            return make_message(topic, data, f"{entry_id}:{index}", sent, reply_to, correlation, headers)
        except (TypeError, ValueError, IndexError):
            return None  # not written by a RedisBus: skip it

    def _deliver(self, msg: Message, subs: tuple[Subscription, ...], start: int) -> int:
        """Queue ``msg`` on ``subs[start:]``; returns the index of a full ``block`` one, or ``len(subs)``."""
        for i in range(start, len(subs)):
            sub = subs[i]
            if sub._closed:
                continue
            if len(sub._queue) >= sub.maxsize:
                if sub.overflow == "block":
                    return i
                if sub.overflow == "error":
                    sub._lose(msg.topic)
                    continue
            sub._push(msg)
        return len(subs)

    def _on_reply(self, fields: dict[str, str]) -> None:
        try:
            data = json.loads(fields.get("d", "null"))
        except ValueError:
            data = None
        self._resolve(fields.get("c"), fields.get("t", ""), data, fields.get("e"))

    def _lost(self, exc: BaseException) -> None:
        """The connection failed for good: fail every waiter with one error naming the URL."""
        if self._failure is not None or self._closed:
            return
        error = BusError(f"lost Redis at {redact(self.url)}: {exc}")
        self._failure = error
        for sub in self._router.all():
            sub._fail(error)
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(error)
        self._wake_writers()

    # -- request / reply ----------------------------------------------------------------------

    def serve(self, topic: str, handler: Handler, *, maxsize: int = 1024) -> Responder:
        responder = super().serve(topic, handler, maxsize=maxsize)
        if self._client is not None:
            self._register(responder)
        return responder

    def _register(self, responder: Responder) -> None:
        if responder not in self._registered and not responder.closed:
            self._registered.add(responder)
            self._write(_COUNT, self._responders_key, (responder.topic, 1))

    def _responder_closed(self, responder: Responder) -> None:
        super()._responder_closed(responder)
        if responder in self._registered:
            self._registered.discard(responder)
            if self._client is not None and self._failure is None:
                self._write(_COUNT, self._responders_key, (responder.topic, -1))

    def _reply(self, request: Message, data: Any, error: str | None) -> None:
        reply_to = request.reply_to or ""
        if not reply_to.startswith(_INBOX_PREFIX) or self._client is None or self._failure is not None:
            return
        if error is None:
            try:
                encoded = json.dumps(data, separators=(",", ":"))
            except (TypeError, ValueError) as exc:
                encoded, error = "null", f"the reply is not JSON-serialisable, and RedisBus sends JSON: {exc}"
        else:
            encoded = "null"
        fields = {"t": request.topic, "c": request.correlation or "", "d": encoded}
        if error is not None:
            fields["e"] = error
        self._write(_REPLY, f"{self.namespace}:inbox:{reply_to[len(_INBOX_PREFIX):]}", fields)

    async def _served(self, topic: str) -> bool:
        """Whether a responder (here or in another process) serves ``topic``."""
        if any(sub._serving for sub in self._router.match(topic)):
            return True
        assert self._client is not None
        counts = cast("dict[str, str]", await self._client.hgetall(self._responders_key))
        for pattern, count in counts.items():
            if int(count) <= 0:
                continue
            try:
                segments = compile_pattern(pattern)
            except ValueError:
                continue
            if (segments is None and pattern == topic) or (segments is not None and matches(segments, topic)):
                return True
        return False

    async def request(
        self, topic: str, data: Any, *, timeout: float, headers: Mapping[str, str] | None = None
    ) -> Any:
        """Send ``data`` to the topic's responder (in any process); its reply's data.

        ``BusTimeout`` without a reply in ``timeout`` s; ``BusError`` if no responder is registered
        for the topic or the handler raised.
        """
        if self._closed:
            raise BusClosed("bus is closed", topic=topic)
        if self._client is None:
            await self.connect()
        self._requests += 1
        self._encode(data, topic)  # fail on bad data before waiting for anything

        async def send(correlation: str) -> None:
            try:
                served = await self._served(topic)
            except (RedisError, OSError) as exc:
                raise BusError(f"cannot use Redis at {redact(self.url)}: {exc}", topic=topic) from None
            if not served:
                raise BusError("no responder", topic=topic)
            await self._backlog_room(topic)
            self._enqueue(topic, data, headers, self._reply_to, correlation)

        return await self._exchange(topic, timeout, send)

    # -- lifecycle ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close subscriptions and responders, write what is queued (up to ``close_timeout`` s), disconnect."""
        if self._closed:
            return
        self._closed = True
        responders = self._close_local()
        client = self._client
        if client is not None:
            if self._failure is None:
                try:
                    await asyncio.wait_for(self._written_up_to(self._enqueued), self._close_timeout)
                except (TimeoutError, BusError):
                    pass
            # Stop the tasks by asking, not by cancelling: a command cancelled mid-read is not
            # reliably interrupted by redis-py. The reader is woken by an entry on its own inbox.
            self._stopping = True
            self._wake_writer()
            if self._failure is None:
                try:
                    await client.xadd(self._inbox, {"x": "close"})
                except (RedisError, OSError):
                    pass
            tasks = [t for t in (self._reader, self._writer) if t is not None]
            _, late = await asyncio.wait(tasks, timeout=self._block_ms / 1000 + 1)
            for task in late:  # pragma: no cover - only when Redis stops answering while we close
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._failure is None:
                try:
                    await client.delete(self._inbox)
                except (RedisError, OSError):
                    pass
            await client.aclose()
        self._wake_writers()
        for fut in self._space_waiters:
            if not fut.done():
                fut.set_result(None)
        await asyncio.gather(*(r.aclose() for r in responders), return_exceptions=True)

    def _backlog_size(self) -> int:
        return len(self._backlog)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "connected" if self.connected else "not connected"
        return f"<RedisBus {redact(self.url)} namespace={self.namespace!r} {state}>"
