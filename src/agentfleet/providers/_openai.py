"""OpenAI-compatible chat completions: OpenAI, vLLM, Ollama, llama.cpp server, LiteLLM proxy.

# Design
# httpx directly, not the ``openai`` SDK: one pooled keep-alive client we control, no heavy
# dependency, the same error mapping as the Anthropic provider, and request building and
# SSE parsing as pure functions we can unit-test (``build_chat_body``,
# ``parse_chat_completion``, ``ChatStream``). The I/O lives in ``_http.HTTPProvider``.
# With an output schema we send ``response_format: {"type": "json_object"}`` (or
# ``json_schema`` / nothing, per ``options.response_format``) and append the schema to
# the system prompt: json_object mode refuses messages that never mention JSON.
# Streaming asks for ``stream_options.include_usage`` so the last chunk carries usage;
# servers that do not report usage get an estimate, flagged ``meta["usage_estimated"]``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from .._types import Clock, ProviderRequest
from ..errors import ProviderError
from ._http import Completion, HTTPProvider, HTTPSettings, TextStream, require_model, server_message
from ._options import OptionReader
from ._sse import ServerSentEvent
from ._structured import with_schema_instruction

if TYPE_CHECKING:
    from ..spec import AgentSpec

__all__ = [
    "DEFAULT_BASE_URL",
    "ChatStream",
    "OpenAIProvider",
    "build_chat_body",
    "parse_chat_completion",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RESPONSE_FORMATS = ("json_object", "json_schema", "none")
MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")


def build_chat_body(
    request: ProviderRequest,
    *,
    model: str,
    stream: bool = False,
    max_tokens: int | None = None,
    temperature: float | None = None,
    max_tokens_field: str = "max_tokens",
    response_format: str = "json_object",
    schema_instruction: bool = True,
    stream_usage: bool = True,
    extra_body: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON body of POST /chat/completions for ``request`` (the request's values win)."""
    schema = request.output_schema
    system = with_schema_instruction(request.system, schema) if schema_instruction else request.system
    messages: list[dict[str, str]] = []
    if system:
        messages.append({"role": "system", "content": system})
    messages.append({"role": "user", "content": request.prompt})
    body: dict[str, Any] = {"model": request.model or model, "messages": messages}
    tokens = request.max_tokens if request.max_tokens is not None else max_tokens
    if tokens is not None:
        body[max_tokens_field] = tokens
    temp = request.temperature if request.temperature is not None else temperature
    if temp is not None:
        body["temperature"] = temp
    if schema is not None and response_format == "json_object":
        body["response_format"] = {"type": "json_object"}
    elif schema is not None and response_format == "json_schema":
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "output", "schema": schema},
        }
    if stream:
        body["stream"] = True
        if stream_usage:
            body["stream_options"] = {"include_usage": True}
    if extra_body:
        body.update(extra_body)
    return body


def _usage(payload: Mapping[str, Any], completion: Completion) -> None:
    usage = payload.get("usage")
    if not isinstance(usage, dict):
        return
    if isinstance(usage.get("prompt_tokens"), int):
        completion.tokens_in = usage["prompt_tokens"]
    if isinstance(usage.get("completion_tokens"), int):
        completion.tokens_out = usage["completion_tokens"]
    details = usage.get("prompt_tokens_details")
    if isinstance(details, dict) and isinstance(details.get("cached_tokens"), int):
        completion.extra["cached_tokens"] = details["cached_tokens"]


def parse_chat_completion(payload: Any) -> Completion:
    """Read a non-streamed chat completion; raise a non-retryable ProviderError if malformed."""
    if not isinstance(payload, dict):
        raise ProviderError(f"unexpected answer (not an object): {str(payload)[:200]!r}",
                            retryable=False)
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        if "error" in payload:
            detail, _ = server_message(json.dumps(payload))
            raise ProviderError(f"server error: {detail}", retryable=True)
        raise ProviderError(f"unexpected answer (no choices): {json.dumps(payload)[:200]}",
                            retryable=False)
    choice = choices[0]
    raw_message = choice.get("message")
    message: dict[str, Any] = raw_message if isinstance(raw_message, dict) else {}
    content = message.get("content")
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    completion = Completion(
        text=content if isinstance(content, str) else "",
        model=payload.get("model") if isinstance(payload.get("model"), str) else None,
        finish_reason=choice.get("finish_reason"),
        id=payload.get("id") if isinstance(payload.get("id"), str) else None,
    )
    if message.get("refusal"):
        completion.extra["refusal"] = message["refusal"]
    _usage(payload, completion)
    return completion


