"""Whole runs against the fault server: real HTTP, the real OpenAI provider, the real gateway.

Each test checks behaviour (what the server received, what each task recorded), never timings.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentfleet.runtime import Runner
from agentfleet.spec import Workflow

from ..faultserver import FaultServer
from ..redis_kit import redis_problem


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAULT_KEY", "test")


def spec(url: str, n: int, *, agent: dict[str, Any] | None = None, fallback_url: str | None = None,
         **settings: Any) -> Any:
    wf = Workflow("faults", **settings)
    fields: dict[str, Any] = {"temperature": 0.7, **(agent or {})}
    if fallback_url is not None:
        fields["fallbacks"] = [{"provider": "openai", "model": "backup",
                                "options": {"base_url": fallback_url, "api_key_env": "FAULT_KEY"}}]
    options = {"base_url": url, "api_key_env": "FAULT_KEY", **fields.pop("options", {})}
    fields.setdefault("model", "fault-model")
    wf.agent("a", provider="openai", options=options, **fields)
    for i in range(n):
        wf.task(f"t{i}", agent="a", prompt=f"job number {i}", retries=10)
    return wf.build()


def run(workflow: Any, **kw: Any) -> Any:
    kw.setdefault("cache", False)
    return asyncio.run(Runner(workflow, backoff_base=0.01, backoff_cap=0.05, **kw).run())


def test_5xx_and_a_rate_limit_are_absorbed_with_one_result_per_task() -> None:
    with FaultServer(rpm=6000, error_rate=0.3, error_statuses=(500, 502, 503), latency=0.002, seed=1) as server:
        result = run(spec(server.url, 60, agent={"rate_limit": {"rpm": 6000, "burst": 20}}, max_parallel=16))
        counts = server.counts()
    assert result.ok
    assert counts.succeeded == 60 and counts.duplicates == 0
    assert all(n == 1 for n in counts.by_prompt.values())
    assert sum(r.attempts for r in result.records) == counts.received
    assert counts.fault("500") + counts.fault("502") + counts.fault("503") > 0


def test_429s_with_retry_after_in_every_form_are_honoured() -> None:
    for form in ("seconds", "date", "ms"):
        with FaultServer(rate_429=0.3, retry_after=0.01, retry_after_form=form, latency=0.001, seed=2) as server:
            result = run(spec(server.url, 20, max_parallel=8))
            counts = server.counts()
        assert result.ok, form
        assert counts.fault("429") > 0 and counts.succeeded == 20 and counts.duplicates == 0


def test_cut_streams_and_dropped_connections_are_retried() -> None:
    with FaultServer(cut_stream_rate=0.3, drop_rate=0.15, latency=0.001, seed=3) as server:
        result = run(spec(server.url, 30, agent={"options": {"stream": True}}, max_parallel=8))
        counts = server.counts()
    assert result.ok
    assert counts.fault("cut") > 0 and counts.fault("drop") > 0
    assert counts.succeeded == 30 and counts.duplicates == 0
    assert all(str(r.output).startswith("answer to: job number") for r in result.records)


def test_a_dead_provider_opens_its_circuit_and_the_fallback_answers() -> None:
    with FaultServer(error_rate=1.0, error_statuses=(500,), seed=4) as dead, \
            FaultServer(latency=0.001, seed=5) as backup:
        result = run(spec(dead.url, 30, fallback_url=backup.url, max_parallel=1,
                          resilience={"breaker": {"failures": 3, "window": 60, "cooldown": 600}}),
                     )
        dead_calls = dead.counts().received
        backup_calls = backup.counts().received
    assert result.ok and backup_calls == 30
    # each of the first tasks burns its 10 retries before failing over... until the circuit opens
    # after 3 failures: then every task goes straight to the fallback
    assert dead_calls == 3
    assert all(r.meta.get("route") == "openai/backup" for r in result.records)


def test_identical_deterministic_requests_make_one_call_and_a_second_run_none() -> None:
    from agentfleet.cache import MemoryCache, TieredCache

    cache = TieredCache([MemoryCache()])
    with FaultServer(latency=0.05, seed=6) as server:
        wf = Workflow("same", max_parallel=100)
        wf.agent("a", provider="openai", model="m", temperature=0,
                 options={"base_url": server.url, "api_key_env": "FAULT_KEY"})
        wf.task("ask", agent="a", prompt="the one question", map={"over": list(range(50))})
        first = run(wf.build(), cache=cache)
        again = run(wf.build(), cache=cache)
        received = server.counts().received
    assert first.ok and again.ok and received == 1
    assert first.cache["coalesced"] == 49 and again.cache["hits"] == 50


@pytest.mark.skipif(redis_problem() is not None, reason=f"needs Redis: {redis_problem()}")
def test_two_runners_share_one_rate_limit_through_redis() -> None:
    # The server allows 600/min with a burst of 5. Each runner alone is configured with the full
    # limit; only if they share it do they stay under the server's limit together.
    import secrets

    with FaultServer(rpm=600, burst=0.5, latency=0.001, seed=7) as server:
        name = f"shared-{secrets.token_hex(4)}"

        def make() -> Any:
            return spec(server.url, 12, agent={"model": name, "rate_limit": {"rpm": 600, "burst": 5, "shared": True}},
                        max_parallel=12, redis="redis://127.0.0.1:6379/0")

        async def both() -> list[Any]:
            return list(await asyncio.gather(
                Runner(make(), cache=False).run(), Runner(make(), cache=False).run()))

        results = asyncio.run(both())
        counts = server.counts()
    assert all(r.ok for r in results)
    assert counts.succeeded == 24 and counts.rate_limited == 0


def test_adaptive_concurrency_settles_at_the_servers_real_limit_without_a_retry_storm() -> None:
    # The server takes 4 requests at a time and answers 429 above that; the client is told nothing
    # and could send 40 at once. Same run with the adaptive limit switched off, for comparison.
    counts = {}
    for adaptive in (True, False):
        with FaultServer(max_concurrency=4, latency=0.05, seed=8) as server:
            result = run(spec(server.url, 120, max_parallel=40, policy="continue", agent={
                "pool": {"size": 40, "max": 40}, "rate_limit": {"adaptive": adaptive}}))
            counts[adaptive] = server.counts()
        assert counts[adaptive].duplicates == 0
        if adaptive:
            assert result.ok and counts[adaptive].succeeded == 120
            limit = result.resilience[0].adaptive_limit
            assert limit is not None and limit <= 8
    # AIMD halves once per congestion episode: far fewer 429s than a fixed concurrency of 40 (which
    # runs into the retry budget: its retry storm is what the budget is there to stop)
    assert counts[True].rate_limited * 2 < counts[False].rate_limited
