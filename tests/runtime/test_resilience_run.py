"""Provider resilience and the response cache inside real runs, on virtual time (exact, no sleeps).

The providers here are scripted test inputs (latency and failures per call); everything between
the scheduler and them (the gateway: limits, breaker, fallbacks, hedging, retries, cache) is the
product's own code.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from agentfleet._types import ProviderRequest, ProviderResponse, TaskState
from agentfleet.cache import MemoryCache, TieredCache
from agentfleet.errors import ProviderError, RateLimited, SpecError
from agentfleet.runtime import Runner
from agentfleet.runtime._gateway import parse_limits_env
from agentfleet.testing import run_virtual

from .kit import build, rec

Fail = Callable[[int, ProviderRequest], BaseException | None]


class Scripted:
    """A provider whose latency and failures are a function of the call number (1-based)."""

    def __init__(self, name: str = "fake", *, latency: float | Callable[[int], float] = 1.0,
                 fail: Fail | None = None) -> None:
        self.name = name
        self.latency = latency
        self.fail = fail
        self.calls = 0
        self.finished = 0
        self.cancelled = 0
        self.started_at: list[float] = []
        self.inflight = 0
        self.peak = 0

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        self.calls += 1
        n = self.calls
        loop = asyncio.get_running_loop()
        self.started_at.append(loop.time())
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        latency = self.latency(n) if callable(self.latency) else self.latency
        try:
            await asyncio.sleep(latency)
        except asyncio.CancelledError:
            self.cancelled += 1
            raise
        finally:
            self.inflight -= 1
        error = self.fail(n, request) if self.fail is not None else None
        if error is not None:
            raise error
        self.finished += 1
        return ProviderResponse(text=f"answer {n} to {request.prompt}", provider=self.name, model=request.model,
                                tokens_in=10, tokens_out=5, latency=latency)

    async def aclose(self) -> None:
        pass


def fails(*numbers: int, error: Callable[[], BaseException] | None = None) -> Fail:
    make = error or (lambda: ProviderError("HTTP 500 from fake: boom", provider="fake", retryable=True, status=500))
    return lambda n, _request: make() if n in numbers else None


def always(error: Callable[[], BaseException] | None = None) -> Fail:
    make = error or (lambda: ProviderError("HTTP 500 from fake: boom", provider="fake", retryable=True, status=500))
    return lambda _n, _request: make()


def tasks(n: int, agent: str = "a", **fields: Any) -> list[dict[str, Any]]:
    return [{"id": f"t{i}", "agent": agent, "prompt": f"job {i}", **fields} for i in range(n)]


def run(spec: Any, **kw: Any) -> Any:
    kw.setdefault("cache", False)
    return run_virtual(Runner(spec, backoff_base=1.0, backoff_cap=1.0, **kw).run())


# -- rate limits and concurrency ------------------------------------------------------------


def test_rpm_limit_spaces_calls_and_records_the_wait_per_task() -> None:
    fake = Scripted(latency=1.0)
    spec = build(tasks(8), {"a": {"rate_limit": {"rpm": 6}}}, max_parallel=100)
    result = run(spec, providers={"a": fake})
    assert result.ok
    # a burst of a minute's worth (6), then one every 10 s
    assert sorted(fake.started_at) == [0, 0, 0, 0, 0, 0, 10, 20]
    waits = sorted(rec(result, f"t{i}").meta.get("limit_wait", 0.0) for i in range(8))
    assert waits == [0, 0, 0, 0, 0, 0, 10, 20]
    stats = result.resilience[0]
    assert stats.limit_waits == 2 and stats.limit_wait_s == pytest.approx(30)


def test_concurrency_limit_holds_a_slot_until_the_answer_arrives() -> None:
    fake = Scripted(latency=1.0)
    spec = build(tasks(6), {"a": {"rate_limit": {"max_concurrency": 2}}}, max_parallel=100)
    result = run(spec, providers={"a": fake})
    assert result.ok and fake.peak == 2
    assert max(r.ended_at or 0 for r in result.records) == pytest.approx(3.0)


def test_agents_on_one_provider_and_model_share_one_limiter() -> None:
    one, two = Scripted(latency=1.0), Scripted(latency=1.0)
    spec = build(tasks(4, "a") + [{"id": f"u{i}", "agent": "b", "prompt": "x"} for i in range(4)],
                 {"a": {"model": "m1", "rate_limit": {"rpm": 4}}, "b": {"model": "m1"}}, max_parallel=100)
    result = run(spec, providers={"a": one, "b": two})
    assert result.ok
    assert sorted(one.started_at + two.started_at) == [0, 0, 0, 0, 15, 30, 45, 60]
    assert len(result.resilience) == 1


def test_limits_from_settings_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = Scripted(latency=1.0)
    spec = build(tasks(3), {"a": {"model": "m1"}}, max_parallel=100,
                 resilience={"limits": {"fake": {"rpm": 600}}})
    monkeypatch.setenv("AGENTFLEET_LIMITS", "sim/sim-default=rpm:600; sim=max_concurrency:1")
    result = run(spec, providers={"a": fake})
    assert result.ok  # "fake" is not the spec's provider (sim): the settings key is the spec's provider name
    assert fake.peak == 1  # the environment's sim limit applies
    assert sorted(fake.started_at) == [0, 1, 2]


def test_limits_env_parse_errors_name_the_variable() -> None:
    assert parse_limits_env("openai/gpt-4o=rpm:500,tpm:30000;anthropic=max_concurrency:4") == {
        "openai/gpt-4o": {"rpm": 500.0, "tpm": 30000.0}, "anthropic": {"max_concurrency": 4}}
    for bad in ("openai", "openai=rpn:5", "openai=rpm:x", "openai=rpm:-1", "openai=shared:maybe"):
        with pytest.raises(SpecError, match="AGENTFLEET_LIMITS"):
            parse_limits_env(bad)


# -- retries, budget, breaker, fallbacks ---------------------------------------------------------


def test_retry_after_is_honoured() -> None:
    fake = Scripted(latency=1.0, fail=fails(1, error=lambda: RateLimited("slow down", provider="fake",
                                                                          retry_after=7.0)))
    spec = build(tasks(1, retries=2), {"a": {}})
    result = run(spec, providers={"a": fake})
    record = rec(result, "t0")
    assert result.ok and record.attempts == 2
    assert fake.started_at == [0, 8]  # 1 s answer, then the 7 s the server asked for


def test_non_retryable_errors_are_not_retried() -> None:
    fake = Scripted(fail=always(lambda: ProviderError("HTTP 400: bad", provider="fake", retryable=False, status=400)))
    result = run(build(tasks(1, retries=5), {"a": {}}), providers={"a": fake})
    assert not result.ok and fake.calls == 1


def test_retry_budget_stops_a_retry_storm() -> None:
    fake = Scripted(latency=1.0, fail=always())
    spec = build(tasks(10, retries=3), {"a": {}}, max_parallel=100, policy="continue",
                 resilience={"retry_budget": 0.0, "retry_budget_min": 0.2, "breaker": {"failures": 1000}})
    result = run(spec, providers={"a": fake})
    # 10 first attempts; the floor allows 0.2/s x 10 s window = 2 retries, not 30
    assert fake.calls == 12
    errors = [r.error or "" for r in result.records]
    assert all("retry budget is spent" in e for e in errors)  # the two retried ones wanted a third go too


def test_breaker_opens_and_fails_fast_with_a_clear_error() -> None:
    spec = build(tasks(8), {"a": {}}, policy="continue", max_parallel=1,
                 resilience={"breaker": {"failures": 3, "window": 60, "cooldown": 100}})
    fake = Scripted(latency=1.0, fail=always())
    result = run(spec, providers={"a": fake})
    assert fake.calls == 3
    opened = [r for r in result.records if "circuit open" in (r.error or "")]
    assert len(opened) == 5 and "half-opens in" in (opened[0].error or "")
    assert result.resilience[0].breaker_opened == 1


def test_half_open_probe_closes_the_circuit_again() -> None:
    fake = Scripted(latency=1.0, fail=fails(1, 2))
    result = run(build([{"id": "a1", "agent": "a", "prompt": "1", "retries": 3}], {"a": {}},
                       resilience={"breaker": {"failures": 1, "window": 60, "cooldown": 5}}),
                 providers={"a": fake})
    record = rec(result, "a1")
    assert result.ok and fake.calls == 3
    # 1 s fail (opens), wait out the 5 s cooldown, probe fails (reopens), wait again, probe succeeds
    assert fake.started_at == [0, 6, 12]
    assert record.attempts == 3


def test_fallback_when_the_primary_is_exhausted() -> None:
    primary, backup = Scripted("p", fail=always()), Scripted("b")
    spec = build(tasks(1, retries=1), {"a": {"fallbacks": ["other/backup-model"]}})
    result = run(spec, providers={"a": primary, "a~1": backup})
    record = rec(result, "t0")
    assert result.ok and primary.calls == 2 and backup.calls == 1
    assert record.meta["route"] == "b/backup-model" and record.meta["fallbacks"] == 1
    assert record.output.startswith("answer 1")


def test_open_primary_circuit_routes_straight_to_the_fallback() -> None:
    primary, backup = Scripted("p", fail=always()), Scripted("b")
    spec = build(tasks(6), {"a": {"fallbacks": [{"provider": "other", "model": "m2"}]}}, max_parallel=1,
                 resilience={"breaker": {"failures": 2, "window": 60, "cooldown": 1000}})
    result = run(spec, providers={"a": primary, "a~1": backup})
    assert result.ok
    assert primary.calls == 2 and backup.calls == 6  # two failed over, then four sent straight there


def test_routing_by_latency_picks_the_best_candidate_meeting_the_deadline() -> None:
    slow, fast = Scripted("slow", latency=10.0), Scripted("fast", latency=1.0)
    agents = {"a": {"routing": "latency", "expected_latency": 10.0,
                    "fallbacks": [{"provider": "x", "model": "quick", "quality": 0.5, "expected_latency": 1.0}]}}
    result = run(build(tasks(1, deadline=5.0), agents), providers={"a": slow, "a~1": fast})
    assert result.ok and fast.calls == 1 and slow.calls == 0
    slow, fast = Scripted("slow", latency=10.0), Scripted("fast", latency=1.0)
    result = run(build(tasks(1, deadline=20.0), agents), providers={"a": slow, "a~1": fast})
    assert result.ok and slow.calls == 1 and fast.calls == 0  # higher quality wins when it is in time


# -- hedging --------------------------------------------------------------------------------


def test_hedge_after_a_fixed_delay_takes_the_first_answer_and_cancels_the_other() -> None:
    fake = Scripted(latency=lambda n: 100.0 if n == 1 else 1.0)
    result = run(build(tasks(1), {"a": {"hedge": {"after": 2.0}}}), providers={"a": fake})
    record = rec(result, "t0")
    assert result.ok and record.ended_at == pytest.approx(3.0)
    assert record.meta["hedges"] == 1 and record.meta["hedge_won"] is True
    assert fake.calls == 2 and fake.cancelled == 1 and fake.finished == 1
    assert record.attempts == 1 and record.output.startswith("answer 2")
    assert result.resilience[0].hedges == 1 and result.resilience[0].hedge_wins == 1


def test_hedging_waits_for_samples_then_uses_the_percentile() -> None:
    # 19 quick calls teach the p95 (1 s); the 20th is slow and gets hedged after ~1 s
    fake = Scripted(latency=lambda n: 50.0 if n == 20 else 1.0)
    spec = build([{"id": f"t{i}", "agent": "a", "prompt": f"{i}", "depends_on": [f"t{i - 1}"] if i else []}
                  for i in range(20)], {"a": {"hedge": {"min_samples": 19}}})
    result = run(spec, providers={"a": fake})
    assert result.ok and rec(result, "t19").meta["hedges"] == 1
    assert rec(result, "t19").duration == pytest.approx(2.0)
    assert all("hedges" not in rec(result, f"t{i}").meta for i in range(19))


# -- cache and coalescing ---------------------------------------------------------------------


def test_a_second_run_is_served_from_the_cache_without_provider_calls() -> None:
    cache = TieredCache([MemoryCache()])
    spec = build([{"id": "a1", "agent": "a", "prompt": "plan"},
                  {"id": "a2", "agent": "a", "prompt": "do {{ inputs.a1 }}", "inputs": ["a1"]}],
                 {"a": {"temperature": 0}})
    first = Scripted(latency=5.0)
    result = run(spec, providers={"a": first}, cache=cache)
    assert result.ok and first.calls == 2 and result.cache["writes"] == 2
    second = Scripted(latency=5.0)
    again = run(spec, providers={"a": second}, cache=cache)
    assert again.ok and second.calls == 0
    assert again.outputs == result.outputs
    record = rec(again, "a2")
    assert record.meta["cache"] == "memory" and record.tokens_in == 0 and record.meta["saved_tokens"] == 15
    assert again.cache["hits"] == 2 and again.cache["saved_tokens"] == 30
    assert max(r.ended_at or 0 for r in again.records) == 0.0


def test_non_deterministic_requests_are_not_cached_unless_the_task_opts_in() -> None:
    cache = TieredCache([MemoryCache()])
    spec = build(tasks(1), {"a": {"temperature": 0.7}})
    for _ in range(2):
        run(spec, providers={"a": Scripted()}, cache=cache)
    assert cache.statistics().puts == 0
    opted = build(tasks(1, cache="always"), {"a": {"temperature": 0.7}})
    fake = Scripted()
    run(opted, providers={"a": fake}, cache=cache)
    run(opted, providers={"a": fake}, cache=cache)
    assert fake.calls == 1
    off = build(tasks(1, cache=False), {"a": {"temperature": 0}})
    fake = Scripted()
    run(off, providers={"a": fake}, cache=cache)
    run(off, providers={"a": fake}, cache=cache)
    assert fake.calls == 2


def test_identical_concurrent_requests_make_one_provider_call() -> None:
    fake = Scripted(latency=2.0)
    spec = build([{"id": "t", "agent": "a", "prompt": "same question", "map": {"over": list(range(100))}}],
                 {"a": {"temperature": 0}}, max_parallel=1000)
    result = run(spec, providers={"a": fake}, cache=TieredCache([MemoryCache()]))
    assert result.ok and fake.calls == 1
    assert len({str(r.output) for r in result.records}) == 1
    assert result.cache["coalesced"] == 99
    assert sum(r.tokens_in for r in result.records) == 10  # paid once


def test_a_rejected_answer_is_not_cached() -> None:
    cache = TieredCache([MemoryCache()])
    fake = Scripted()
    schema = {"type": "object", "required": ["x"]}
    spec = build(tasks(1, output_schema=schema, validation_retries=0), {"a": {"temperature": 0}})
    run(spec, providers={"a": fake}, cache=cache)
    assert cache.statistics().puts == 0


def test_invalidating_an_upstream_tag_drops_downstream_answers_too() -> None:
    cache = TieredCache([MemoryCache()])
    spec = build([{"id": "read", "agent": "a", "prompt": "read", "cache": {"tags": ["doc:spec.md"]}},
                  {"id": "use", "agent": "a", "prompt": "use {{ inputs.read }}", "inputs": ["read"]},
                  {"id": "other", "agent": "a", "prompt": "unrelated"}],
                 {"a": {"temperature": 0}})
    run(spec, providers={"a": Scripted()}, cache=cache)
    removed = run_virtual(cache.invalidate("doc:spec.md"))
    assert len(removed) == 2  # read, and use (derived from it); not other
    fake = Scripted()
    run(spec, providers={"a": fake}, cache=cache)
    assert fake.calls == 2


def test_cache_settings_are_checked_before_the_run() -> None:
    with pytest.raises(SpecError, match="ttl"):
        Runner(build(tasks(1, cache={"ttl": "soon"}), {"a": {}}))


def test_retries_record_exactly_one_result() -> None:
    fake = Scripted(latency=1.0, fail=fails(1, 2))
    spec = build(tasks(1, retries=3), {"a": {"hedge": {"after": 0.5}}})
    result = run(spec, providers={"a": fake})
    record = rec(result, "t0")
    assert result.ok and record.state == TaskState.DONE
    assert [r.task_id for r in result.records] == ["t0"]


# -- the resource guard -----------------------------------------------------------------------------


class Load:
    """Machine load as the guard's sampler sees it: busy for the first ``until`` seconds of the loop."""

    def __init__(self, until: float) -> None:
        self.until = until

    def sample(self) -> tuple[float, float]:
        busy = asyncio.get_running_loop().time() < self.until
        return (0.99 if busy else 0.1), 0.5


