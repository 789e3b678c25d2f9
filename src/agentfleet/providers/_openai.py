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
#
# ``options.endpoint: embeddings`` makes the agent an embedder (``OpenAIEmbeddingsProvider``):
# ``complete(request)`` embeds ``request.prompt``. Embedding endpoints take a list of inputs,
# and one request of 64 texts costs about what one of a single text does, so concurrent calls
# go through a ``CallBatcher``: up to ``batch_size`` prompts, or whatever arrived within
# ``batch_wait`` seconds of the first, become one POST /embeddings, and each caller gets its
# own vector back. A failed request fails every caller in it (each retries on its own).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from .._types import Clock, ProviderRequest, ProviderResponse
from ..errors import ProviderError, ProviderTimeout
from ._http import (
    Completion,
    HTTPProvider,
    HTTPSettings,
    TextStream,
    _attributed,
    error_for_status,
    error_for_transport,
    rate_limit_headers,
    require_model,
    server_message,
)
from ._options import OptionReader
from ._sse import ServerSentEvent
from ._structured import with_schema_instruction

if TYPE_CHECKING:
    from ..messaging import CallBatcher
    from ..spec import AgentSpec

__all__ = [
    "DEFAULT_BASE_URL",
    "ENDPOINTS",
    "ChatStream",
    "OpenAIEmbeddingsProvider",
    "OpenAIProvider",
    "build_chat_body",
    "build_embeddings_body",
    "parse_chat_completion",
    "parse_embeddings",
    "split_tokens",
]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RESPONSE_FORMATS = ("json_object", "json_schema", "none")
MAX_TOKENS_FIELDS = ("max_tokens", "max_completion_tokens")
ENDPOINTS = ("chat", "embeddings")
_CHAT_ONLY_OPTIONS = ("stream", "stream_usage", "response_format", "max_tokens_field")
_EMBEDDINGS_ONLY_OPTIONS = ("batch_size", "batch_wait")


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
    """Accumulates a streamed chat completion from its SSE events (pure).

    ``done`` once ``data: [DONE]`` or a choice's ``finish_reason`` arrived: some
    OpenAI-compatible servers end the body without ``[DONE]``, but a stream without
    either was cut short.
    """

    __slots__ = ()

    @property
    def done(self) -> bool:
        return self._done or self._completion.finish_reason is not None

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
    ``parse_json``, ``extra_body`` (merged into every request body), ``endpoint`` (chat |
    embeddings: see ``OpenAIEmbeddingsProvider``, which also reads ``batch_size`` and
    ``batch_wait``).
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
        """Build from an agent spec, validating ``agent.options`` and finding the API key.

        With ``options.endpoint: embeddings`` the result is an ``OpenAIEmbeddingsProvider``.
        """
        opts = OptionReader(agent.name, name, agent.options)
        require_model(agent.name, agent.model, name)
        endpoint = opts.choice("endpoint", ENDPOINTS, "chat")
        wrong = _CHAT_ONLY_OPTIONS if endpoint == "embeddings" else _EMBEDDINGS_ONLY_OPTIONS
        for key in wrong:
            if opts.has(key):
                raise opts.error(key, f"does not apply to endpoint: {endpoint}")
        settings = HTTPSettings.read(opts, default_base_url=default_base_url,
                                     max_concurrency=agent.max_concurrency)
        if endpoint == "embeddings":
            return OpenAIEmbeddingsProvider(
                model=agent.model,
                api_key=opts.api_key("api_key_env", "OPENAI_API_KEY", settings.base_url),
                settings=settings,
                batch_size=opts.integer("batch_size", 64, minimum=1),
                batch_wait=opts.number("batch_wait", 0.005, minimum=0.0),
                name=name,
                clock=clock,
                transport=transport,
            )
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



# --- embeddings ----------------------------------------------------------------------------