class ChatStream(TextStream):
    """Accumulates a streamed chat completion from its SSE events (pure); done at ``data: [DONE]``."""

    __slots__ = ()

    def feed(self, event: ServerSentEvent) -> str:
        data = event.data.strip()
        if not data or self._done:
            return ""
        if data == "[DONE]":
            self._done = True
            return ""
        try:
            chunk = json.loads(data)
        except ValueError:
            raise ProviderError(f"bad stream chunk: {data[:200]!r}", retryable=False) from None
        if not isinstance(chunk, dict):
            return ""
        if "error" in chunk:
            message, _ = server_message(data)
            raise ProviderError(f"error in stream: {message}", retryable=True)
        c = self._completion
        if c.id is None and isinstance(chunk.get("id"), str):
            c.id = chunk["id"]
        if c.model is None and isinstance(chunk.get("model"), str):
            c.model = chunk["model"]
        _usage(chunk, c)
        added = ""
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("content"), str):
                added += delta["content"]
            if choice.get("finish_reason"):
                c.finish_reason = choice["finish_reason"]
        if added:
            self._parts.append(added)
        return added


class OpenAIProvider(HTTPProvider):
    """Chat completions over HTTP against any OpenAI-compatible server.

    Options (``agent.options``): ``base_url`` (default https://api.openai.com/v1),
    ``api_key_env`` (default OPENAI_API_KEY), ``headers``, ``stream``, ``timeout``,
    ``connect_timeout``, ``max_connections``, ``max_keepalive``, ``keepalive_expiry``,
    ``response_format`` (json_object | json_schema | none), ``max_tokens_field``
    (max_tokens | max_completion_tokens), ``stream_usage``, ``schema_instruction``,
    ``parse_json``, ``extra_body`` (merged into every request body).
    """

    name = "openai"
    endpoint = "/chat/completions"
    warm_path = "/models"

    def __init__(
        self,
        *,
        model: str,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        settings: HTTPSettings | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        max_tokens_field: str = "max_tokens",
        response_format: str = "json_object",
        stream_usage: bool = True,
        name: str | None = None,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        settings = settings if settings is not None else HTTPSettings(base_url=base_url.rstrip("/"))
        auth = {"authorization": f"Bearer {api_key}"} if api_key else {}
        super().__init__(model=model, settings=settings, auth_headers=auth, name=name,
                         clock=clock, transport=transport)
        self.max_tokens = max_tokens
        self.temperature = temperature
        self.max_tokens_field = max_tokens_field
        self.response_format = response_format
        self.stream_usage = stream_usage

    @classmethod
    def from_agent(
        cls,
        agent: AgentSpec,
        *,
        name: str = "openai",
        default_base_url: str = DEFAULT_BASE_URL,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> OpenAIProvider:
        """Build from an agent spec, validating ``agent.options`` and finding the API key."""
        opts = OptionReader(agent.name, name, agent.options)
        require_model(agent.name, agent.model, name)
        settings = HTTPSettings.read(opts, default_base_url=default_base_url,
                                     max_concurrency=agent.max_concurrency)
        return cls(
            model=agent.model,
            api_key=opts.api_key("api_key_env", "OPENAI_API_KEY", settings.base_url),
            settings=settings,
            max_tokens=agent.max_tokens,
            temperature=agent.temperature,
            max_tokens_field=opts.choice("max_tokens_field", MAX_TOKENS_FIELDS, "max_tokens"),
            response_format=opts.choice("response_format", RESPONSE_FORMATS, "json_object"),
            stream_usage=opts.boolean("stream_usage", True),
            name=name,
            clock=clock,
            transport=transport,
        )

    def build_body(self, request: ProviderRequest, *, stream: bool) -> dict[str, Any]:
        return build_chat_body(
            request,
            model=self.model,
            stream=stream,
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            max_tokens_field=self.max_tokens_field,
            response_format=self.response_format,
            schema_instruction=self.settings.schema_instruction,
            stream_usage=self.stream_usage,
            extra_body=self.settings.extra_body,
        )

    def parse_body(self, payload: Any) -> Completion:
        return parse_chat_completion(payload)

    def new_stream(self) -> ChatStream:
        return ChatStream()

