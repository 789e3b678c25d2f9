"""The fault server (tests/faultserver.py) driven by the real OpenAI provider and by httpx: each
fault becomes the agentfleet error the resilience layer expects, the rate limit holds, and the
counters add up."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agentfleet._types import ProviderRequest, ProviderResponse
from agentfleet.errors import ProviderError, RateLimited
from agentfleet.providers import AnthropicProvider, OpenAIProvider, build_provider
from agentfleet.providers._openai import ChatStream
from agentfleet.providers._sse import decode_sse
from agentfleet.spec import AgentSpec
from tests.faultserver import FaultServer, embedding_for, prompt_key, reply_for, tokens_for


class FakeClock:
    """The server's rate-limit clock, moved by hand."""

    def __init__(self) -> None:
        self.time = 1000.0

    def __call__(self) -> float:
        return self.time


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def server() -> Iterator[FaultServer]:
    """A fault server that behaves (until a test configures or scripts it)."""
    with FaultServer() as running:
        yield running


def _provider(server: FaultServer, **options: Any) -> OpenAIProvider:
    agent = AgentSpec(name="dev", provider="openai", model="gpt-test",
                      options={"base_url": server.url, **options})
    provider = build_provider(agent)
    assert isinstance(provider, OpenAIProvider)
    return provider


def _request(prompt: str = "say hello", **overrides: Any) -> ProviderRequest:
    return ProviderRequest(task_id="t", agent="dev", model="gpt-test", system="Be terse.", prompt=prompt,
                           **overrides)


def _call(server: FaultServer, *requests: ProviderRequest, **options: Any) -> list[ProviderResponse | ProviderError]:
    """Send ``requests`` one after another through one provider; each answer or error in order."""
    provider = _provider(server, **options)

    async def main() -> list[ProviderResponse | ProviderError]:
        out: list[ProviderResponse | ProviderError] = []
        try:
            for request in requests:
                try:
                    out.append(await provider.complete(request))
                except ProviderError as exc:
                    out.append(exc)
        finally:
            await provider.aclose()
        return out

    return asyncio.run(main())


def _one(server: FaultServer, request: ProviderRequest | None = None, **options: Any) -> ProviderResponse:
    (answer,) = _call(server, request or _request(), **options)
    assert isinstance(answer, ProviderResponse), answer
    return answer


def _error(server: FaultServer, request: ProviderRequest | None = None, **options: Any) -> ProviderError:
    (answer,) = _call(server, request or _request(), **options)
    assert isinstance(answer, ProviderError), answer
    return answer


def _post(client: httpx.Client, server: FaultServer, prompt: str = "hi", **body: Any) -> httpx.Response:
    payload = {"model": "m", "messages": [{"role": "user", "content": prompt}], **body}
    return client.post(server.url + "/chat/completions", json=payload)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(trust_env=False, timeout=5) as http:
        yield http


