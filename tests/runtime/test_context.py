"""Context assembly end to end: declared inputs only, large outputs by reference through the
artifact store, token budgets (truncate, summarize, fail) and the context-token accounting
behind a run's ``context_reduction``. Virtual time, python agents that echo their prompt."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentfleet._types import ProviderRequest, TaskState
from agentfleet.runtime._context import ArtifactView, estimate_tokens, fit_head_tail, output_text
from agentfleet.spec import WorkflowSpec, load_workflow
from agentfleet.store import ArtifactStore, RunStore
from tests.runtime.kit import build, python, rec, run

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
OMITTED = "characters omitted to fit the token budget"

AgentFn = Callable[[ProviderRequest], Awaitable[Any]]


# -- helpers ---------------------------------------------------------------------------------


async def echo(request: ProviderRequest) -> str:
    """An agent whose output is exactly the prompt it received."""
    return request.prompt


def says(output: Any) -> AgentFn:
    """An agent that answers ``output`` whatever it is asked."""

    async def agent(request: ProviderRequest) -> Any:
        return output

    return agent


def by_task(outputs: dict[str, Any]) -> AgentFn:
    """An agent that answers ``outputs[task id]``."""

    async def agent(request: ProviderRequest) -> Any:
        return outputs[request.task_id]

    return agent


def big_text(tag: str, words: int = 200) -> str:
    """A recognisable text of ~``words`` words: ``BEGIN-tag``, filler, ``END-tag``."""
    return f"BEGIN-{tag} " + " ".join(f"{tag}{i}" for i in range(words)) + f" END-{tag}"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


SMALL = {"artifact_threshold": 200, "preview_chars": 40}


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RunStore]:
    db = RunStore(tmp_path / "runs.db")
    try:
        yield db
    finally:
        db.close()


# -- inputs ------------------------------------------------------------------------------------


class TestDeclaredInputs:
    def test_task_receives_only_declared_inputs(self) -> None:
        """A task depending on two upstreams but declaring one receives only that one's output."""
        spec = build(
            [
                {"id": "a", "agent": "src", "prompt": "go"},
                {"id": "b", "agent": "src", "prompt": "go"},
                {"id": "c", "agent": "e", "depends_on": ["a"], "inputs": ["b"], "prompt": "{{ inputs | tojson }}"},
            ],
            {"src": python(by_task({"a": "alpha-output", "b": "beta-output"})), "e": python(echo)},
        )
        result = run(spec)
        assert result.ok
        assert json.loads(result.output("c")) == {"b": "beta-output"}
        assert "alpha-output" not in result.output("c")

    def test_small_output_is_passed_inline(self) -> None:
        """An output at or below ``artifact_threshold`` reaches the downstream prompt as its full text."""
        text = "x" * 200
        spec = build(
            [{"id": "a", "agent": "src", "prompt": "go"},
             {"id": "b", "agent": "e", "inputs": ["a"], "prompt": "{{ inputs.a }}"}],
            {"src": python(says(text)), "e": python(echo)},
            context=SMALL,
        )
        result = run(spec)
        assert result.output("b") == text
        assert "artifact" not in rec(result, "a").meta


# -- large outputs by reference -----------------------------------------------------------------


