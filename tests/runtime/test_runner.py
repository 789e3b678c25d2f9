"""The runner end to end: fan-out and inputs, retries, timeouts, schemas, policies, the store,
hooks, interruption and resume, scale, all on virtual time with the sim and python providers."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentfleet._types import ProviderRequest, TaskState
from agentfleet.errors import ProviderConfigError, ProviderError, ProviderTimeout, RateLimited
from agentfleet.providers import SimProvider
from agentfleet.runtime import Runner, RunResult
from agentfleet.spec import AgentSpec, WorkflowSpec
from agentfleet.store import RunStore
from agentfleet.testing import run_virtual
from tests.fixtures import runner_hooks
from tests.runtime.kit import build, python, rec, run, sim

LIST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"items": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 3}},
    "required": ["items"],
}


# -- helpers ---------------------------------------------------------------------------------


async def echo(request: ProviderRequest) -> str:
    """An agent whose output is exactly the prompt it was given."""
    return request.prompt


def sleeper(durations: dict[str, float], calls: list[str] | None = None,
            fail: Callable[[str], bool] = lambda _t: False) -> Callable[[ProviderRequest], Any]:
    """An async agent that records its call, sleeps ``durations[task]`` and answers ``out-TASK``."""

    async def agent(request: ProviderRequest) -> str:
        if calls is not None:
            calls.append(request.task_id)
        await asyncio.sleep(durations.get(request.task_id, 1.0))
        if fail(request.task_id):
            raise RuntimeError(f"{request.task_id} broke")
        return f"out-{request.task_id}"

    return agent


def sim_seed(options: dict[str, Any], task_id: str, outcomes: list[type[Exception] | None],
             timeout: float | None = None) -> int:
    """An ``options.seed`` under which the sim's attempts 1..n end as ``outcomes`` (error type or success)."""
    for seed in range(2000):
        provider = SimProvider.from_agent(AgentSpec(name="s", options={**options, "seed": seed}), seed=0)
        got = []
        for attempt in range(1, len(outcomes) + 1):
            plan = provider.plan(ProviderRequest(task_id=task_id, agent="s", model="sim-default", system="",
                                                 prompt="go", timeout=timeout, options={"attempt": attempt}))
            got.append(type(plan.error) if plan.error is not None else None)
        if got == outcomes:
            return seed
    raise AssertionError(f"no sim seed gives {outcomes}")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    db = RunStore(tmp_path / "runs.db")
    try:
        yield db
    finally:
        db.close()


@pytest.fixture(autouse=True)
def _clear_hook_calls() -> None:
    runner_hooks.CALLS.clear()


def fanout_spec(check_function: Callable[..., Any] = echo) -> WorkflowSpec:
    """split (sim, JSON list) -> work[i] (sim) -> check[i] (zip, echo) -> join (fan-in, echo)."""
    return build(
        [
            {"id": "split", "agent": "s", "prompt": "Split the job", "output_schema": LIST_SCHEMA},
            {"id": "work", "agent": "s", "map": "split.items", "prompt": "Do {{ item }}"},
            {"id": "check", "agent": "e", "map": "work", "inputs": ["work"],
             "prompt": "{{ {'item': item, 'index': index, 'inputs': inputs} | tojson }}"},
            {"id": "join", "agent": "j", "inputs": ["check"], "depends_on": ["split", "work"],
             "prompt": "{{ inputs | tojson }}"},
        ],
        {"s": sim(2.0), "e": python(check_function), "j": python(echo)},
        max_parallel=16,
    )


# -- fan-out and inputs --------------------------------------------------------------------


class TestDynamicFanOut:
    def test_map_over_schema_list_creates_one_instance_per_item(self) -> None:
        """A ``map: split.items`` step gets one instance per item of the sim's schema list, each with its item."""
        result = run(fanout_spec())
        assert result.ok
        items = result.output("split")["items"]
        assert isinstance(items, list) and len(items) == 3
        work_ids = sorted(r.task_id for r in result.records if r.task_id.startswith("work["))
        assert work_ids == ["work[0]", "work[1]", "work[2]"]
        for i, item in enumerate(items):
            seen = json.loads(result.output(f"check[{i}]"))
            assert seen["item"] == item
            assert seen["index"] == i

    def test_zip_step_gets_its_twins_output(self) -> None:
        """A per-item step mapping over another mapped step receives exactly its twin's output via inputs."""
        result = run(fanout_spec())
        for i in range(3):
            seen = json.loads(result.output(f"check[{i}]"))
            assert seen["inputs"] == {"work": result.output(f"work[{i}]")}
            assert f"work[{i}]" in seen["inputs"]["work"]

    def test_fan_in_gets_outputs_in_item_order_not_finish_order(self) -> None:
        """A fan-in receives the list of mapped outputs in item order even when they finish in reverse."""

        async def reverse_echo(request: ProviderRequest) -> str:
            await asyncio.sleep(10 - json.loads(request.prompt)["index"])
            return request.prompt

        result = run(fanout_spec(reverse_echo))
        ends = [rec(result, f"check[{i}]").ended_at for i in range(3)]
        assert ends == [14.0, 13.0, 12.0]  # work ends at 4, check[i] sleeps 10 - i
        joined = json.loads(result.output("join"))
        assert joined == {"check": [result.output(f"check[{i}]") for i in range(3)]}

    def test_failed_item_skips_only_its_twin(self) -> None:
        """Under ``continue`` a failed mapped instance skips its own per-item twin, not the other items."""
        spec = build(
            [
                {"id": "work", "agent": "p", "map": ["a", "b", "c"], "prompt": "{{ item }}"},
                {"id": "check", "agent": "e", "map": "work", "inputs": ["work"], "prompt": "{{ inputs.work }}"},
                {"id": "join", "agent": "e", "inputs": ["check"], "prompt": "{{ inputs | tojson }}"},
            ],
            {"p": python(sleeper({}, fail=lambda t: t == "work[1]")), "e": python(echo)},
            policy="continue",
        )
        result = run(spec)
        states = {r.task_id: r.state for r in result.records}
        assert states["work[1]"] == TaskState.FAILED
        assert states["check[1]"] == TaskState.SKIPPED
        assert result.output("check[0]") == "out-work[0]"
        assert result.output("check[2]") == "out-work[2]"
        assert states["join"] == TaskState.SKIPPED

    def test_task_sees_only_declared_inputs(self) -> None:
        """Upstream outputs a task depends on but does not declare in ``inputs`` are absent from its prompt."""
        result = run(fanout_spec())
        prompt = result.output("join")
        assert set(json.loads(prompt)) == {"check"}
        assert json.dumps(result.output("split")) not in prompt

    def test_undeclared_upstream_text_never_rendered(self) -> None:
        """A task depending on two upstreams but declaring one sees only that one's output text."""
        spec = build(
            [
                {"id": "secret", "agent": "p", "prompt": "s"},
                {"id": "public", "agent": "p", "prompt": "p"},
                {"id": "reader", "agent": "e", "depends_on": ["secret"], "inputs": ["public"],
                 "prompt": "{{ inputs | tojson }}"},
            ],
            {"p": python(sleeper({})), "e": python(echo)},
        )
        result = run(spec)
        assert json.loads(result.output("reader")) == {"public": "out-public"}
        assert "out-secret" not in result.output("reader")
        assert rec(result, "reader").started_at == 1.0  # it still waited for ``secret``

    def test_makespan_equals_critical_path(self) -> None:
        """With fixed sim latencies and free slots the run ends exactly at the critical path's length."""
        spec = build(
            [
                {"id": "a", "agent": "fast", "prompt": "a"},
                {"id": "b", "agent": "slow", "prompt": "b"},
                {"id": "c", "agent": "fast", "prompt": "c", "depends_on": ["a"]},
                {"id": "d", "agent": "mid", "prompt": "d", "depends_on": ["b", "c"]},
            ],
            {"fast": sim(1.0), "slow": sim(5.0), "mid": sim(2.5)},
        )
        result = run(spec)
        assert result.ok
        assert max(r.ended_at or 0.0 for r in result.records) == 7.5  # b (5) + d (2.5)
        assert rec(result, "c").ended_at == 2.0
        assert rec(result, "d").started_at == 5.0


