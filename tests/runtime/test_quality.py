"""Output checks end to end: output_schema, validator functions and reviewer agents, each rejection fed
back to the agent for another try, at most ``validation_retries`` times. Virtual time, python agents."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from agentfleet._types import ProviderRequest, ProviderResponse, TaskState
from agentfleet.errors import OutputInvalid, SpecError
from agentfleet.plan import build_plan
from agentfleet.runtime import Runner, RunResult
from agentfleet.runtime._quality import OutputChecks, feedback_prompt, parse_score
from agentfleet.spec import WorkflowSpec, parse_workflow
from tests.fixtures import quality
from tests.runtime.kit import build, python, rec, run

FX = "tests.fixtures.quality"
REJECTED = "Your previous answer was rejected"
SCHEMA: dict[str, Any] = {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}}

AgentFn = Callable[[ProviderRequest], Awaitable[Any]]


# -- helpers ---------------------------------------------------------------------------------


def scripted(answers: list[Any], prompts: list[str]) -> AgentFn:
    """An agent that records each prompt and gives ``answers`` in turn (the last one from then on);
    an exception in the list is raised instead."""

    async def agent(request: ProviderRequest) -> Any:
        prompts.append(request.prompt)
        answer = answers[min(len(prompts), len(answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        return answer

    return agent


def one_task(agent: AgentFn, **task: Any) -> WorkflowSpec:
    return build([{"id": "a", "agent": "p", "prompt": "Answer well", **task}], {"p": python(agent)})


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    quality.CALLS.clear()


# -- output_schema -------------------------------------------------------------------------------


class TestSchemaFeedback:
    def test_schema_failure_is_retried_with_the_error_fed_back(self) -> None:
        """An output failing output_schema is redone with the error and previous answer in the prompt."""
        prompts: list[str] = []
        result = run(one_task(scripted([{"n": "three"}, {"n": 3}], prompts), output_schema=SCHEMA))
        assert result.ok
        assert result.output("a") == {"n": 3}
        assert prompts[0] == "Answer well"
        assert prompts[1].startswith("Answer well\n\n---\n")
        assert REJECTED in prompts[1]
        assert "output does not match output_schema at n: 'three' is not of type 'integer'" in prompts[1]
        assert '{"n": "three"}' in prompts[1]  # the previous answer
        record = rec(result, "a")
        assert record.attempts == 2
        assert record.meta["rejected"] == 1

    def test_non_json_answer_is_fed_back(self) -> None:
        """An answer that is not JSON at all is rejected and fed back like any schema failure."""
        prompts: list[str] = []
        result = run(one_task(scripted(["sure, n is 3", '{"n": 3}'], prompts), output_schema=SCHEMA))
        assert result.output("a") == {"n": 3}
        assert "output is not JSON but the task declares an output_schema" in prompts[1]
        assert "sure, n is 3" in prompts[1]

    def test_exhausted_retries_fail_naming_the_schema(self) -> None:
        """After ``validation_retries`` rejected redos the task fails with the schema error."""
        prompts: list[str] = []
        result = run(one_task(scripted([{"n": "x"}], prompts), output_schema=SCHEMA, validation_retries=1))
        record = rec(result, "a")
        assert len(prompts) == 2
        assert record.state == TaskState.FAILED
        assert record.error is not None and "output does not match output_schema at n" in record.error
        assert record.meta["rejected"] == 2


# -- validators ----------------------------------------------------------------------------------


class TestValidator:
    def _run(self, validator: str, answers: list[Any], *, retries: int = 0, prompts: list[str] | None = None,
             ) -> RunResult:
        seen = prompts if prompts is not None else []
        return run(one_task(scripted(answers, seen), validator=f"{FX}:{validator}", validation_retries=retries))

    def test_message_rejects_with_that_message(self) -> None:
        """A validator returning a string rejects the output with that message."""
        record = rec(self._run("reject_message", ["bad"]), "a")
        assert record.state == TaskState.FAILED
        assert record.error == "validator: validator rejected the output: the answer must be exactly 'good'"

    def test_false_rejects(self) -> None:
        """A validator returning False rejects the output, saying so."""
        record = rec(self._run("reject_false", ["anything"]), "a")
        assert record.state == TaskState.FAILED
        assert record.error == "validator: validator rejected the output: returned False"

    def test_raising_rejects_with_the_exception_message(self) -> None:
        """A validator that raises rejects the output with the exception's message."""
        record = rec(self._run("reject_raise", ["x"]), "a")
        assert record.error == "validator: validator rejected the output: the output is far too short"

    def test_bare_assert_rejects_naming_the_exception(self) -> None:
        """A failing bare ``assert`` (no message) rejects with the exception's type, not an empty reason."""
        record = rec(self._run("reject_assert", ["x"]), "a")
        assert record.error == "validator: validator rejected the output: AssertionError"

    @pytest.mark.parametrize("validator", ["accept_none", "accept_true"])
    def test_none_or_true_accepts(self, validator: str) -> None:
        """A validator returning None or True accepts the output at once."""
        result = self._run(validator, ["fine"])
        assert result.ok
        assert quality.CALLS == [(validator, "fine")]
        assert "rejected" not in rec(result, "a").meta

    def test_async_validator(self) -> None:
        """An async validator is awaited: it rejects, the redo passes."""
        prompts: list[str] = []
        result = self._run("async_reject_message", ["bad", "good"], retries=1, prompts=prompts)
        assert result.ok and result.output("a") == "good"
        assert "async says no" in prompts[1]
        assert [c[0] for c in quality.CALLS] == ["async_reject_message"] * 2

    def test_two_argument_validator_gets_the_task_id(self) -> None:
        """A validator taking two arguments is called with the output and the task instance's id."""
        spec = build(
            [{"id": "work", "agent": "p", "map": ["x", "y"], "prompt": "{{ item }}",
              "validator": f"{FX}:with_task_id"}],
            {"p": python(scripted(["out"], []))},
        )
        assert run(spec).ok
        assert sorted(quality.CALLS) == [("with_task_id", "out", "work[0]"), ("with_task_id", "out", "work[1]")]

    def test_rejection_is_fed_back_and_the_redo_accepted(self) -> None:
        """The validator's message reaches the next attempt's prompt; an accepted redo is the output."""
        prompts: list[str] = []
        result = self._run("reject_message", ["bad", "good"], retries=2, prompts=prompts)
        assert result.ok and result.output("a") == "good"
        assert len(prompts) == 2
        assert REJECTED in prompts[1] and "the answer must be exactly 'good'" in prompts[1]
        assert rec(result, "a").meta == {"rejected": 1, "last_rejection":
                                         "validator: validator rejected the output: the answer must be exactly 'good'"}

    def test_exhausting_validation_retries_fails_naming_the_check(self) -> None:
        """After ``validation_retries`` redos are all rejected the task fails with the validator's rejection."""
        prompts: list[str] = []
        result = self._run("reject_message", ["bad"], retries=2, prompts=prompts)
        record = rec(result, "a")
        assert len(prompts) == 3
        assert record.state == TaskState.FAILED and record.attempts == 3
        assert record.error is not None and record.error.startswith("validator: validator rejected the output")
        assert result.failure is not None and "validator rejected the output" in result.failure

    def test_validation_redos_do_not_use_up_provider_retries(self) -> None:
        """A provider error after a rejected answer is still retried ``retries`` times."""
        prompts: list[str] = []
        spec = one_task(scripted(["bad", RuntimeError("flaky"), "good"], prompts),
                        validator=f"{FX}:reject_message", validation_retries=1, retries=1)
        result = run(spec)
        assert result.ok, result.failure
        assert len(prompts) == 3


