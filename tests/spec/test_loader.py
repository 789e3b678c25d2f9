"""Every spec error names the file, line and field; hostile files fail fast and small."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from agentfleet.errors import PlanError, SpecError
from agentfleet.plan import build_plan
from agentfleet.spec import load_workflow, parse_workflow

GOOD = """\
name: ok
agents:
  dev:
    provider: sim
    model: sim-fast
tasks:
  - id: a
    agent: dev
    prompt: hello
  - id: b
    agent: dev
    inputs: [a]
    prompt: "use {{ inputs.a }}"
"""


def error_of(text: str | bytes, tmp_path: Path, *, plan: bool = True) -> SpecError:
    path = tmp_path / "wf.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(SpecError) as info:
        spec = load_workflow(path)
        if plan:
            build_plan(spec)
    assert info.value.file == str(path)
    return info.value


class TestValid:
    def test_good_file_loads(self, tmp_path: Path) -> None:
        """A valid workflow loads and plans."""
        path = tmp_path / "wf.yaml"
        path.write_text(GOOD)
        plan = build_plan(load_workflow(path))
        assert list(plan.order) == ["a", "b"]
        assert plan.steps["b"].deps == ("a",)

    def test_set_overrides_vars(self) -> None:
        """--set values replace vars."""
        spec = parse_workflow(GOOD.replace("name: ok", "name: ok\nvars: {x: 1}"), overrides={"x": 2})
        assert spec.vars == {"x": 2}


class TestSyntaxAndTypes:
    def test_yaml_syntax_error_has_line(self, tmp_path: Path) -> None:
        """A YAML syntax error names its line."""
        e = error_of(GOOD.replace("    prompt: hello", "    prompt: [unclosed"), tmp_path)
        assert e.line is not None and e.line >= 9
        assert "YAML syntax error" in str(e)

    def test_wrong_type_names_field_and_line(self, tmp_path: Path) -> None:
        """A wrong type names the field path and its line."""
        e = error_of(GOOD.replace("    prompt: hello", "    prompt: hello\n    retries: many"), tmp_path)
        assert e.field == "tasks[0].retries"
        assert e.line == 10
        assert "many" in str(e)

    def test_unknown_field_is_an_error(self, tmp_path: Path) -> None:
        """A typo in a key is reported, not ignored."""
        e = error_of(GOOD.replace("    inputs: [a]", "    inputz: [a]"), tmp_path)
        assert "unknown field 'inputz'" in str(e)
        assert e.line == 12

    def test_missing_required_field(self, tmp_path: Path) -> None:
        """A task without an agent says so."""
        e = error_of(GOOD.replace("    agent: dev\n    prompt: hello", "    prompt: hello"), tmp_path)
        assert "required field 'agent' is missing" in str(e)
        assert e.field == "tasks[0].agent"


class TestGraphErrors:
    def test_unknown_agent(self, tmp_path: Path) -> None:
        """An unknown agent is named with a suggestion and its line."""
        e = error_of(GOOD.replace("    agent: dev\n    inputs", "    agent: deev\n    inputs"), tmp_path)
        assert isinstance(e, PlanError)
        assert "unknown agent 'deev'" in str(e) and "did you mean 'dev'" in str(e)
        assert e.line == 11

    def test_missing_dependency(self, tmp_path: Path) -> None:
        """depends_on naming no task is an error at its line."""
        e = error_of(GOOD + "    depends_on: [ghost]\n", tmp_path)
        assert "depends on unknown task 'ghost'" in str(e)
        assert e.line == 14

    def test_duplicate_task_id(self, tmp_path: Path) -> None:
        """Two tasks with one id are an error naming both lines."""
        e = error_of(GOOD.replace("  - id: b", "  - id: a"), tmp_path)
        assert "duplicate task id 'a' (first defined at line 7)" in str(e)
        assert e.line == 10

    def test_cycle_prints_path(self, tmp_path: Path) -> None:
        """A cycle is reported with the path around it."""
        text = GOOD.replace("    prompt: hello", "    prompt: hello\n    depends_on: [b]")
        e = error_of(text, tmp_path)
        assert "dependency cycle" in str(e)
        assert "a -> b -> a" in str(e)

    def test_input_not_produced(self, tmp_path: Path) -> None:
        """An input that no task produces is an error."""
        e = error_of(GOOD.replace("inputs: [a]", "inputs: [nobody]"), tmp_path)
        assert "input 'nobody' is not produced by any task" in str(e)

    def test_template_reads_undeclared_input(self, tmp_path: Path) -> None:
        """A prompt reading inputs.X without declaring X is an error."""
        e = error_of(GOOD.replace("inputs: [a]", "depends_on: [a]"), tmp_path)
        assert "inputs.a" in str(e)
        assert e.field == "tasks[1].prompt"

    def test_template_syntax_error(self, tmp_path: Path) -> None:
        """A broken Jinja template is reported with the task's prompt field."""
        e = error_of(GOOD.replace('"use {{ inputs.a }}"', '"use {{ inputs.a "'), tmp_path)
        assert "template syntax error" in str(e)

    def test_map_over_unknown_var(self, tmp_path: Path) -> None:
        """map over a missing variable is an error."""
        e = error_of(GOOD + "    map: vars.nope\n", tmp_path)
        assert "unknown variable 'nope'" in str(e)

    def test_unknown_tier(self, tmp_path: Path) -> None:
        """An agent in an undeclared tier is an error."""
        e = error_of(GOOD.replace("    model: sim-fast", "    model: sim-fast\n    tier: vip"), tmp_path)
        assert "unknown tier 'vip'" in str(e)