class TestAnswers:
    """The answers are OpenAI-shaped and a function of the prompt."""

    def test_json_completion(self, server: FaultServer) -> None:
        """A plain call gets the deterministic reply and plausible usage."""
        response = _one(server)
        assert response.text == reply_for("say hello") == "answer to: say hello"
        assert response.tokens_in == tokens_for("Be terse.") + tokens_for("say hello")
        assert response.tokens_out == tokens_for(response.text)
        assert response.meta["finish_reason"] == "stop"
        assert "usage_estimated" not in response.meta
        counts = server.counts()
        assert (counts.received, counts.succeeded, counts.by_prompt) == (1, 1, {prompt_key("say hello"): 1})

    def test_streaming(self, server: FaultServer) -> None:
        """A streamed call accumulates the deltas and reads usage from the last chunk."""
        response = _one(server, _request("tell me a story", stream=True))
        assert response.text == "answer to: tell me a story"
        assert response.meta["stream"] is True
        assert response.tokens_out == tokens_for(response.text)
        assert "usage_estimated" not in response.meta

    def test_stream_wire_format(self, server: FaultServer, client: httpx.Client) -> None:
        """The SSE body is chunked: role, one delta a word, finish, usage when asked, [DONE]."""
        response = _post(client, server, "a b", stream=True, stream_options={"include_usage": True})
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["transfer-encoding"] == "chunked"
        events = [e.data for e in decode_sse(response.text.splitlines())]
        assert events[-1] == "[DONE]"
        chunks = [json.loads(e) for e in events[:-1]]
        assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"]) == \
            "answer to: a b"
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
        assert chunks[-1]["usage"]["completion_tokens"] == tokens_for("answer to: a b")

    def test_models_and_embeddings(self, server: FaultServer, client: httpx.Client) -> None:
        """GET /models lists the model; POST /embeddings answers one vector per input, in order."""
        assert client.get(server.url + "/models").json()["data"][0]["id"] == "fault-model"
        body = client.post(server.url + "/embeddings", json={"model": "e", "input": ["x", "yy"]}).json()
        assert [d["embedding"] for d in body["data"]] == [embedding_for("x"), embedding_for("yy")]
        assert [d["index"] for d in body["data"]] == [0, 1]
        assert body["usage"]["prompt_tokens"] == 2
        counts = server.counts()
        assert counts.received == 1  # GETs are not API calls; by_path counts them
        assert counts.by_path == {"/v1/models": 1, "/v1/embeddings": 1}
        assert counts.by_prompt == {prompt_key("x"): 1, prompt_key("yy"): 1}

    def test_keep_alive(self, server: FaultServer, client: httpx.Client) -> None:
        """Requests, errors included, share one keep-alive connection."""
        server.script(500)
        peers = set()
        for _ in range(3):
            response = _post(client, server)
            assert response.extensions["network_stream"].get_extra_info("client_addr") is not None
            peers.add(response.extensions["network_stream"].get_extra_info("client_addr"))
        assert len(peers) == 1

    def test_bad_requests(self, server: FaultServer, client: httpx.Client) -> None:
        """Unknown routes are 404, a body that is not a JSON object is 400; none is an API call."""
        assert client.post(server.url + "/nope", json={}).status_code == 404
        assert client.post(server.url + "/chat/completions", content=b"[1]").status_code == 400
        assert client.post(server.url + "/embeddings", json={"input": [1]}).status_code == 400
        assert server.counts().received == 0