class TestOutputChecks:
    def _checks(self, validator: str) -> OutputChecks:
        return OutputChecks(build_plan(one_task(scripted([], []), validator=f"{FX}:{validator}")))

    def test_rejection_raises_output_invalid(self) -> None:
        """``validate`` raises OutputInvalid (not retryable, provider ``validator``) for a rejection."""
        with pytest.raises(OutputInvalid, match="validator rejected the output: returned False") as info:
            asyncio.run(self._checks("reject_false").validate("a", "a", "x"))
        assert info.value.provider == "validator"
        assert info.value.retryable is False

    def test_non_bool_verdict_is_named(self) -> None:
        """A verdict that is neither None, True nor a message rejects naming what was returned."""
        checks = self._checks("accept_none")
        checks._validators["a"] = lambda output: 0
        with pytest.raises(OutputInvalid, match="returned 0"):
            asyncio.run(checks.validate("a", "a", "x"))

    def test_schema_mismatch_raises_output_invalid_naming_the_place(self) -> None:
        """``parse`` checks a response against the schema and names where it does not match."""
        checks = OutputChecks(build_plan(one_task(scripted([], []), output_schema=SCHEMA)))
        assert checks.parse("a", ProviderResponse('{"n": 2}', "p", "m")) == {"n": 2}
        with pytest.raises(OutputInvalid, match=r"at n: 'x' is not of type 'integer'"):
            checks.parse("a", ProviderResponse('{"n": "x"}', "p", "m"))