class TestArtifactReferences:
    def _spec(self, template: str = "{{ inputs.a }}", **context: Any) -> WorkflowSpec:
        task: dict[str, Any] = {"id": "b", "agent": "e", "inputs": ["a"], "prompt": template}
        if context:
            task["context"] = context
        return build([{"id": "a", "agent": "src", "prompt": "go"}, task],
                     {"src": python(says(big_text("a"))), "e": python(echo)}, context=SMALL)

    def test_large_output_reaches_downstream_as_reference_with_preview(self) -> None:
        """An output over artifact_threshold reaches the downstream prompt as an artifact:// reference and preview."""
        text = big_text("a")
        result = run(self._spec())
        prompt = result.output("b")
        assert f"artifact://sha256/{sha(text)}" in prompt
        assert f"[output of a: {len(text):,} characters" in prompt
        assert text[:40] in prompt  # the preview
        assert "END-a" not in prompt
        assert len(prompt) < 300
        assert rec(result, "a").meta["artifact"] == sha(text)

    def test_large_output_is_stored_in_the_artifact_store(self, store: RunStore) -> None:
        """The referenced output is in the run database's ArtifactStore, by digest, identical, linked to its task."""
        text = big_text("a")
        result = run(self._spec(), store=store)
        assert result.ok and result.run_id is not None
        digest = rec(result, "a").meta["artifact"]
        with ArtifactStore(store.path) as artifacts:
            assert artifacts.get(digest) == text == result.output("a")
            assert [(task, ref.digest) for task, ref in artifacts.links(result.run_id)] == [("a", digest)]

    def test_context_full_passes_the_full_text(self) -> None:
        """``context.full: [a]`` passes a large input in full instead of by reference."""
        result = run(self._spec(full=["a"]))
        assert result.output("b") == big_text("a")

    def test_context_full_all_passes_every_input_in_full(self) -> None:
        """``context.full: all`` passes every large input in full."""
        result = run(self._spec(full="all"))
        assert result.output("b") == big_text("a")

    def test_template_picking_a_field_of_a_large_json_output_gets_the_field(self) -> None:
        """``inputs.a.field`` of a large JSON output is the field, even one named size, data or digest."""
        output = {"summary": "S", "size": "L", "data": "D", "digest": "G", "body": "x" * 3000}
        spec = build(
            [{"id": "a", "agent": "src", "prompt": "go"},
             {"id": "b", "agent": "e", "inputs": ["a"],
              "prompt": "{{ inputs.a.summary }}|{{ inputs.a.size }}|{{ inputs.a.data }}|{{ inputs.a.digest }}|"
                        "{{ inputs.a['body'] | length }}|{{ inputs.a.keys() | sort | join(',') }}"}],
            {"src": python(says(output)), "e": python(echo)},
            context=SMALL,
        )
        result = run(spec)
        assert "artifact" in rec(result, "a").meta
        assert result.output("b") == "S|L|D|G|3000|body,data,digest,size,summary"

    def test_iterating_a_large_list_output_iterates_its_items(self) -> None:
        """A template looping over a large list output stored by reference loops over its items."""
        items = [f"item-{i}-" + "y" * 40 for i in range(10)]
        spec = build(
            [{"id": "a", "agent": "src", "prompt": "go"},
             {"id": "b", "agent": "e", "inputs": ["a"],
              "prompt": "{{ inputs.a | length }}:{% for x in inputs.a %}{{ x[:6] }};{% endfor %}"}],
            {"src": python(says(items)), "e": python(echo)},
            context=SMALL,
        )
        result = run(spec)
        assert "artifact" in rec(result, "a").meta
        assert result.output("b") == "10:" + "".join(f"item-{i};" for i in range(10))

    def test_mapped_fan_in_of_large_outputs_is_a_reference_each(self) -> None:
        """A fan-in over a mapped step with large outputs receives one reference per item, in item order."""
        texts = {f"work[{i}]": big_text(f"w{i}") for i in range(3)}
        spec = build(
            [{"id": "work", "agent": "src", "map": [0, 1, 2], "prompt": "{{ item }}"},
             {"id": "join", "agent": "e", "inputs": ["work"],
              "prompt": "{% for w in inputs.work %}{{ w }}\n===\n{% endfor %}"}],
            {"src": python(by_task(texts)), "e": python(echo)},
            context=SMALL,
        )
        result = run(spec)
        parts = result.output("join").split("\n===\n")[:-1]
        assert len(parts) == 3
        for i, part in enumerate(parts):
            text = texts[f"work[{i}]"]
            assert part.startswith(f"[output of work[{i}]:")
            assert f"artifact://sha256/{sha(text)}" in part
            assert f"END-w{i}" not in part

    def test_tojson_of_inputs_with_a_large_output_renders_the_reference(self) -> None:
        """``{{ inputs | tojson }}`` with a large input renders its reference instead of failing the task."""
        result = run(self._spec("{{ inputs | tojson }}"))
        assert result.ok, result.failure
        assert f"artifact://sha256/{sha(big_text('a'))}" in json.loads(result.output("b"))["a"]