class TestFaults:
    """Each fault is the agentfleet error the retry layer acts on."""

    def test_429_seconds(self, server: FaultServer) -> None:
        """An injected 429 is RateLimited with the Retry-After seconds, headers attached."""
        server.configure(retry_after=1.5)
        server.script(429)
        error = _error(server)
        assert isinstance(error, RateLimited)
        assert error.retry_after == 1.5
        assert error.headers is not None and error.headers["retry-after"] == "1.5"
        assert "date" in error.headers
        assert server.counts().fault(429) == 1

    def test_429_http_date(self, server: FaultServer) -> None:
        """The HTTP-date form of Retry-After is read too (whole seconds, rounded up)."""
        server.configure(retry_after=120, retry_after_form="date")
        server.script(429)
        error = _error(server)
        assert isinstance(error, RateLimited)
        assert error.retry_after is not None and 118 <= error.retry_after <= 121

    def test_429_retry_after_ms(self, server: FaultServer) -> None:
        """The ms form sends retry-after-ms, which wins over whole seconds."""
        server.configure(retry_after=0.25, retry_after_form="ms")
        server.script(429)
        error = _error(server)
        assert isinstance(error, RateLimited)
        assert error.retry_after == 0.25
        assert error.headers is not None and error.headers["retry-after"] == "1"

    @pytest.mark.parametrize("status", [500, 503])
    def test_server_errors_retryable(self, server: FaultServer, status: int) -> None:
        """5xx is a retryable ProviderError (not RateLimited) carrying the answer's headers."""
        server.script(status)
        error = _error(server)
        assert type(error) is ProviderError
        assert error.retryable
        assert f"HTTP {status}" in str(error)
        assert error.headers is not None and "date" in error.headers

    @pytest.mark.parametrize("kind", ["cut", "truncate"])
    def test_stream_cut_short(self, server: FaultServer, kind: str) -> None:
        """A stream closed mid-way, or ended without [DONE] or a finish reason, is a retryable
        error, never a partial answer; the connection pool recovers for the next call."""
        server.script(kind)
        error, ok = _call(server, _request(stream=True), _request(stream=True))
        assert type(error) is ProviderError
        assert error.retryable
        assert f"stream from {server.url}/chat/completions ended before the answer was complete" in str(error)
        assert isinstance(ok, ProviderResponse) and ok.text == "answer to: say hello"
        counts = server.counts()
        assert (counts.fault(kind), counts.succeeded) == (1, 1)

    def test_json_answer_cut(self, server: FaultServer) -> None:
        """A JSON answer cut mid-body is a retryable error."""
        server.script("cut")
        error = _error(server)
        assert error.retryable and type(error) is ProviderError

    def test_dropped_connection(self, server: FaultServer) -> None:
        """A connection closed without an answer is a retryable error; the next call works."""
        server.script("drop")
        error, ok = _call(server, _request(), _request())
        assert type(error) is ProviderError and error.retryable
        assert "failed" in str(error)
        assert isinstance(ok, ProviderResponse)
        assert server.counts().fault("drop") == 1

    def test_slow_tail(self, server: FaultServer) -> None:
        """With the tail, a call takes latency * tail_mult."""
        server.configure(latency=0.01, tail_mult=8.0)
        server.script("slow")
        slow, fast = _call(server, _request(), _request())
        assert isinstance(slow, ProviderResponse) and isinstance(fast, ProviderResponse)
        assert slow.latency >= 0.08
        assert 0.01 <= fast.latency < 0.08
        assert server.counts().fault("slow") == 1

    def test_rates_are_seeded(self, client: httpx.Client) -> None:
        """Random faults follow the seed: the same seed gives the same sequence, at about the rate."""

        def statuses(seed: int) -> list[int]:
            with FaultServer(error_rate=0.3, error_statuses=(500, 503), seed=seed) as server:
                return [_post(client, server, f"p{i}").status_code for i in range(40)]

        first = statuses(7)
        assert first == statuses(7)
        assert first != statuses(8)
        errors = sum(s != 200 for s in first)
        assert 4 <= errors <= 20
        assert {s for s in first if s != 200} == {500, 503}

    def test_cut_rate_only_cuts_streams(self, client: httpx.Client) -> None:
        """cut_stream_rate applies to streamed calls; JSON calls are whole."""
        with FaultServer(cut_stream_rate=1.0) as server:
            assert _post(client, server).status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                _post(client, server, stream=True)
            assert server.counts().faults == {"cut": 1}

    def test_configure_at_run_time(self, server: FaultServer, client: httpx.Client) -> None:
        """configure() changes behaviour between requests and validates what it is given."""
        server.configure(error_rate=1.0, error_statuses=(503,))
        assert _post(client, server).status_code == 503
        server.configure(error_rate=0.0)
        assert _post(client, server).status_code == 200
        with pytest.raises(ValueError, match="error_rate"):
            server.configure(error_rate=2)
        with pytest.raises(TypeError):
            server.configure(no_such_knob=1)
        with pytest.raises(ValueError, match="unknown fault"):
            server.script("explode")