def test_the_guard_lowers_cpu_bound_parallelism_under_load_and_restores_it() -> None:
    fake = Scripted(latency=1.0)
    spec = build(tasks(12), {"a": {"provider": "python", "function": "json:dumps"}}, max_parallel=4,
                 resilience={"guard": {"interval": 0.5, "cpu": 0.9, "cpu_low": 0.5}})
    result = run(spec, providers={"a": fake}, resource_sampler=Load(until=3.0))
    assert result.ok
    # 4 at t=0 (no sample yet); samples at 0.5 and 1.0 halve the limit to 2, then 1, so one at a
    # time at t=1 and 2; from t=3 the load is gone and it recovers (2 at t=3, 4 from t=4)
    assert sorted(fake.started_at) == [0, 0, 0, 0, 1, 2, 3, 3, 3.5, 4, 4, 4]
    assert result.guard == {"changes": 5, "lowest_factor": 0.25, "held": 2}


def test_the_guard_is_off_when_disabled() -> None:
    fake = Scripted(latency=1.0)
    spec = build(tasks(8), {"a": {"provider": "python", "function": "json:dumps"}}, max_parallel=4,
                 resilience={"guard": False})
    result = run(spec, providers={"a": fake}, resource_sampler=Load(until=100.0))
    assert result.ok and result.guard == {}
    assert max(r.ended_at or 0 for r in result.records) == 2.0


