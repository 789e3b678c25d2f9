"""The HTTP layer's pure parts (SSE, error mapping, Retry-After) and the MockTransport double."""

from __future__ import annotations

import asyncio
import json
from email.utils import formatdate

import httpx
import pytest

from agentfleet._types import ProviderRequest, ProviderResponse
from agentfleet.errors import ProviderConfigError, ProviderError, ProviderTimeout, RateLimited
from agentfleet.providers import OpenAIProvider
from agentfleet.providers._http import (
    HTTPSettings,
    error_for_status,
    error_for_transport,
    parse_retry_after,
    server_message,
)
from agentfleet.providers._options import OptionReader, is_local_url
from agentfleet.providers._sse import ServerSentEvent, SSEDecoder, decode_sse

URL = "http://llm.test/v1/chat/completions"


def _mocked(handler: httpx.MockTransport) -> OpenAIProvider:
    return OpenAIProvider(model="m", base_url="http://llm.test/v1", api_key="k", transport=handler)


def _run(provider: OpenAIProvider, request: ProviderRequest) -> ProviderResponse:
    async def main() -> ProviderResponse:
        try:
            return await provider.complete(request)
        finally:
            await provider.aclose()

    return asyncio.run(main())


REQUEST = ProviderRequest(task_id="t", agent="a", model="m", system="", prompt="hi")


class TestSSE:
    def test_events_and_comments(self) -> None:
        """Blank lines end events; comments are skipped; one leading space is dropped."""
        lines = [": keep-alive", "event: delta", "data: a", "data:  b", "", "data: c", "id: 9", ""]
        assert decode_sse(lines) == [
            ServerSentEvent("delta", "a\n b"),
            ServerSentEvent("message", "c", "9"),
        ]

    def test_flush_at_end(self) -> None:
        """An event without a trailing blank line is delivered by flush()."""
        decoder = SSEDecoder()
        assert decoder.feed("data: [DONE]") is None
        assert decoder.flush() == ServerSentEvent("message", "[DONE]")
        assert decoder.flush() is None


class TestErrorMapping:
    def test_retry_after_forms(self) -> None:
        """Retry-After in seconds, as an HTTP date, and retry-after-ms are understood."""
        assert parse_retry_after({"Retry-After": "3"}) == 3.0
        assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
        now = 1_700_000_000.0
        assert parse_retry_after({"Retry-After": formatdate(now + 30, usegmt=True)}, now=now) == 30.0
        assert parse_retry_after({"Retry-After": "soon"}) is None
        assert parse_retry_after({}) is None

    def test_status_table(self) -> None:
        """429/408/409/5xx/4xx map to the documented errors."""
        def err(status: int) -> ProviderError:
            return error_for_status(status, {"retry-after": "2"}, b"", provider="p", url=URL)

        assert isinstance(err(429), RateLimited) and err(429).retry_after == 2.0  # type: ignore[attr-defined]
        assert isinstance(err(408), ProviderTimeout)
        assert err(409).retryable and err(500).retryable and err(529).retryable
        for status in (400, 401, 403, 404, 422):
            assert not err(status).retryable, status

    def test_server_messages(self) -> None:
        """Messages are read from OpenAI, Anthropic, plain-string and non-JSON bodies."""
        assert server_message(b'{"error": {"message": "bad key", "code": "invalid_api_key"}}') == (
            "bad key", "invalid_api_key")
        assert server_message('{"type":"error","error":{"type":"not_found_error","message":"no"}}') == (
            "no", "not_found_error")
        assert server_message('{"error": "model not loaded"}') == ("model not loaded", "")
        assert server_message("<html>\n  Bad Gateway </html>") == ("<html> Bad Gateway </html>", "")

    def test_transport_errors(self) -> None:
        """httpx timeouts become ProviderTimeout; connect errors name the URL."""
        request = httpx.Request("POST", URL)
        assert isinstance(error_for_transport(httpx.ReadTimeout("x", request=request),
                                              provider="p", url=URL), ProviderTimeout)
        refused = httpx.ConnectError("All connection attempts failed", request=request)
        refused.__cause__ = ConnectionRefusedError(111, "Connection refused")
        error = error_for_transport(refused, provider="p", url=URL)
        assert str(error) == f"p: cannot reach {URL}: connection refused"
        assert isinstance(error_for_transport(httpx.UnsupportedProtocol("x"), provider="p", url=URL),
                          ProviderConfigError)


class TestMockTransport:
    def test_json_answer(self) -> None:
        """The provider works over httpx.MockTransport (the shipped test double)."""
        def handler(request: httpx.Request) -> httpx.Response:
            assert request.headers["authorization"] == "Bearer k"
            assert json.loads(request.content)["messages"] == [{"role": "user", "content": "hi"}]
            return httpx.Response(200, json={"choices": [{"message": {"content": "yo"}}]})

        response = _run(_mocked(httpx.MockTransport(handler)), REQUEST)
        assert response.text == "yo"
        assert response.meta["usage_estimated"] is True

    def test_html_answer_is_config_smell(self) -> None:
        """A 200 that is not JSON (wrong base_url) is a non-retryable error saying so."""
        transport = httpx.MockTransport(
            lambda r: httpx.Response(200, text="<html>hi</html>", headers={"content-type": "text/html"}))
        with pytest.raises(ProviderError, match="is base_url right") as info:
            _run(_mocked(transport), REQUEST)
        assert not info.value.retryable

    def test_stream_ignored_by_server(self) -> None:
        """A server answering a stream request with plain JSON is read as JSON."""
        transport = httpx.MockTransport(
            lambda r: httpx.Response(200, json={"choices": [{"message": {"content": "plain"}}]}))
        response = _run(_mocked(transport), ProviderRequest("t", "a", "m", "", "hi", stream=True))
        assert response.text == "plain"


class TestSettings:
    def test_defaults_follow_concurrency(self) -> None:
        """The pool grows with the agent's max_concurrency."""
        settings = HTTPSettings.read(OptionReader("a", "openai", {}), default_base_url="http://x/v1",
                                     max_concurrency=500)
        assert (settings.max_connections, settings.max_keepalive) == (500, 500)

    @pytest.mark.parametrize("options, option", [
        ({"base_url": "ftp://x"}, "base_url"),
        ({"timeout": 0}, "timeout"),
        ({"headers": {"X": ["a"]}}, "headers"),
        ({"max_connections": "many"}, "max_connections"),
        ({"stream": "yes"}, "stream"),
    ])
    def test_bad_options(self, options: dict[str, object], option: str) -> None:
        """A bad option is a config error naming the agent and the option."""
        with pytest.raises(ProviderConfigError, match=f"agent 'a': option '{option}'"):
            HTTPSettings.read(OptionReader("a", "openai", options), default_base_url="http://x",
                              max_concurrency=None)

    def test_local_urls(self) -> None:
        """Loopback hosts are local; others are not."""
        assert is_local_url("http://127.0.0.1:8000/v1") and is_local_url("http://localhost/v1")
        assert not is_local_url("https://api.openai.com/v1")


def test_an_http_error_carries_its_status() -> None:
    """The gateway reads ``status`` (overload, unserved 5xx) rather than parsing messages."""
    for status in (429, 500, 503, 400):
        assert error_for_status(status, {}, b"{}", provider="p", url="http://x").status == status
    assert error_for_transport(httpx.ConnectError("refused"), provider="p", url="http://x").status is None