class TestRateLimit:
    """rpm / tpm token buckets and max_concurrency, with OpenAI's headers."""

    def test_rpm_burst_then_429(self, clock: FakeClock) -> None:
        """A bucket holding burst seconds' worth admits that many, then 429s with the wait and headers."""
        with FaultServer(rpm=60, burst=3, clock=clock) as server:
            answers = _call(server, *[_request(f"p{i}") for i in range(4)])
            ok = [a for a in answers if isinstance(a, ProviderResponse)]
            assert [a.meta["headers"]["x-ratelimit-remaining-requests"] for a in ok] == ["2", "1", "0"]
            assert ok[0].meta["headers"]["x-ratelimit-limit-requests"] == "60"
            assert ok[0].meta["headers"]["x-ratelimit-reset-requests"] == "1s"
            limited = answers[3]
            assert isinstance(limited, RateLimited)
            assert limited.retry_after == 1.0
            assert limited.headers is not None
            assert limited.headers["x-ratelimit-remaining-requests"] == "0"
            assert limited.headers["x-ratelimit-reset-requests"] == "3s"
            clock.time += 0.5
            (half,) = _call(server, _request("p4"))
            assert isinstance(half, RateLimited) and half.retry_after == 0.5
            assert half.headers is not None and half.headers["x-ratelimit-reset-requests"] == "2.5s"
            clock.time += 0.5
            (again,) = _call(server, _request("p5"))
            assert isinstance(again, ProviderResponse)
            counts = server.counts()
            assert (counts.received, counts.succeeded, counts.rate_limited) == (6, 4, 2)
            assert counts.limited_by == {"requests": 2}

    def test_default_burst_is_one_second(self, clock: FakeClock, client: httpx.Client) -> None:
        """rpm=600 holds 10 requests; the reset reads in milliseconds below a second."""
        with FaultServer(rpm=600, clock=clock) as server:
            codes = [_post(client, server, f"p{i}").status_code for i in range(11)]
            assert codes == [200] * 10 + [429]
            clock.time += 0.02
            response = _post(client, server)
            assert response.status_code == 429
            assert response.headers["retry-after"] == "0.08"
            assert response.headers["x-ratelimit-reset-requests"] == "980ms"

    def test_injected_errors_take_no_quota(self, clock: FakeClock, client: httpx.Client) -> None:
        """Injected 5xx, 429 and drops come before the limiter and use none of its quota."""
        with FaultServer(rpm=60, burst=2, clock=clock) as server:
            server.script(500, 503, 429, "drop")
            assert [_post(client, server).status_code for _ in range(3)] == [500, 503, 429]
            with pytest.raises(httpx.RemoteProtocolError):
                _post(client, server)
            assert [_post(client, server, f"p{i}").status_code for i in range(3)] == [200, 200, 429]
            counts = server.counts()
            assert counts.faults == {"500": 1, "503": 1, "429": 1, "drop": 1}
            assert (counts.received, counts.succeeded, counts.rate_limited) == (7, 2, 1)

    def test_tpm(self, clock: FakeClock, client: httpx.Client) -> None:
        """The tpm bucket charges prompt + reply tokens and sends x-ratelimit-*-tokens."""
        prompt = "x" * 40  # 10 prompt tokens + a 13-token reply
        cost = tokens_for(prompt) + tokens_for(reply_for(prompt))
        with FaultServer(tpm=cost * 2 * 60, clock=clock) as server:  # two requests' worth a second
            first = _post(client, server, prompt)
            assert first.headers["x-ratelimit-remaining-tokens"] == str(cost)
            assert first.headers["x-ratelimit-limit-tokens"] == str(cost * 120)
            assert _post(client, server, prompt).status_code == 200
            limited = _post(client, server, prompt)
            assert limited.status_code == 429
            assert float(limited.headers["retry-after"]) == pytest.approx(0.5, abs=1e-3)
            assert server.counts().limited_by == {"tokens": 1}

    def test_max_concurrency(self) -> None:
        """Over max_concurrency admitted requests in flight, the rest get 429 at once."""
        with FaultServer(max_concurrency=2, latency=0.3) as server:
            provider = _provider(server)

            async def main() -> list[ProviderResponse | BaseException]:
                try:
                    return await asyncio.gather(*(provider.complete(_request(f"p{i}")) for i in range(4)),
                                                return_exceptions=True)
                finally:
                    await provider.aclose()

            answers = asyncio.run(main())
            assert sum(isinstance(a, ProviderResponse) for a in answers) == 2
            limited = [a for a in answers if isinstance(a, RateLimited)]
            assert len(limited) == 2 and all(a.retry_after == 0.3 for a in limited)
            counts = server.counts()
            assert counts.limited_by == {"concurrency": 2}
            assert counts.in_flight == 0