# -- retries ---------------------------------------------------------------------------------


class TestRetries:
    def test_fail_attempts_recovered_within_retries(self) -> None:
        """sim fail_attempts=2 with retries=2 succeeds on attempt 3, each failed attempt costing its latency."""
        spec = build([{"id": "x", "agent": "s", "prompt": "go", "retries": 2}], {"s": sim(1.0, fail_attempts=2)})
        result = run(spec, backoff_base=0.0)
        r = rec(result, "x")
        assert result.ok
        assert r.state == TaskState.DONE
        assert r.attempts == 3
        assert r.ended_at == 3.0

    def test_too_few_retries_fail(self) -> None:
        """sim fail_attempts=2 with retries=1 fails after attempt 2 with the sim's error."""
        spec = build([{"id": "x", "agent": "s", "prompt": "go", "retries": 1}], {"s": sim(1.0, fail_attempts=2)})
        result = run(spec, backoff_base=0.0)
        r = rec(result, "x")
        assert result.status == "failed"
        assert r.state == TaskState.FAILED
        assert r.attempts == 2
        assert r.error is not None and "attempt 2" in r.error

    def test_agent_level_retries_apply(self) -> None:
        """``retries`` on the agent is used when the task sets none."""
        spec = build([{"id": "x", "agent": "s", "prompt": "go"}], {"s": sim(1.0, fail_attempts=1, retries=1)})
        assert rec(run(spec), "x").attempts == 2

    def test_rate_limit_retry_after_is_honoured(self) -> None:
        """A RateLimited with retry_after=7 delays the retry by exactly 7 s even though backoff would be shorter."""
        calls: list[float] = []

        async def limited(request: ProviderRequest) -> str:
            calls.append(asyncio.get_running_loop().time())
            if len(calls) == 1:
                raise RateLimited("slow down", provider="python", retry_after=7.0)
            return "ok"

        spec = build([{"id": "x", "agent": "p", "prompt": "go", "retries": 1}], {"p": python(limited)})
        result = run(spec)
        r = rec(result, "x")
        assert result.ok and r.attempts == 2
        assert calls == [0.0, 7.0]
        assert r.ended_at is not None and r.ended_at >= 7.0

    def test_rate_limit_retry_after_beyond_backoff_cap(self) -> None:
        """retry_after longer than the backoff cap still wins: the server's word is the floor."""
        calls: list[float] = []

        async def limited(request: ProviderRequest) -> str:
            calls.append(asyncio.get_running_loop().time())
            if len(calls) == 1:
                raise RateLimited("slow down", provider="python", retry_after=45.0)
            return "ok"

        spec = build([{"id": "x", "agent": "p", "prompt": "go", "retries": 1}], {"p": python(limited)})
        run(spec, backoff_cap=1.0)
        assert calls == [0.0, 45.0]

    def test_sim_rate_limit_retry_after(self) -> None:
        """A sim rate limit (answered at once) is retried after its retry_after, then the call takes its latency."""
        options = {"latency": {"fixed": 1.0}, "rate_limit_rate": 0.5, "retry_after": 3.0}
        seed = sim_seed(options, "x", [RateLimited, None])
        spec = build([{"id": "x", "agent": "s", "prompt": "go", "retries": 1}],
                     {"s": {"provider": "sim", **options, "seed": seed}})
        result = run(spec)
        r = rec(result, "x")
        assert result.ok and r.attempts == 2
        assert r.ended_at == 4.0  # 0 (limited) + 3 (retry_after) + 1 (latency)

    def test_sim_rate_limit_without_retries_fails(self) -> None:
        """With no retries a rate-limited task fails on its first attempt."""
        options = {"latency": {"fixed": 1.0}, "rate_limit_rate": 0.5, "retry_after": 3.0}
        seed = sim_seed(options, "x", [RateLimited])
        spec = build([{"id": "x", "agent": "s", "prompt": "go"}], {"s": {"provider": "sim", **options, "seed": seed}})
        r = rec(run(spec), "x")
        assert r.state == TaskState.FAILED and r.attempts == 1
        assert r.error is not None and "rate limit" in r.error

    @pytest.mark.parametrize("error", [
        ProviderError("bad request", provider="python", retryable=False),
        ProviderConfigError("no api key", provider="python"),
    ], ids=["retryable-false", "config-error"])
    def test_non_retryable_error_is_not_retried(self, error: ProviderError) -> None:
        """A non-retryable ProviderError fails the task on attempt 1 however many retries remain."""
        calls: list[str] = []

        async def refuse(request: ProviderRequest) -> str:
            calls.append(request.task_id)
            raise error

        spec = build([{"id": "x", "agent": "p", "prompt": "go", "retries": 3}], {"p": python(refuse)})
        r = rec(run(spec), "x")
        assert calls == ["x"]
        assert r.state == TaskState.FAILED and r.attempts == 1
        assert r.error == str(error)

    def test_plain_exception_from_callable_is_retryable(self) -> None:
        """The python provider maps an ordinary exception to a retryable ProviderError, so it is retried."""
        calls: list[str] = []

        async def boom(request: ProviderRequest) -> str:
            calls.append(request.task_id)
            if len(calls) < 3:
                raise ValueError("flaky")
            return "fine"

        spec = build([{"id": "x", "agent": "p", "prompt": "go", "retries": 2}], {"p": python(boom)})
        result = run(spec)
        assert result.output("x") == "fine"
        assert rec(result, "x").attempts == 3

    def test_plain_exception_message_names_type(self) -> None:
        """When retries run out, the error names the callable's exception type and message."""

        async def boom(request: ProviderRequest) -> str:
            raise ValueError("flaky")

        spec = build([{"id": "x", "agent": "p", "prompt": "go", "retries": 1}], {"p": python(boom)})
        r = rec(run(spec), "x")
        assert r.attempts == 2
        assert r.error is not None and "ValueError: flaky" in r.error

    def test_backoff_spaces_attempts(self) -> None:
        """Attempts after a retryable failure are spaced by the jittered backoff (0 < delay <= base * 2^(n-1))."""
        calls: list[float] = []

        async def flaky(request: ProviderRequest) -> str:
            calls.append(asyncio.get_running_loop().time())
            if len(calls) < 3:
                raise ProviderError("try again", provider="python")
            return "ok"

        spec = build([{"id": "x", "agent": "p", "prompt": "go", "retries": 2}], {"p": python(flaky)})
        run(spec, backoff_base=1.0, backoff_cap=30.0)
        assert 0.0 <= calls[1] - calls[0] <= 1.0
        assert 0.0 <= calls[2] - calls[1] <= 2.0