def test_a_5xx_gives_its_request_back_to_the_limiter() -> None:
    # rpm 2 (burst 2): the failed first call does not use up one of the two requests
    fake = Scripted(latency=1.0, fail=fails(1))
    spec = build(tasks(2, retries=1), {"a": {"rate_limit": {"rpm": 2}}}, max_parallel=10)
    result = run(spec, providers={"a": fake})
    assert result.ok
    assert sorted(fake.started_at)[:2] == [0, 0] and sorted(fake.started_at)[2] < 30


def test_an_unreachable_l2_cache_is_a_spec_error_naming_the_setting(tmp_path: Any) -> None:
    from agentfleet.store import RunStore

    spec = build(tasks(1), {"a": {"temperature": 0}}, cache={"redis": "redis://127.0.0.1:1/0"})
    store = RunStore(str(tmp_path / "runs.db"))
    try:
        with pytest.raises(SpecError, match=r"settings\.cache\.redis") as caught:
            run_virtual(Runner(spec, store=store).run())
        assert caught.value.exit_code == 2 and "127.0.0.1:1" in str(caught.value)
    finally:
        store.close()


def test_check_builds_fallback_providers_and_names_a_bad_one() -> None:
    from agentfleet.errors import ProviderConfigError

    spec = build(tasks(1), {"a": {"fallbacks": [{"provider": "nosuch", "model": "x"}]}})
    with pytest.raises(ProviderConfigError, match="agent 'a', fallback 1: unknown provider 'nosuch'"):
        asyncio.run(Runner(spec).preflight())