class TestCounters:
    """Counters add up, show duplicate work and reset."""

    def test_max_in_flight_and_duplicates(self) -> None:
        """Concurrent slow calls show in max_in_flight; the same prompt twice is a duplicate."""
        with FaultServer(latency=0.2) as server:
            provider = _provider(server)

            async def main() -> None:
                try:
                    await asyncio.gather(*(provider.complete(_request(p)) for p in ["a", "b", "c", "a", "a"]))
                finally:
                    await provider.aclose()

            asyncio.run(main())
            counts = server.counts()
            assert counts.max_in_flight == 5
            assert counts.by_prompt[prompt_key("a")] == 3
            assert counts.duplicates == 2
            assert counts.tokens_out == 5 * tokens_for("answer to: a")

    def test_reset_counts(self, server: FaultServer, client: httpx.Client) -> None:
        """reset_counts() zeroes everything."""
        server.script(500)
        _post(client, server)
        _post(client, server)
        server.reset_counts()
        counts = server.counts()
        assert (counts.received, counts.succeeded, counts.faults, counts.by_prompt, counts.max_in_flight) == \
            (0, 0, {}, {}, 0)


class TestStreamCompleteness:
    """The stream parsers' end markers decide whether a stream is whole (pure and MockTransport)."""

    def test_finish_reason_without_done_is_complete(self) -> None:
        """Some servers end at the finish reason without [DONE]: that is a whole answer."""
        stream = ChatStream()
        for data in ['{"choices":[{"index":0,"delta":{"content":"hi"}}]}',
                     '{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}']:
            stream.feed(decode_sse([f"data: {data}", ""])[0])
        assert stream.done

    def test_anthropic_without_message_stop(self) -> None:
        """An Anthropic stream that ends before message_stop is the same retryable error."""
        events = [
            ("message_start", {"message": {"id": "m", "model": "c", "usage": {"input_tokens": 3}}}),
            ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "half"}}),
        ]
        body = "".join(f"event: {name}\ndata: {json.dumps({'type': name, **data})}\n\n" for name, data in events)
        transport = httpx.MockTransport(lambda r: httpx.Response(
            200, content=body.encode(), headers={"content-type": "text/event-stream"}))
        provider = AnthropicProvider(model="c", base_url="http://llm.test", api_key="k", transport=transport)

        async def main() -> None:
            try:
                await provider.complete(_request(stream=True))
            finally:
                await provider.aclose()

        with pytest.raises(ProviderError, match="ended before the answer was complete") as info:
            asyncio.run(main())
        assert info.value.retryable

    def test_success_headers_in_meta(self) -> None:
        """Rate-limit headers of a 200 land in meta["headers"] (lowercase); others do not."""
        transport = httpx.MockTransport(lambda r: httpx.Response(
            200, json={"choices": [{"message": {"content": "yo"}, "finish_reason": "stop"}]},
            headers={"X-RateLimit-Remaining-Requests": "9", "anthropic-ratelimit-tokens-limit": "5",
                     "Retry-After-Ms": "20", "x-request-id": "abc"}))
        provider = OpenAIProvider(model="m", base_url="http://llm.test/v1", api_key="k", transport=transport)

        async def main() -> ProviderResponse:
            try:
                return await provider.complete(_request())
            finally:
                await provider.aclose()

        assert asyncio.run(main()).meta["headers"] == {
            "x-ratelimit-remaining-requests": "9", "anthropic-ratelimit-tokens-limit": "5", "retry-after-ms": "20"}