# -- timeouts --------------------------------------------------------------------------------


class TestTimeout:
    def test_slow_sim_task_times_out(self) -> None:
        """A sim task slower than its ``timeout`` fails with a timeout error at exactly the timeout."""
        spec = build([{"id": "x", "agent": "s", "prompt": "go", "timeout": 2.0}], {"s": sim(5.0)})
        result = run(spec)
        r = rec(result, "x")
        assert r.state == TaskState.FAILED
        assert r.ended_at == 2.0
        assert r.attempts == 1
        assert r.error is not None and re.search(r"timeout|no answer within", r.error)

    def test_timeout_is_retried(self) -> None:
        """A timed-out attempt is retried: with retries=2 a always-slow task makes 3 attempts of 2 s each."""
        spec = build([{"id": "x", "agent": "s", "prompt": "go", "timeout": 2.0, "retries": 2}], {"s": sim(5.0)})
        r = rec(run(spec, backoff_base=0.0), "x")
        assert r.state == TaskState.FAILED
        assert r.attempts == 3
        assert r.ended_at == 6.0

    def test_runner_timeout_cancels_slow_call_and_retry_succeeds(self) -> None:
        """The runner cuts a hung call at the timeout and the retry's answer is used."""
        calls: list[float] = []

        async def slow_then_fast(request: ProviderRequest) -> str:
            calls.append(asyncio.get_running_loop().time())
            await asyncio.sleep(50.0 if len(calls) == 1 else 1.0)
            return "answer"

        spec = build([{"id": "x", "agent": "p", "prompt": "go", "timeout": 2.0, "retries": 1}],
                     {"p": python(slow_then_fast)})
        result = run(spec, backoff_base=0.0)
        r = rec(result, "x")
        assert result.output("x") == "answer"
        assert r.attempts == 2
        assert calls == [0.0, 2.0]
        assert r.ended_at == 3.0

    def test_runner_timeout_message(self) -> None:
        """A call the runner times out fails with a message naming the task and the timeout."""

        async def hang(request: ProviderRequest) -> str:
            await asyncio.sleep(1000.0)
            return "never"

        spec = build([{"id": "x", "agent": "p", "prompt": "go", "timeout": 1.5}], {"p": python(hang)})
        r = rec(run(spec), "x")
        assert r.state == TaskState.FAILED and r.ended_at == 1.5
        assert r.error is not None and "task x exceeded its timeout of 1.5s" in r.error

    def test_sim_timeout_fault_then_success(self) -> None:
        """A sim timeout fault waits the request timeout, and the retry that draws no fault succeeds."""
        options = {"latency": {"fixed": 1.0}, "timeout_rate": 0.5}
        seed = sim_seed(options, "x", [ProviderTimeout, None], timeout=3.0)
        spec = build([{"id": "x", "agent": "s", "prompt": "go", "timeout": 3.0, "retries": 1}],
                     {"s": {"provider": "sim", **options, "seed": seed}})
        r = rec(run(spec, backoff_base=0.0), "x")
        assert r.state == TaskState.DONE and r.attempts == 2
        assert r.ended_at == 4.0


