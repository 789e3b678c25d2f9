"""Anthropic messages API (POST /v1/messages), plain JSON and SSE streaming.

# Design
# httpx directly, not the ``anthropic`` SDK: one pooled keep-alive client we control, no
# heavy dependency, the same error mapping as the OpenAI-compatible provider (429 with
# retry-after -> RateLimited, 529 overloaded and 5xx -> retryable), and request building
# and stream parsing as pure functions we can unit-test (``build_messages_body``,
# ``parse_message``, ``MessageStream``). The I/O lives in ``_http.HTTPProvider``.
# The stream is a sequence of typed events: message_start (usage.input_tokens),
# content_block_delta (text_delta), message_delta (usage.output_tokens, stop_reason),
# message_stop, ping, and error (mapped like the HTTP status it stands for).
# There is no JSON mode: with an output schema the schema goes into the system prompt.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from .._types import Clock, ProviderRequest
from ..errors import ProviderError, RateLimited
from ._http import Completion, HTTPProvider, HTTPSettings, TextStream, require_model
from ._options import OptionReader
from ._sse import ServerSentEvent
from ._structured import with_schema_instruction

if TYPE_CHECKING:
    from ..spec import AgentSpec

__all__ = [
    "ANTHROPIC_VERSION",
    "DEFAULT_BASE_URL",
    "AnthropicProvider",
    "MessageStream",
    "build_messages_body",
    "error_for_event",
    "parse_message",
]

DEFAULT_BASE_URL = "https://api.anthropic.com"
ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024
_RETRYABLE_TYPES = frozenset({"overloaded_error", "api_error", "timeout_error"})


def build_messages_body(
    request: ProviderRequest,
    *,
    model: str,
    stream: bool = False,
    max_tokens: int | None = None,
    temperature: float | None = None,
    schema_instruction: bool = True,
    extra_body: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of POST /v1/messages for ``request`` (the request's values win)."""
    schema = request.output_schema
    system = with_schema_instruction(request.system, schema) if schema_instruction else request.system
    tokens = request.max_tokens if request.max_tokens is not None else max_tokens
    body: dict[str, Any] = {
        "model": request.model or model,
        "max_tokens": tokens if tokens is not None else DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": request.prompt}],
    }
    if system:
        body["system"] = system
    temp = request.temperature if request.temperature is not None else temperature
    if temp is not None:
        body["temperature"] = temp
    if stream:
        body["stream"] = True
    if extra_body:
        body.update(extra_body)
    return body


def _usage(usage: Any, completion: Completion) -> None:
    if not isinstance(usage, dict):
        return
    if isinstance(usage.get("input_tokens"), int):
        cached = 0
        for key in ("cache_creation_input_tokens", "cache_read_input_tokens"):
            if isinstance(usage.get(key), int):
                cached += usage[key]
                completion.extra[key] = usage[key]
        completion.tokens_in = usage["input_tokens"] + cached
    if isinstance(usage.get("output_tokens"), int):
        completion.tokens_out = usage["output_tokens"]


def parse_message(payload: Any) -> Completion:
    """Read a non-streamed message; raise a ProviderError if it is malformed or an error."""
    if not isinstance(payload, dict):
        raise ProviderError(f"unexpected answer (not an object): {str(payload)[:200]!r}",
                            retryable=False)
    if payload.get("type") == "error":
        raise error_for_event(payload)
    content = payload.get("content")
    if not isinstance(content, list):
        raise ProviderError(f"unexpected answer (no content): {json.dumps(payload)[:200]}",
                            retryable=False)
    text = "".join(
        block.get("text", "")
        for block in content
        if isinstance(block, dict) and block.get("type") == "text"
    )
    completion = Completion(
        text=text,
        model=payload.get("model") if isinstance(payload.get("model"), str) else None,
        finish_reason=payload.get("stop_reason"),
        id=payload.get("id") if isinstance(payload.get("id"), str) else None,
    )
    _usage(payload.get("usage"), completion)
    return completion


def error_for_event(payload: Mapping[str, Any]) -> ProviderError:
    """The ProviderError for an ``error`` object (in a stream or a 200 body)."""
    error = payload.get("error")
    error = error if isinstance(error, dict) else {}
    kind = str(error.get("type", "error"))
    message = f"{kind}: {error.get('message', '')}".rstrip(": ")
    if kind == "rate_limit_error":
        return RateLimited(message, retry_after=None)
    return ProviderError(message, retryable=kind in _RETRYABLE_TYPES)


