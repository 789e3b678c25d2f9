"""Streaming aggregation: ``aggregate: {over, fold}`` folds a fan-out's results one by one as they
finish, with built-in or ``module:function`` folds, on virtual time."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from agentfleet._types import ProviderRequest, TaskState
from agentfleet.errors import PlanError, SpecError
from agentfleet.runtime import Runner
from agentfleet.runtime._aggregate import BUILTIN_FOLDS, Aggregator
from agentfleet.spec import WorkflowSpec, parse_workflow
from tests.fixtures import quality
from tests.runtime.kit import build, python, rec, run

FX = "tests.fixtures.quality"
LATENCY = [3.0, 1.0, 2.0]  # item 1 finishes first, then 2, then 0

AgentFn = Callable[[ProviderRequest], Awaitable[Any]]


# -- helpers ---------------------------------------------------------------------------------


def worker(outputs: list[Any], latency: list[float] = LATENCY) -> AgentFn:
    """An agent for ``work[i]`` that sleeps ``latency[i]`` and answers ``outputs[i]``."""

    async def agent(request: ProviderRequest) -> Any:
        i = int(request.task_id.split("[")[1][:-1])
        await asyncio.sleep(latency[i])
        return outputs[i]

    return agent


async def echo(request: ProviderRequest) -> str:
    return request.prompt


def fold_spec(fold: str, outputs: list[Any], *, initial: Any = None, **extra: Any) -> WorkflowSpec:
    """work[0..n) (python, LATENCY) -> agg: an agent-less aggregate over work with ``fold``."""
    aggregate: dict[str, Any] = {"over": "work", "fold": fold}
    if initial is not None:
        aggregate["initial"] = initial
    return build(
        [{"id": "work", "agent": "w", "map": list(range(len(outputs))), "prompt": "{{ item }}"},
         {"id": "agg", "aggregate": aggregate, **extra}],
        {"w": python(worker(outputs))},
    )


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    quality.CALLS.clear()


# -- built-in folds ------------------------------------------------------------------------------


class TestBuiltinFolds:
    def test_list_outputs_in_item_order(self) -> None:
        """An agent-less ``aggregate: {over: work, fold: list}`` outputs the list in item order, not finish order."""
        result = run(fold_spec("list", ["zero", "one", "two"]))
        assert result.ok
        assert [rec(result, f"work[{i}]").ended_at for i in range(3)] == LATENCY
        assert result.output("agg") == ["zero", "one", "two"]
        assert rec(result, "agg").provider == "aggregate"

    def test_list_is_the_default_fold(self) -> None:
        """``aggregate: work`` (shorthand, no fold) is the ``list`` fold."""
        spec = build(
            [{"id": "work", "agent": "w", "map": [0, 1, 2], "prompt": "{{ item }}"},
             {"id": "agg", "aggregate": "work"}],
            {"w": python(worker(["a", "b", "c"]))},
        )
        assert run(spec).output("agg") == ["a", "b", "c"]

    def test_list_puts_an_initial_list_first(self) -> None:
        """An ``initial`` list comes before the folded outputs."""
        assert run(fold_spec("list", ["a", "b", "c"], initial=["head"])).output("agg") == ["head", "a", "b", "c"]

    def test_concat_joins_texts_in_completion_order(self) -> None:
        """``concat`` joins the outputs with blank lines as they arrive; non-text outputs as JSON."""
        result = run(fold_spec("concat", ["zero", {"k": 1}, "two"]))
        assert result.output("agg") == '{"k":1}\n\ntwo\n\nzero'

    def test_merge_merges_dicts(self) -> None:
        """``merge`` merges dict outputs (later arrivals win) and keys anything else by its index."""
        result = run(fold_spec("merge", [{"a": 0, "shared": "zero"}, {"b": 1, "shared": "one"}, "two"]))
        assert result.output("agg") == {"a": 0, "b": 1, "shared": "zero", "2": "two"}

    def test_sum_adds_numbers_and_numeric_text(self) -> None:
        """``sum`` adds numeric outputs, numeric strings included, onto ``initial``."""
        assert run(fold_spec("sum", [1, "2.5", 3])).output("agg") == 6.5
        assert run(fold_spec("sum", [1, 2, 3], initial=10)).output("agg") == 16

    def test_sum_of_non_numbers_fails_the_aggregate(self) -> None:
        """``sum`` over a non-numeric output fails the aggregate task saying which output."""
        result = run(fold_spec("sum", [1, "many", 3]))
        error = rec(result, "agg").error
        assert error is not None and "fold 'sum' failed on item 1" in error and "non-numeric" in error

    def test_count_counts_results(self) -> None:
        """``count`` is the number of results folded."""
        assert run(fold_spec("count", ["a", "b", "c"])).output("agg") == 3

    def test_extend_flattens_lists_in_completion_order(self) -> None:
        """``extend`` concatenates list outputs (a non-list counts as one item) as they arrive."""
        result = run(fold_spec("extend", [["a0", "a1"], ["b0"], "c"]))
        assert result.output("agg") == ["b0", "c", "a0", "a1"]

    def test_every_builtin_is_covered(self) -> None:
        """The built-in folds are exactly list, concat, merge, sum, count and extend."""
        assert set(BUILTIN_FOLDS) == {"list", "concat", "merge", "sum", "count", "extend"}


class TestCustomFold:
    def test_called_once_per_result_in_completion_order_with_index(self) -> None:
        """A module:function fold runs once per result, in completion order, as each lands, with its index."""
        result = run(fold_spec(f"{FX}:record_fold", ["zero", "one", "two"]))
        assert result.ok
        assert quality.CALLS == [("record_fold", 1, "one", 1.0), ("record_fold", 2, "two", 2.0),
                                 ("record_fold", 0, "zero", 3.0)]
        assert result.output("agg") == [[1, "one"], [2, "two"], [0, "zero"]]

    def test_initial_is_the_first_accumulator_and_not_shared(self) -> None:
        """``initial`` is copied for the fold, so folding does not change the spec's value."""
        spec = fold_spec(f"{FX}:record_fold", ["zero", "one", "two"], initial=[["start", None]])
        result = run(spec)
        assert result.output("agg")[0] == ["start", None]
        agg_spec = spec.tasks[1].aggregate
        assert agg_spec is not None and agg_spec.initial == [["start", None]]


