"""The HTTP half of the LLM providers: one pooled ``httpx.AsyncClient`` and the error mapping.

# Design
# We talk to the OpenAI-compatible and Anthropic APIs with httpx directly rather than
# through the vendors' SDKs: one pooled client per provider instance that we configure
# (keep-alive limits, timeouts, a swappable transport: ``httpx.MockTransport`` is the
# test double), no heavy dependencies, one error mapping for both APIs, and SSE parsing
# we can unit-test. ``HTTPProvider`` does the I/O; a subclass supplies the pure parts:
# ``build_body`` (request -> JSON), ``parse_body`` (JSON -> ``Completion``) and
# ``new_stream`` (an SSE event consumer). ``error_for_status`` and
# ``error_for_transport`` turn HTTP answers and transport failures into the
# ``agentfleet.errors`` Provider* errors the resilience layer understands:
#     429            RateLimited (retry_after from Retry-After / retry-after-ms)
#     408            ProviderTimeout
#     409, 5xx, 529  ProviderError(retryable=True)
#     other 4xx      ProviderError(retryable=False) with the server's message
#     connect error  ProviderError(retryable=True) "cannot reach URL: connection refused"
#     httpx timeout  ProviderTimeout
#     stream cut     ProviderError(retryable=True) "stream from URL ended before the answer
#                    was complete": the connection closed mid-body, or the body ended
#                    without the protocol's end marker (parser ``done`` still False)
# Rate-limit related headers (``x-ratelimit-*``, ``anthropic-ratelimit-*``, ``retry-after``,
# ``retry-after-ms``, ``date``) are copied, lowercased, into ``ProviderResponse.meta["headers"]``
# of a successful answer and into ``ProviderError.headers`` of an HTTP error status, so a
# rate limiter can reconcile with what the server says without this layer knowing about it.
# The client is created lazily on first use (so building a provider never leaks a
# client) and once per instance; ``aclose()`` closes it.
"""

from __future__ import annotations

import asyncio
import errno as errno_module
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import httpx

from .._types import Clock, LoopClock, ProviderRequest, ProviderResponse
from ..errors import ProviderConfigError, ProviderError, ProviderTimeout, RateLimited
from ._options import OptionReader, is_local_url
from ._sse import ServerSentEvent, SSEDecoder
from ._stats import CallCounters, ProviderStatistics
from ._structured import extract_json

__all__ = [
    "Completion",
    "HTTPProvider",
    "HTTPSettings",
    "StreamParser",
    "error_for_status",
    "error_for_transport",
    "parse_retry_after",
    "rate_limit_headers",
    "require_model",
    "server_message",
    "stream_cut",
]

_USER_AGENT = "agentfleet/0.1"


@dataclass(slots=True)
class Completion:
    """What a parser read from an answer, before it becomes a ``ProviderResponse``.

    Token counts are ``None`` when the server did not report usage.
    """

    text: str
    tokens_in: int | None = None
    tokens_out: int | None = None
    model: str | None = None
    finish_reason: str | None = None
    id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class StreamParser(Protocol):
    """Consumes one streamed answer's events; pure (no I/O)."""

    @property
    def done(self) -> bool: ...

    def feed(self, event: ServerSentEvent) -> str:
        """Take one event; return the text it added ('' if none)."""
        ...

    def result(self) -> Completion: ...


class TextStream:
    """The state every streamed answer keeps: text parts, the completion, the end marker.

    Protocol parsers subclass it and implement ``feed``; ``result`` joins the text.
    """

    __slots__ = ("_completion", "_done", "_parts")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._completion = Completion(text="")
        self._done = False

    @property
    def done(self) -> bool:
        """Whether the protocol's end-of-stream marker arrived."""
        return self._done

    def result(self) -> Completion:
        self._completion.text = "".join(self._parts)
        return self._completion


# --- pure error mapping -----------------------------------------------------------------


