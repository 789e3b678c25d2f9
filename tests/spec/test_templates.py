"""Built-in persona templates: each loads, is complete, and ``extends:`` merges it into an agent."""

from __future__ import annotations

import pytest
import yaml

from agentfleet.errors import SpecError
from agentfleet.spec import AgentSpec, TaskSpec, parse_workflow, persona, persona_names
from agentfleet.spec._templates import _load_all

EXPECTED = {
    "product_owner": "orchestrator",
    "architect": "orchestrator",
    "developer": "primary",
    "researcher": "primary",
    "qa": "secondary",
    "performance_specialist": "specialised",
}

ALL = sorted(EXPECTED)


def _workflow(agents: str, task_agent: str = "dev") -> str:
    return f"""\
agents:
{agents}
tasks:
  - id: t1
    agent: {task_agent}
    prompt: hello
"""


class TestTemplateFiles:
    """Every template file is well formed and complete."""

    def test_the_six_personas_exist(self) -> None:
        """The library ships exactly the six documented personas."""
        assert persona_names() == ALL

    @pytest.mark.parametrize("name", ALL)
    def test_agent_fields_validate(self, name: str) -> None:
        """The ``agent:`` section is a valid AgentSpec with every field a persona must set."""
        fields = persona(name)
        agent = AgentSpec.model_validate(fields)
        for key in (
            "role",
            "system",
            "tier",
            "provider",
            "model",
            "expected_latency",
            "timeout",
            "retries",
            "max_concurrency",
        ):
            assert key in fields, f"{name} lacks {key}"
        assert agent.tier == EXPECTED[name]
        assert agent.provider == "sim"
        assert agent.model == ("sim-gpt" if agent.tier == "orchestrator" else "sim-default")
        assert agent.role

    @pytest.mark.parametrize("name", ALL)
    def test_system_prompt_is_substantial(self, name: str) -> None:
        """The system prompt is 8-20 lines and says what the output looks like and what not to do."""
        system = persona(name)["system"]
        lines = [line for line in system.splitlines() if line.strip()]
        assert 8 <= len(lines) <= 20
        assert "Output" in system
        assert "Do not" in system

    @pytest.mark.parametrize("name", ALL)
    def test_description_is_one_line(self, name: str) -> None:
        """``description:`` is a single non-empty line."""
        description = _load_all()[name]["description"]
        assert isinstance(description, str) and description.strip()
        assert "\n" not in description.strip()

    @pytest.mark.parametrize("name", ALL)
    def test_example_tasks_are_task_specs_for_me(self, name: str) -> None:
        """``example_tasks`` are valid TaskSpecs run by the agent ``me``."""
        doc = _load_all()[name]
        tasks = [TaskSpec.model_validate(t) for t in doc["example_tasks"]]
        assert len(tasks) >= 2
        assert {t.agent for t in tasks} == {"me"}

    def test_persona_returns_a_copy(self) -> None:
        """Changing what ``persona`` returned does not change the template."""
        fields = persona("developer")
        fields["role"] = "changed"
        assert persona("developer")["role"] != "changed"

    def test_unknown_persona_names_the_known_ones(self) -> None:
        """``persona`` of an unknown name raises KeyError listing the templates."""
        with pytest.raises(KeyError, match="known: architect, developer"):
            persona("ceo")


class TestExtends:
    """``extends:`` in a workflow starts an agent from a persona template."""

    def test_inherits_every_field(self) -> None:
        """An agent that only extends a template gets all of the template's fields."""
        spec = parse_workflow(_workflow("  dev:\n    extends: developer\n"))
        agent = spec.agents["dev"]
        base = persona("developer")
        assert agent.name == "dev"
        assert agent.role == base["role"]
        assert agent.system == base["system"]
        assert agent.tier == "primary"
        assert agent.max_concurrency == base["max_concurrency"]
        assert agent.timeout == base["timeout"]

    def test_local_fields_override(self) -> None:
        """Fields set next to ``extends:`` win over the template's."""
        agents = (
            "  dev:\n    extends: developer\n    model: sim-large\n    max_concurrency: 9\n"
            "    system: You write Rust.\n    pool: {size: 3}\n"
        )
        agent = parse_workflow(_workflow(agents)).agents["dev"]
        assert agent.model == "sim-large"
        assert agent.max_concurrency == 9
        assert agent.system == "You write Rust."
        assert agent.pool.size == 3
        assert agent.role == persona("developer")["role"]

    def test_options_merge_key_by_key(self) -> None:
        """``options`` of an agent extending another agent are merged, not replaced."""
        agents = (
            "  base:\n    extends: qa\n    options: {latency: {fixed: 1}, seed: 7}\n"
            "  dev:\n    extends: base\n    options: {seed: 8}\n"
        )
        agent = parse_workflow(_workflow(agents)).agents["dev"]
        assert agent.options == {"latency": {"fixed": 1}, "seed": 8}
        assert agent.role == persona("qa")["role"]

    def test_template_is_not_mutated_by_a_workflow(self) -> None:
        """Overriding a field in one workflow leaves the template intact for the next."""
        parse_workflow(_workflow("  dev:\n    extends: developer\n    role: Intern\n"))
        assert (
            parse_workflow(_workflow("  dev:\n    extends: developer\n")).agents["dev"].role
            == (persona("developer")["role"])
        )

    def test_unknown_template_is_a_spec_error_with_line(self) -> None:
        """Extending an unknown template names the known ones, the field and the line."""
        text = _workflow(
            "  dev:\n    role: x\n  ops:\n    extends: devops_engineer\n", task_agent="ops"
        )
        with pytest.raises(SpecError) as info:
            parse_workflow(text, file="team.yaml")
        err = info.value
        assert err.file == "team.yaml"
        assert err.line == 5
        assert err.field == "agents.ops.extends"
        for name in ALL:
            assert name in err.message
        assert "devops_engineer" in err.message

    @pytest.mark.parametrize("name", ALL)
    def test_every_template_can_be_extended(self, name: str) -> None:
        """A one-line ``extends:`` of each template validates."""
        spec = parse_workflow(_workflow(f"  dev:\n    extends: {name}\n"))
        assert spec.agents["dev"].tier == EXPECTED[name]

    def test_template_yaml_round_trips(self) -> None:
        """The template files are plain safe YAML (no tags, anchors or merge keys)."""
        for name in ALL:
            text = yaml.safe_dump(_load_all()[name])
            assert yaml.safe_load(text) == _load_all()[name]
