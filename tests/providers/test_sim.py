"""The sim provider: seeded latency and tokens, schema output, fault injection, virtual time."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from typing import Any

import jsonschema
import pytest

from agentfleet._types import ProviderRequest, ProviderResponse
from agentfleet.errors import ProviderConfigError, ProviderError, ProviderTimeout, RateLimited
from agentfleet.providers import SIM_PROFILES, SimProvider, build_provider
from agentfleet.spec import AgentSpec
from agentfleet.testing import run_virtual


def _sim(model: str = "sim-default", *, run_seed: int = 0, latency_scale: float = 1.0,
         **options: Any) -> SimProvider:
    provider = build_provider(AgentSpec(name="dev", provider="sim", model=model, options=options),
                              seed=run_seed, latency_scale=latency_scale)
    assert isinstance(provider, SimProvider)
    return provider


def _request(task_id: str = "t1", attempt: int = 1, **overrides: Any) -> ProviderRequest:
    fields: dict[str, Any] = {
        "task_id": task_id,
        "agent": "dev",
        "model": "sim-default",
        "system": "You are a careful architect.",
        "prompt": "Design the caching layer for the scheduler with SQLite persistence.",
        "options": {"attempt": attempt},
    }
    fields.update(overrides)
    return ProviderRequest(**fields)


def _timed(provider: SimProvider, request: ProviderRequest) -> tuple[ProviderResponse, float]:
    """Complete on a virtual-time loop; return the response and the virtual time it took."""
    async def main() -> tuple[ProviderResponse, float]:
        loop = asyncio.get_running_loop()
        start = loop.time()
        response = await provider.complete(request)
        return response, loop.time() - start

    return run_virtual(main())


def _outcome(provider: SimProvider, request: ProviderRequest) -> str:
    try:
        run_virtual(provider.complete(request))
    except RateLimited:
        return "rate_limited"
    except ProviderTimeout:
        return "timeout"
    except ProviderError:
        return "error"
    return "ok"


class TestSimDeterminism:
    def test_same_seed_same_answer(self) -> None:
        """The same seed and task give the same text, tokens and latency."""
        a, _ = _timed(_sim(run_seed=7), _request())
        b, _ = _timed(_sim(run_seed=7), _request())
        assert (a.text, a.tokens_in, a.tokens_out, a.latency) == (b.text, b.tokens_in, b.tokens_out, b.latency)

    def test_seed_task_and_attempt_matter(self) -> None:
        """A different seed, task or attempt draws afresh."""
        base = _sim(run_seed=7).plan(_request()).latency
        assert _sim(run_seed=8).plan(_request()).latency != base
        assert _sim(run_seed=7).plan(_request(task_id="t2")).latency != base
        assert _sim(run_seed=7).plan(_request(attempt=2)).latency != base

    def test_agent_seed_option(self) -> None:
        """options.seed changes the draws independently of the run seed."""
        base = _sim(run_seed=7).plan(_request()).latency
        assert _sim(run_seed=7, seed=1).plan(_request()).latency != base
        assert _sim(run_seed=7, seed="team-a").plan(_request()).latency != base
        assert _sim(run_seed=7, seed=1).plan(_request()).latency == \
            _sim(run_seed=7, seed=1).plan(_request()).latency

    def test_virtual_time_equals_latency(self) -> None:
        """Under run_virtual the elapsed virtual time equals the drawn latency."""
        provider = _sim("sim-large", run_seed=3)
        response, elapsed = _timed(provider, _request())
        assert elapsed == pytest.approx(response.latency, abs=1e-9)
        assert response.latency == provider.plan(_request()).latency
        assert response.latency > 0

    def test_independent_of_concurrency_order(self) -> None:
        """Results per task do not depend on which tasks run alongside or in what order."""
        provider = _sim(run_seed=5, error_rate=0.3)
        ids = [f"t{i}" for i in range(40)]

        async def run(order: list[str]) -> dict[str, str]:
            async def one(task_id: str) -> tuple[str, str]:
                try:
                    return task_id, (await provider.complete(_request(task_id))).text
                except ProviderError as exc:
                    return task_id, f"error {exc}"
            return dict(await asyncio.gather(*(one(t) for t in order)))

        forward = run_virtual(run(ids))
        backward = run_virtual(run(ids[::-1][:25]))
        assert all(forward[t] == backward[t] for t in backward)

    def test_latency_distribution_follows_profile(self) -> None:
        """Drawn latencies centre on the profile's median."""
        provider = _sim("sim-fast")
        draws = sorted(provider.plan(_request(f"t{i}")).latency for i in range(1001))
        assert draws[500] == pytest.approx(SIM_PROFILES["sim-fast"].median, rel=0.1)
        assert draws[0] < draws[500] < draws[-1]

    def test_latency_scale(self) -> None:
        """latency_scale multiplies every latency, and the virtual time with it."""
        full = _sim(run_seed=2).plan(_request()).latency
        response, elapsed = _timed(_sim(run_seed=2, latency_scale=0.01), _request())
        assert response.latency == pytest.approx(full * 0.01)
        assert elapsed == pytest.approx(full * 0.01, abs=1e-9)

    def test_zero_scale_never_sleeps(self) -> None:
        """latency_scale 0 completes without advancing the clock."""
        response, elapsed = _timed(_sim(latency_scale=0.0), _request())
        assert elapsed == 0.0 and response.latency == 0.0