class MessageStream(TextStream):
    """Accumulates a streamed message from its SSE events (pure); done at message_stop."""

    __slots__ = ()

    def feed(self, event: ServerSentEvent) -> str:
        if self._done or not event.data.strip():
            return ""
        try:
            payload = json.loads(event.data)
        except ValueError:
            raise ProviderError(f"bad stream event: {event.data[:200]!r}", retryable=False) from None
        if not isinstance(payload, dict):
            return ""
        kind = payload.get("type", event.event)
        c = self._completion
        if kind == "content_block_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict) and delta.get("type") == "text_delta":
                text = delta.get("text")
                if isinstance(text, str) and text:
                    self._parts.append(text)
                    return text
        elif kind == "message_start":
            message = payload.get("message")
            if isinstance(message, dict):
                c.id = message.get("id") if isinstance(message.get("id"), str) else None
                c.model = message.get("model") if isinstance(message.get("model"), str) else None
                _usage(message.get("usage"), c)
        elif kind == "message_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict) and delta.get("stop_reason"):
                c.finish_reason = delta["stop_reason"]
            _usage(payload.get("usage"), c)
        elif kind == "message_stop":
            self._done = True
        elif kind == "error":
            raise error_for_event(payload)
        return ""

    def result(self) -> Completion:
        if not self._done:
            raise ProviderError("stream ended before message_stop", retryable=True)
        return super().result()


class AnthropicProvider(HTTPProvider):
    """Claude models over the Anthropic messages API.

    Options (``agent.options``): ``base_url`` (default https://api.anthropic.com),
    ``api_key_env`` (default ANTHROPIC_API_KEY), ``anthropic_version`` (default 2023-06-01),
    ``headers``, ``stream``, ``timeout``, ``connect_timeout``, ``max_connections``,
    ``max_keepalive``, ``keepalive_expiry``, ``schema_instruction``, ``parse_json``,
    ``extra_body`` (merged into every request body). ``max_tokens`` defaults to 1024.
    """

    name = "anthropic"
    endpoint = "/v1/messages"
    warm_path = "/v1/models"

    def __init__(
        self,
        *,
        model: str,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        settings: HTTPSettings | None = None,
        anthropic_version: str = ANTHROPIC_VERSION,
        max_tokens: int | None = None,
        temperature: float | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        settings = settings if settings is not None else HTTPSettings(base_url=base_url.rstrip("/"))
        auth = {"anthropic-version": anthropic_version}
        if api_key:
            auth["x-api-key"] = api_key
        super().__init__(model=model, settings=settings, auth_headers=auth, name=name,
                         clock=clock, transport=transport)
        self.max_tokens = max_tokens
        self.temperature = temperature

    @classmethod
    def from_agent(
        cls,
        agent: AgentSpec,
        *,
        name: str = "anthropic",
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> AnthropicProvider:
        """Build from an agent spec, validating ``agent.options`` and finding the API key."""
        opts = OptionReader(agent.name, name, agent.options)
        require_model(agent.name, agent.model, name)
        settings = HTTPSettings.read(opts, default_base_url=DEFAULT_BASE_URL,
                                     max_concurrency=agent.max_concurrency)
        return cls(
            model=agent.model,
            api_key=opts.api_key("api_key_env", "ANTHROPIC_API_KEY", settings.base_url),
            settings=settings,
            anthropic_version=opts.string("anthropic_version", ANTHROPIC_VERSION),
            max_tokens=agent.max_tokens,
            temperature=agent.temperature,
            name=name,
            clock=clock,
            transport=transport,
        )

    def build_body(self, request: ProviderRequest, *, stream: bool) -> dict[str, Any]:
        return build_messages_body(
            request,
            model=self.model,
            stream=stream,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            schema_instruction=self.settings.schema_instruction,
            extra_body=self.settings.extra_body,
        )

    def parse_body(self, payload: Any) -> Completion:
        return parse_message(payload)

    def new_stream(self) -> MessageStream:
        return MessageStream()