# -- errors ------------------------------------------------------------------------------------------


YAML_UNKNOWN_FOLD = """\
agents:
  w: {provider: sim, options: {latency: {fixed: 1}}}
tasks:
  - id: work
    agent: w
    map: [a, b]
  - id: agg
    aggregate:
      over: work
      fold: avarage
"""


class TestAggregateErrors:
    def test_unknown_fold_is_a_spec_error_before_the_run(self) -> None:
        """An unknown fold name is a SpecError naming the field and the built-ins when the runner is built."""
        with pytest.raises(SpecError) as info:
            Runner(parse_workflow(YAML_UNKNOWN_FOLD, file="wf.yaml"))
        assert info.value.field == "tasks[1].aggregate.fold"
        assert "unknown fold 'avarage'" in str(info.value)
        assert "list, concat, merge, sum, count, extend" in str(info.value)

    def test_unimportable_fold_is_a_spec_error(self) -> None:
        """A ``module:function`` fold that cannot be imported is a SpecError naming the module."""
        spec = parse_workflow(YAML_UNKNOWN_FOLD.replace("avarage", f"{FX}:no_such_fold"), file="wf.yaml")
        with pytest.raises(SpecError, match="no_such_fold") as info:
            Runner(spec)
        assert "agent ''" not in str(info.value)

    def test_unknown_fold_names_file_and_line(self) -> None:
        """The unknown-fold SpecError names the workflow file and the line of the fold."""
        with pytest.raises(SpecError) as info:
            Runner(parse_workflow(YAML_UNKNOWN_FOLD, file="wf.yaml"))
        assert (info.value.file, info.value.line) == ("wf.yaml", 10)

    def test_aggregator_reports_file_and_line_when_given(self) -> None:
        """``Aggregator`` passes the file and line it is given into the SpecError."""
        with pytest.raises(SpecError) as info:
            Aggregator("avarage", where="tasks[1].aggregate.fold", file="wf.yaml", line=10)
        assert str(info.value).startswith("wf.yaml:10: tasks[1].aggregate.fold: unknown fold 'avarage'")

    def test_aggregate_over_unmapped_task_is_a_plan_error_naming_the_line(self) -> None:
        """An aggregate over a task that is not mapped is a PlanError with the file and line of the aggregate."""
        text = YAML_UNKNOWN_FOLD.replace("    map: [a, b]\n", "").replace("avarage", "list")
        with pytest.raises(PlanError) as info:
            Runner(parse_workflow(text, file="wf.yaml"))
        assert (info.value.file, info.value.line) == ("wf.yaml", 7)
        assert "that task is not mapped" in str(info.value)

    def test_failing_fold_fails_the_aggregate_not_the_items(self) -> None:
        """A fold that raises fails the aggregate task with the fold's message; the items it folded stay done."""
        result = run(fold_spec(f"{FX}:explode_fold", ["a", "b", "c"]))
        assert result.status == "failed"
        agg = rec(result, "agg")
        assert agg.state == TaskState.FAILED
        assert agg.error == f"fold '{FX}:explode_fold' failed on item 1: ValueError: cannot fold item 1"
        assert [rec(result, f"work[{i}]").state for i in range(3)] == [TaskState.DONE] * 3
        assert result.failure is not None and "cannot fold item 1" in result.failure

    def test_failing_fold_fails_an_aggregate_task_with_an_agent(self) -> None:
        """A fold that raises fails the aggregate task even when it has an agent, which is never called."""
        calls: list[str] = []

        async def agent(request: ProviderRequest) -> str:
            calls.append(request.prompt)
            return "summary"

        spec = build(
            [{"id": "work", "agent": "w", "map": [0, 1, 2], "prompt": "{{ item }}"},
             {"id": "agg", "agent": "s", "aggregate": {"over": "work", "fold": f"{FX}:explode_fold"},
              "prompt": "{{ inputs.work }}"}],
            {"w": python(worker(["a", "b", "c"])), "s": python(agent)},
        )
        result = run(spec)
        assert rec(result, "agg").state == TaskState.FAILED
        assert calls == []


