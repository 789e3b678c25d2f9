"""Embeddings through the OpenAI-compatible provider: concurrent calls batched into one POST
/embeddings each (against the fault server), options, failures and the pure parts."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from typing import Any

import pytest

from agentfleet._types import ProviderRequest, ProviderResponse
from agentfleet.errors import ProviderConfigError, ProviderError, ProviderTimeout, RateLimited
from agentfleet.providers import OpenAIProvider, build_provider
from agentfleet.providers._openai import OpenAIEmbeddingsProvider, parse_embeddings, split_tokens
from agentfleet.spec import AgentSpec
from tests.faultserver import FaultServer, embedding_for, tokens_for


@pytest.fixture
def server() -> Iterator[FaultServer]:
    with FaultServer() as running:
        yield running


def _agent(base_url: str, **options: Any) -> AgentSpec:
    return AgentSpec(name="embed", provider="openai", model="text-embedding-test",
                     options={"base_url": base_url, "endpoint": "embeddings", **options})


def _embedder(server: FaultServer, **options: Any) -> OpenAIEmbeddingsProvider:
    provider = build_provider(_agent(server.url, **options))
    assert isinstance(provider, OpenAIEmbeddingsProvider)
    return provider


def _request(prompt: str, **overrides: Any) -> ProviderRequest:
    return ProviderRequest(task_id=prompt, agent="embed", model="", system="ignored", prompt=prompt, **overrides)


def _gather(provider: OpenAIProvider, prompts: list[str], **overrides: Any) -> list[ProviderResponse | BaseException]:
    async def main() -> list[ProviderResponse | BaseException]:
        try:
            return await asyncio.gather(*(provider.complete(_request(p, **overrides)) for p in prompts),
                                        return_exceptions=True)
        finally:
            await provider.aclose()

    return asyncio.run(main())


class TestBatching:
    """Concurrent calls share HTTP requests; each caller gets its own vector."""

    def test_fifty_calls_four_requests(self, server: FaultServer) -> None:
        """50 concurrent calls with batch_size 16 are ceil(50/16) = 4 requests, each answer its own."""
        prompts = [f"document number {i} " + "x" * (i % 7) for i in range(50)]
        answers = _gather(_embedder(server, batch_size=16), prompts)
        counts = server.counts()
        assert counts.received == math.ceil(50 / 16) == 4
        assert counts.succeeded == 4
        assert counts.by_path == {"/v1/embeddings": 4}
        responses = [a for a in answers if isinstance(a, ProviderResponse)]
        assert len(responses) == 50
        for prompt, response in zip(prompts, responses, strict=True):
            assert response.data == embedding_for(prompt)
            assert json.loads(response.text) == response.data
            assert response.tokens_out == 0
            assert response.model == "text-embedding-test"
        assert sorted(r.meta["batch_size"] for r in responses) == [2] * 2 + [16] * 48
        # the usage of each request is shared out exactly
        assert sum(r.tokens_in for r in responses) == sum(tokens_for(p) for p in prompts) == counts.tokens_in
        assert counts.duplicates == 0

    def test_defaults_one_request(self, server: FaultServer) -> None:
        """With the default batch_size (64), 50 concurrent calls are one request."""
        answers = _gather(_embedder(server), [f"p{i}" for i in range(50)])
        assert all(isinstance(a, ProviderResponse) and a.meta["batch_size"] == 50 for a in answers)
        assert server.counts().received == 1

    def test_lone_call_waits_batch_wait(self, server: FaultServer) -> None:
        """A lone call is sent after batch_wait and answered with a vector of its own."""
        (answer,) = _gather(_embedder(server, batch_wait=0.05), ["alone"])
        assert isinstance(answer, ProviderResponse)
        assert answer.latency >= 0.05
        assert answer.data == embedding_for("alone")
        assert answer.meta["batch_size"] == 1
        assert "date" in answer.meta["headers"]

    def test_close_sends_what_waits(self, server: FaultServer) -> None:
        """aclose() sends the prompts waiting for a batch instead of dropping them."""
        provider = _embedder(server, batch_wait=30.0)

        async def main() -> list[ProviderResponse]:
            tasks = [asyncio.ensure_future(provider.complete(_request(p))) for p in ("a", "b")]
            await asyncio.sleep(0.01)
            await provider.aclose()
            return [await t for t in tasks]

        answers = asyncio.run(main())
        assert [a.data for a in answers] == [embedding_for("a"), embedding_for("b")]

        async def after_close() -> ProviderResponse:
            return await provider.complete(_request("c"))

        with pytest.raises(ProviderError, match="closed"):
            asyncio.run(after_close())


class TestFailures:
    """A failed request fails every caller in it, with the usual error mapping."""

    def test_server_error_fails_one_batch(self, server: FaultServer) -> None:
        """A 503 fails the five callers of the first batch (retryable); the second batch is fine."""
        server.script(503)
        answers = _gather(_embedder(server, batch_size=5), [f"p{i}" for i in range(10)])
        errors = [a for a in answers if isinstance(a, ProviderError)]
        assert len(errors) == 5 and all(e.retryable and "HTTP 503" in str(e) for e in errors)
        assert sum(isinstance(a, ProviderResponse) for a in answers) == 5

    def test_rate_limited(self, server: FaultServer) -> None:
        """A 429 is RateLimited with its Retry-After for every caller of the batch."""
        server.configure(retry_after=2)
        server.script(429)
        answers = _gather(_embedder(server), ["a", "b"])
        assert all(isinstance(a, RateLimited) and a.retry_after == 2.0 for a in answers)

    def test_timeout(self, server: FaultServer) -> None:
        """request.timeout bounds the wait for the batch's answer."""
        server.configure(latency=0.3)
        (error,) = _gather(_embedder(server), ["slow"], timeout=0.05)
        assert isinstance(error, ProviderTimeout)

    def test_dropped_connection(self, server: FaultServer) -> None:
        """A dropped connection is a retryable error for the batch."""
        server.script("drop")
        (error,) = _gather(_embedder(server), ["x"])
        assert isinstance(error, ProviderError) and error.retryable


