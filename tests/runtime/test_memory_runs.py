"""Agent memory across runs: ``remember`` stores a task's output in the run database's memory, and an
agent with ``memory`` finds it in its system prompt in later runs (agent and team scope, keyed slots,
within the task's token budget). Virtual time, python agents that echo what they are sent."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentfleet._types import ProviderRequest, TaskState
from agentfleet.errors import SpecError
from agentfleet.runtime import Runner, RunResult
from agentfleet.runtime._context import estimate_tokens
from agentfleet.spec import WorkflowSpec
from agentfleet.store import MemoryStore, RunStore
from agentfleet.testing import run_virtual
from tests.runtime.kit import build, python, rec

AgentFn = Callable[[ProviderRequest], Awaitable[Any]]
LESSON = "Never store money as floats; use integer cents."


# -- helpers ---------------------------------------------------------------------------------


async def echo_prompt(request: ProviderRequest) -> str:
    return request.prompt


async def echo_system(request: ProviderRequest) -> str:
    """An agent whose output is the system prompt it was sent."""
    return request.system


async def echo_both(request: ProviderRequest) -> str:
    """An agent whose output is its system prompt, then its prompt."""
    return f"{request.system}\n{request.prompt}"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


@pytest.fixture
def store(db: Path) -> Iterator[RunStore]:
    runs = RunStore(db)
    try:
        yield runs
    finally:
        runs.close()


@pytest.fixture
def memory(db: Path, store: RunStore) -> Iterator[MemoryStore]:
    """The memory store in the same database file as the run store."""
    with MemoryStore(db) as mem:
        yield mem


def run(spec: WorkflowSpec, store: RunStore) -> RunResult:
    result = run_virtual(Runner(spec, store=store).run())
    assert result.ok, result.failure
    return result


def learn(store: RunStore, text: str = LESSON, *, agent: str = "dev", task: str = "learn", **remember: Any,
          ) -> RunResult:
    """A run in which ``agent``'s task ``task`` answers ``text`` and remembers it (``remember`` settings)."""
    spec = build([{"id": task, "agent": agent, "prompt": text, "remember": {"category": "mistakes", **remember}}],
                 {agent: python(echo_prompt)})
    return run(spec, store)


def recall(store: RunStore, *, agent: str = "dev", system: str = "You are a developer.",
           **memory: Any) -> str:
    """A run in which ``agent`` (with ``memory`` settings) answers its system prompt; returns it."""
    spec = build([{"id": "use", "agent": agent, "prompt": "go"}],
                 {agent: python(echo_system, system=system, memory=memory)})
    output = run(spec, store).output("use")
    assert isinstance(output, str)
    return output


# -- remembering ---------------------------------------------------------------------------------------


class TestRemember:
    def test_output_is_stored_in_the_agents_memory(self, store: RunStore, memory: MemoryStore) -> None:
        """``remember: {category: mistakes}`` stores the output in the agent's memory, sourced to run and task."""
        result = learn(store)
        [entry] = memory.entries("dev")
        assert (entry.owner, entry.scope, entry.category, entry.content) == ("dev", "agent", "mistakes", LESSON)
        assert entry.source == f"run {result.run_id} task learn"
        assert entry.expires is None and entry.key is None

    def test_shorthand_category(self, store: RunStore, memory: MemoryStore) -> None:
        """``remember: CATEGORY`` stores in that category."""
        spec = build([{"id": "learn", "agent": "dev", "prompt": LESSON, "remember": "patterns"}],
                     {"dev": python(echo_prompt)})
        run(spec, store)
        assert [e.category for e in memory.entries("dev")] == ["patterns"]

    def test_each_mapped_instance_is_remembered(self, store: RunStore, memory: MemoryStore) -> None:
        """Every instance of a mapped task stores its own output, its source naming the instance."""
        spec = build([{"id": "learn", "agent": "dev", "map": ["a", "b"], "prompt": "lesson {{ item }}",
                       "remember": {"category": "patterns"}}], {"dev": python(echo_prompt)})
        result = run(spec, store)
        entries = sorted(memory.entries("dev"), key=lambda e: e.content)
        assert [e.content for e in entries] == ["lesson a", "lesson b"]
        assert [e.source for e in entries] == [f"run {result.run_id} task learn[0]",
                                               f"run {result.run_id} task learn[1]"]

    def test_key_upserts_across_runs(self, store: RunStore, memory: MemoryStore) -> None:
        """A ``key`` (templated) is one slot: a later run replaces the entry instead of adding one."""
        learn(store, "the test command is make test", key="{{ task }}-{{ agent }}")
        second = learn(store, "the test command is pytest -q", key="{{ task }}-{{ agent }}")
        [entry] = memory.entries("dev")
        assert entry.key == "learn-dev"
        assert entry.content == "the test command is pytest -q"
        assert entry.source == f"run {second.run_id} task learn"

    def test_without_key_every_run_adds_an_entry(self, store: RunStore, memory: MemoryStore) -> None:
        """Without a key each run adds its own entry."""
        learn(store, "first lesson")
        learn(store, "second lesson")
        assert [e.content for e in memory.entries("dev")] == ["second lesson", "first lesson"]

    def test_team_scope_stores_in_the_teams_memory(self, store: RunStore, memory: MemoryStore) -> None:
        """``remember: {team: T}`` stores the output in team T's shared memory, not the agent's."""
        learn(store, team="backend")
        assert memory.entries("dev") == []
        [entry] = memory.entries("backend", scope="team")
        assert entry.content == LESSON

    def test_max_chars_and_ttl(self, store: RunStore, memory: MemoryStore) -> None:
        """``max_chars`` keeps the start of the output; ``ttl`` sets an expiry that far ahead."""
        learn(store, "x" * 500, max_chars=100, ttl="1d")
        [entry] = memory.entries("dev")
        assert entry.content == "x" * 100
        assert entry.expires is not None and entry.expires - entry.updated == pytest.approx(86400)

    def test_empty_output_is_not_remembered_and_does_not_fail(self, store: RunStore, memory: MemoryStore) -> None:
        """A task with ``remember`` whose output is empty is done; there is nothing to remember."""
        spec = build([{"id": "learn", "agent": "dev", "prompt": "", "remember": "mistakes"}],
                     {"dev": python(echo_prompt)})
        result = run_virtual(Runner(spec, store=store).run())
        assert rec(result, "learn").state == TaskState.DONE
        assert memory.entries("dev") == []

    def test_invalid_ttl_is_a_spec_error_before_the_run(self, store: RunStore) -> None:
        """A ``remember.ttl`` that is not a duration is a SpecError when the runner is built."""
        spec = build([{"id": "learn", "agent": "dev", "prompt": LESSON,
                       "remember": {"category": "mistakes", "ttl": "soon"}}], {"dev": python(echo_prompt)})
        with pytest.raises(SpecError, match="ttl"):
            run_virtual(Runner(spec, store=store).run())