BAD_VALIDATOR = """\
agents:
  a: {provider: sim}
tasks:
  - id: t
    agent: a
    prompt: hi
    validator: {path}
"""


class TestValidatorSpecErrors:
    @pytest.mark.parametrize(("path", "message"), [
        ("tests.fixtures.no_such_module:fn", "cannot import module 'tests.fixtures.no_such_module'"),
        (f"{FX}:missing", "has no attribute 'missing'"),
        (f"{FX}:not_callable", "is not callable"),
        ("no_colon", "must look like 'package.module:function'"),
    ])
    def test_bad_validator_is_a_spec_error_with_file_and_line(self, path: str, message: str) -> None:
        """An unresolvable validator is a SpecError with file, line and field when the runner is built."""
        spec = parse_workflow(BAD_VALIDATOR.replace("{path}", path), file="wf.yaml")
        with pytest.raises(SpecError) as info:
            Runner(spec)
        error = info.value
        assert (error.file, error.line, error.field) == ("wf.yaml", 7, "tasks[0].validator")
        assert message in str(error)
        assert str(error).startswith("wf.yaml:7: tasks[0].validator: ")
        assert "agent 't'" not in str(error)


# -- review --------------------------------------------------------------------------------------------


def reviewer(scores: list[Any], requests: list[ProviderRequest] | None = None) -> AgentFn:
    """A reviewer answering ``{"score": s, "reason": ...}`` for each score in turn (the last from then on);
    an exception is raised, a string is answered as is."""

    seen: list[ProviderRequest] = requests if requests is not None else []

    async def agent(request: ProviderRequest) -> Any:
        seen.append(request)
        score = scores[min(len(seen), len(scores)) - 1]
        if isinstance(score, Exception):
            raise score
        if isinstance(score, str):
            return score
        return {"score": score, "reason": f"scored {score}: needs more detail"}

    return agent


class TestReview:
    def _spec(self, worker: AgentFn, scores: list[Any], requests: list[ProviderRequest], *,
              min_score: float = 0.0, retries: int = 2) -> WorkflowSpec:
        return build([{"id": "a", "agent": "p", "prompt": "Write the plan", "validation_retries": retries,
                       "review": {"agent": "r", "min_score": min_score, "criteria": "concrete steps"}}],
                     {"p": python(worker), "r": python(reviewer(scores, requests))})

    def test_reviewer_score_and_reason_are_recorded(self) -> None:
        """The reviewer's score and reason land in ``record.score`` and ``meta['review']``; it sees the task."""
        requests: list[ProviderRequest] = []
        result = run(self._spec(scripted(["the plan"], []), [8], requests))
        record = rec(result, "a")
        assert result.ok
        assert record.score == 8.0
        assert record.meta["review"] == "scored 8: needs more detail"
        assert len(requests) == 1
        asked = requests[0]
        assert asked.task_id == "a:review" and asked.options == {"review_of": "a", "attempt": 1}
        assert "Write the plan" in asked.prompt and "concrete steps" in asked.prompt and "the plan" in asked.prompt
        assert asked.output_schema is not None and asked.output_schema["required"] == ["score", "reason"]

    def test_score_below_minimum_redoes_with_the_reason(self) -> None:
        """A score below ``min_score`` redoes the task with the reviewer's reason fed back."""
        prompts: list[str] = []
        result = run(self._spec(scripted(["draft", "better plan"], prompts), [4, 9], [], min_score=7))
        record = rec(result, "a")
        assert result.ok and result.output("a") == "better plan"
        assert REJECTED in prompts[1]
        assert "reviewer 'r' scored it 4/10, below the minimum 7: scored 4: needs more detail" in prompts[1]
        assert "draft" in prompts[1]
        assert record.score == 9.0
        assert record.meta["rejected"] == 1

    def test_scores_never_reaching_the_minimum_fail_the_task(self) -> None:
        """When every redo still scores below ``min_score`` the task fails with the review's rejection."""
        result = run(self._spec(scripted(["draft"], []), [3], [], min_score=7, retries=1))
        record = rec(result, "a")
        assert record.state == TaskState.FAILED
        assert record.error is not None and record.error.startswith("review: reviewer 'r' scored it 3/10")

    def test_reviewer_error_does_not_fail_the_task(self) -> None:
        """A reviewer that fails leaves the task done, with no score and the error in ``meta["review_error"]``."""
        result = run(self._spec(scripted(["the plan"], []), [RuntimeError("reviewer down")], [], min_score=9))
        record = rec(result, "a")
        assert result.ok
        assert record.score is None
        assert "reviewer down" in record.meta["review_error"]

    def test_reviewer_without_a_score_does_not_fail_the_task(self) -> None:
        """A review answer with no score is noted in ``meta["review_error"]``; the task is done."""
        result = run(self._spec(scripted(["the plan"], []), ["looks fine to me"], [], min_score=9))
        record = rec(result, "a")
        assert result.ok and record.score is None
        assert record.meta["review_error"] == "the reviewer's answer has no score"

    def test_review_shorthand_names_the_reviewer(self) -> None:
        """``review: AGENT`` reviews with that agent and a minimum of 0, so any score is accepted."""
        spec = build([{"id": "a", "agent": "p", "prompt": "Write", "review": "r"}],
                     {"p": python(scripted(["x"], [])), "r": python(reviewer([1]))})
        result = run(spec)
        assert result.ok and rec(result, "a").score == 1.0


