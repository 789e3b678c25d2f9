"""A small HTTP/1.1 client for generating load: a keep-alive pool of asyncio Protocol connections.

# Design
# A load generator's client must cost less than the target it measures, so this one does the
# least HTTP needs: the request bytes are encoded once per ``sender()`` and written as they are;
# a response is parsed by ``ResponseParser`` (pure: bytes and timestamps in, no I/O) straight
# from ``data_received``, keeping counts and timestamps, never the body. One request is in
# flight per connection (no pipelining); a bounded pool hands idle connections out LIFO (the
# warmest first, so a steady load settles on as few connections as it needs) and queues
# requests FIFO when all ``max_connections`` are busy. Timeouts are checked by one sweeper
# timer for the whole pool instead of a timer per request.
#
# Why hand-written: measured by ``benchmarks/_loadgen.py`` (2 CPUs, server and generator each
# pinned to one, the engine's closed loop with 64 users against a trivial local server) this
# client made ~36,000 requests/s on asyncio (~43,000 on uvloop), aiohttp ~4,900, httpx ~170
# (its pool degrades with concurrency: encode/httpx#3215) and Locust's FastHttpUser ~3,600.
# A request whose connection is idle costs no task: ``sender()``'s callable writes at once and
# returns the future the response will resolve, which the open loop watches with a callback.
#
# Streaming: with ``stream=True`` every "token" gets a timestamp: an SSE event (a blank-line
# terminator in a ``text/event-stream`` body) or, for other bodies, each network read that
# carried body bytes. ``ttfb`` is then the time to the first token, ``itl`` the gaps between
# tokens; without streaming ``ttfb`` is the time to the first byte of the response.
"""

from __future__ import annotations

import asyncio
import itertools
import ssl
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import cast
from urllib.parse import urlsplit

from ._engine import Result

__all__ = ["ClientStatistics", "HttpClient", "ProtocolError", "ResponseParser"]

_MAX_HEAD = 64 * 1024
_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILER, _UNTIL_CLOSE, _DONE = range(8)


class ProtocolError(Exception):
    """The server's bytes are not a valid HTTP/1.1 response."""