class TestHostileFiles:
    @pytest.mark.parametrize(
        ("content", "needle"),
        [
            (b"", "empty"),
            (b"   \n\n# only a comment\n", "empty"),
            (b"\x00\x01\x02binary\xff", "binary"),
            (b"name: \xff\xfe bad", "not UTF-8"),
            (b"- just\n- a list\n", "must be a mapping"),
            (b"42\n", "must be a mapping"),
            (b"a: 1\n---\nb: 2\n", "several YAML documents"),
            (b"!!python/object:os.system {}\n", "YAML"),
        ],
    )
    def test_not_a_spec(self, tmp_path: Path, content: bytes, needle: str) -> None:
        """Files that are not specs get one clear SpecError."""
        e = error_of(content, tmp_path, plan=False)
        assert needle in str(e)

    def test_billion_laughs_is_bounded(self, tmp_path: Path) -> None:
        """An alias bomb is refused quickly instead of exhausting memory."""
        lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
        for i in range(1, 10):
            refs = ",".join([f"*a{i-1}"] * 9)
            lines.append(f"a{i}: &a{i} [{refs}]")
        start = time.perf_counter()
        e = error_of("\n".join(lines).encode(), tmp_path, plan=False)
        assert time.perf_counter() - start < 5
        assert "alias bomb" in str(e)

    def test_deep_nesting_is_bounded(self, tmp_path: Path) -> None:
        """Absurd nesting is refused."""
        e = error_of(("[" * 5000 + "]" * 5000).encode(), tmp_path, plan=False)
        assert "nesting" in str(e) or "YAML" in str(e)

    def test_huge_file_is_refused(self, tmp_path: Path) -> None:
        """A file above the size limit is refused without parsing."""
        e = error_of(b"# " + b"x" * (5 * 1024 * 1024), tmp_path, plan=False)
        assert "larger than" in str(e)

    def test_missing_file_and_directory(self, tmp_path: Path) -> None:
        """A missing path or a directory is a SpecError."""
        with pytest.raises(SpecError, match="no such file"):
            load_workflow(tmp_path / "nope.yaml")
        with pytest.raises(SpecError, match="directory"):
            load_workflow(tmp_path)


class TestExtends:
    def test_extends_local_agent_defined_later(self) -> None:
        """An agent can extend another agent of the file, whatever their order."""
        text = GOOD.replace("  dev:\n    provider: sim\n    model: sim-fast\n",
                            "  senior:\n    extends: dev\n    retries: 3\n"
                            "  dev:\n    extends: developer\n    model: sim-fast\n")
        spec = parse_workflow(text)
        assert spec.agents["senior"].role == spec.agents["dev"].role != ""
        assert spec.agents["senior"].retries == 3
        assert spec.agents["senior"].model == "sim-fast"

    def test_extends_cycle(self) -> None:
        """Agents extending each other in a circle is an error naming the cycle."""
        text = GOOD.replace("  dev:\n    provider: sim\n", "  x:\n    extends: dev\n  dev:\n    extends: x\n")
        with pytest.raises(SpecError, match="'extends' cycle"):
            parse_workflow(text)


class TestVarsAndYamlQuirks:
    def test_template_reading_undeclared_var(self) -> None:
        """{{ vars.x }} without a var x is an error at check time, with a suggestion."""
        text = GOOD.replace("name: ok", "name: ok\nvars: {topic: a}")
        text = text.replace("prompt: hello", "prompt: '{{ vars.topc }}'")
        with pytest.raises(PlanError, match=r"vars\.topc .*did you mean 'topic'"):
            build_plan(parse_workflow(text))

    def test_set_of_unknown_var_is_an_error(self) -> None:
        """--set with a key the workflow does not declare is a typo until proven otherwise."""
        with pytest.raises(SpecError, match=r"--set topc=\.\.\.: the workflow declares no var 'topc'"):
            parse_workflow(GOOD.replace("name: ok", "name: ok\nvars: {topic: a}"), overrides={"topc": 1})

    def test_extension_keys_are_ignored(self) -> None:
        """Top-level x- keys hold anchors for reuse and are not fields."""
        text = "x-sim: &sim {provider: sim, model: sim-fast}\n" + GOOD.replace(
            "  dev:\n    provider: sim\n    model: sim-fast\n", "  dev: *sim\n")
        assert parse_workflow(text).agents["dev"].model == "sim-fast"

    def test_numeric_task_ids(self) -> None:
        """id: 1 is read as the task id '1'."""
        text = GOOD.replace("id: a", "id: 1").replace("inputs: [a]", "inputs: [1]").replace("inputs.a", "inputs['1']")
        plan = build_plan(parse_workflow(text))
        assert plan.steps["b"].deps == ("1",)

    def test_boolean_key_gets_a_hint(self) -> None:
        """An agent named yes (a YAML boolean) is explained."""
        with pytest.raises(SpecError, match="quote it"):
            parse_workflow(GOOD.replace("  dev:\n", "  yes:\n    provider: sim\n  dev:\n", 1))


class TestSetTyping:
    def test_set_values_follow_the_declared_type(self) -> None:
        """--set keeps strings for string vars and reads YAML for the others; dates stay text."""
        text = GOOD.replace("name: ok", "name: ok\nvars: {ver: '1.0', n: 1, items: [a], when: x, flag: true}")
        spec = parse_workflow(text, overrides={"ver": "1.10", "n": "3", "items": "[b, c]", "flag": "no",
                                               "when": "2024-01-05"})
        assert spec.vars == {"ver": "1.10", "n": 3, "items": ["b", "c"], "when": "2024-01-05", "flag": False}
