"""The OpenAI-compatible provider against a real local server speaking the wire protocol."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from agentfleet._types import ProviderRequest, ProviderResponse
from agentfleet.errors import ProviderConfigError, ProviderError, ProviderTimeout, RateLimited
from agentfleet.providers import OpenAIProvider, build_provider
from agentfleet.providers._openai import ChatStream, build_chat_body, parse_chat_completion
from agentfleet.providers._sse import decode_sse
from agentfleet.spec import AgentSpec

from .wire_server import WireServer, unused_port


def _agent(base_url: str, **options: Any) -> AgentSpec:
    return AgentSpec(
        name="dev",
        provider="openai",
        model="gpt-test",
        max_tokens=64,
        temperature=0.2,
        options={"base_url": base_url, **options},
    )


def _provider(wire: WireServer, **options: Any) -> OpenAIProvider:
    provider = build_provider(_agent(wire.url + "/v1", **options))
    assert isinstance(provider, OpenAIProvider)
    return provider


def _request(**overrides: Any) -> ProviderRequest:
    fields: dict[str, Any] = {
        "task_id": "t1",
        "agent": "dev",
        "model": "gpt-test",
        "system": "You are terse.",
        "prompt": "say hello",
    }
    fields.update(overrides)
    return ProviderRequest(**fields)


def _complete(provider: OpenAIProvider, *requests: ProviderRequest) -> list[ProviderResponse]:
    async def main() -> list[ProviderResponse]:
        try:
            return [await provider.complete(r) for r in requests]
        finally:
            await provider.aclose()

    return asyncio.run(main())


def _fails(provider: OpenAIProvider, request: ProviderRequest | None = None) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        _complete(provider, request or _request())
    return info.value


class TestChatWire:
    def test_json_completion(self, wire: WireServer) -> None:
        """A plain call returns the text and the server's usage."""
        (response,) = _complete(_provider(wire), _request())
        assert response.text == "echo: say hello"
        assert response.provider == "openai"
        assert response.model == "gpt-test"
        assert (response.tokens_in, response.tokens_out) == (5, 3)
        assert response.meta["finish_reason"] == "stop"
        assert response.meta["stream"] is False
        assert response.latency > 0

    def test_request_shape(self, wire: WireServer) -> None:
        """The body carries model, system+user messages, max_tokens and temperature."""
        _complete(_provider(wire), _request())
        (post,) = wire.posts
        assert post.path == "/v1/chat/completions"
        assert post.body == {
            "model": "gpt-test",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "say hello"},
            ],
            "max_tokens": 64,
            "temperature": 0.2,
        }
        assert post.headers["content-type"] == "application/json"
        assert post.headers["user-agent"].startswith("agentfleet/")

    def test_bearer_key_and_extra_headers(self, wire: WireServer, monkeypatch: pytest.MonkeyPatch) -> None:
        """The key from OPENAI_API_KEY goes in Authorization; options.headers are added."""
        monkeypatch.setenv("OPENAI_API_KEY", "sk-wire")
        _complete(_provider(wire, headers={"X-Team": "blue"}), _request())
        headers = wire.posts[0].headers
        assert headers["authorization"] == "Bearer sk-wire"
        assert headers["x-team"] == "blue"

    def test_local_server_needs_no_key(self, wire: WireServer, monkeypatch: pytest.MonkeyPatch) -> None:
        """Against 127.0.0.1 a missing key is fine and no Authorization is sent."""
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        _complete(_provider(wire), _request())
        assert "authorization" not in wire.posts[0].headers

    def test_streaming(self, wire: WireServer) -> None:
        """A streamed call accumulates the deltas, reads usage from the last chunk, times TTFT."""
        wire.reply = "one two three four"
        wire.chunk_delay = 0.02
        (response,) = _complete(_provider(wire), _request(stream=True))
        assert response.text == "one two three four"
        assert (response.tokens_in, response.tokens_out) == (5, 4)
        assert response.meta["stream"] is True
        assert 0 < response.meta["ttft"] < response.latency
        body = wire.posts[0].body
        assert body["stream"] is True
        assert body["stream_options"] == {"include_usage": True}

    def test_streaming_from_options(self, wire: WireServer) -> None:
        """options.stream turns streaming on for every call."""
        (response,) = _complete(_provider(wire, stream=True), _request())
        assert response.meta["stream"] is True
        assert wire.posts[0].body["stream"] is True

    def test_stream_without_usage_is_estimated(self, wire: WireServer) -> None:
        """With stream_usage off the server sends no usage and the counts are estimated."""
        (response,) = _complete(_provider(wire, stream_usage=False), _request(stream=True))
        assert "stream_options" not in wire.posts[0].body
        assert response.meta["usage_estimated"] is True
        assert response.tokens_out == (len("echo: say hello") + 3) // 4

    def test_output_schema(self, wire: WireServer) -> None:
        """With a schema: json_object mode, the schema in the system prompt, parsed data."""
        wire.reply = '{"answer": 42}'
        schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}
        (response,) = _complete(_provider(wire), _request(output_schema=schema))
        assert response.data == {"answer": 42}
        body = wire.posts[0].body
        assert body["response_format"] == {"type": "json_object"}
        assert "JSON" in body["messages"][0]["content"]

    def test_output_not_json_left_to_the_runtime(self, wire: WireServer) -> None:
        """Unparseable output under a schema gives data None and a json_error note."""
        wire.reply = "sorry, no"
        (response,) = _complete(_provider(wire), _request(output_schema={"type": "object"}))
        assert response.data is None
        assert "no JSON" in response.meta["json_error"]

    def test_connection_reused(self, wire: WireServer) -> None:
        """Sequential calls share one keep-alive connection."""
        _complete(_provider(wire), _request(), _request(), _request(stream=True), _request())
        assert len(wire.posts) == 4
        assert wire.connections == 1
        assert {p.connection for p in wire.posts} == {1}

    def test_concurrent_calls(self, wire: WireServer) -> None:
        """Concurrent calls all succeed over a bounded pool."""
        provider = _provider(wire, max_connections=4)

        async def main() -> list[ProviderResponse]:
            try:
                return await asyncio.gather(
                    *(provider.complete(_request(prompt=f"p{i}")) for i in range(12))
                )
            finally:
                await provider.aclose()

        responses = asyncio.run(main())
        assert [r.text for r in responses] == [f"echo: p{i}" for i in range(12)]
        assert wire.connections <= 4

    def test_warm_opens_the_connection(self, wire: WireServer) -> None:
        """warm() GETs /models and the next call reuses its connection."""
        provider = _provider(wire)

        async def main() -> bool:
            try:
                ok = await provider.warm()
                await provider.complete(_request())
                return ok
            finally:
                await provider.aclose()

        assert asyncio.run(main()) is True
        assert [(r.method, r.path) for r in wire.requests] == [
            ("GET", "/v1/models"), ("POST", "/v1/chat/completions")]
        assert wire.connections == 1

    def test_statistics(self, wire: WireServer) -> None:
        """statistics() counts calls, successes and failures by kind."""
        provider = _provider(wire)
        wire.fail(429, retry_after=1)
        wire.fail(500)

        async def main() -> None:
            try:
                for _ in range(3):
                    try:
                        await provider.complete(_request())
                    except ProviderError:
                        pass
            finally:
                await provider.aclose()

        asyncio.run(main())
        stats = provider.statistics()
        assert (stats.calls, stats.succeeded, stats.rate_limited, stats.errors) == (3, 1, 1, 1)