# -- recalling ---------------------------------------------------------------------------------------


class TestRecall:
    def test_later_run_gets_the_entry_in_its_system_prompt(self, store: RunStore) -> None:
        """In a later run an agent with ``memory: {categories: [mistakes]}`` gets the entry in its system prompt."""
        learn(store)
        system = recall(store, categories=["mistakes"])
        assert system == f"You are a developer.\n\n## Memory\n### mistakes\n- {LESSON}"

    def test_other_categories_are_left_out(self, store: RunStore) -> None:
        """Only the categories the agent asks for are injected."""
        learn(store)
        assert recall(store, categories=["patterns"]) == "You are a developer."
        assert LESSON in recall(store)  # no categories: all of them

    def test_agent_without_memory_gets_none(self, store: RunStore) -> None:
        """An agent that declares no ``memory`` gets its system prompt untouched."""
        learn(store)
        spec = build([{"id": "use", "agent": "dev", "prompt": "go"}],
                     {"dev": python(echo_system, system="You are a developer.")})
        assert run(spec, store).output("use") == "You are a developer."

    def test_memory_of_other_agents_is_private(self, store: RunStore) -> None:
        """An agent-scoped entry reaches only its own agent."""
        learn(store, agent="dev")
        assert recall(store, agent="qa", categories=["mistakes"]) == "You are a developer."

    def test_team_scope_shares_between_agents(self, store: RunStore) -> None:
        """An entry one agent stored for team T reaches another agent with ``memory: {team: T}``."""
        learn(store, agent="dev", team="backend")
        assert LESSON in recall(store, agent="qa", team="backend")
        assert recall(store, agent="qa", team="frontend") == "You are a developer."

    def test_recall_in_the_same_run_after_remembering(self, store: RunStore) -> None:
        """A task that runs after a remembering task in the same run already sees the entry."""
        spec = build([{"id": "learn", "agent": "dev", "prompt": LESSON, "remember": "mistakes"},
                      {"id": "use", "agent": "dev", "depends_on": ["learn"], "prompt": "go"}],
                     {"dev": {"provider": "python", "function": echo_both, "memory": {}}})
        result = run(spec, store)
        assert result.output("learn") == f"\n{LESSON}"  # nothing remembered yet when it ran
        assert result.output("use") == f"## Memory\n### mistakes\n- {LESSON}\ngo"

    def test_memory_counts_against_the_token_budget(self, store: RunStore) -> None:
        """Injected memory counts against ``context.max_tokens``: a prompt that fits without it is truncated."""
        learn(store, "lesson " * 20)
        prompt = "Build the feature " + "with care " * 30
        own = estimate_tokens("You are a developer.") + estimate_tokens(prompt)
        budget = own + 10
        tasks = [{"id": "use", "agent": "dev", "prompt": prompt, "context": {"max_tokens": budget}}]
        plain = run(build(tasks, {"dev": python(echo_prompt, system="You are a developer.")}), store)
        assert plain.output("use") == prompt  # fits without memory
        remembered = run(build(tasks, {"dev": python(echo_prompt, system="You are a developer.",
                                                        memory={"categories": ["mistakes"]})}), store)
        record = rec(remembered, "use")
        assert record.meta["context_strategy"] == "truncate"
        assert record.meta["context_before"] > budget
        assert remembered.output("use") != prompt
        assert record.context_tokens <= budget

    def test_memory_over_the_budget_fails_the_task(self, store: RunStore) -> None:
        """Memory that alone fills the budget fails the task with the budget error."""
        learn(store, "lesson " * 60)
        spec = build([{"id": "use", "agent": "dev", "prompt": "go", "context": {"max_tokens": 30}}],
                     {"dev": python(echo_prompt, memory={"categories": ["mistakes"]})})
        result = run_virtual(Runner(spec, store=store).run())
        error = rec(result, "use").error
        assert error is not None and "over its budget of 30 (the system prompt alone fills it)" in error