# -- aggregate tasks with an agent, and timing --------------------------------------------------


class TestAggregateWithAgent:
    def test_agent_gets_the_folded_value_as_its_input(self) -> None:
        """An aggregate task with an agent receives the folded value as ``inputs.<over>``."""
        spec = build(
            [{"id": "work", "agent": "w", "map": [0, 1, 2], "prompt": "{{ item }}"},
             {"id": "agg", "agent": "e", "aggregate": {"over": "work", "fold": "merge"},
              "prompt": "{{ inputs.work | tojson }}"}],
            {"w": python(worker([{"a": 0}, {"b": 1}, {"c": 2}])), "e": python(echo)},
        )
        result = run(spec)
        assert json.loads(result.output("agg")) == {"a": 0, "b": 1, "c": 2}
        assert rec(result, "agg").provider == "python"

    def test_every_item_is_folded_before_the_agent_starts(self) -> None:
        """By the time the aggregate task's agent is called the fold has run on every item."""
        folded_at_start: list[int] = []

        async def agent(request: ProviderRequest) -> str:
            folded_at_start.append(len(quality.CALLS))
            return "done"

        spec = build(
            [{"id": "work", "agent": "w", "map": [0, 1, 2], "prompt": "{{ item }}"},
             {"id": "agg", "agent": "s", "aggregate": {"over": "work", "fold": f"{FX}:record_fold"},
              "prompt": "{{ inputs.work | length }}"}],
            {"w": python(worker(["a", "b", "c"])), "s": python(agent)},
        )
        result = run(spec)
        assert folded_at_start == [3]
        assert rec(result, "agg").started_at == 3.0


class TestStreaming:
    def test_agentless_aggregate_finishes_with_the_last_item(self) -> None:
        """An agent-less aggregate starts and finishes at the virtual time the last item finishes."""
        result = run(fold_spec(f"{FX}:record_fold", ["a", "b", "c"]))
        last = max(rec(result, f"work[{i}]").ended_at or 0.0 for i in range(3))
        agg = rec(result, "agg")
        assert last == 3.0
        assert agg.started_at == agg.ended_at == last
        assert [t for *_, t in quality.CALLS] == [1.0, 2.0, 3.0]  # each folded when it finished
