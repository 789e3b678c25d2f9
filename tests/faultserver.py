"""A real local OpenAI-compatible HTTP server that misbehaves on purpose, for resilience tests
and benchmarks (retries, rate limiting, hedging, batching) against real sockets.

    with FaultServer(rpm=600, error_rate=0.1, latency=0.01, seed=1) as server:
        agent = AgentSpec(name="a", provider="openai", model="m", options={"base_url": server.url})
        ...                                   # server.url is http://127.0.0.1:PORT/v1
        server.configure(error_rate=0.0)      # change behaviour at run time
        server.script(429, "drop", "cut")     # the next three POSTs fail exactly so
        counts = server.counts()              # FaultCounts: received, succeeded, faults...

Routes: ``POST /v1/chat/completions`` (JSON, or SSE with ``stream: true``; usage in the body,
or in a last chunk when ``stream_options.include_usage``), ``POST /v1/embeddings`` (``input`` a
string or a list of strings) and ``GET /v1/models``. The answer is a function of the prompt:
``reply_for(prompt)`` is ``"answer to: <first 40 chars>"``, ``embedding_for(text)`` a vector
from the text's hash, usage about four characters a token.

What happens to a POST, in this order:

1. **Fault draw.** The next scripted fault if any (``script(...)``), else six numbers from the
   seeded ``random.Random``: ``drop_rate`` (close the socket without answering), ``error_rate``
   (answer one of ``error_statuses``), ``rate_429`` (an injected 429 with ``retry_after``), the
   heavy tail (``tail_p``) and, for a stream, ``cut_stream_rate``. Drops and injected error
   statuses are answered at once and **do not consume rate-limit quota**: the limiter never
   sees them (as with a proxy or load balancer failing in front of the real limiter).
2. **Rate limit.** ``max_concurrency`` (admitted requests in flight), ``rpm`` and ``tpm``
   (token buckets refilling smoothly, holding ``burst`` seconds' worth, one second by default;
   a request costs its prompt plus reply tokens in the tpm bucket). Over a limit the answer is
   429 with ``retry-after`` and OpenAI's ``x-ratelimit-limit-requests``,
   ``x-ratelimit-remaining-requests``, ``x-ratelimit-reset-requests`` (``"1.5s"``, ``"20ms"``;
   ``-tokens`` likewise with a tpm). Every answer carries the current values of those headers.
3. **Latency.** ``latency`` seconds, times ``tail_mult`` with probability ``tail_p`` (a
   heavy tail for hedging benchmarks), before the first byte; ``chunk_delay`` between chunks.
4. **Answer.** Whole, or (``cut``) a stream that sends about half its chunks and then closes
   the socket without ``[DONE]`` (a JSON answer: half its body). The scripted ``truncate``
   instead ends the chunked body cleanly, still without ``[DONE]`` or a finish reason.

``retry_after_form`` says how a 429's wait is written: ``"seconds"`` (``retry-after: 0.25``),
``"date"`` (an HTTP date, whole seconds, rounded up) or ``"ms"`` (``retry-after-ms`` plus
whole ``retry-after`` seconds, as OpenAI sends).

Counters (thread-safe, ``counts()`` returns a snapshot, ``reset_counts()`` zeroes them):
POSTs ``received``, ``succeeded`` (complete answers), ``rate_limited`` (by the limiter, with
``limited_by`` reason), ``faults`` by kind (``"500"``, ``"429"`` injected, ``"drop"``, ``"cut"``,
``"truncate"``, ``"slow"``), ``max_in_flight``, and ``by_prompt``: complete answers per
``prompt_key(prompt)`` (each input of an embeddings call counts), so duplicate work shows.

It is a small HTTP/1.1 server on asyncio streams (keep-alive, chunked SSE) in a background
thread on an ephemeral port of 127.0.0.1: one thread for any number of connections, so a
thousand slow requests in flight cost no threads. ``python -m tests.faultserver`` measures
its throughput.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import math
import random
import struct
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Self

__all__ = [
    "FAULT_KINDS",
    "FaultConfig",
    "FaultCounts",
    "FaultServer",
    "embedding_for",
    "prompt_key",
    "reply_for",
    "tokens_for",
]

#: Scripted fault names (an int is an HTTP status to answer with).
FAULT_KINDS = ("ok", "drop", "cut", "truncate", "slow")
RETRY_AFTER_FORMS = ("seconds", "date", "ms")

_ERROR_CODES = {
    400: "invalid_request_error",
    401: "invalid_api_key",
    404: "not_found",
    429: "rate_limit_exceeded",
    500: "server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    529: "overloaded",
}


# --- the answers (pure) --------------------------------------------------------------------


def reply_for(prompt: str) -> str:
    """The text the server answers ``prompt`` with."""
    return f"answer to: {prompt[:40]}"


def tokens_for(text: str) -> int:
    """The server's token count of ``text`` (about four characters a token, at least 1)."""
    return max(1, (len(text) + 3) // 4)


def prompt_key(prompt: str) -> str:
    """The key of ``prompt`` in ``FaultCounts.by_prompt``."""
    return hashlib.sha256(prompt.encode()).hexdigest()[:16]


def embedding_for(text: str, dim: int = 8) -> list[float]:
    """The embedding the server answers for ``text``: ``dim`` floats in [-1, 1) from its hash."""
    out: list[float] = []
    counter = 0
    while len(out) < dim:
        digest = hashlib.sha256(f"{counter}:{text}".encode()).digest()
        for (word,) in struct.iter_unpack(">I", digest):
            out.append(round(word / 2**31 - 1.0, 6))
        counter += 1
    return out[:dim]


def _duration(seconds: float) -> str:
    """A Go-style duration as OpenAI writes reset times: ``"20ms"``, ``"1.5s"``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + "s"


def _seconds(value: float) -> str:
    return f"{value:.3f}".rstrip("0").rstrip(".") or "0"


# --- configuration and counters ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FaultConfig:
    """How the server behaves; see the module docstring. Rates are probabilities in [0, 1]."""

    rpm: float | None = None
    tpm: float | None = None
    max_concurrency: int | None = None
    burst: float = 1.0  # seconds' worth of rpm/tpm the buckets hold
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 503)
    rate_429: float = 0.0
    retry_after: float = 1.0  # the wait an injected 429 asks for, seconds
    retry_after_form: str = "seconds"
    latency: float = 0.0
    tail_p: float = 0.0
    tail_mult: float = 10.0
    cut_stream_rate: float = 0.0
    drop_rate: float = 0.0
    chunk_delay: float = 0.0
    embedding_dim: int = 8
    model: str = "fault-model"

    def __post_init__(self) -> None:
        for name in ("error_rate", "rate_429", "tail_p", "cut_stream_rate", "drop_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value!r}")
        for name in ("rpm", "tpm", "max_concurrency"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None, got {value!r}")
        for name in ("burst", "tail_mult", "embedding_dim"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)!r}")
        for name in ("retry_after", "latency", "chunk_delay"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if not self.error_statuses or not all(400 <= s <= 599 for s in self.error_statuses):
            raise ValueError(f"error_statuses must be HTTP error statuses, got {self.error_statuses!r}")
        if self.retry_after_form not in RETRY_AFTER_FORMS:
            raise ValueError(f"retry_after_form must be one of {RETRY_AFTER_FORMS}, got {self.retry_after_form!r}")


@dataclass(frozen=True, slots=True)
class FaultCounts:
    """A snapshot of the server's counters (POST API calls; ``by_path`` counts every request)."""

    received: int
    succeeded: int
    rate_limited: int
    limited_by: dict[str, int]
    faults: dict[str, int]
    in_flight: int
    max_in_flight: int
    by_prompt: dict[str, int]
    by_path: dict[str, int]
    tokens_in: int
    tokens_out: int

    @property
    def duplicates(self) -> int:
        """Complete answers beyond the first for the same prompt: work done more than once."""
        return sum(n - 1 for n in self.by_prompt.values() if n > 1)

    def fault(self, kind: str | int) -> int:
        return self.faults.get(str(kind), 0)


@dataclass(slots=True)
class _Counters:
    received: int = 0
    succeeded: int = 0
    rate_limited: int = 0
    limited_by: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    in_flight: int = 0
    max_in_flight: int = 0
    by_prompt: dict[str, int] = field(default_factory=dict)
    by_path: dict[str, int] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0


class _Bucket:
    """A token bucket refilling ``rate`` per second up to ``capacity``; starts full."""

    __slots__ = ("capacity", "level", "rate", "stamp")

    def __init__(self, per_minute: float, burst: float, now: float) -> None:
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * burst)
        self.level = self.capacity
        self.stamp = now

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_for(self, cost: float) -> float:
        """Seconds until ``cost`` (capped at the capacity) is available; 0 if it is now."""
        need = min(cost, self.capacity) - self.level
        return 0.0 if need <= 0 else need / self.rate

    def headers(self, kind: str, limit: float) -> list[tuple[str, str]]:
        reset = (self.capacity - self.level) / self.rate
        return [
            (f"x-ratelimit-limit-{kind}", str(round(limit))),
            (f"x-ratelimit-remaining-{kind}", str(max(0, math.floor(self.level)))),
            (f"x-ratelimit-reset-{kind}", _duration(reset)),
        ]


