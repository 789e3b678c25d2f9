"""The Anthropic messages provider against a real local server speaking the wire protocol."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from agentfleet._types import ProviderRequest, ProviderResponse
from agentfleet.errors import ProviderConfigError, ProviderError, ProviderTimeout, RateLimited
from agentfleet.providers import AnthropicProvider, build_provider
from agentfleet.providers._anthropic import MessageStream, build_messages_body, parse_message
from agentfleet.providers._sse import ServerSentEvent, decode_sse
from agentfleet.spec import AgentSpec

from .wire_server import WireServer, unused_port


def _agent(base_url: str, **options: Any) -> AgentSpec:
    return AgentSpec(
        name="writer",
        provider="anthropic",
        model="claude-test",
        options={"base_url": base_url, **options},
    )


def _provider(wire: WireServer, **options: Any) -> AnthropicProvider:
    provider = build_provider(_agent(wire.url, **options))
    assert isinstance(provider, AnthropicProvider)
    return provider


def _request(**overrides: Any) -> ProviderRequest:
    fields: dict[str, Any] = {
        "task_id": "t1",
        "agent": "writer",
        "model": "claude-test",
        "system": "Be brief.",
        "prompt": "write a haiku",
    }
    fields.update(overrides)
    return ProviderRequest(**fields)


def _complete(provider: AnthropicProvider, *requests: ProviderRequest) -> list[ProviderResponse]:
    async def main() -> list[ProviderResponse]:
        try:
            return [await provider.complete(r) for r in requests]
        finally:
            await provider.aclose()

    return asyncio.run(main())


def _fails(provider: AnthropicProvider, request: ProviderRequest | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        _complete(provider, request or _request())
    return info.value


class TestMessagesWire:
    def test_json_message(self, wire: WireServer, monkeypatch: pytest.MonkeyPatch) -> None:
        """A plain call sends the key and version headers and returns text and usage."""
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wire")
        (response,) = _complete(_provider(wire), _request())
        assert response.text == "echo: write a haiku"
        assert response.provider == "anthropic"
        assert (response.tokens_in, response.tokens_out) == (5, 4)
        assert response.meta["finish_reason"] == "end_turn"
        (post,) = wire.posts
        assert post.path == "/v1/messages"
        assert post.headers["x-api-key"] == "sk-ant-wire"
        assert post.headers["anthropic-version"] == "2023-06-01"
        assert post.body == {
            "model": "claude-test",
            "max_tokens": 1024,
            "system": "Be brief.",
            "messages": [{"role": "user", "content": "write a haiku"}],
        }

    def test_streaming(self, wire: WireServer) -> None:
        """Streaming reads text deltas, input tokens from message_start, output from message_delta."""
        wire.reply = "old pond frog jumps in"
        wire.chunk_delay = 0.01
        (response,) = _complete(_provider(wire), _request(stream=True))
        assert response.text == "old pond frog jumps in"
        assert (response.tokens_in, response.tokens_out) == (5, 5)
        assert response.meta["stream"] is True
        assert 0 < response.meta["ttft"] < response.latency
        assert wire.posts[0].body["stream"] is True

    def test_output_schema(self, wire: WireServer) -> None:
        """With a schema the system prompt asks for JSON and the answer is parsed."""
        wire.reply = '```json\n{"lines": ["a", "b", "c"]}\n```'
        (response,) = _complete(_provider(wire), _request(output_schema={"type": "object"}))
        assert response.data == {"lines": ["a", "b", "c"]}
        assert "JSON Schema" in wire.posts[0].body["system"]

    def test_connection_reused(self, wire: WireServer) -> None:
        """Sequential calls, streamed or not, share one keep-alive connection."""
        _complete(_provider(wire), _request(), _request(stream=True), _request())
        assert wire.connections == 1

    def test_warm(self, wire: WireServer) -> None:
        """warm() GETs /v1/models."""
        provider = _provider(wire)

        async def main() -> bool:
            try:
                return await provider.warm()
            finally:
                await provider.aclose()

        assert asyncio.run(main()) is True
        assert wire.requests[0].path == "/v1/models"


class TestMessagesErrors:
    def test_rate_limited(self, wire: WireServer) -> None:
        """429 raises RateLimited with retry-after."""
        wire.fail(429, "Number of requests has exceeded your rate limit", retry_after=12)
        error = _fails(_provider(wire))
        assert isinstance(error, RateLimited)
        assert error.retry_after == 12.0
        assert "rate_limit_error" in str(error)

    def test_overloaded_retryable(self, wire: WireServer) -> None:
        """529 overloaded is retryable."""
        wire.fail(529, "Overloaded")
        error = _fails(_provider(wire))
        assert error.retryable
        assert "529" in str(error) and "Overloaded" in str(error)

    def test_server_error_retryable(self, wire: WireServer) -> None:
        """500 is retryable."""
        wire.fail(500)
        assert _fails(_provider(wire)).retryable

    def test_unauthorized(self, wire: WireServer) -> None:
        """401 is not retryable and carries the server's message."""
        wire.fail(401, "invalid x-api-key")
        error = _fails(_provider(wire))
        assert not error.retryable
        assert "invalid x-api-key" in str(error)

    def test_stream_overloaded_event(self, wire: WireServer) -> None:
        """An overloaded_error event mid-stream is retryable."""
        wire.stream_error = "overloaded_error"
        error = _fails(_provider(wire), _request(stream=True))
        assert error.retryable
        assert "overloaded_error" in str(error)
        assert error.provider == "anthropic"

    def test_stream_rate_limit_event(self, wire: WireServer) -> None:
        """A rate_limit_error event mid-stream is RateLimited."""
        wire.stream_error = "rate_limit_error"
        assert isinstance(_fails(_provider(wire), _request(stream=True)), RateLimited)

    def test_stream_invalid_request_event(self, wire: WireServer) -> None:
        """An invalid_request_error event is not retryable."""
        wire.stream_error = "invalid_request_error"
        assert not _fails(_provider(wire), _request(stream=True)).retryable

    def test_timeout(self, wire: WireServer) -> None:
        """A stalled server past request.timeout raises ProviderTimeout."""
        wire.stall = 5
        assert isinstance(_fails(_provider(wire), _request(timeout=0.2)), ProviderTimeout)

    def test_unreachable(self) -> None:
        """Nothing listening: retryable, naming the URL."""
        url = f"http://127.0.0.1:{unused_port()}"
        provider = build_provider(_agent(url))
        assert isinstance(provider, AnthropicProvider)
        error = _fails(provider)
        assert error.retryable
        assert f"cannot reach {url}/v1/messages: connection refused" in str(error)

    def test_missing_api_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The default remote API without ANTHROPIC_API_KEY is a config error naming it."""
        monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
        agent = AgentSpec(name="writer", provider="anthropic", model="claude-test")
        with pytest.raises(ProviderConfigError, match="ANTHROPIC_API_KEY"):
            build_provider(agent)


class TestMessagesPure:
    def test_body_defaults(self) -> None:
        """No system prompt omits 'system'; max_tokens defaults to 1024; temperature passes."""
        body = build_messages_body(_request(system="", temperature=0.5), model="m")
        assert body == {
            "model": "claude-test",
            "max_tokens": 1024,
            "messages": [{"role": "user", "content": "write a haiku"}],
            "temperature": 0.5,
        }

    def test_parse_message_with_cache_tokens(self) -> None:
        """Cached input tokens count as input and are reported in extra."""
        completion = parse_message({
            "type": "message",
            "content": [{"type": "text", "text": "a"}, {"type": "tool_use"}, {"type": "text", "text": "b"}],
            "usage": {"input_tokens": 3, "output_tokens": 2, "cache_read_input_tokens": 10},
            "stop_reason": "max_tokens",
        })
        assert (completion.text, completion.tokens_in, completion.tokens_out) == ("ab", 13, 2)
        assert completion.extra == {"cache_read_input_tokens": 10}

    def test_stream_events(self) -> None:
        """MessageStream follows the event sequence to message_stop."""
        events = [
            ("message_start", {"message": {"id": "m1", "model": "c", "usage": {"input_tokens": 7}}}),
            ("ping", {}),
            ("content_block_delta", {"delta": {"type": "text_delta", "text": "Hi"}}),
            ("content_block_delta", {"delta": {"type": "input_json_delta", "partial_json": "{"}}),
            ("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}}),
            ("message_stop", {}),
        ]
        body = "".join(f"event: {n}\ndata: {json.dumps({'type': n, **p})}\n\n" for n, p in events)
        stream = MessageStream()
        texts = [stream.feed(e) for e in decode_sse(body.splitlines())]
        assert texts == ["", "", "Hi", "", "", ""]
        result = stream.result()
        assert (result.text, result.tokens_in, result.tokens_out, result.finish_reason) == (
            "Hi", 7, 3, "end_turn")

    def test_stream_cut_short(self) -> None:
        """A stream that ends before message_stop is a retryable error."""
        stream = MessageStream()
        stream.feed(ServerSentEvent("message_start", json.dumps({"type": "message_start"})))
        with pytest.raises(ProviderError) as info:
            stream.result()
        assert info.value.retryable