class ResponseParser:
    """Parses one HTTP/1.x response fed in pieces; keeps its status, size and timings, not its body.

    ``feed(data, now)`` returns True once the response is complete; ``feed_eof()`` says whether
    the connection closing completes it (a body delimited by the close). Raises ``ProtocolError``.
    """

    __slots__ = ("_buf", "_pending", "_remaining", "_sse", "_state", "_stream", "_tail", "body_bytes", "first_byte_at",
                 "head_request", "keep_alive", "received", "status", "token_times")

    def __init__(self, *, head_request: bool = False, stream: bool = False) -> None:
        self.head_request = head_request
        self.status = 0
        self.keep_alive = True
        self.body_bytes = 0
        self.received = 0
        self.first_byte_at: float | None = None
        self.token_times: list[float] | None = [] if stream else None
        self._stream = stream
        self._sse = False
        self._tail = b""
        self._state = _HEAD
        self._remaining = 0
        self._buf = bytearray()
        self._pending = b""

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes, now: float) -> bool:
        if not data:
            return self._state == _DONE
        if self.received == 0:
            self.first_byte_at = now
        self.received += len(data)
        state = self._state
        if state == _HEAD:
            if self._pending:
                data = self._pending + data
                self._pending = b""
            rest = self._parse_head(data)
            if rest is None:
                return False
            state = self._state
            if state == _DONE:
                if rest:
                    raise ProtocolError("data after the end of the response")
                return True
            if not rest:
                return False
            data = rest
        if state == _LENGTH:
            n = len(data)
            if n > self._remaining:
                raise ProtocolError("more body than content-length")
            self.body_bytes += n
            self._remaining -= n
            if self._stream:
                self._tokens(data, now)
            if self._remaining == 0:
                self._state = _DONE
                return True
            return False
        if state == _UNTIL_CLOSE:
            self.body_bytes += len(data)
            if self._stream:
                self._tokens(data, now)
            return False
        if state == _DONE:
            raise ProtocolError("data after the end of the response")
        return self._chunked(data, now)

    def feed_eof(self) -> bool:
        if self._state == _UNTIL_CLOSE:
            self._state = _DONE
        return self._state == _DONE

    # -- the head --

    def _parse_head(self, data: bytes) -> bytes | None:
        """Parse the head at the start of ``data``; return the bytes after it, or None (incomplete)."""
        while True:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                if len(data) > _MAX_HEAD:
                    raise ProtocolError("response head over 64 KiB")
                self._pending = data
                return None
            lines = data[:end].lower().split(b"\r\n")  # every value we read is case-insensitive
            data = data[end + 4:]
            status_line = lines[0]
            if not status_line.startswith(b"http/1.") or len(status_line) < 12 or status_line[8:9] != b" ":
                raise ProtocolError(f"bad status line {status_line[:40]!r}")
            try:
                status = int(status_line[9:12])
            except ValueError:
                raise ProtocolError(f"bad status line {status_line[:40]!r}") from None
            if not 100 <= status < 200:
                break
            # 100 Continue and friends: the real head follows
        self.status = status
        keep_alive = status_line[7:8] == b"1"
        length: int | None = None
        chunked = False
        for line in lines[1:]:
            if line.startswith(b"content-length:"):
                try:
                    length = int(line[15:])
                except ValueError:
                    raise ProtocolError("bad content-length") from None
                if length < 0:
                    raise ProtocolError("bad content-length")
            elif line.startswith(b"transfer-encoding:"):
                chunked = line.rstrip().endswith(b"chunked")
            elif line.startswith(b"connection:"):
                token = line[11:].strip()
                if token == b"close":
                    keep_alive = False
                elif token == b"keep-alive":
                    keep_alive = True
            elif line.startswith(b"content-type:"):
                self._sse = line[13:].strip().startswith(b"text/event-stream")
            elif b":" not in line:
                raise ProtocolError(f"bad header line {line[:40]!r}")
        self.keep_alive = keep_alive
        if self.head_request or status in (204, 304):
            self._state = _DONE
        elif chunked:
            self._state = _CHUNK_SIZE
        elif length is not None:
            self._remaining = length
            self._state = _LENGTH if length else _DONE
        else:
            self.keep_alive = False
            self._state = _UNTIL_CLOSE
        return data

    # -- the body --

    def _tokens(self, data: bytes, now: float) -> None:
        times = self.token_times
        assert times is not None
        if not self._sse:
            times.append(now)
            return
        tail = self._tail
        joined = tail + data
        count = (joined.count(b"\n\n") - tail.count(b"\n\n")) + (joined.count(b"\r\n\r\n") - tail.count(b"\r\n\r\n"))
        times.extend([now] * count)
        self._tail = joined[-3:]

    def _chunked(self, data: bytes, now: float) -> bool:
        buf = self._buf
        buf += data
        pos = 0
        state = self._state
        payload = bytearray() if self._stream else None
        try:
            while True:
                if state == _CHUNK_SIZE:
                    i = buf.find(b"\r\n", pos)
                    if i < 0:
                        if len(buf) - pos > 1024:
                            raise ProtocolError("chunk size line too long")
                        break
                    try:
                        size = int(bytes(buf[pos:i]).split(b";", 1)[0], 16)
                    except ValueError:
                        raise ProtocolError("bad chunk size") from None
                    pos = i + 2
                    if size:
                        self._remaining = size
                        state = _CHUNK_DATA
                    else:
                        state = _TRAILER
                elif state == _CHUNK_DATA:
                    n = min(self._remaining, len(buf) - pos)
                    if n == 0:
                        break
                    if payload is not None:
                        payload += buf[pos:pos + n]
                    self.body_bytes += n
                    self._remaining -= n
                    pos += n
                    if self._remaining == 0:
                        state = _CHUNK_END
                elif state == _CHUNK_END:
                    if len(buf) - pos < 2:
                        break
                    if buf[pos:pos + 2] != b"\r\n":
                        raise ProtocolError("chunk not followed by CRLF")
                    pos += 2
                    state = _CHUNK_SIZE
                elif state == _TRAILER:
                    i = buf.find(b"\r\n", pos)
                    if i < 0:
                        break
                    empty = i == pos  # each trailer line starts at pos; an empty one ends the body
                    pos = i + 2
                    if empty:
                        state = _DONE
                        break
                else:  # _DONE with bytes left over
                    break
        finally:
            self._state = state
            del buf[:pos]
        if payload:
            self._tokens(bytes(payload), now)
        if state == _DONE:
            if buf:
                raise ProtocolError("data after the end of the response")
            return True
        return False