# -- output schema ---------------------------------------------------------------------------

ITEMS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "items": {"type": "array", "items": {"type": "integer"}},
        "meta": {"type": "object", "properties": {"count": {"type": "integer"}}},
    },
    "required": ["items"],
}


def _schema_run(answer: Any) -> RunResult:
    async def respond(request: ProviderRequest) -> Any:
        return answer

    spec = build([{"id": "x", "agent": "p", "prompt": "go", "output_schema": ITEMS_SCHEMA}], {"p": python(respond)})
    return run(spec)


class TestOutputSchema:
    @pytest.mark.parametrize(("answer", "path"), [
        ('{"items": [1, "x"]}', "items/1"),
        ({"items": [1, 2], "meta": {"count": "many"}}, "meta/count"),
        ('{"meta": {}}', "(root)"),
    ])
    def test_violation_names_the_path(self, answer: Any, path: str) -> None:
        """Output violating the schema fails the task with a message naming where it is wrong."""
        r = rec(_schema_run(answer), "x")
        assert r.state == TaskState.FAILED
        assert r.error is not None
        assert f"does not match output_schema at {path}:" in r.error

    def test_non_json_output_is_invalid(self) -> None:
        """Plain prose where a schema is declared fails, quoting the start of the text."""
        r = rec(_schema_run("I could not do it"), "x")
        assert r.state == TaskState.FAILED
        assert r.error is not None and "not JSON" in r.error and "I could not do it" in r.error

    @pytest.mark.parametrize("text", [
        '```json\n{"items": [1, 2]}\n```',
        '```\n{"items": [1, 2]}\n```',
        '```json\n{"items": [1, 2]}\n```\nHope this helps.',
        'Here it is: {"items": [1, 2]}',
    ], ids=["fenced-json", "fenced-bare", "fenced-trailing-prose", "prose-prefix"])
    def test_fenced_json_is_accepted(self, text: str) -> None:
        """JSON in a Markdown code fence (or after prose) is parsed and becomes the task's output."""
        result = _schema_run(text)
        assert result.ok
        assert result.output("x") == {"items": [1, 2]}

    def test_valid_dict_output_is_kept_as_is(self) -> None:
        """A conforming dict answer is the output unchanged."""
        answer = {"items": [3, 1], "meta": {"count": 2}}
        assert _schema_run(answer).output("x") == answer

    def test_sim_output_conforms(self) -> None:
        """The sim answers a schema task with JSON that passes validation."""
        spec = build([{"id": "x", "agent": "s", "prompt": "go", "output_schema": ITEMS_SCHEMA}], {"s": sim(1.0)})
        result = run(spec)
        assert result.ok
        assert all(isinstance(v, int) for v in result.output("x")["items"])


# -- policies --------------------------------------------------------------------------------


def _policy_spec(policy: str) -> WorkflowSpec:
    """bad (fails at 1 s), slow (sim 5 s), after_bad <- bad, after_slow <- slow."""
    return build(
        [
            {"id": "bad", "agent": "p", "prompt": "go"},
            {"id": "slow", "agent": "s", "prompt": "go"},
            {"id": "after_bad", "agent": "s", "prompt": "go", "depends_on": ["bad"]},
            {"id": "after_slow", "agent": "s", "prompt": "go", "depends_on": ["slow"]},
        ],
        {"p": python(sleeper({"bad": 1.0}, fail=lambda t: t == "bad")), "s": sim(5.0)},
        policy=policy,
    )


class TestPolicies:
    def test_fail_fast_stops_the_run(self) -> None:
        """fail_fast: the run fails at the first failure, naming the task, and cancels the rest then."""
        result = run(_policy_spec("fail_fast"))
        assert result.status == "failed"
        assert result.failure is not None and "'bad'" in result.failure and "bad broke" in result.failure
        assert rec(result, "bad").state == TaskState.FAILED
        assert rec(result, "slow").state == TaskState.CANCELLED
        assert rec(result, "slow").ended_at == 1.0
        assert rec(result, "after_bad").state == TaskState.CANCELLED
        assert rec(result, "after_slow").state in (TaskState.CANCELLED, TaskState.SKIPPED)
        assert "slow" not in result.outputs

    def test_continue_finishes_independent_work(self) -> None:
        """continue: tasks not depending on the failure finish; its dependants are skipped."""
        result = run(_policy_spec("continue"))
        assert result.status == "failed"
        assert result.failure is not None and "'bad'" in result.failure
        assert rec(result, "slow").state == TaskState.DONE
        assert rec(result, "after_slow").state == TaskState.DONE
        assert rec(result, "after_slow").ended_at == 10.0
        skipped = rec(result, "after_bad")
        assert skipped.state == TaskState.SKIPPED
        assert skipped.error is not None and "bad" in skipped.error

    def test_runner_policy_overrides_spec(self) -> None:
        """``Runner(policy=...)`` overrides the spec's setting."""
        result = run(_policy_spec("fail_fast"), policy="continue")
        assert rec(result, "after_slow").state == TaskState.DONE

    def test_success_status(self) -> None:
        """A run where every task finished is ``succeeded`` with no failure."""
        result = run(build([{"id": "a", "agent": "s", "prompt": "go"}], {"s": sim(1.0)}))
        assert result.status == "succeeded" and result.ok and result.failure is None
        assert result.counts() == {TaskState.DONE: 1}


# -- the store -------------------------------------------------------------------------------


