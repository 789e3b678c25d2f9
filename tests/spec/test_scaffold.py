"""``agentfleet init``: scaffolded workflows parse, are sound and commented; the examples load."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from agentfleet.spec import load_workflow, parse_workflow, persona_names
from agentfleet.spec._scaffold import scaffold, templates_table
from tests.fixtures.spec_checks import problems

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


class TestScaffold:
    """Each scaffold is a commented workflow that validates and would run."""

    @pytest.mark.parametrize("name", persona_names())
    def test_template_scaffold_parses(self, name: str) -> None:
        """A persona's scaffold extends that persona and passes parse_workflow."""
        text = scaffold(name)
        spec = parse_workflow(text, file=f"{name}.yaml")
        assert list(spec.agents) == [name]
        assert f"extends: {name}" in text
        assert len(spec.tasks) >= 2
        assert {t.agent for t in spec.tasks} == {name}

    @pytest.mark.parametrize("name", [None, *persona_names()])
    def test_scaffold_is_sound(self, name: str | None) -> None:
        """References, map sources, vars and prompt rendering all check out."""
        assert problems(parse_workflow(scaffold(name))) == []

    @pytest.mark.parametrize("name", [None, *persona_names()])
    def test_scaffold_is_commented(self, name: str | None) -> None:
        """The text explains itself: a header, the settings and a hooks example."""
        text = scaffold(name)
        assert text.startswith("# ")
        assert "agentfleet run" in text
        assert "# hooks:" in text
        assert sum(line.lstrip().startswith("#") for line in text.splitlines()) >= 15

    def test_scaffold_vars_round_trip(self) -> None:
        """Vars written by the scaffolder read back as the template's example vars."""
        from agentfleet.spec._templates import _load_all

        for name in persona_names():
            spec = parse_workflow(scaffold(name))
            assert spec.vars == _load_all()[name]["example_vars"]

    def test_default_is_a_small_team(self) -> None:
        """No template gives a product owner, developers and QA in a mapped sprint."""
        spec = parse_workflow(scaffold(None))
        assert set(spec.agents) == {"product_owner", "developer", "qa"}
        for name, agent in spec.agents.items():
            assert agent.role, name
        by_id = {t.id: t for t in spec.tasks}
        assert by_id["implement"].map is not None and by_id["implement"].map.over == "plan.stories"
        assert by_id["review"].map is not None and by_id["review"].map.over == "implement"
        assert spec.agents["developer"].pool.size == 3

    def test_unknown_template_lists_known(self) -> None:
        """An unknown template is a KeyError naming every known one."""
        with pytest.raises(KeyError) as info:
            scaffold("ceo")
        message = str(info.value.args[0])
        assert "'ceo'" in message
        for name in persona_names():
            assert name in message

    def test_scaffold_is_one_yaml_document(self) -> None:
        """The output is plain YAML any loader reads."""
        data = yaml.safe_load(scaffold(None))
        assert set(data) >= {"name", "agents", "tasks", "settings"}


class TestTemplatesTable:
    """``templates_table`` feeds ``agentfleet init --list``."""

    def test_rows(self) -> None:
        """One (name, description) row per template, sorted, descriptions one line."""
        rows = templates_table()
        assert [name for name, _ in rows] == persona_names()
        for name, description in rows:
            assert description and "\n" not in description, name


class TestExamples:
    """The shipped examples load and are sound."""

    @pytest.mark.parametrize("file", ["parallel_sprint.yaml", "research_team.yaml"])
    def test_example_loads(self, file: str) -> None:
        """load_workflow accepts the example and the cross-reference checks find nothing."""
        spec = load_workflow(EXAMPLES / file)
        assert problems(spec) == []

    def test_parallel_sprint_shape(self) -> None:
        """Split into exactly 4 stories, 4 parallel developers, per-story QA, one release note."""
        spec = load_workflow(EXAMPLES / "parallel_sprint.yaml")
        by_id = {t.id: t for t in spec.tasks}
        assert list(by_id) == ["split", "implement", "review", "release_note"]
        stories = by_id["split"].output_schema["properties"]["stories"]  # type: ignore[index]
        assert (stories["minItems"], stories["maxItems"]) == (4, 4)
        assert set(stories["items"]["required"]) == {"id", "title", "acceptance_criteria"}
        implement = by_id["implement"]
        assert implement.map is not None and implement.map.over == "split.stories"
        assert implement.inputs == ["split"]
        review = by_id["review"]
        assert review.map is not None and review.map.over == "implement"
        assert review.inputs == ["implement"]
        assert by_id["release_note"].inputs == ["review"]
        assert by_id["release_note"].depends_on == ["review"]
        developer = spec.agents[implement.agent]
        assert developer.pool.size == 4 and developer.max_concurrency == 4
        assert spec.agents[review.agent].max_concurrency == 4
        assert spec.settings.max_parallel == 8
        assert [t.phase for t in spec.tasks] == ["plan", "build", "verify", "ship"]
        assert all(a.provider == "sim" for a in spec.agents.values())

    def test_research_team_shape(self) -> None:
        """A fan-out over the question list and a fan-in synthesis."""
        spec = load_workflow(EXAMPLES / "research_team.yaml")
        by_id = {t.id: t for t in spec.tasks}
        assert by_id["investigate"].map is not None
        assert by_id["investigate"].map.over == "vars.questions"
        assert len(spec.vars["questions"]) == 6
        assert "investigate" in by_id["synthesis"].inputs

    def test_overrides_replace_vars(self) -> None:
        """``--set`` style overrides reach the example's vars."""
        spec = load_workflow(EXAMPLES / "parallel_sprint.yaml", overrides={"epic_title": "SSO"})
        assert spec.vars["epic_title"] == "SSO"


class TestSpecChecks:
    """The test helper that stands in for ``agentfleet.plan`` catches real mistakes."""

    def test_catches_undeclared_input_and_unknown_agent(self) -> None:
        """Using inputs.X without declaring X, and an unknown agent, are both reported."""
        spec = parse_workflow(
            "agents: {a: {}}\n"
            "tasks:\n"
            "  - {id: one, agent: a, prompt: hi}\n"
            "  - {id: two, agent: b, prompt: '{{ inputs.one }} {{ vars.nope }}'}\n"
        )
        found = problems(spec)
        assert any("inputs.one" in p for p in found)
        assert any("unknown agent" in p for p in found)
        assert any("vars.nope" in p for p in found)