class TestChatErrors:
    def test_rate_limited(self, wire: WireServer) -> None:
        """429 raises RateLimited with the Retry-After seconds."""
        wire.fail(429, "Rate limit reached for requests", retry_after=7)
        error = _fails(_provider(wire))
        assert isinstance(error, RateLimited)
        assert error.retry_after == 7.0
        assert error.retryable
        assert "429" in str(error) and "Rate limit reached" in str(error)

    def test_rate_limited_streaming(self, wire: WireServer) -> None:
        """A 429 on a streamed call is RateLimited too."""
        wire.fail(429, retry_after=2)
        error = _fails(_provider(wire), _request(stream=True))
        assert isinstance(error, RateLimited)
        assert error.retry_after == 2.0

    def test_quota_exhausted_not_retryable(self, wire: WireServer) -> None:
        """OpenAI's insufficient_quota 429 is not worth retrying."""
        wire.fail(429, "You exceeded your current quota", kind="insufficient_quota")
        error = _fails(_provider(wire))
        assert not isinstance(error, RateLimited)
        assert not error.retryable

    def test_server_error_retryable(self, wire: WireServer) -> None:
        """5xx is a retryable ProviderError."""
        wire.fail(503, "upstream busy")
        error = _fails(_provider(wire))
        assert type(error) is ProviderError
        assert error.retryable
        assert "HTTP 503" in str(error)

    def test_unauthorized_not_retryable(self, wire: WireServer) -> None:
        """401 is not retryable and quotes the server's message."""
        wire.fail(401, "Incorrect API key provided")
        error = _fails(_provider(wire))
        assert not error.retryable
        assert "Incorrect API key provided" in str(error)
        assert error.provider == "openai"

    def test_stream_error_chunk(self, wire: WireServer) -> None:
        """An error object inside the stream is a retryable ProviderError."""
        wire.stream_error = "model crashed"
        error = _fails(_provider(wire), _request(stream=True))
        assert error.retryable
        assert "model crashed" in str(error)

    def test_unreachable(self) -> None:
        """Nothing listening: a retryable error naming the URL and the reason."""
        url = f"http://127.0.0.1:{unused_port()}/v1"
        provider = build_provider(_agent(url))
        assert isinstance(provider, OpenAIProvider)
        error = _fails(provider)
        assert error.retryable
        assert f"cannot reach {url}/chat/completions: connection refused" in str(error)

    def test_warm_unreachable(self) -> None:
        """warm() reports False instead of raising when the server is down."""
        provider = build_provider(_agent(f"http://127.0.0.1:{unused_port()}/v1"))
        assert isinstance(provider, OpenAIProvider)

        async def main() -> bool:
            try:
                return await provider.warm()
            finally:
                await provider.aclose()

        assert asyncio.run(main()) is False

    def test_request_timeout(self, wire: WireServer) -> None:
        """A stalled server past request.timeout raises ProviderTimeout."""
        wire.stall = 5
        error = _fails(_provider(wire), _request(timeout=0.2))
        assert isinstance(error, ProviderTimeout)
        assert "0.2s" in str(error)

    def test_timeout_mid_stream_then_recover(self, wire: WireServer) -> None:
        """A stream that stalls between chunks times out; the next call still works."""
        wire.chunk_delay = 1.0
        provider = _provider(wire)

        async def main() -> ProviderResponse:
            try:
                with pytest.raises(ProviderTimeout):
                    await provider.complete(_request(stream=True, timeout=0.3))
                wire.chunk_delay = 0.0
                return await provider.complete(_request(stream=True))
            finally:
                await provider.aclose()

        assert asyncio.run(main()).text == "echo: say hello"

    def test_read_timeout_option(self, wire: WireServer) -> None:
        """options.timeout bounds the wait for the answer (httpx timeout)."""
        wire.stall = 5
        error = _fails(_provider(wire, timeout=0.2))
        assert isinstance(error, ProviderTimeout)

    def test_missing_api_key(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """A remote base_url without the key env var is a config error naming it."""
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        with pytest.raises(ProviderConfigError, match="OPENAI_API_KEY"):
            build_provider(_agent("https://api.openai.com/v1"))
        monkeypatch.delenv("TEAM_KEY", raising=False)
        with pytest.raises(ProviderConfigError, match="TEAM_KEY"):
            build_provider(_agent("https://llm.example.com/v1", api_key_env="TEAM_KEY"))

    def test_closed_provider(self, wire: WireServer) -> None:
        """A closed provider refuses calls."""
        provider = _provider(wire)
        asyncio.run(provider.aclose())
        error = _fails(provider)
        assert "closed" in str(error)


class TestChatPure:
    def test_body_max_completion_tokens_and_extra(self) -> None:
        """max_tokens_field and extra_body shape the body; request values win."""
        body = build_chat_body(
            _request(max_tokens=10, system=""),
            model="m",
            max_tokens=99,
            max_tokens_field="max_completion_tokens",
            extra_body={"seed": 3},
        )
        assert body == {
            "model": "gpt-test",
            "messages": [{"role": "user", "content": "say hello"}],
            "max_completion_tokens": 10,
            "seed": 3,
        }

    def test_body_json_schema_format(self) -> None:
        """response_format json_schema sends the schema itself."""
        schema = {"type": "object"}
        body = build_chat_body(_request(output_schema=schema), model="m",
                               response_format="json_schema")
        assert body["response_format"]["json_schema"]["schema"] == schema

    def test_parse_completion(self) -> None:
        """A chat.completion object becomes text, usage and finish reason."""
        completion = parse_chat_completion({
            "id": "x", "model": "m",
            "choices": [{"message": {"content": "hi"}, "finish_reason": "length"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 1,
                      "prompt_tokens_details": {"cached_tokens": 2}},
        })
        assert (completion.text, completion.tokens_in, completion.tokens_out) == ("hi", 3, 1)
        assert completion.finish_reason == "length"
        assert completion.extra == {"cached_tokens": 2}

    def test_parse_malformed(self) -> None:
        """An answer without choices is a non-retryable error."""
        with pytest.raises(ProviderError) as info:
            parse_chat_completion({"object": "list"})
        assert not info.value.retryable

    def test_stream_accumulates(self) -> None:
        """ChatStream joins deltas, stops at [DONE] and keeps the usage."""
        chunks = [
            {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]},
            {"choices": [{"index": 0, "delta": {"content": "Hel"}}]},
            {"choices": [{"index": 0, "delta": {"content": "lo"}, "finish_reason": "stop"}]},
            {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2}},
        ]
        body = "".join(f"data: {json.dumps(c)}\n\n" for c in chunks) + "data: [DONE]\n\n"
        stream = ChatStream()
        added = [stream.feed(e) for e in decode_sse(body.splitlines())]
        assert added == ["", "Hel", "lo", "", ""]
        assert stream.done
        result = stream.result()
        assert (result.text, result.tokens_in, result.tokens_out) == ("Hello", 4, 2)
        assert result.finish_reason == "stop"