# -- parsing scores and building feedback -------------------------------------------------------------


def response(text: str, data: Any = None) -> ProviderResponse:
    return ProviderResponse(text, "p", "m", data=data)


class TestParseScore:
    def test_json(self) -> None:
        """A JSON answer gives its score and reason."""
        assert parse_score(response('{"score": 7, "reason": "clear"}')) == (7.0, "clear")
        assert parse_score(response("", data={"score": 6.5, "reason": "ok"})) == (6.5, "ok")

    def test_json_score_is_clamped_to_0_10(self) -> None:
        """JSON scores outside 0-10 are clamped."""
        assert parse_score(response('{"score": 15, "reason": "r"}'))[0] == 10.0
        assert parse_score(response('{"score": -2, "reason": "r"}'))[0] == 0.0

    def test_numeric_string_score_in_json(self) -> None:
        """A JSON score given as a numeric string is read as that number, not as another number in the text."""
        assert parse_score(response('{"score": "8", "reason": "2 issues"}')) == (8.0, "2 issues")

    def test_out_of_ten_text(self) -> None:
        """Free text "7/10" is 7, with the text as the reason."""
        assert parse_score(response("7/10 - solid, but thin on tests")) == (7.0, "7/10 - solid, but thin on tests")
        assert parse_score(response("I'd give it 8 out of 10."))[0] == 8.0

    def test_out_of_ten_wins_over_earlier_numbers(self) -> None:
        """In "Found 2 problems. Score: 6/10" the score is 6, not the first number."""
        assert parse_score(response("Found 2 problems. Score: 6/10"))[0] == 6.0
        assert parse_score(response("3 bugs; overall score: 4"))[0] == 4.0

    def test_no_number(self) -> None:
        """An answer with no number from 0 to 10 has no score, and says so."""
        assert parse_score(response("looks good to me")) == (None, "the reviewer's answer has no score")
        assert parse_score(response("score 12")) == (None, "the reviewer's answer has no score")


class TestFeedbackPrompt:
    def test_contains_prompt_error_and_previous_answer(self) -> None:
        """The feedback prompt is the original prompt, the rejection and the previous answer (JSON if data)."""
        text = feedback_prompt("Do it", "too short", {"n": 1})
        assert text.startswith("Do it\n\n---\nYour previous answer was rejected: too short\n")
        assert 'Previous answer:\n{"n": 1}' in text

    def test_long_previous_answer_is_cut(self) -> None:
        """A previous answer over 4,000 characters is cut, so redos do not snowball."""
        text = feedback_prompt("Do it", "wrong", "x" * 10_000)
        assert "x" * 4000 + " ..." in text and "x" * 4001 not in text