def test_an_answer_that_is_not_json_is_used_but_not_cached() -> None:
    class Opaque:
        pass

    class ObjectProvider(Scripted):
        async def complete(self, request: ProviderRequest) -> ProviderResponse:
            response = await super().complete(request)
            response.data = Opaque()
            return response

    cache = TieredCache([MemoryCache()])
    result = run(build(tasks(1), {"a": {"temperature": 0}}), providers={"a": ObjectProvider()}, cache=cache)
    assert result.ok and cache.statistics().puts == 0


def test_a_cancelled_hedge_is_not_counted_as_a_failure() -> None:
    fake = Scripted(latency=lambda n: 100.0 if n == 1 else 1.0)
    result = run(build(tasks(1), {"a": {"hedge": {"after": 2.0}}}), providers={"a": fake})
    stats = result.resilience[0]
    assert stats.calls == 2 and stats.succeeded == 1 and stats.failed == 0


def test_an_unknown_tier_for_the_guard_is_a_spec_error_up_front() -> None:
    with pytest.raises(SpecError, match="unknown tier 'nope'"):
        Runner(build(tasks(1), {"a": {}}, resilience={"guard": {"hold_below": "nope"}}))


def test_backoff_follows_the_providers_health_not_the_tasks_luck() -> None:
    unlucky: list[float] = []

    def fail(n: int, request: ProviderRequest) -> BaseException | None:
        if request.prompt == "unlucky":
            unlucky.append(asyncio.get_running_loop().time())
            if len(unlucky) <= 5:
                return ProviderError("HTTP 500 from fake: boom", provider="fake", retryable=True, status=500)
        return None

    def workload(with_others: bool) -> list[float]:
        unlucky.clear()
        chain = [{"id": f"u{i}", "agent": "a", "prompt": f"steady {i}", "depends_on": [f"u{i - 1}"] if i else []}
                 for i in range(40)] if with_others else []
        spec = build([{"id": "t", "agent": "a", "prompt": "unlucky", "retries": 6}, *chain], {"a": {}},
                     max_parallel=4, resilience={"breaker": {"failures": 100}})
        result = run_virtual(Runner(spec, providers={"a": Scripted(latency=0.5, fail=fail)}, cache=False,
                                    backoff_base=1.0, backoff_cap=100.0, seed=3).run())
        assert result.ok
        return [b - a for a, b in itertools.pairwise(unlucky)]

    # others keep succeeding: every retry waits at most the base (1 s) after its 0.5 s call
    assert max(workload(True)) <= 1.5
    # alone, five failures in a row are the provider's: the waits grow (1, 2, 4, 8, 16 s caps)
    assert max(workload(False)) > 1.5