class TestStore:
    def test_every_done_result_is_stored_exactly(self, store: RunStore) -> None:
        """Each finished task's output is in the database, equal to the in-memory output."""
        result = run(fanout_spec(), store=store)
        assert result.ok and result.run_id is not None
        stored = {r.task_id: r for r in store.load_tasks(result.run_id)}
        done = [r for r in result.records if r.state == TaskState.DONE]
        assert len(done) == 8
        for r in done:
            assert stored[r.task_id].state == TaskState.DONE
            assert stored[r.task_id].output == r.output
            assert stored[r.task_id].attempts == r.attempts
        assert isinstance(stored["split"].output, dict)
        row = store.get_run(result.run_id)
        assert row.status == "succeeded" and row.error is None
        assert row.summary is not None
        assert {k: row.summary[k] for k in ("counts", "latency_scale", "max_parallel")} == {
            "counts": {"done": 8}, "latency_scale": 1.0, "max_parallel": 16}
        assert row.summary["context_tokens"] == result.context_tokens > 0
        assert row.summary["naive_tokens"] == result.naive_tokens >= result.context_tokens
        assert row.summary["pools"]["e"]["activations"] >= 1

    def test_attempts_are_recorded(self, store: RunStore) -> None:
        """Every attempt, failed or not, has a row in the attempts table."""
        spec = build([{"id": "x", "agent": "s", "prompt": "go", "retries": 2},
                      {"id": "y", "agent": "t", "prompt": "go"}],
                     {"s": sim(1.0, fail_attempts=2), "t": sim(1.0)})
        result = run(spec, store=store)
        assert result.run_id is not None
        rows = sorted(store.attempts(result.run_id))
        assert rows == [("x", 1, 1, "failed"), ("x", 1, 2, "failed"), ("x", 1, 3, "done"), ("y", 1, 1, "done")]

    def test_failed_run_is_stored_failed(self, store: RunStore) -> None:
        """A failed run's row has status failed, the failure text and the failed task's error."""
        result = run(_policy_spec("continue"), store=store)
        assert result.run_id is not None
        row = store.get_run(result.run_id)
        assert row.status == "failed"
        assert row.error == result.failure
        stored = {r.task_id: r for r in store.load_tasks(result.run_id)}
        assert stored["bad"].state == TaskState.FAILED
        assert stored["bad"].error is not None and "bad broke" in stored["bad"].error
        assert stored["after_bad"].state == TaskState.SKIPPED

    def test_resume_reruns_only_unfinished(self, store: RunStore, tmp_path: Path) -> None:
        """Resuming a failed run re-executes only failed and skipped tasks and keeps finished outputs exactly."""
        flag = tmp_path / "fixed"
        calls: list[str] = []

        async def agent(request: ProviderRequest) -> Any:
            calls.append(request.task_id)
            await asyncio.sleep(1.0)
            if request.task_id == "b" and not flag.exists():
                raise RuntimeError("b is not ready yet")
            return {"task": request.task_id, "n": len(calls)}

        spec = build(
            [
                {"id": "a", "agent": "p", "prompt": "go"},
                {"id": "b", "agent": "p", "prompt": "go"},
                {"id": "c", "agent": "p", "prompt": "go", "depends_on": ["b"]},
                {"id": "d", "agent": "p", "prompt": "go", "depends_on": ["a"]},
            ],
            {"p": python(agent)},
            policy="continue",
        )
        first = run(spec, store=store)
        assert first.status == "failed" and first.run_id is not None
        assert sorted(calls) == ["a", "b", "d"]
        kept = {t: first.output(t) for t in ("a", "d")}

        flag.touch()
        calls.clear()
        second = run_virtual(Runner(spec, store=store).run(resume=first.run_id))
        assert second.ok
        assert second.run_id == first.run_id
        assert sorted(calls) == ["b", "c"]
        for t, out in kept.items():
            assert second.output(t) == out
            assert rec(second, t).resumed
        stored = {r.task_id: r for r in store.load_tasks(first.run_id)}
        assert {t: r.state for t, r in stored.items()} == dict.fromkeys("abcd", TaskState.DONE)
        assert stored["a"].output == kept["a"] and stored["d"].output == kept["d"]
        row = store.get_run(first.run_id)
        assert row.status == "succeeded" and row.sessions == 2
        attempts = store.attempts(first.run_id)
        assert sorted((t, s, st) for t, s, _, st in attempts) == [
            ("a", 1, "done"), ("b", 1, "failed"), ("b", 2, "done"), ("c", 2, "done"), ("d", 1, "done"),
        ]

    def test_resume_timing_starts_from_restored_outputs(self, store: RunStore) -> None:
        """A resumed task whose dependencies were restored starts at once (time 0 of the new session)."""
        spec = build(
            [{"id": "a", "agent": "s", "prompt": "go"}, {"id": "b", "agent": "p", "prompt": "go", "depends_on": ["a"]}],
            {"s": sim(3.0), "p": python(sleeper({"b": 2.0}, fail=lambda t: t == "b"))},
        )
        first = run(spec, store=store)
        assert first.run_id is not None
        spec2 = build(
            [{"id": "a", "agent": "s", "prompt": "go"}, {"id": "b", "agent": "p", "prompt": "go", "depends_on": ["a"]}],
            {"s": sim(3.0), "p": python(sleeper({"b": 2.0}))},
        )
        second = run_virtual(Runner(spec2, store=store).run(resume=first.run_id))
        assert second.ok
        assert rec(second, "b").started_at == 0.0
        assert rec(second, "b").ended_at == 2.0
        assert second.output("a") == first.output("a")

    def test_resuming_a_finished_run_executes_nothing(self, store: RunStore) -> None:
        """Resuming a run that succeeded restores every output and calls no provider."""
        calls: list[str] = []
        spec = build([{"id": "a", "agent": "p", "prompt": "go"}, {"id": "b", "agent": "p", "prompt": "go",
                                                                  "depends_on": ["a"]}],
                     {"p": python(sleeper({}, calls))})
        first = run(spec, store=store)
        calls.clear()
        second = run_virtual(Runner(spec, store=store).run(resume=first.run_id))
        assert calls == []
        assert second.ok and second.outputs == first.outputs == {"a": "out-a", "b": "out-b"}
        assert all(r.resumed for r in second.records)

    def test_resume_without_store_is_an_error(self) -> None:
        """Asking to resume with no store raises instead of silently starting over."""
        from agentfleet.errors import AgentFleetError

        spec = build([{"id": "a", "agent": "s", "prompt": "go"}], {"s": sim(1.0)})
        with pytest.raises(AgentFleetError, match="resuming needs a run store"):
            run_virtual(Runner(spec).run(resume="abc"))