class TestArtifactView:
    def test_str_is_reference_with_preview(self) -> None:
        """``str(view)`` names the task, size and URI, then the preview, with "..." when cut."""
        view = ArtifactView("t", "ab" * 32, 5000, "the start", "the start and much more")
        assert str(view) == (f"[output of t: 5,000 characters, stored as artifact://sha256/{'ab' * 32}; "
                             "preview follows]\nthe start ...")
        assert view.uri == f"artifact://sha256/{'ab' * 32}"

    def test_data_fields_win_over_view_attributes(self) -> None:
        """A dict field named like a view attribute is the field; other names reach the view."""
        view: Any = ArtifactView("t", "d" * 64, 99, "p", {"size": "L", "uri": "u"})
        assert (view.size, view.uri) == ("L", "u")
        assert view.digest == "d" * 64
        assert view["size"] == "L"

    def test_container_protocols_reach_the_data(self) -> None:
        """Length, membership, iteration, truthiness and equality are the data's."""
        view = ArtifactView("t", "d" * 64, 9, "p", ["a", "b"])
        assert len(view) == 2 and "a" in view and list(view) == ["a", "b"]
        assert view == ["a", "b"] and bool(view)
        assert not ArtifactView("t", "d" * 64, 0, "", [])

    def test_output_text_of_a_view_is_its_full_text(self) -> None:
        """``output_text`` of a view is the full data as JSON, not the reference line."""
        view = ArtifactView("t", "d" * 64, 9, "p", {"full_text": "x", "k": 1})
        assert output_text(view) == '{"full_text":"x","k":1}'


# -- token budgets -------------------------------------------------------------------------------


class TestTokenBudget:
    def _spec(self, strategy: str, *, budget: int = 100, summarizer: AgentFn | None = None,
              system: str = "", agent: AgentFn = echo) -> WorkflowSpec:
        context: dict[str, Any] = {"max_tokens": budget, "strategy": strategy, "full": ["a"]}
        agents = {"src": python(says(big_text("a", 400))), "e": python(agent, system=system)}
        if summarizer is not None:
            context["summarizer"] = "s"
            agents["s"] = python(summarizer)
        return build(
            [{"id": "a", "agent": "src", "prompt": "go"},
             {"id": "b", "agent": "e", "inputs": ["a"], "prompt": "Use this: {{ inputs.a }}", "context": context}],
            agents,
        )

    def test_prompt_within_budget_is_untouched(self) -> None:
        """A prompt that fits ``max_tokens`` is sent as rendered, with no strategy recorded."""
        result = run(self._spec("fail", budget=100_000))
        assert result.output("b") == "Use this: " + big_text("a", 400)
        assert "context_strategy" not in rec(result, "b").meta

    def test_truncate_keeps_head_and_tail_with_marker(self) -> None:
        """Over budget, ``truncate`` keeps the prompt's head and tail around the marker and records the strategy."""
        result = run(self._spec("truncate", system="You are terse."))
        prompt = result.output("b")
        full = "Use this: " + big_text("a", 400)
        head, _, tail = prompt.partition("\n[... ")
        assert OMITTED in prompt
        assert full.startswith(head) and head.startswith("Use this: BEGIN-a")
        assert full.endswith(tail.split(" ...]\n", 1)[1]) and prompt.endswith("END-a")
        record = rec(result, "b")
        assert record.meta["context_strategy"] == "truncate"
        assert record.meta["context_before"] == estimate_tokens("You are terse.") + estimate_tokens(full)
        assert estimate_tokens("You are terse.") + estimate_tokens(prompt) <= 100

    def test_settings_max_tokens_is_the_default_budget(self) -> None:
        """``settings.context.max_tokens`` bounds a task that declares no budget of its own."""
        spec = build(
            [{"id": "a", "agent": "src", "prompt": "go"},
             {"id": "b", "agent": "e", "inputs": ["a"], "prompt": "{{ inputs.a }}", "context": {"full": ["a"]}}],
            {"src": python(says(big_text("a", 400))), "e": python(echo)},
            context={"max_tokens": 80},
        )
        result = run(spec)
        assert OMITTED in result.output("b")
        assert estimate_tokens(result.output("b")) <= 80
        assert rec(result, "b").meta["context_strategy"] == "truncate"

    def test_summarize_sends_the_summarizers_answer(self) -> None:
        """Over budget, ``summarize`` has the summarizer agent shorten the prompt; the task receives its answer."""
        asked: list[ProviderRequest] = []

        async def summarizer(request: ProviderRequest) -> str:
            asked.append(request)
            return "SHORT VERSION"

        result = run(self._spec("summarize", summarizer=summarizer))
        assert result.ok
        assert result.output("b") == "SHORT VERSION"
        assert len(asked) == 1
        assert asked[0].task_id == "b:summarize"
        assert "Use this: BEGIN-a" in asked[0].prompt and "END-a" in asked[0].prompt
        assert asked[0].max_tokens == 100
        assert rec(result, "b").meta["context_strategy"] == "summarize"

    def test_summary_still_over_budget_is_truncated(self) -> None:
        """A summary that is itself over budget is cut head and tail (strategy ``summarize+truncate``)."""
        result = run(self._spec("summarize", summarizer=says(big_text("s", 400))))
        assert OMITTED in result.output("b")
        assert result.output("b").startswith("BEGIN-s")
        assert rec(result, "b").meta["context_strategy"] == "summarize+truncate"

    def test_fail_strategy_fails_the_task_with_a_clear_error(self) -> None:
        """Over budget, ``fail`` fails the task (agent not called) naming task, tokens and budget; the run fails."""
        calls: list[str] = []

        async def agent(request: ProviderRequest) -> str:
            calls.append(request.task_id)
            return "never"

        result = run(self._spec("fail", agent=agent))
        tokens = estimate_tokens("Use this: " + big_text("a", 400))
        record = rec(result, "b")
        assert calls == []
        assert record.state == TaskState.FAILED
        assert record.error is not None
        assert record.error.startswith(f"task b: context is ~{tokens:,} tokens, over its budget of 100 "
                                       "(its strategy is 'fail')")
        assert result.status == "failed" and not result.ok
        assert result.failure is not None and f"~{tokens:,} tokens" in result.failure
        assert rec(result, "a").state == TaskState.DONE

    def test_system_prompt_over_budget_fails_even_when_truncating(self) -> None:
        """A system prompt that alone fills the budget fails the task, saying so."""
        result = run(self._spec("truncate", budget=5, system="You are a very thorough and careful reviewer."))
        error = rec(result, "b").error
        assert error is not None and "the system prompt alone fills it" in error
        assert result.status == "failed"