@dataclass(frozen=True, slots=True)
class _Fault:
    kind: str = "ok"  # ok, drop, status, cut, truncate
    status: int = 0
    slow: bool = False


def _parse_fault(entry: str | int) -> _Fault:
    if isinstance(entry, int) or (isinstance(entry, str) and entry.isdigit()):
        status = int(entry)
        if not 400 <= status <= 599:
            raise ValueError(f"a scripted status must be 4xx or 5xx, got {status}")
        return _Fault("status", status)
    if entry == "slow":
        return _Fault("ok", slow=True)
    if entry in FAULT_KINDS:
        return _Fault(entry)
    raise ValueError(f"unknown fault {entry!r}; known: an HTTP status or one of {', '.join(FAULT_KINDS)}")


class _Request:
    __slots__ = ("body", "headers", "method", "path", "version")

    def __init__(self, method: str, path: str, version: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.version = version
        self.headers = headers
        self.body = body

    @property
    def keep_alive(self) -> bool:
        connection = self.headers.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return connection == "keep-alive"
        return connection != "close"


class _BadRequest(Exception):
    pass


class _Closed(Exception):
    """The handler closed (or dropped) the connection on purpose."""


# --- the server ------------------------------------------------------------------------------


class FaultServer:
    """The fault-injecting OpenAI-compatible server; ``start()`` or use it as a context manager."""

    def __init__(
        self,
        *,
        seed: int = 0,
        script: Iterable[str | int] = (),
        clock: Callable[[], float] = time.monotonic,
        **config: Any,
    ) -> None:
        self.config = FaultConfig(**config)
        self._rng = random.Random(seed)
        self._clock = clock
        self._lock = threading.Lock()
        self._script: list[_Fault] = [_parse_fault(f) for f in script]
        self._counters = _Counters()
        self._requests: _Bucket | None = None
        self._tokens: _Bucket | None = None
        self._admitted = 0  # requests past the limiter, not yet answered
        self._reset_buckets()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_event: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._startup_error: BaseException | None = None

    # -- lifecycle --

    def start(self) -> Self:
        """Start serving in a background thread; returns once the port is bound."""
        if self._thread is not None:
            raise RuntimeError("the fault server is already started")
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="fault-server", daemon=True)
        self._thread.start()
        if not ready.wait(10) or self._startup_error is not None:
            self.stop()
            raise RuntimeError(f"the fault server did not start: {self._startup_error!r}")
        return self

    def stop(self) -> None:
        """Close every connection (in-flight requests are abandoned) and join the thread."""
        thread, loop, stop = self._thread, self._loop, self._stop_event
        if thread is None:
            return
        if loop is not None and stop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(stop.set)
            except RuntimeError:  # the loop closed meanwhile
                pass
        thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("the fault server is not started")
        return self._port

    @property
    def url(self) -> str:
        """The OpenAI base URL: ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- behaviour --

    def configure(self, **changes: Any) -> None:
        """Change the configuration at run time (``FaultConfig`` fields); the limits restart full
        when ``rpm``, ``tpm`` or ``burst`` change."""
        with self._lock:
            self.config = dataclasses.replace(self.config, **changes)
            if {"rpm", "tpm", "burst"} & changes.keys():
                self._reset_buckets()

    def script(self, *faults: str | int) -> None:
        """Answer the next POSTs with these faults, in order, before any random draw:
        an HTTP status (``429`` uses ``retry_after``), ``"drop"``, ``"cut"``, ``"truncate"``,
        ``"slow"`` (the tail latency) or ``"ok"``."""
        parsed = [_parse_fault(f) for f in faults]
        with self._lock:
            self._script.extend(parsed)

    def counts(self) -> FaultCounts:
        """A consistent snapshot of the counters."""
        with self._lock:
            c = self._counters
            return FaultCounts(
                received=c.received,
                succeeded=c.succeeded,
                rate_limited=c.rate_limited,
                limited_by=dict(c.limited_by),
                faults=dict(c.faults),
                in_flight=c.in_flight,
                max_in_flight=c.max_in_flight,
                by_prompt=dict(c.by_prompt),
                by_path=dict(c.by_path),
                tokens_in=c.tokens_in,
                tokens_out=c.tokens_out,
            )

    def reset_counts(self) -> None:
        """Zero the counters (requests in flight stay counted as in flight)."""
        with self._lock:
            in_flight = self._counters.in_flight
            self._counters = _Counters(in_flight=in_flight, max_in_flight=in_flight)

    # -- decisions (under the lock) --

    def _reset_buckets(self) -> None:
        now = self._clock()
        cfg = self.config
        self._requests = _Bucket(cfg.rpm, cfg.burst, now) if cfg.rpm else None
        self._tokens = _Bucket(cfg.tpm, cfg.burst, now) if cfg.tpm else None

    def _draw(self, stream: bool) -> _Fault:
        if self._script:
            return self._script.pop(0)
        cfg = self.config
        u_drop, u_error, u_status, u_429, u_tail, u_cut = (self._rng.random() for _ in range(6))
        if u_drop < cfg.drop_rate:
            return _Fault("drop")
        if u_error < cfg.error_rate:
            statuses = cfg.error_statuses
            return _Fault("status", statuses[min(len(statuses) - 1, int(u_status * len(statuses)))])
        if u_429 < cfg.rate_429:
            return _Fault("status", 429)
        slow = u_tail < cfg.tail_p
        if stream and u_cut < cfg.cut_stream_rate:
            return _Fault("cut", slow=slow)
        return _Fault("ok", slow=slow)

    def _limit_headers(self) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        cfg = self.config
        if self._requests is not None and cfg.rpm:
            out += self._requests.headers("requests", cfg.rpm)
        if self._tokens is not None and cfg.tpm:
            out += self._tokens.headers("tokens", cfg.tpm)
        return out

    def _admit(self, cost: int) -> tuple[str, float] | None:
        """Take quota for one request, or say why not and how long to wait."""
        cfg = self.config
        now = self._clock()
        requests, tokens = self._requests, self._tokens
        if requests is not None:
            requests.refill(now)
        if tokens is not None:
            tokens.refill(now)
        if cfg.max_concurrency is not None and self._admitted >= cfg.max_concurrency:
            return "concurrency", max(cfg.latency, 0.001)
        if requests is not None and (wait := requests.wait_for(1)) > 0:
            return "requests", wait
        if tokens is not None and (wait := tokens.wait_for(cost)) > 0:
            return "tokens", wait
        if requests is not None:
            requests.level -= 1
        if tokens is not None:
            tokens.level -= cost
        self._admitted += 1
        return None

    def _retry_after_headers(self, seconds: float) -> list[tuple[str, str]]:
        form = self.config.retry_after_form
        if form == "date":
            return [("retry-after", formatdate(time.time() + math.ceil(seconds), usegmt=True))]
        if form == "ms":
            return [("retry-after-ms", str(math.ceil(seconds * 1000))), ("retry-after", str(math.ceil(seconds)))]
        return [("retry-after", _seconds(seconds))]

    # -- the event loop thread --

    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main(ready))
        except BaseException as exc:  # noqa: BLE001 - reported by start()
            self._startup_error = exc
            ready.set()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _main(self, ready: threading.Event) -> None:
        self._stop_event = asyncio.Event()
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0, backlog=1024)
        self._port = int(server.sockets[0].getsockname()[1])
        ready.set()
        try:
            await self._stop_event.wait()
        finally:
            server.close()
            tasks = list(self._tasks)
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await server.wait_closed()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                try:
                    request = await _read_request(reader)
                except _BadRequest as exc:
                    await self._send_json(writer, 400, _error_body(400, str(exc)), keep_alive=False)
                    break
                if request is None:
                    break
                keep_alive = await self._handle(request, writer)
                if not keep_alive:
                    break
        except (_Closed, ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, OSError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, OSError, asyncio.CancelledError):
                pass

    async def _handle(self, request: _Request, writer: asyncio.StreamWriter) -> bool:
        path = request.path.split("?", 1)[0].rstrip("/")
        with self._lock:
            self._counters.by_path[path] = self._counters.by_path.get(path, 0) + 1
        keep = request.keep_alive
        if request.method == "GET":
            if path.endswith("/models"):
                body = {"object": "list", "data": [{"id": self.config.model, "object": "model"}]}
                await self._send_json(writer, 200, body, keep_alive=keep)
            else:
                await self._send_json(writer, 404, _error_body(404, f"no route GET {path}"), keep_alive=keep)
            return keep
        chat = path.endswith("/chat/completions")
        if request.method != "POST" or not (chat or path.endswith("/embeddings")):
            await self._send_json(writer, 404, _error_body(404, f"no route {request.method} {path}"),
                                  keep_alive=keep)
            return keep
        try:
            payload = json.loads(request.body)
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            await self._send_json(writer, 400, _error_body(400, "the body must be a JSON object"), keep_alive=keep)
            return keep
        if chat:
            return await self._api_call(writer, keep, payload, _chat_call(payload))
        texts = _embedding_inputs(payload)
        if texts is None:
            await self._send_json(writer, 400, _error_body(400, "'input' must be a string or a list of strings"),
                                  keep_alive=keep)
            return keep
        return await self._api_call(writer, keep, payload, _embeddings_call(texts, self.config.embedding_dim))

    async def _api_call(self, writer: asyncio.StreamWriter, keep: bool, payload: dict[str, Any],
                        call: _Call) -> bool:
        # Every outcome is counted *before* its last byte is written, so a client that has
        # its answer (or its error) already sees it in counts().
        stream = call.chat and bool(payload.get("stream"))
        counters = self._counters
        with self._lock:
            counters.received += 1
            counters.in_flight += 1
            counters.max_in_flight = max(counters.max_in_flight, counters.in_flight)
            fault = self._draw(stream)
            limited = None
            admitted = False
            if fault.kind in ("ok", "cut", "truncate"):
                limited = self._admit(call.tokens_in + call.tokens_out)
                admitted = limited is None
            limit_headers = self._limit_headers()
            cfg = self.config
        finished = False

        def finish(outcome: str, key: str = "") -> None:
            nonlocal finished
            with self._lock:
                if outcome == "ok":
                    counters.succeeded += 1
                    counters.tokens_in += call.tokens_in
                    counters.tokens_out += call.tokens_out
                    for prompt in call.keys:
                        counters.by_prompt[prompt] = counters.by_prompt.get(prompt, 0) + 1
                elif outcome == "limited":
                    counters.rate_limited += 1
                    counters.limited_by[key] = counters.limited_by.get(key, 0) + 1
                else:
                    counters.faults[outcome] = counters.faults.get(outcome, 0) + 1
                counters.in_flight -= 1
                if admitted:
                    self._admitted -= 1
                finished = True

        try:
            if fault.kind == "drop":
                finish("drop")
                raise _Closed
            if fault.kind == "status":
                headers = list(limit_headers)
                if fault.status == 429:
                    headers += self._retry_after_headers(cfg.retry_after)
                finish(str(fault.status))
                await self._send_json(writer, fault.status, _error_body(fault.status, "injected fault"),
                                      headers, keep_alive=keep)
                return keep
            if limited is not None:
                reason, wait = limited
                headers = limit_headers + self._retry_after_headers(wait)
                message = f"rate limit reached for {reason}; retry after {wait:.3f}s"
                finish("limited", reason)
                await self._send_json(writer, 429, _error_body(429, message), headers, keep_alive=keep)
                return keep
            delay = cfg.latency * (cfg.tail_mult if fault.slow else 1.0)
            if fault.slow:
                with self._lock:
                    counters.faults["slow"] = counters.faults.get("slow", 0) + 1
            if delay > 0:
                await asyncio.sleep(delay)
            model = str(payload.get("model") or cfg.model)
            if fault.kind in ("cut", "truncate"):
                if stream:
                    await self._stream(writer, call, model, payload, limit_headers, cfg.chunk_delay,
                                       before_last=lambda: finish(fault.kind), cut=fault.kind)
                    if fault.kind == "truncate":
                        return keep
                else:
                    data = json.dumps(call.body(model)).encode()
                    head = _head(200, [("content-type", "application/json"),
                                       ("content-length", str(len(data))), *limit_headers], keep_alive=True)
                    finish(fault.kind)
                    writer.write(head + data[: len(data) // 2])
                    await writer.drain()
                raise _Closed
            if stream:
                await self._stream(writer, call, model, payload, limit_headers, cfg.chunk_delay,
                                   before_last=lambda: finish("ok"))
            else:
                finish("ok")
                await self._send_json(writer, 200, call.body(model), limit_headers, keep_alive=keep)
            return keep
        finally:
            if not finished:  # abandoned: the client went away or the server is stopping
                with self._lock:
                    counters.in_flight -= 1
                    if admitted:
                        self._admitted -= 1

    async def _stream(self, writer: asyncio.StreamWriter, call: _Call, model: str, payload: dict[str, Any],
                      headers: list[tuple[str, str]], chunk_delay: float, *,
                      before_last: Callable[[], None], cut: str = "") -> None:
        events = call.events(model, include_usage=bool((payload.get("stream_options") or {}).get("include_usage")))
        if cut:
            events = events[: max(2, (len(events) - 3) // 2 + 1)]  # role + some deltas, no finish, no [DONE]
        writer.write(_head(200, [("content-type", "text/event-stream"), ("cache-control", "no-cache"),
                                 ("transfer-encoding", "chunked"), *headers], keep_alive=True))
        for i, event in enumerate(events):
            data = event.encode()
            if i == len(events) - 1:
                before_last()
            writer.write(b"%x\r\n%b\r\n" % (len(data), data))
            if chunk_delay > 0:
                await writer.drain()
                await asyncio.sleep(chunk_delay)
        if cut != "cut":
            writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def _send_json(self, writer: asyncio.StreamWriter, status: int, body: Any,
                         headers: list[tuple[str, str]] | None = None, *, keep_alive: bool) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        head = _head(status, [("content-type", "application/json"), ("content-length", str(len(data))),
                              *(headers or ())], keep_alive=keep_alive)
        writer.write(head + data)
        await writer.drain()


# --- one API call's answer (pure) -------------------------------------------------------------


class _Call:
    """What the server will answer one chat or embeddings call with."""

    __slots__ = ("body", "chat", "events", "keys", "tokens_in", "tokens_out")

    def __init__(self, chat: bool, keys: list[str], tokens_in: int, tokens_out: int,
                 body: Callable[[str], dict[str, Any]],
                 events: Callable[..., list[str]]) -> None:
        self.chat = chat
        self.keys = keys
        self.tokens_in = tokens_in
        self.tokens_out = tokens_out
        self.body = body
        self.events = events


def _chat_call(payload: dict[str, Any]) -> _Call:
    messages = payload.get("messages")
    messages = messages if isinstance(messages, list) else []
    contents = [str(m.get("content", "")) for m in messages if isinstance(m, dict)]
    prompt = next((str(m.get("content", "")) for m in reversed(messages)
                   if isinstance(m, dict) and m.get("role") == "user"), "")
    text = reply_for(prompt)
    usage = {"prompt_tokens": sum(tokens_for(c) for c in contents) or 1, "completion_tokens": tokens_for(text)}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    ident = "chatcmpl-" + prompt_key(prompt)

    def body(model: str) -> dict[str, Any]:
        return {
            "id": ident, "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": usage,
        }

    def events(model: str, *, include_usage: bool) -> list[str]:
        base = {"id": ident, "object": "chat.completion.chunk", "created": 0, "model": model}

        def event(choices: list[dict[str, Any]], **extra: Any) -> str:
            return "data: " + json.dumps({**base, "choices": choices, **extra}, separators=(",", ":")) + "\n\n"

        words = text.split(" ")
        pieces = [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
        out = [event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
        out += [event([{"index": 0, "delta": {"content": p}, "finish_reason": None}]) for p in pieces]
        out.append(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        if include_usage:
            out.append(event([], usage=usage))
        out.append("data: [DONE]\n\n")
        return out

    return _Call(True, [prompt_key(prompt)], usage["prompt_tokens"], usage["completion_tokens"], body, events)


def _embedding_inputs(payload: dict[str, Any]) -> list[str] | None:
    value = payload.get("input")
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return value
    return None


def _embeddings_call(texts: list[str], dim: int) -> _Call:
    tokens = sum(tokens_for(t) for t in texts)

    def body(model: str) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": embedding_for(t, dim)}
                     for i, t in enumerate(texts)],
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }

    def events(model: str, *, include_usage: bool) -> list[str]:
        return []

    return _Call(False, [prompt_key(t) for t in texts], tokens, 0, body, events)


def _error_body(status: int, message: str) -> dict[str, Any]:
    code = _ERROR_CODES.get(status, "error")
    kind = "rate_limit_error" if status == 429 else ("server_error" if status >= 500 else "invalid_request_error")
    return {"error": {"message": f"{message} (HTTP {status})", "type": kind, "code": code}}


_date_cache: tuple[int, str] = (0, "")


def _http_date() -> str:
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


def _head(status: int, headers: Iterable[tuple[str, str]], *, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"date: {_http_date()}",
             "server: agentfleet-faultserver"]
    lines += [f"{name}: {value}" for name, value in headers]
    if not keep_alive:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """The next request on a keep-alive connection; None when the client closed it."""
    line = await reader.readline()
    while line in (b"\r\n", b"\n"):
        line = await reader.readline()
    if not line:
        return None
    parts = line.decode("latin-1").split()
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        raise _BadRequest(f"malformed request line {line[:100]!r}")
    method, path, version = parts
    headers: dict[str, str] = {}
    for _ in range(200):
        raw = await reader.readline()
        if raw in (b"\r\n", b"\n", b""):
            break
        name, sep, value = raw.decode("latin-1").partition(":")
        if not sep:
            raise _BadRequest(f"malformed header {raw[:100]!r}")
        headers[name.strip().lower()] = value.strip()
    else:
        raise _BadRequest("too many headers")
    if "chunked" in headers.get("transfer-encoding", "").lower():
        chunks: list[bytes] = []
        while True:
            size_line = await reader.readline()
            try:
                size = int(size_line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise _BadRequest(f"malformed chunk size {size_line[:40]!r}") from None
            if size == 0:
                while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                break
            chunks.append(await reader.readexactly(size))
            await reader.readexactly(2)
        body = b"".join(chunks)
    else:
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            raise _BadRequest("malformed content-length") from None
        body = await reader.readexactly(length) if length > 0 else b""
    return _Request(method, path, version, headers, body)


# --- throughput measurement: python -m tests.faultserver [seconds] ---------------------------


async def _raw_load(port: int, concurrency: int, seconds: float, stream: bool) -> int:
    """Keep-alive POSTs from ``concurrency`` plain asyncio connections; complete answers counted."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    done = 0

    async def worker(n: int) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            i = 0
            while loop.time() < deadline:
                body = json.dumps({"model": "m", "stream": stream,
                                   "messages": [{"role": "user", "content": f"q{n}-{i}"}]}).encode()
                writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nhost: bench\r\n"
                             b"content-type: application/json\r\ncontent-length: %d\r\n\r\n" % len(body))
                writer.write(body)
                headers: dict[str, str] = {}
                await reader.readline()
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                if "content-length" in headers:
                    await reader.readexactly(int(headers["content-length"]))
                else:  # chunked
                    while size := int((await reader.readline()).strip(), 16):
                        await reader.readexactly(size + 2)
                    await reader.readline()
                done += 1
                i += 1
        finally:
            writer.close()
            await writer.wait_closed()

    await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return done