# -- hooks -----------------------------------------------------------------------------------

HOOKS = "tests.fixtures.runner_hooks"


class TestHooks:
    def test_lifecycle_hooks_get_payloads(self, store: RunStore) -> None:
        """before_task, after_task, on_failure and on_run_end hooks are called with task and run ids."""
        spec = build(
            [{"id": "good", "agent": "s", "prompt": "go"}, {"id": "bad", "agent": "p", "prompt": "go"}],
            {"s": sim(1.0), "p": python(sleeper({}, fail=lambda t: True))},
            hooks={e: [f"{HOOKS}:record"] for e in ("before_task", "after_task", "on_failure", "on_run_end")},
            policy="continue",
        )
        result = run(spec, store=store)
        run_id = result.run_id
        assert run_id is not None
        calls = runner_hooks.CALLS
        before = {p["task_id"] for e, p in calls if e == "before_task"}
        assert before == {"good", "bad"}
        after = [p for e, p in calls if e == "after_task"]
        assert [p["task_id"] for p in after] == ["good"]
        assert after[0]["state"] == "done" and after[0]["agent"] == "s"
        failures = [p for e, p in calls if e == "on_failure"]
        assert [p["task_id"] for p in failures] == ["bad"]
        assert "bad broke" in failures[0]["error"]
        end = [p for e, p in calls if e == "on_run_end"]
        assert len(end) == 1
        assert end[0]["status"] == "failed"
        assert end[0]["counts"] == {"done": 1, "failed": 1}
        assert all(p["run_id"] == run_id for _, p in calls)
        assert calls[-1][0] == "on_run_end"

    def test_after_task_runs_after_the_result_is_stored(self, store: RunStore) -> None:
        """By the time after_task fires, the task's output is already durable in the store."""
        runner_hooks.STORE = store
        try:
            spec = build([{"id": "a", "agent": "p", "prompt": "go"}], {"p": python(sleeper({}))},
                         hooks={"after_task": [f"{HOOKS}:snapshot_store"]})
            run(spec, store=store)
        finally:
            runner_hooks.STORE = None
        [(event, payload)] = runner_hooks.CALLS
        assert event == "after_task"
        assert payload["stored"]["a"] == (TaskState.DONE, "out-a")

    def test_async_hook_is_awaited(self) -> None:
        """An async hook runs to completion for each task."""
        spec = build([{"id": "a", "agent": "s", "prompt": "go"}, {"id": "b", "agent": "s", "prompt": "go"}],
                     {"s": sim(1.0)}, hooks={"after_task": [f"{HOOKS}:record_async"]})
        run(spec)
        assert sorted(p["task_id"] for _, p in runner_hooks.CALLS) == ["a", "b"]

    def test_failing_hook_is_reported_and_run_continues(self, store: RunStore) -> None:
        """A hook that raises is listed in hook_failures (and the store); tasks still run and the run succeeds."""
        spec = build(
            [{"id": "a", "agent": "s", "prompt": "go"}, {"id": "b", "agent": "s", "prompt": "go", "depends_on": ["a"]}],
            {"s": sim(1.0)},
            hooks={"before_task": [f"{HOOKS}:explode", f"{HOOKS}:record"]},
        )
        result = run(spec, store=store)
        assert result.ok
        assert rec(result, "b").ended_at == 2.0
        assert [(f.event, f.task_id, f.hook) for f in result.hook_failures] == [
            ("before_task", "a", f"{HOOKS}:explode"), ("before_task", "b", f"{HOOKS}:explode"),
        ]
        assert "RuntimeError: hook exploded on before_task" in result.hook_failures[0].message
        # the hook after the failing one still ran
        assert [p["task_id"] for _, p in runner_hooks.CALLS] == ["a", "b"]
        assert result.run_id is not None
        kinds = [(k, t) for _, _, k, t, _ in store.events(result.run_id) if k == "hook_failed"]
        assert kinds == [("hook_failed", "a"), ("hook_failed", "b")]

    def test_bad_hook_path_fails_before_running(self) -> None:
        """A python hook that cannot be imported is a SpecError before any task runs."""
        from agentfleet.errors import SpecError

        calls: list[str] = []
        spec = build([{"id": "a", "agent": "p", "prompt": "go"}], {"p": python(sleeper({}, calls))},
                     hooks={"before_task": [f"{HOOKS}:missing"]})
        with pytest.raises(SpecError, match="missing"):
            run(spec)
        assert calls == []


# -- interruption ----------------------------------------------------------------------------


def _interrupt(spec: WorkflowSpec, store: RunStore, at: float) -> Runner:
    """Start a run, cancel it ``at`` seconds in, and return its runner."""
    runner = Runner(spec, store=store)

    async def main() -> None:
        task = asyncio.ensure_future(runner.run())
        await asyncio.sleep(at)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    run_virtual(main())
    return runner