@dataclass(frozen=True, slots=True)
class ClientStatistics:
    """Connections ``opened`` and ``open`` now, ``requests`` sent, how many ``reused`` a kept-alive
    connection, how many had to ``wait`` for a free connection, and ``retried`` (a kept-alive
    connection the server had closed, detected before any answer byte: sent again once)."""

    opened: int
    open: int
    requests: int
    reused: int
    waited: int
    retried: int


class _Exchange:
    """One request on its way: what to send, how to parse the answer, and who waits for it."""

    __slots__ = ("head", "payload", "retry", "start", "stream", "waiter")

    def __init__(self, payload: bytes, head: bool, stream: bool, waiter: asyncio.Future[Result], start: float) -> None:
        self.payload = payload
        self.head = head
        self.stream = stream
        self.waiter = waiter
        self.start = start
        self.retry = True


class _Connection(asyncio.Protocol):
    """One kept-alive connection: at most one exchange in flight."""

    __slots__ = ("client", "closed", "deadline", "exchange", "loop", "parser", "transport", "uses")

    def __init__(self, client: HttpClient) -> None:
        self.client = client
        self.loop = client._loop
        self.transport: asyncio.Transport | None = None
        self.parser: ResponseParser | None = None
        self.exchange: _Exchange | None = None
        self.deadline = 0.0
        self.uses = 0
        self.closed = False

    # -- asyncio.Protocol --

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it

    def data_received(self, data: bytes) -> None:
        parser = self.parser
        if parser is None:  # bytes nobody asked for: the connection cannot be trusted
            self.close()
            return
        try:
            done = parser.feed(data, self.loop.time())
        except ProtocolError:
            self.fail("protocol")
            return
        if done:
            self.finish()

    def eof_received(self) -> bool:
        parser = self.parser
        if parser is not None:
            if parser.feed_eof():
                self.finish()
            else:
                self.fail("closed")
        self.closed = True
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.parser is not None:
            self.fail("closed")
        self.client._lost(self)

    # -- one exchange --

    def begin(self, exchange: _Exchange, deadline: float) -> None:
        assert self.transport is not None
        self.parser = ResponseParser(head_request=exchange.head, stream=exchange.stream)
        self.exchange = exchange
        self.deadline = deadline
        self.uses += 1
        self.transport.write(exchange.payload)

    def finish(self) -> None:
        parser, exchange = self.parser, self.exchange
        assert parser is not None and exchange is not None
        self.parser = self.exchange = None
        now = self.loop.time()
        status = parser.status
        ok = 200 <= status < 300  # redirects are not followed: a 3xx did not do the work
        times = parser.token_times
        start = exchange.start
        if times is not None:
            first = times[0] if times else parser.first_byte_at
            itl = [b - a for a, b in itertools.pairwise(times)]
        else:
            first, itl = parser.first_byte_at, None
        waiter = exchange.waiter
        if not waiter.done():
            waiter.set_result(Result(ok, status, None if ok else f"http_{status}", now - start,
                                     None if first is None else first - start, itl, parser.body_bytes))
        if parser.keep_alive and not self.closed:
            self.client._release(self)
        else:
            self.close()

    def fail(self, kind: str) -> None:
        parser, exchange = self.parser, self.exchange
        self.parser = self.exchange = None
        self.close()
        if exchange is None or exchange.waiter.done():
            return
        received = parser.received if parser is not None else 0
        if kind == "closed" and self.uses > 1 and received == 0 and exchange.retry:
            # a kept-alive connection the server had closed before reading our request: send it again
            self.client._retry(exchange)
            return
        status = (parser.status or None) if parser is not None else None
        exchange.waiter.set_result(Result(False, status, kind, self.loop.time() - exchange.start, None, None,
                                          parser.body_bytes if parser is not None else 0))

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.transport is not None:
                self.transport.abort()