def test_a_limiter_wait_lost_to_float_rounding_does_not_hang_the_run() -> None:
    # rpm 3 refills 0.05 per second: at t=40 the computed wait was 2.2e-15 s and 40.0 + 2.2e-15 == 40.0
    spec = build([{"id": "plan", "agent": "lead", "prompt": "plan"},
                  *({"id": f"d{i}", "agent": "dev", "prompt": f"do {i}", "depends_on": ["plan"]} for i in range(6))],
                 {"lead": {"provider": "sim", "options": {"latency": {"fixed": 1.0}}},
                  "dev": {"provider": "sim", "options": {"latency": {"fixed": 2.0}}, "rate_limit": {"rpm": 3}}},
                 max_parallel=10)
    result = run_virtual(Runner(spec, cache=False).run())
    assert result.ok
    starts = sorted(r.started_at or 0 for r in result.records if r.agent == "dev")
    assert starts == [1.0] * 6  # admitted together; the limiter spaces the calls
    # lead and dev are one provider+model (sim/sim-default), so one limiter: lead's call took one of
    # the burst of 3, the refill (one per 20 s) had added 0.05 by t=1
    assert sorted(r.meta.get("limit_wait", 0.0) for r in result.records if r.agent == "dev") == pytest.approx(
        [0, 0, 19, 39, 59, 79])