class TestInterrupt:
    def _spec(self, calls: list[str], max_parallel: int = 16) -> WorkflowSpec:
        durations = {"a": 1.0, "b": 3.0, "c": 4.0}
        return build(
            [
                {"id": "a", "agent": "p", "prompt": "go"},
                {"id": "b", "agent": "p", "prompt": "go"},
                {"id": "c", "agent": "p", "prompt": "go", "depends_on": ["a"]},
            ],
            {"p": python(sleeper(durations, calls))},
            max_parallel=max_parallel,
        )

    def test_interrupted_run_is_stored(self, store: RunStore) -> None:
        """Cancelling a run mid-way stores it interrupted, finished results kept, running tasks interrupted."""
        calls: list[str] = []
        runner = _interrupt(self._spec(calls), store, at=2.0)
        assert runner.result.status == "interrupted"
        run_id = runner.run_id
        assert run_id is not None
        row = store.get_run(run_id)
        assert row.status == "interrupted"
        assert row.error is not None and run_id in row.error
        stored = {r.task_id: r for r in store.load_tasks(run_id)}
        assert stored["a"].state == TaskState.DONE and stored["a"].output == "out-a"
        assert stored["b"].state == TaskState.INTERRUPTED
        assert stored["c"].state == TaskState.INTERRUPTED
        assert {r.task_id: r.state for r in runner.result.records} == {
            "a": TaskState.DONE, "b": TaskState.INTERRUPTED, "c": TaskState.INTERRUPTED}

    def test_resume_after_interrupt_skips_finished(self, store: RunStore) -> None:
        """Resuming an interrupted run runs only the interrupted tasks, keeps the earlier output, and succeeds."""
        calls: list[str] = []
        spec = self._spec(calls)
        runner = _interrupt(spec, store, at=2.0)
        assert sorted(calls) == ["a", "b", "c"]
        calls.clear()
        result = run_virtual(Runner(spec, store=store).run(resume=runner.run_id))
        assert result.ok
        assert sorted(calls) == ["b", "c"]
        assert result.output("a") == "out-a" and rec(result, "a").resumed
        assert rec(result, "c").started_at == 0.0 and rec(result, "c").ended_at == 4.0
        assert store.get_run(result.run_id or "").status == "succeeded"

    def test_interrupt_during_fan_out_resumes_the_rest(self, store: RunStore) -> None:
        """Interrupted mid fan-out, a resume reruns only the mapped instances that had not finished."""
        calls: list[str] = []
        durations = {"split": 0.0, **{f"work[{i}]": float(i + 1) for i in range(4)}}

        async def splitter(request: ProviderRequest) -> Any:
            calls.append(request.task_id)
            return {"items": ["w", "x", "y", "z"]}

        spec = build(
            [
                {"id": "split", "agent": "q", "prompt": "go", "output_schema": {"type": "object"}},
                {"id": "work", "agent": "p", "map": "split.items", "prompt": "{{ item }}"},
                {"id": "join", "agent": "e", "inputs": ["work"], "prompt": "{{ inputs | tojson }}"},
            ],
            {"q": python(splitter), "p": python(sleeper(durations, calls)), "e": python(echo)},
        )
        runner = _interrupt(spec, store, at=2.5)
        assert runner.run_id is not None
        states = {r.task_id: r.state for r in store.load_tasks(runner.run_id)}
        assert states["work[0]"] == states["work[1]"] == TaskState.DONE
        assert states["work[2]"] == states["work[3]"] == TaskState.INTERRUPTED
        calls.clear()
        result = run_virtual(Runner(spec, store=store).run(resume=runner.run_id))
        assert result.ok
        assert sorted(calls) == ["work[2]", "work[3]"]
        assert json.loads(result.output("join")) == {"work": [f"out-work[{i}]" for i in range(4)]}

    def test_interrupt_starts_no_new_tasks(self, store: RunStore) -> None:
        """With tasks queued behind max_parallel, cancelling the run starts none of them."""
        calls: list[str] = []
        spec = build(
            [{"id": t, "agent": "p", "prompt": "go"} for t in "abc"],
            {"p": python(sleeper({}, calls))},
            max_parallel=1,
        )
        runner = _interrupt(spec, store, at=1.5)
        assert calls == ["a", "b"]
        states = {r.task_id: r.state for r in runner.result.records}
        assert TaskState.RUNNING not in states.values()
        assert states == {"a": TaskState.DONE, "b": TaskState.INTERRUPTED, "c": TaskState.PENDING}


# -- scale and latency_scale -----------------------------------------------------------------


class TestScale:
    @pytest.mark.timeout(30)
    def test_thousand_agents_in_exactly_two_seconds(self) -> None:
        """1,000 mapped sim agents of 2 s with max_parallel 1000 finish at exactly 2 s of virtual time."""
        spec = build(
            [{"id": "w", "agent": "s", "map": list(range(1000)), "prompt": "item {{ item }}"},
             {"id": "j", "agent": "s0", "depends_on": ["w"], "prompt": "join"}],
            {"s": sim(2.0), "s0": sim(0.0)},
            max_parallel=1000,
        )
        runner = Runner(spec)
        result = run_virtual(runner.run())
        assert result.ok
        assert result.counts() == {TaskState.DONE: 1001}
        assert {rec.started_at for rec in result.records if rec.task_id.startswith("w[")} == {0.0}
        assert max(r.ended_at or 0.0 for r in result.records) == 2.0
        assert rec(result, "j").ended_at == 2.0
        assert runner.scheduler is not None and runner.scheduler.statistics().peak_running == 1000

    def test_max_parallel_bounds_the_makespan(self) -> None:
        """Ten 1 s tasks at max_parallel 4 take exactly ceil(10/4) = 3 s."""
        spec = build([{"id": "w", "agent": "s", "map": list(range(10)), "prompt": "x"}], {"s": sim(1.0)},
                     max_parallel=4)
        result = run(spec)
        assert max(r.ended_at or 0.0 for r in result.records) == 3.0

    def test_latency_scale_halves_sim_latencies(self) -> None:
        """``latency_scale=0.5`` halves every sim latency, so a 2 s + 4 s chain ends at 3 s."""
        tasks = [{"id": "a", "agent": "two", "prompt": "a"},
                 {"id": "b", "agent": "four", "prompt": "b", "depends_on": ["a"]}]
        agents = {"two": sim(2.0), "four": sim(4.0)}
        full = run(build(tasks, agents))
        half = run(build(tasks, agents), latency_scale=0.5)
        assert rec(full, "b").ended_at == 6.0
        assert rec(half, "a").duration == 1.0
        assert rec(half, "b").ended_at == 3.0
        assert half.latency_scale == 0.5

    def test_latency_scale_setting_in_spec(self) -> None:
        """The spec's ``latency_scale`` setting has the same effect as the runner argument."""
        spec = build([{"id": "a", "agent": "s", "prompt": "a"}], {"s": sim(2.0)}, latency_scale=0.5)
        assert rec(run(spec), "a").ended_at == 1.0

    def test_latency_scale_scales_timeouts_too(self) -> None:
        """Per-task timeouts shrink with latency_scale, so a task that times out still times out, sooner."""
        spec = build([{"id": "x", "agent": "s", "prompt": "go", "timeout": 3.0}], {"s": sim(4.0)})
        r = rec(run(spec, latency_scale=0.5), "x")
        assert r.state == TaskState.FAILED
        assert r.ended_at == 1.5