# -- token accounting ----------------------------------------------------------------------------


class TestTokenAccounting:
    def test_context_tokens_are_estimated_when_the_provider_reports_none(self) -> None:
        """Without provider usage ``context_tokens`` is the system plus prompt estimate; the run sums them."""
        spec = build(
            [{"id": "a", "agent": "src", "prompt": "go"},
             {"id": "b", "agent": "e", "inputs": ["a"], "prompt": "Check: {{ inputs.a }}"}],
            {"src": python(says("some upstream words")), "e": python(echo, system="You check things.")},
        )
        result = run(spec)
        b = rec(result, "b")
        assert b.context_tokens == estimate_tokens("You check things.") + estimate_tokens(result.output("b"))
        assert rec(result, "a").context_tokens == estimate_tokens("go")
        assert result.context_tokens == sum(r.context_tokens for r in result.records)

    def test_context_tokens_are_the_providers_usage_when_reported(self) -> None:
        """With the sim, which reports input usage, ``context_tokens`` is that usage."""
        spec = build([{"id": "a", "agent": "s", "prompt": "Write a haiku about queues"}],
                     {"s": {"provider": "sim", "latency": {"fixed": 1.0}}})
        record = rec(run(spec), "a")
        assert record.context_tokens == record.tokens_in > 0

    def test_naive_tokens_count_every_earlier_output(self) -> None:
        """A later task's ``naive_tokens`` includes earlier outputs' tokens, undeclared ones too."""
        outs = {"a": big_text("a", 100), "b": big_text("b", 100)}
        spec = build(
            [{"id": "a", "agent": "src", "prompt": "go"},
             {"id": "b", "agent": "src", "prompt": "go"},
             {"id": "c", "agent": "e", "depends_on": ["a", "b"], "inputs": ["a"], "prompt": "{{ inputs.a }}"}],
            {"src": python(by_task(outs)), "e": python(echo)},
        )
        result = run(spec)
        a, c = rec(result, "a"), rec(result, "c")
        assert a.naive_tokens == a.context_tokens == estimate_tokens("go")  # nothing before it
        assert c.naive_tokens >= estimate_tokens(outs["a"]) + estimate_tokens(outs["b"])
        assert c.naive_tokens >= c.context_tokens + estimate_tokens(outs["b"])  # b was not sent
        assert result.naive_tokens == sum(r.naive_tokens for r in result.records)

    def test_context_reduction_is_the_share_of_naive_tokens_saved(self) -> None:
        """``context_reduction`` is 1 - context/naive over the run, higher when outputs travel by reference."""
        spec = build(
            [{"id": "a", "agent": "src", "prompt": "go"},
             {"id": "b", "agent": "e", "inputs": ["a"], "prompt": "Check: {{ inputs.a }}"}],
            {"src": python(says(big_text("a", 300))), "e": python(echo)},
            context=SMALL,
        )
        result = run(spec)
        assert result.context_reduction == pytest.approx(1 - result.context_tokens / result.naive_tokens)
        assert result.context_reduction is not None and result.context_reduction > 0.8

    def test_naive_baseline_is_never_below_what_was_sent(self) -> None:
        """``naive_tokens >= context_tokens`` even when vars expand, so context_reduction stays within 0-1."""
        spec = build([{"id": "a", "agent": "e", "prompt": "Brief: {{ vars.brief }}"}], {"e": python(echo)},
                     vars={"brief": big_text("brief", 200)})
        result = run(spec)
        record = rec(result, "a")
        assert record.naive_tokens >= record.context_tokens
        assert result.context_reduction is not None and 0 <= result.context_reduction <= 1

    def test_parallel_sprint_reports_a_context_reduction(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The parallel sprint example, on virtual time, saves a share of the naive baseline's context tokens."""
        result = run(load_workflow(EXAMPLES / "parallel_sprint.yaml"))
        assert result.ok, result.failure
        reduction = result.context_reduction
        assert reduction is not None
        with capsys.disabled():
            print(f"\nparallel_sprint: context {result.context_tokens:,} tokens, naive {result.naive_tokens:,}, "
                  f"reduction {reduction:.1%}")
        assert 0 < reduction < 1
        assert result.context_tokens == sum(r.context_tokens for r in result.records)
        assert "artifact" in rec(result, "release_note").meta  # the one output over the 2,000-char threshold


# -- estimator and truncation ----------------------------------------------------------------------


class TestEstimateTokens:
    @pytest.mark.parametrize(
        ("text", "tokens"),
        [
            ("", 0),
            ("abcd", 2),  # one word: at least 1.3 tokens
            ("x" * 400, 100),  # no spaces: 4 characters a token
            ("hello world", 3),
            ("a " * 100, 130),  # dense: 1.3 tokens a word beats 200/4
            ("The quick brown fox jumps over the lazy dog.", 12),  # 44 chars -> 11, 9 words -> 12
        ],
    )
    def test_known_strings(self, text: str, tokens: int) -> None:
        """Tokens are the larger of characters/4 and words*1.3, rounded up."""
        assert estimate_tokens(text) == tokens


class TestFitHeadTail:
    def test_text_within_budget_is_unchanged(self) -> None:
        """A text that fits is returned as is."""
        assert fit_head_tail("short text", 10) == "short text"

    def test_keeps_head_and_tail_two_to_one_with_marker(self) -> None:
        """An over-budget text keeps its start and end (about 2:1) around a marker counting what was cut."""
        text = "".join(chr(ord("a") + i % 26) for i in range(10_000))
        out = fit_head_tail(text, 100)
        head, marker, tail = out.partition("\n[... ")
        cut = int(tail.split(" ", 1)[0])
        tail = tail.split(" ...]\n", 1)[1]
        assert marker and text.startswith(head) and text.endswith(tail)
        assert len(head) + cut + len(tail) == len(text)
        assert len(head) == pytest.approx(2 * len(tail), abs=2)
        assert estimate_tokens(out) <= 100

    def test_dense_text_is_cut_within_budget(self) -> None:
        """Text of many short words (over a token per 4 characters) is still cut to the budget."""
        text = "a " * 10_000
        for budget in (40, 100, 1000):
            out = fit_head_tail(text, budget)
            assert estimate_tokens(out) <= budget
            assert OMITTED in out

    def test_tiny_budget_leaves_only_the_marker(self) -> None:
        """Below the marker's own size nothing of the text is kept."""
        out = fit_head_tail("x" * 1000, 3)
        assert out.strip().startswith("[...") and "x" not in out