def build_embeddings_body(
    texts: Sequence[str], *, model: str, extra_body: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON body of POST /embeddings for ``texts`` (one vector per text, as floats)."""
    body: dict[str, Any] = {"model": model, "input": list(texts)}
    if extra_body:
        body.update(extra_body)
    return body


def parse_embeddings(payload: Any, count: int) -> tuple[list[list[float]], int | None, str | None]:
    """The vectors of an embeddings answer in input order, its prompt tokens and model.

    Raises a non-retryable ProviderError when the answer does not hold ``count`` float vectors.
    """
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
        if isinstance(payload, dict) and "error" in payload:
            detail, _ = server_message(json.dumps(payload))
            raise ProviderError(f"server error: {detail}", retryable=True)
        raise ProviderError(f"unexpected embeddings answer (no data): {str(payload)[:200]}", retryable=False)
    items = payload["data"]
    vectors: list[list[float] | None] = [None] * count
    for position, item in enumerate(items):
        index = item.get("index", position) if isinstance(item, dict) else None
        vector = item.get("embedding") if isinstance(item, dict) else None
        if isinstance(vector, str):
            raise ProviderError("the server sent base64 embeddings; remove encoding_format from extra_body",
                                retryable=False)
        if (not isinstance(index, int) or not 0 <= index < count or vectors[index] is not None
                or not isinstance(vector, list)
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in vector)):
            raise ProviderError(f"unexpected embeddings answer (item {position}): {str(item)[:200]}",
                                retryable=False)
        vectors[index] = [float(x) for x in vector]
    if len(items) != count or any(v is None for v in vectors):
        raise ProviderError(f"the embeddings answer holds {len(items)} vectors for {count} inputs", retryable=False)
    usage = payload.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    model = payload.get("model")
    return ([v for v in vectors if v is not None],
            tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else None,
            model if isinstance(model, str) else None)


def split_tokens(total: int, texts: Sequence[str]) -> list[int]:
    """``total`` tokens shared among ``texts`` in proportion to their lengths (summing to ``total``)."""
    if not texts:
        return []
    weights = [max(1, len(t)) for t in texts]
    whole = sum(weights)
    shares = [total * w // whole for w in weights]
    remainders = sorted(range(len(texts)), key=lambda i: (-(total * weights[i] % whole), i))
    for i in remainders[: total - sum(shares)]:
        shares[i] += 1
    return shares


@dataclass(slots=True)
class _Embedding:
    """One caller's part of a batched embeddings answer."""

    vector: list[float]
    tokens_in: int
    batch_size: int
    model: str
    estimated: bool
    headers: dict[str, str] = field(default_factory=dict)


class OpenAIEmbeddingsProvider(OpenAIProvider):
    """Embeddings (POST /embeddings) from an OpenAI-compatible server, concurrent calls batched.

    ``complete(request)`` embeds ``request.prompt``: the response's ``data`` is the vector,
    ``text`` its compact JSON, ``tokens_in`` this prompt's share of the batch's usage (by
    length), ``tokens_out`` 0, ``meta["batch_size"]`` how many prompts shared the request.
    Options: those of the chat provider except the chat-only ``stream``, ``stream_usage``,
    ``response_format`` and ``max_tokens_field``; plus ``batch_size`` (default 64) and
    ``batch_wait`` (seconds to wait for more prompts after the first, default 0.005).
    """

    endpoint = "/embeddings"

    def __init__(
        self,
        *,
        model: str,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str | None = None,
        settings: HTTPSettings | None = None,
        batch_size: int = 64,
        batch_wait: float = 0.005,
        name: str | None = None,
        clock: Clock | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(model=model, base_url=base_url, api_key=api_key, settings=settings, name=name,
                         clock=clock, transport=transport)
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self._batchers: dict[str, CallBatcher[str, _Embedding]] = {}
        self._closing = False

    def _batcher(self, model: str) -> CallBatcher[str, _Embedding]:
        batcher = self._batchers.get(model)
        if batcher is None:
            # Imported here: the messaging package loads the Redis client, which a chat agent never needs.
            from ..messaging import CallBatcher

            async def call(texts: list[str]) -> list[_Embedding]:
                return await self._embed(model, texts)

            batcher = self._batchers[model] = CallBatcher(
                call, max_size=self.batch_size, max_wait=self.batch_wait, clock=self.clock)
        return batcher

    async def _complete(self, request: ProviderRequest) -> ProviderResponse:
        if self._closing:
            raise ProviderError("provider is closed", provider=self.name, retryable=False)
        model = request.model or self.model
        batcher = self._batcher(model)
        start = self.clock.now()
        if request.timeout is None:
            embedding = await batcher.submit(request.prompt)
        else:
            try:
                async with asyncio.timeout(request.timeout):  # cancelled: left out of its batch
                    embedding = await batcher.submit(request.prompt)
            except TimeoutError:
                raise ProviderTimeout(f"no answer from {self.url} within {request.timeout:g}s",
                                      provider=self.name) from None
        meta: dict[str, Any] = {"batch_size": embedding.batch_size}
        if embedding.estimated:
            meta["usage_estimated"] = True
        if embedding.headers:
            meta["headers"] = dict(embedding.headers)
        return ProviderResponse(
            text=json.dumps(embedding.vector, separators=(",", ":")),
            provider=self.name,
            model=embedding.model,
            tokens_in=embedding.tokens_in,
            tokens_out=0,
            data=embedding.vector,
            latency=self.clock.now() - start,
            meta=meta,
        )

    async def _embed(self, model: str, texts: list[str]) -> list[_Embedding]:
        """One POST /embeddings for ``texts``; their embeddings in order, or a Provider* error."""
        client = self._client if self._client is not None else self._open()
        body = build_embeddings_body(texts, model=model, extra_body=self.settings.extra_body)
        try:
            response = await client.post(self.url, json=body)
        except httpx.HTTPError as exc:
            raise error_for_transport(exc, provider=self.name, url=self.url) from exc
        if response.status_code >= 400:
            raise error_for_status(response.status_code, response.headers, response.content,
                                   provider=self.name, url=self.url)
        try:
            vectors, tokens, answered_model = parse_embeddings(self._json(response), len(texts))
        except ProviderError as exc:
            if exc.provider:
                raise
            raise _attributed(exc, self.name, self.url) from exc
        estimated = tokens is None
        shares = [(len(t) + 3) // 4 for t in texts] if tokens is None else split_tokens(tokens, texts)
        headers = rate_limit_headers(response.headers)
        return [
            _Embedding(vector, share, len(texts), answered_model or model, estimated, headers)
            for vector, share in zip(vectors, shares, strict=True)
        ]

    async def aclose(self) -> None:
        """Send the prompts still waiting for a batch, then close the connections."""
        self._closing = True
        batchers = list(self._batchers.values())
        self._batchers.clear()
        for batcher in batchers:
            await batcher.aclose()
        await super().aclose()