class TestSimOutput:
    def test_text_mentions_task_and_prompt(self) -> None:
        """The text is labelled as simulated, names the task and echoes the prompt's key words."""
        response = _sim().plan(_request()).response
        assert response is not None
        assert response.text.startswith("[sim] Response for t1.")
        assert "caching" in response.text and "scheduler" in response.text
        assert response.provider == "sim"
        assert response.meta["simulated"] is True

    def test_tokens(self) -> None:
        """tokens_out is in the profile's range and about len(text)/4; tokens_in is len/4."""
        request = _request()
        low, high = SIM_PROFILES["sim-default"].tokens_out
        for i in range(50):
            response = _sim(run_seed=i).plan(request).response
            assert response is not None
            assert low <= response.tokens_out <= high
            assert abs(len(response.text) / 4 - response.tokens_out) < 5
        assert response.tokens_in == (len(request.system) + 3) // 4 + (len(request.prompt) + 3) // 4

    def test_max_tokens_caps_output(self) -> None:
        """request.max_tokens caps the generated length."""
        response = _sim().plan(_request(max_tokens=10)).response
        assert response is not None and response.tokens_out == 10

    def test_tokens_out_option(self) -> None:
        """options.tokens_out fixes the length range."""
        response = _sim(tokens_out=[7, 7]).plan(_request()).response
        assert response is not None and response.tokens_out == 7

    @pytest.mark.parametrize("schema", [
        {"type": "object", "required": ["summary", "score"], "properties": {
            "summary": {"type": "string", "minLength": 5, "maxLength": 40},
            "score": {"type": "number", "minimum": 0, "maximum": 1},
            "count": {"type": "integer", "exclusiveMinimum": 10, "exclusiveMaximum": 13},
            "ok": {"type": "boolean"},
            "level": {"enum": ["low", "mid", "high"]},
            "tags": {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            "nothing": {"type": "null"},
        }},
        {"type": "array", "minItems": 5, "maxItems": 6,
         "items": {"type": "object", "required": ["id"], "properties": {"id": {"type": "integer"}}}},
        {"type": "array", "maxItems": 2, "items": {"type": "string", "format": "date-time"}},
        {"type": "object", "additionalProperties": False, "required": ["files"],
         "properties": {"files": {"type": "array", "minItems": 0, "items": {"$ref": "#/$defs/file"}},
                        "lead": {"anyOf": [{"type": "null"}, {"$ref": "#/$defs/file"}]}},
         "$defs": {"file": {"type": "object", "required": ["path", "lines"],
                            "properties": {"path": {"type": "string"},
                                           "lines": {"type": "integer", "minimum": 1, "multipleOf": 5}}}}},
        {"allOf": [{"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                   {"properties": {"b": {"const": 3}}, "required": ["b"]}]},
        {"type": ["string", "null"], "pattern": "^.*$"},
    ])
    def test_schema_output_conforms(self, schema: dict[str, Any]) -> None:
        """With an output schema the text is JSON that validates, and data is the parsed value."""
        provider = _sim()
        for i in range(20):
            response = provider.plan(_request(f"t{i}", output_schema=schema)).response
            assert response is not None
            jsonschema.validate(response.data, schema)
            assert json.loads(response.text) == response.data
            assert response.tokens_out == (len(response.text) + 3) // 4

    def test_array_lengths(self) -> None:
        """Arrays get minItems items when given, else 3."""
        schema = {"type": "object", "properties": {
            "three": {"type": "array", "items": {"type": "string"}},
            "one": {"type": "array", "minItems": 1, "items": {"type": "integer"}},
        }}
        response = _sim().plan(_request(output_schema=schema)).response
        assert response is not None
        assert (len(response.data["three"]), len(response.data["one"])) == (3, 1)


class TestSimFaults:
    def test_rates_over_many_calls(self) -> None:
        """error, rate-limit and timeout rates come out about as configured."""
        provider = _sim("sim-fast", run_seed=11, error_rate=0.1, rate_limit_rate=0.05, timeout_rate=0.05)
        outcomes = [_outcome(provider, _request(f"t{i}", timeout=30)) for i in range(1000)]
        counts = {k: outcomes.count(k) for k in ("ok", "error", "rate_limited", "timeout")}
        assert 70 <= counts["error"] <= 130
        assert 25 <= counts["rate_limited"] <= 75
        assert 25 <= counts["timeout"] <= 75
        stats = provider.statistics()
        assert (stats.calls, stats.succeeded, stats.errors, stats.rate_limited, stats.timeouts) == (
            1000, counts["ok"], counts["error"], counts["rate_limited"], counts["timeout"])
        with pytest.raises(dataclasses.FrozenInstanceError):
            stats.calls = 0  # type: ignore[misc]

    def test_rate_limited_retry_after_scaled(self) -> None:
        """A simulated 429 carries retry_after (default 1 s) times latency_scale, at once."""
        provider = _sim(rate_limit_rate=1.0, retry_after=4, latency_scale=0.5)
        plan = provider.plan(_request())
        assert isinstance(plan.error, RateLimited)
        assert plan.error.retry_after == 2.0 and plan.delay == 0.0
        assert _sim(rate_limit_rate=1.0).plan(_request()).error.retry_after == 1.0  # type: ignore[union-attr]

    def test_timeout_waits_for_request_timeout(self) -> None:
        """A simulated timeout sleeps until request.timeout, then raises ProviderTimeout."""
        provider = _sim(timeout_rate=1.0)

        async def main() -> float:
            loop = asyncio.get_running_loop()
            with pytest.raises(ProviderTimeout):
                await provider.complete(_request(timeout=12.5))
            return loop.time()

        assert run_virtual(main()) == pytest.approx(12.5)

    def test_timeout_without_request_timeout(self) -> None:
        """Without a request timeout the simulated timeout fires after 10x the median."""
        plan = _sim("sim-fast", timeout_rate=1.0, latency_scale=2.0).plan(_request())
        assert isinstance(plan.error, ProviderTimeout)
        assert plan.delay == pytest.approx(10 * 0.3 * 2.0)

    def test_slow_draw_times_out(self) -> None:
        """A drawn latency above request.timeout is a timeout at the timeout."""
        plan = _sim(latency={"fixed": 3.0}).plan(_request(timeout=1.0))
        assert isinstance(plan.error, ProviderTimeout) and plan.delay == 1.0

    def test_a_retry_can_succeed(self) -> None:
        """A failed attempt's retry draws afresh."""
        provider = _sim(error_rate=0.5)
        first_failures = [i for i in range(50) if provider.plan(_request(f"t{i}")).error is not None]
        assert first_failures
        for i in first_failures:
            assert any(provider.plan(_request(f"t{i}", attempt=a)).error is None for a in range(2, 40))

    def test_fail_attempts(self) -> None:
        """fail_attempts fails the first N attempts of every task, retryably."""
        provider = _sim(fail_attempts=2)
        assert provider.plan(_request(attempt=1)).error is not None
        assert provider.plan(_request(attempt=2)).error is not None
        assert provider.plan(_request(attempt=3)).error is None


class TestSimConfig:
    def test_latency_options(self) -> None:
        """latency: fixed seconds, {fixed}, or {median, sigma}."""
        assert _sim(latency=0.25).plan(_request()).latency == 0.25
        assert _sim(latency={"fixed": 2}).plan(_request()).latency == 2.0
        assert _sim(latency={"median": 4, "sigma": 0}).plan(_request()).latency == 4.0
        assert _sim(latency={"median": 4}).profile.sigma == SIM_PROFILES["sim-default"].sigma

    def test_profiles(self) -> None:
        """Built-in profiles are selected by model; a real model name runs on sim-default."""
        assert _sim("sim-large").profile == SIM_PROFILES["sim-large"]
        assert _sim("gpt-4o").profile == SIM_PROFILES["sim-default"]
        assert _sim("sim-large").expected_latency > SIM_PROFILES["sim-large"].median

    @pytest.mark.parametrize("model, options, message", [
        ("sim-huge", {}, "unknown sim model 'sim-huge'"),
        ("sim-fast", {"latency": {"median": -1}}, "'latency.median' must be at least 0"),
        ("sim-fast", {"latency": {"fixed": 1, "sigma": 1}}, "either 'fixed'"),
        ("sim-fast", {"latency": {"mean": 1}}, "unknown keys"),
        ("sim-fast", {"latency": "fast"}, "'latency' must be"),
        ("sim-fast", {"error_rate": 1.5}, "'error_rate' must be at most 1"),
        ("sim-fast", {"error_rate": 0.6, "timeout_rate": 0.6}, "exceeds 1"),
        ("sim-fast", {"tokens_out": [9, 3]}, "'tokens_out'"),
        ("sim-fast", {"seed": 1.5}, "'seed'"),
    ])
    def test_bad_options(self, model: str, options: dict[str, Any], message: str) -> None:
        """Bad sim options are config errors naming the agent and option."""
        with pytest.raises(ProviderConfigError, match="agent 'dev'") as info:
            _sim(model, **options)
        assert message in str(info.value)