async def _httpx_load(url: str, concurrency: int, seconds: float, stream: bool) -> int:
    import httpx

    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    done = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, trust_env=False) as client:

        async def worker(n: int) -> None:
            nonlocal done
            i = 0
            while loop.time() < deadline:
                body = {"model": "m", "stream": stream, "messages": [{"role": "user", "content": f"q{n}-{i}"}]}
                async with client.stream("POST", url + "/chat/completions", json=body) as response:
                    async for _ in response.aiter_bytes():
                        pass
                done += 1
                i += 1

        await asyncio.gather(*(worker(n) for n in range(concurrency)))
    return done


def measure(seconds: float = 2.0, concurrency: int = 32, *, client: str = "raw", stream: bool = False) -> float:
    """Answers per second from a fresh server to a client in this process (they share the GIL,
    as in the tests): ``client="raw"`` (plain asyncio connections, the server's own cost) or
    ``"httpx"`` (what a provider sees; httpx's pool costs grow with its connection count)."""
    with FaultServer() as server:
        start = time.perf_counter()
        if client == "raw":
            done = asyncio.run(_raw_load(server.port, concurrency, seconds, stream))
        else:
            done = asyncio.run(_httpx_load(server.url, concurrency, seconds, stream))
        elapsed = time.perf_counter() - start
        succeeded = server.counts().succeeded
        assert succeeded == done, f"the server counted {succeeded} answers, the client {done}"
    return done / elapsed


if __name__ == "__main__":
    import sys

    secs = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    for client, conc in (("raw", 1), ("raw", 32), ("httpx", 1), ("httpx", 8), ("httpx", 32)):
        for stream in (False, True):
            rate = measure(secs, conc, client=client, stream=stream)
            print(f"{client:5} {conc:3} connections {'SSE ' if stream else 'JSON'}: {rate:6.0f} answers/s")