class HttpClient:
    """A keep-alive connection pool to one origin (``http://host:port`` or ``https://``).

    ``sender(method, path, ...)`` encodes a request once and returns the zero-argument callable
    the load loops call (it returns a future; no task per request when a connection is idle);
    ``request(...)`` sends one request. Both give a ``Result`` and never raise for network or
    HTTP errors: ``error_kind`` says what went wrong (``"connect"``, ``"timeout"``, ``"closed"``,
    ``"protocol"``, ``"http_503"``, ...). ``latency`` and ``ttfb`` are measured from the call
    (waits for a free connection included). Create it inside the event loop that will use it.
    """

    def __init__(
        self,
        base_url: str,
        *,
        max_connections: int = 100,
        timeout: float = 30.0,
        connect_timeout: float = 10.0,
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        if max_connections < 1:
            raise ValueError(f"max_connections must be >= 1, got {max_connections!r}")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"need an http:// or https:// URL with a host, got {base_url!r}")
        self.scheme = parts.scheme
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        default_port = self.port == (443 if parts.scheme == "https" else 80)
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.authority = host if default_port else f"{host}:{self.port}"
        self.base_path = parts.path.rstrip("/")
        self.max_connections = max_connections
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.headers = {"user-agent": "agentfleet-loadtest", "accept": "*/*", **(headers or {})}
        self._ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._ssl = ssl_context or ssl.create_default_context()
        self._loop = asyncio.get_running_loop()
        self._idle: list[_Connection] = []
        self._all: set[_Connection] = set()
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._opening = 0
        self._sweeper: asyncio.TimerHandle | None = None
        self._closed = False
        self._opened = self._requests = self._reused = self._waited = self._retried = 0

    # -- public --

    def encode(self, method: str, path: str = "/", *, headers: Mapping[str, str] | None = None,
               body: bytes | str | None = None) -> bytes:
        """The request's bytes: ``path`` is relative to the base URL, or an absolute URL of the same origin."""
        if "://" in path:
            parts = urlsplit(path)
            if (parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)) != (
                    self.scheme, self.host, self.port):
                raise ValueError(f"{path!r} is not on this client's origin {self.scheme}://{self.authority}")
            path = parts.path + (f"?{parts.query}" if parts.query else "")
        if not path:  # the base URL itself, as given (POST /v1/runs, not /v1/runs/)
            target = self.base_path or "/"
        else:
            target = self.base_path + (path if path.startswith("/") else "/" + path)
        data = body.encode() if isinstance(body, str) else (body or b"")
        merged = {k.lower(): v for k, v in {**self.headers, **(headers or {})}.items()}
        if data or method.upper() in ("POST", "PUT", "PATCH"):
            merged["content-length"] = str(len(data))
        lines = [f"{method.upper()} {target} HTTP/1.1", f"host: {self.authority}"]
        lines += [f"{k}: {v}" for k, v in merged.items() if k != "host"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data

    def sender(self, method: str = "GET", path: str = "/", *, headers: Mapping[str, str] | None = None,
               body: bytes | str | None = None, stream: bool = False) -> Callable[[], asyncio.Future[Result]]:
        """A zero-argument callable sending this one request: what the load loops call."""
        payload = self.encode(method, path, headers=headers, body=body)
        head = method.upper() == "HEAD"

        def send() -> asyncio.Future[Result]:
            return self._start(payload, head, stream)

        return send

    async def request(self, method: str = "GET", path: str = "/", *, headers: Mapping[str, str] | None = None,
                      body: bytes | str | None = None, stream: bool = False) -> Result:
        """Send one request and return its ``Result``."""
        return await self._start(self.encode(method, path, headers=headers, body=body), method.upper() == "HEAD",
                                 stream)

    def statistics(self) -> ClientStatistics:
        return ClientStatistics(self._opened, len(self._all), self._requests, self._reused, self._waited,
                                self._retried)

    async def aclose(self) -> None:
        """Close every connection; requests in flight end with ``error_kind="closed"``."""
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
        for conn in list(self._all):
            conn.fail("closed")
        self._idle.clear()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.sleep(0)  # let the transports report connection_lost

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- the exchange --

    def _start(self, payload: bytes, head: bool, stream: bool) -> asyncio.Future[Result]:
        loop = self._loop
        start = loop.time()
        self._requests += 1
        exchange = _Exchange(payload, head, stream, loop.create_future(), start)
        idle = self._idle
        while idle:  # the fast path: a warm connection, no task
            conn = idle.pop()
            if not conn.closed:
                self._reused += 1
                self._begin(conn, exchange)
                return exchange.waiter
        self._spawn(exchange)
        return exchange.waiter

    def _begin(self, conn: _Connection, exchange: _Exchange) -> None:
        conn.begin(exchange, exchange.start + self.timeout)
        if self._sweeper is None:
            self._schedule_sweep()

    def _spawn(self, exchange: _Exchange) -> None:
        task = self._loop.create_task(self._acquire_and_begin(exchange))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _retry(self, exchange: _Exchange) -> None:
        self._retried += 1
        exchange.retry = False
        if self._closed:
            exchange.waiter.set_result(Result(False, None, "closed", self._loop.time() - exchange.start, None, None, 0))
        else:
            self._spawn(exchange)

    async def _acquire_and_begin(self, exchange: _Exchange) -> None:
        loop = self._loop
        waiter = exchange.waiter
        kind: str | None = None
        try:
            conn = await self._acquire(exchange.start)
        except TimeoutError:
            kind = "timeout"
        except (OSError, ssl.SSLError):
            kind = "connect"
        except asyncio.CancelledError:
            kind = "closed"
        else:
            if conn is None:
                kind = "closed"
            elif waiter.done():  # cancelled by the caller meanwhile
                self._release(conn)
                return
            else:
                if conn.uses:
                    self._reused += 1
                self._begin(conn, exchange)
                return
        if not waiter.done():
            waiter.set_result(Result(False, None, kind, loop.time() - exchange.start, None, None, 0))

    async def _acquire(self, start: float) -> _Connection | None:
        """An idle connection, a new one, or (all ``max_connections`` busy) the next one released."""
        while True:
            while self._idle:
                conn = self._idle.pop()
                if not conn.closed:
                    return conn
            if self._closed:
                return None
            if len(self._all) + self._opening < self.max_connections:
                return await self._connect()
            self._waited += 1
            waiter: asyncio.Future[_Connection | None] = self._loop.create_future()
            self._waiters.append(waiter)
            handle = self._loop.call_at(start + self.timeout, _expire, waiter)
            try:
                woken = await waiter
            except BaseException:  # cancelled after being handed a connection: pass it on
                if waiter.done() and not waiter.cancelled() and waiter.exception() is None \
                        and (got := waiter.result()) is not None:
                    self._release(got)
                raise
            finally:
                handle.cancel()
            if woken is not None:
                return woken
            # None: a slot freed (a connection closed) or the client closed; go round again

    async def _connect(self) -> _Connection:
        self._opening += 1
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, conn = await self._loop.create_connection(
                    lambda: _Connection(self), self.host, self.port, ssl=self._ssl,
                    server_hostname=self.host if self._ssl is not None else None)
        finally:
            self._opening -= 1
        self._opened += 1
        self._all.add(conn)
        return conn

    def _release(self, conn: _Connection) -> None:
        if self._closed:
            conn.close()
            return
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    def _lost(self, conn: _Connection) -> None:
        self._all.discard(conn)
        waiters = self._waiters
        while waiters:  # a slot is free: let the first waiter open a connection
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def _schedule_sweep(self) -> None:
        period = min(max(self.timeout / 4, 0.05), 1.0)
        self._sweeper = self._loop.call_later(period, self._sweep)

    def _sweep(self) -> None:
        self._sweeper = None
        now = self._loop.time()
        busy = False
        for conn in list(self._all):
            if conn.parser is not None:
                if now >= conn.deadline:
                    conn.fail("timeout")
                else:
                    busy = True
        if busy and not self._closed:
            self._schedule_sweep()


def _expire(waiter: asyncio.Future[_Connection | None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())