class TestVirtualTimeWithStore:
    def test_store_flush_keeps_short_timings_exact(self, store: RunStore) -> None:
        """With a store attached (periodic flush), a 1 s + 1 s sim chain ends at exactly 1 s and 2 s."""
        spec = build([{"id": "a", "agent": "s", "prompt": "a"},
                      {"id": "b", "agent": "s", "prompt": "b", "depends_on": ["a"]}],
                     {"s": sim(1.0)})
        result = run(spec, store=store)
        assert rec(result, "a").ended_at == 1.0
        assert rec(result, "b").ended_at == 2.0

    def test_store_flush_keeps_long_timings_exact(self, store: RunStore) -> None:
        """With a store attached, a chain of four 1 s sim tasks ends at exactly 1, 2, 3 and 4 s."""
        spec = build([{"id": "t0", "agent": "s", "prompt": "go"},
                      *({"id": f"t{i}", "agent": "s", "prompt": "go", "depends_on": [f"t{i - 1}"]}
                        for i in range(1, 4))],
                     {"s": sim(1.0)})
        result = run(spec, store=store)
        assert [rec(result, f"t{i}").ended_at for i in range(4)] == [1.0, 2.0, 3.0, 4.0]

    def test_without_store_long_timings_are_exact(self) -> None:
        """Without a store the same four-task chain ends at exactly 1, 2, 3 and 4 s."""
        spec = build([{"id": "t0", "agent": "s", "prompt": "go"},
                      *({"id": f"t{i}", "agent": "s", "prompt": "go", "depends_on": [f"t{i - 1}"]}
                        for i in range(1, 4))],
                     {"s": sim(1.0)})
        result = run(spec)
        assert [rec(result, f"t{i}").ended_at for i in range(4)] == [1.0, 2.0, 3.0, 4.0]


class TestReviewFixes:
    def test_provider_error_leaves_no_run_row(self, tmp_path: Path) -> None:
        """A provider that cannot be built fails before a run is recorded."""
        spec = build([{"id": "a", "agent": "x", "prompt": "p"}], {"x": {"provider": "no-such-provider"}})
        with RunStore(tmp_path / "r.db") as store:
            with pytest.raises(ProviderConfigError):
                run_virtual(Runner(spec, store=store).run())
            assert store.list_runs() == []

    def test_run_timeout_marks_work_cancelled_and_skipped(self) -> None:
        """settings.timeout cancels running tasks and skips the rest, each with the reason."""
        spec = build([{"id": "a", "agent": "s", "prompt": "p"}, {"id": "b", "agent": "s", "prompt": "q",
                                                                 "depends_on": ["a"]}],
                     {"s": sim(2.0)}, timeout=1)
        result = run(spec)
        assert result.status == "failed" and result.failure == "run timed out after 1s"
        assert (rec(result, "a").state, rec(result, "a").error) == ("cancelled", "run timed out after 1s")
        assert (rec(result, "b").state, rec(result, "b").error) == ("skipped", "run timed out after 1s")

    def test_scale_does_not_shrink_real_provider_timeouts(self) -> None:
        """latency_scale speeds up the sim only; a python agent keeps its full timeout."""
        async def slow(request: ProviderRequest) -> str:
            await asyncio.sleep(0.5)
            return "ok"

        spec = build([{"id": "a", "agent": "p", "prompt": "p"}], {"p": {**python(slow), "timeout": 1.0}})
        result = run(spec, latency_scale=0.1)
        assert result.ok

    def test_resume_drops_stale_placeholders(self, tmp_path: Path) -> None:
        """Rows of unfinished work from an earlier session do not survive a resumed success."""
        flag = tmp_path / "fail"
        flag.write_text("x")

        def maybe(request: ProviderRequest) -> str:
            if flag.exists():
                raise ProviderError("not yet", retryable=False)
            return "ok"

        spec = build([{"id": "a", "agent": "p", "prompt": "p"},
                      {"id": "m", "agent": "p", "prompt": "{{ item }}", "map": "a.items", "inputs": ["a"]}],
                     {"p": python(maybe)})
        with RunStore(tmp_path / "r.db") as store:
            first = run_virtual(Runner(spec, store=store).run())
            assert first.status == "failed"
            assert {r.task_id for r in store.load_tasks(first.run_id)} == {"a", "m"}
            flag.unlink()
            spec2 = build([{"id": "a", "agent": "p", "prompt": "p"},
                           {"id": "m", "agent": "p", "prompt": "{{ item }}", "map": ["x", "y"]}],
                          {"p": python(maybe)})
            second = run_virtual(Runner(spec2, store=store).run(resume=first.run_id))
            assert second.ok
            assert sorted(r.task_id for r in store.load_tasks(first.run_id)) == ["a", "m[0]", "m[1]"]


class TestResultAccess:
    def test_output_of_a_mapped_step_is_the_list(self) -> None:
        """result.output('step') of a mapped step is its outputs in item order; 'step[i]' is one."""
        spec = build([{"id": "m", "agent": "p", "prompt": "{{ item }}", "map": ["a", "b", "c"]}],
                     {"p": python(lambda request: request.prompt.upper())})
        result = run(spec)
        assert result.output("m") == ["A", "B", "C"]
        assert result.output("m[1]") == "B"
        with pytest.raises(KeyError, match="no finished task 'nope'"):
            result.output("nope")