def _lower_headers(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


_RATE_LIMIT_PREFIXES = ("x-ratelimit-", "anthropic-ratelimit-")
_RATE_LIMIT_NAMES = frozenset({"retry-after", "retry-after-ms", "date"})


def rate_limit_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The rate-limit related headers of an answer, lowercase names (empty dict if none)."""
    out: dict[str, str] = {}
    for name, value in headers.items():
        key = name.lower()
        if key in _RATE_LIMIT_NAMES or key.startswith(_RATE_LIMIT_PREFIXES):
            out[key] = value
    return out


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``Retry-After`` (seconds or HTTP date)."""
    lowered = _lower_headers(headers)
    millis = lowered.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = lowered.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def server_message(body: bytes | str) -> tuple[str, str]:
    """The error message and type/code a server put in its error body (OpenAI, Anthropic...)."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    try:
        payload = json.loads(text)
    except ValueError:
        return " ".join(text.split())[:200], ""
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, str):
            return error[:500], ""
        if isinstance(error, dict):
            message = error.get("message") or error.get("detail") or payload.get("detail")
            kind = error.get("code") or error.get("type") or ""
            if message is not None:
                return str(message)[:500], str(kind)
    return " ".join(text.split())[:200], ""


def error_for_status(
    status: int, headers: Mapping[str, str], body: bytes | str, *, provider: str, url: str
) -> ProviderError:
    """The ProviderError for an HTTP error answer (see the table in the module comment).

    The error's ``headers`` are the answer's rate-limit related headers (``rate_limit_headers``),
    its ``status`` the HTTP status.
    """
    error = _error_for_status(status, headers, body, provider=provider, url=url)
    error.headers = rate_limit_headers(headers)
    error.status = status
    return error


def _error_for_status(
    status: int, headers: Mapping[str, str], body: bytes | str, *, provider: str, url: str
) -> ProviderError:
    message, kind = server_message(body)
    text = f"HTTP {status} from {url}"
    if kind and kind not in message:
        text += f" ({kind})"
    if message:
        text += f": {message}"
    if status == 429:
        if kind == "insufficient_quota":  # OpenAI: out of credit, waiting will not help
            return ProviderError(text, provider=provider, retryable=False)
        return RateLimited(text, provider=provider, retry_after=parse_retry_after(headers))
    if status == 408:
        return ProviderTimeout(text, provider=provider)
    if status == 409 or status >= 500:
        return ProviderError(text, provider=provider, retryable=True)
    return ProviderError(text, provider=provider, retryable=False)


def _os_reason(exc: BaseException) -> str | None:
    """The OS-level reason ("connection refused") buried in an exception chain, if any."""
    queue: list[BaseException] = [exc]
    seen: set[int] = set()
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.errno:
            if current.errno == errno_module.ECONNREFUSED:
                return "connection refused"
            return os.strerror(current.errno).lower()
        if isinstance(current, BaseExceptionGroup):
            queue.extend(current.exceptions)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                queue.append(linked)
    return None


def error_for_transport(exc: httpx.HTTPError, *, provider: str, url: str) -> ProviderError:
    """The ProviderError for a failure below HTTP: connect, timeout, dropped connection."""
    if isinstance(exc, httpx.TimeoutException):
        what = {
            httpx.ConnectTimeout: "connecting to",
            httpx.PoolTimeout: "waiting for a free connection to",
            httpx.WriteTimeout: "sending to",
        }.get(type(exc), "waiting for an answer from")
        return ProviderTimeout(f"timed out {what} {url}", provider=provider)
    if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
        return ProviderConfigError(f"bad URL {url}: {exc}", provider=provider)
    reason = _os_reason(exc) or str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError):
        return ProviderError(f"cannot reach {url}: {reason}", provider=provider, retryable=True)
    return ProviderError(f"request to {url} failed: {reason}", provider=provider, retryable=True)


def _attributed(exc: ProviderError, provider: str, url: str) -> ProviderError:
    """``exc`` (raised by a pure parser) again, naming the provider and the URL."""
    message = f"{exc} (from {url})"
    error: ProviderError
    if isinstance(exc, RateLimited):
        error = RateLimited(message, provider=provider, retry_after=exc.retry_after)
    elif isinstance(exc, ProviderTimeout):
        error = ProviderTimeout(message, provider=provider)
    else:
        error = type(exc)(message, provider=provider, retryable=exc.retryable)
    if exc.headers is not None:
        error.headers = exc.headers
    error.status = exc.status
    return error


def stream_cut(url: str, *, provider: str, reason: str = "") -> ProviderError:
    """The retryable error for a stream that ended before the protocol's end marker."""
    detail = f" ({reason})" if reason else ""
    return ProviderError(f"stream from {url} ended before the answer was complete{detail}",
                         provider=provider, retryable=True)


def _with_headers(completion: Completion, response: httpx.Response) -> Completion:
    """``completion`` carrying the answer's rate-limit headers (``meta["headers"]``) if it had any."""
    headers = rate_limit_headers(response.headers)
    if headers:
        completion.extra["headers"] = headers
    return completion


def require_model(agent: str, model: str, provider: str) -> None:
    """Refuse a sim profile name (the spec default) as the model of a real API."""
    if not model or model.startswith("sim-"):
        raise ProviderConfigError(
            f"agent {agent!r}: model {model!r} is a sim profile; "
            f"set 'model:' to a model the {provider} server serves",
            provider=provider,
        )


# --- settings ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HTTPSettings:
    """Connection settings shared by the HTTP providers (all from ``agent.options``)."""

    base_url: str
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout: float = 600.0
    connect_timeout: float = 10.0
    max_connections: int = 100
    max_keepalive: int = 20
    keepalive_expiry: float = 60.0
    stream: bool = False
    parse_json: bool = True
    schema_instruction: bool = True
    extra_body: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def read(
        cls, opts: OptionReader, *, default_base_url: str, max_concurrency: int | None
    ) -> HTTPSettings:
        """Read and validate the connection options of one agent."""
        base_url = opts.string("base_url", default_base_url).rstrip("/")
        if not base_url.startswith(("http://", "https://")):
            raise opts.error("base_url", f"must start with http:// or https://, got {base_url!r}")
        connections = opts.integer("max_connections", max(100, max_concurrency or 0), minimum=1)
        return cls(
            base_url=base_url,
            headers=opts.string_mapping("headers"),
            timeout=opts.number("timeout", 600.0, positive=True),
            connect_timeout=opts.number("connect_timeout", 10.0, positive=True),
            max_connections=connections,
            max_keepalive=opts.integer(
                "max_keepalive", min(connections, max(20, max_concurrency or 0)), minimum=0
            ),
            keepalive_expiry=opts.number("keepalive_expiry", 60.0, minimum=0.0),
            stream=opts.boolean("stream", False),
            parse_json=opts.boolean("parse_json", True),
            schema_instruction=opts.boolean("schema_instruction", True),
            extra_body=opts.mapping("extra_body"),
        )


# --- the I/O base class ------------------------------------------------------------------


class HTTPProvider:
    """Base of the HTTP providers: pooled client, request/stream exchange, error mapping."""

    name: str = "http"
    endpoint: str = ""
    warm_path: str = ""

    def __init__(
        self,
        *,
        model: str,
        settings: HTTPSettings,
        auth_headers: Mapping[str, str] | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if name is not None:
            self.name = name
        self.model = model
        self.settings = settings
        self.clock: Clock = clock if clock is not None else LoopClock()
        self.url = settings.base_url + self.endpoint
        self._headers = {
            "user-agent": _USER_AGENT,
            **(auth_headers or {}),
            **settings.headers,
        }
        self._transport = transport
        self._client: httpx.AsyncClient | None = None
        self._closed = False
        self._counters = CallCounters()

    # -- to be supplied by subclasses (pure) --

    def build_body(self, request: ProviderRequest, *, stream: bool) -> dict[str, Any]:
        raise NotImplementedError

    def parse_body(self, payload: Any) -> Completion:
        raise NotImplementedError

    def new_stream(self) -> StreamParser:
        raise NotImplementedError

    # -- client lifecycle --

    def _open(self) -> httpx.AsyncClient:
        if self._closed:
            raise ProviderError("provider is closed", provider=self.name, retryable=False)
        s = self.settings
        self._client = httpx.AsyncClient(
            headers=self._headers,
            timeout=httpx.Timeout(s.timeout, connect=s.connect_timeout),
            limits=httpx.Limits(
                max_connections=s.max_connections,
                max_keepalive_connections=s.max_keepalive,
                keepalive_expiry=s.keepalive_expiry,
            ),
            transport=self._transport,
            # A local server must never be reached through a proxy from the environment.
            trust_env=not is_local_url(s.base_url),
        )
        return self._client

    async def warm(self) -> bool:
        """Open a pooled connection cheaply (GET the model list); True if the server answered.

        Never raises for HTTP or connection errors: warming is best effort.
        """
        if not self.warm_path:
            return True
        client = self._client if self._client is not None else self._open()
        try:
            await client.get(self.settings.base_url + self.warm_path,
                             timeout=self.settings.connect_timeout)
        except httpx.HTTPError:
            return False
        return True

    async def aclose(self) -> None:
        """Close the pooled connections; the provider cannot be used afterwards."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def statistics(self) -> ProviderStatistics:
        return self._counters.snapshot()

    # -- calls --

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        """Send ``request``; return the answer or raise a Provider* error."""
        self._counters.calls += 1
        try:
            response = await self._complete(request)
        except ProviderError as exc:
            self._counters.failed(exc)
            raise
        self._counters.succeeded += 1
        return response

    async def _complete(self, request: ProviderRequest) -> ProviderResponse:
        client = self._client if self._client is not None else self._open()
        stream = request.stream or self.settings.stream
        body = self.build_body(request, stream=stream)
        start = self.clock.now()
        try:
            if request.timeout is None:
                completion, ttft = await self._exchange(client, body, stream, start)
            else:
                async with asyncio.timeout(request.timeout):
                    completion, ttft = await self._exchange(client, body, stream, start)
        except TimeoutError:
            raise ProviderTimeout(
                f"no answer from {self.url} within {request.timeout:g}s", provider=self.name
            ) from None
        except ProviderError as exc:
            if exc.provider:
                raise
            raise _attributed(exc, self.name, self.url) from exc.__cause__
        return self._response(request, completion, self.clock.now() - start, ttft, stream)

    async def _exchange(
        self, client: httpx.AsyncClient, body: dict[str, Any], stream: bool, start: float
    ) -> tuple[Completion, float | None]:
        url = self.url
        try:
            if not stream:
                response = await client.post(url, json=body)
                if response.status_code >= 400:
                    raise error_for_status(response.status_code, response.headers,
                                           response.content, provider=self.name, url=url)
                return _with_headers(self.parse_body(self._json(response)), response), None
            async with client.stream("POST", url, json=body) as response:
                if response.status_code >= 400:
                    await response.aread()
                    raise error_for_status(response.status_code, response.headers,
                                           response.content, provider=self.name, url=url)
                if "text/event-stream" not in response.headers.get("content-type", ""):
                    await response.aread()  # the server ignored "stream": a plain answer
                    return _with_headers(self.parse_body(self._json(response)), response), None
                parser = self.new_stream()
                decoder = SSEDecoder()
                ttft: float | None = None
                try:
                    async for line in response.aiter_lines():
                        event = decoder.feed(line)
                        if event is not None and parser.feed(event) and ttft is None:
                            ttft = self.clock.now() - start
                except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
                    # The connection closed mid-body: what arrived is a partial answer.
                    reason = _os_reason(exc) or str(exc) or type(exc).__name__
                    raise stream_cut(url, provider=self.name, reason=reason) from exc
                last = decoder.flush()
                if last is not None and parser.feed(last) and ttft is None:
                    ttft = self.clock.now() - start
                if not parser.done:  # a clean end of body, but no end marker
                    raise stream_cut(url, provider=self.name)
                return _with_headers(parser.result(), response), ttft
        except httpx.HTTPError as exc:
            raise error_for_transport(exc, provider=self.name, url=url) from exc

    def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            kind = response.headers.get("content-type", "no content type")
            raise ProviderError(
                f"expected JSON from {self.url}, got {kind}: {response.text[:200]!r} "
                "(is base_url right?)",
                provider=self.name,
                retryable=False,
            ) from None

    def _response(
        self,
        request: ProviderRequest,
        completion: Completion,
        latency: float,
        ttft: float | None,
        stream: bool,
    ) -> ProviderResponse:
        meta: dict[str, Any] = {"stream": stream, **completion.extra}
        if completion.finish_reason is not None:
            meta["finish_reason"] = completion.finish_reason
        if completion.id is not None:
            meta["id"] = completion.id
        if ttft is not None:
            meta["ttft"] = ttft
        tokens_in, tokens_out = completion.tokens_in, completion.tokens_out
        if tokens_in is None or tokens_out is None:
            meta["usage_estimated"] = True
            if tokens_in is None:
                tokens_in = (len(request.system) + len(request.prompt) + 3) // 4
            if tokens_out is None:
                tokens_out = (len(completion.text) + 3) // 4
        data: Any = None
        if request.output_schema is not None and self.settings.parse_json:
            try:
                data = extract_json(completion.text)
            except ValueError as exc:
                meta["json_error"] = str(exc)
        return ProviderResponse(
            text=completion.text,
            provider=self.name,
            model=completion.model or request.model or self.model,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            data=data,
            latency=latency,
            meta=meta,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, model={self.model!r}, url={self.url!r})"