class TestOptions:
    """endpoint, batch_size and batch_wait are validated with the agent's other options."""

    def test_chat_is_the_default(self, server: FaultServer) -> None:
        """Without endpoint the provider is the chat one."""
        agent = AgentSpec(name="c", provider="openai", model="m", options={"base_url": server.url})
        provider = build_provider(agent)
        assert type(provider) is OpenAIProvider
        asyncio.run(provider.aclose())

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            ({"endpoint": "completions"}, "must be one of chat, embeddings"),
            ({"batch_size": 0}, "at least 1"),
            ({"batch_wait": -1}, "at least 0"),
            ({"stream": True}, "does not apply to endpoint: embeddings"),
            ({"response_format": "none"}, "does not apply to endpoint: embeddings"),
            ({"endpoint": "chat", "batch_size": 8}, "does not apply to endpoint: chat"),
            ({"batch_sise": 8}, "did you mean 'batch_size'"),
        ],
    )
    def test_bad_options(self, options: dict[str, Any], message: str) -> None:
        """A wrong option is a config error naming it."""
        with pytest.raises(ProviderConfigError, match=message):
            build_provider(_agent("http://127.0.0.1:9/v1", **options))


class TestPure:
    """Body parsing and the token split."""

    def test_split_tokens(self) -> None:
        """Shares follow the texts' lengths and sum to the total."""
        assert split_tokens(10, ["aaaa", "a"]) == [8, 2]
        assert split_tokens(7, ["ab", "ab", "ab"]) == [3, 2, 2]
        assert split_tokens(0, ["x"]) == [0]
        assert split_tokens(5, []) == []

    def test_parse_orders_by_index(self) -> None:
        """Vectors come back in input order whatever order the server lists them in."""
        payload = {"data": [{"index": 1, "embedding": [2, 3]}, {"index": 0, "embedding": [0.5]}],
                   "usage": {"prompt_tokens": 4}, "model": "e"}
        assert parse_embeddings(payload, 2) == ([[0.5], [2.0, 3.0]], 4, "e")

    @pytest.mark.parametrize(
        "payload",
        [
            {"data": [{"index": 0, "embedding": [1.0]}]},
            {"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1.0]}]},
            {"data": [{"index": 0, "embedding": "AAAA"}, {"index": 1, "embedding": [1.0]}]},
            {"nothing": True},
        ],
    )
    def test_parse_malformed(self, payload: dict[str, Any]) -> None:
        """An answer without exactly one float vector per input is a non-retryable error."""
        with pytest.raises(ProviderError) as info:
            parse_embeddings(payload, 2)
        assert not info.value.retryable
