"""The service's workflow catalog: names, cached validation, inputs, and the inline-YAML policy."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agentfleet.server._catalog import Catalog, Rejected

FLOW = """\
name: {name}
description: two sim tasks
vars:
  topic: caching
agents:
  writer: {{provider: sim}}
tasks:
  - {{id: draft, agent: writer, prompt: "Write about {{{{ vars.topic }}}}"}}
  - {{id: edit, agent: writer, inputs: [draft], prompt: "Edit {{{{ inputs.draft }}}}"}}
"""


def _dir(tmp_path: Path) -> Path:
    folder = tmp_path / "flows"
    folder.mkdir()
    (folder / "first.yaml").write_text(FLOW.format(name="alpha"), encoding="utf-8")
    (folder / "broken.yaml").write_text("name: [unclosed\n", encoding="utf-8")
    return folder


class TestNamedWorkflows:
    def test_listed_by_name_and_found_by_name_or_file_stem(self, tmp_path: Path) -> None:
        """A file is listed once (by its name:) and resolves by its name or its file's stem."""
        catalog = Catalog(_dir(tmp_path))
        assert [e.name for e in catalog.entries()] == ["alpha"]
        entry = catalog.entries()[0]
        assert entry.vars == {"topic": "caching"} and entry.tasks == 2
        assert catalog.resolve("alpha", {})[0].name == "alpha"
        assert catalog.resolve("first", {})[0].name == "alpha"

    def test_invalid_files_are_reported_not_served(self, tmp_path: Path) -> None:
        """A file that does not validate is left out, with its problem kept for the log."""
        catalog = Catalog(_dir(tmp_path))
        problems = catalog.problems()
        assert [p.name for p in problems] == ["broken.yaml"]

    def test_unknown_name_names_the_field_and_the_known_ones(self, tmp_path: Path) -> None:
        """An unknown workflow is a 422 on body.workflow that lists what exists."""
        with pytest.raises(Rejected) as info:
            Catalog(_dir(tmp_path)).resolve("nope", {})
        assert info.value.loc == ["body", "workflow"] and info.value.status == 422
        assert "alpha" in info.value.message

    def test_validation_is_cached_per_inputs_and_redone_when_the_file_changes(self, tmp_path: Path) -> None:
        """The same workflow and inputs validate once; other inputs or an edited file validate again."""
        folder = _dir(tmp_path)
        catalog = Catalog(folder)
        first, _ = catalog.resolve("alpha", {"topic": "queues"})
        assert catalog.resolve("alpha", {"topic": "queues"})[0] is first
        assert catalog.resolve("alpha", {"topic": "locks"})[0] is not first
        path = folder / "first.yaml"
        path.write_text(FLOW.format(name="alpha").replace("two sim tasks", "edited"), encoding="utf-8")
        os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))
        edited, _ = catalog.resolve("alpha", {"topic": "queues"})
        assert edited is not first and edited.description == "edited"

    def test_an_undeclared_input_names_the_input(self, tmp_path: Path) -> None:
        """Inputs must be declared vars: 422 at body.inputs.<name>."""
        with pytest.raises(Rejected) as info:
            Catalog(_dir(tmp_path)).resolve("alpha", {"colour": "blue"})
        assert info.value.loc == ["body", "inputs", "colour"]
        assert "declares no var 'colour'" in info.value.message

    def test_no_directory_means_no_named_workflows(self) -> None:
        """Without a directory nothing resolves by name."""
        catalog = Catalog(None)
        assert catalog.entries() == []
        with pytest.raises(Rejected, match="no workflow named"):
            catalog.resolve("alpha", {})


class TestInline:
    def test_a_sim_workflow_is_accepted_and_cached(self) -> None:
        """Inline sim YAML validates; the same text validates once."""
        catalog = Catalog(None)
        text = FLOW.format(name="inline")
        spec = catalog.parse_inline(text, {})
        assert spec.name == "inline"
        assert catalog.parse_inline(text, {}) is spec

    def test_an_invalid_workflow_names_the_field_under_body_yaml(self) -> None:
        """A validation error points into the YAML: loc starts with body.yaml, the message has the line."""
        text = FLOW.format(name="inline").replace("agent: writer, inputs", "agent: ghost, inputs")
        with pytest.raises(Rejected) as info:
            Catalog(None).parse_inline(text, {})
        assert info.value.loc[:2] == ["body", "yaml"] and info.value.status == 422
        assert "ghost" in info.value.message

    @pytest.mark.parametrize(("patch", "where"), [
        ("  writer: {provider: openai, model: gpt-4o-mini}", "provider"),
        ("  writer: {provider: sim, options: {base_url: 'http://10.0.0.1'}}", "base_url"),
        ("  writer: {provider: command, options: {command: 'rm -rf /'}}", "provider"),
        ("  writer: {provider: sim}\nhooks:\n  on_run_end: [\"curl http://x\"]", "hooks"),
        ("  writer: {provider: sim}\ninclude: [/etc/passwd]", "include"),
        ("  writer: {provider: sim, fallbacks: [anthropic/claude-3-5-haiku]}", "fallbacks"),
    ])
    def test_untrusted_inline_may_not_reach_outside(self, patch: str, where: str) -> None:
        """Under inline=sim: other providers, endpoints, commands, hooks, includes are 403 naming the key."""
        text = FLOW.format(name="inline").replace("  writer: {provider: sim}", patch)
        with pytest.raises(Rejected) as info:
            Catalog(None).parse_inline(text, {})
        assert info.value.status == 403
        assert where in [str(p) for p in info.value.loc]

    def test_trusted_lifts_the_policy_and_off_refuses(self) -> None:
        """inline=trusted validates anything; inline=off refuses inline YAML outright."""
        text = FLOW.format(name="inline").replace("  writer: {provider: sim}",
                                                  "  writer: {provider: openai, model: gpt-4o-mini}")
        assert Catalog(None, inline="trusted").parse_inline(text, {}).agents["writer"].provider == "openai"
        with pytest.raises(Rejected) as info:
            Catalog(None, inline="off").parse_inline(FLOW.format(name="x"), {})
        assert info.value.status == 403


class TestHostileInline:
    def test_a_yaml_version_header_does_not_skip_the_policy(self) -> None:
        """Text read by the workflow parser itself: a %YAML header cannot smuggle hooks past the check."""
        text = "%YAML 1.1\n---\n" + FLOW.format(name="inline") + "hooks:\n  on_run_end: ['id > /tmp/pwned']\n"
        with pytest.raises(Rejected) as info:
            Catalog(None).parse_inline(text, {})
        assert info.value.status == 403 and "hooks" in info.value.loc

    @pytest.mark.parametrize("text", [
        "[" * 100_000,  # a C parser would overflow its stack on this
        "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
    ])
    def test_deep_nesting_and_alias_bombs_are_422(self, text: str) -> None:
        """Bounded reading: too deep or too many values is a 422 on body.yaml, not a crash or a stall."""
        with pytest.raises(Rejected) as info:
            Catalog(None).parse_inline(text, {})
        assert info.value.status == 422 and info.value.loc == ["body", "yaml"]

    def test_memory_is_not_for_inline_workflows(self) -> None:
        """remember: and memory: reach the operator's shared agent memory: 403 under inline=sim."""
        text = FLOW.format(name="inline").replace(
            '"Edit {{ inputs.draft }}"}', '"Edit {{ inputs.draft }}", remember: {category: mistakes}}')
        with pytest.raises(Rejected) as info:
            Catalog(None).parse_inline(text, {})
        assert info.value.status == 403 and "remember" in info.value.loc

    def test_oversized_inline_is_refused(self) -> None:
        """Inline workflows are capped (64 KiB): a larger one belongs in the workflows directory."""
        text = FLOW.format(name="inline") + "# " + "x" * 70_000 + "\n"
        with pytest.raises(Rejected, match="at most 64 KiB"):
            Catalog(None).parse_inline(text, {})

    def test_a_value_that_looks_like_a_date_and_is_not_is_422(self, tmp_path: Path) -> None:
        """2020-13-01 in an input or in the YAML is a 422 naming it, not a 500."""
        text = FLOW.format(name="inline").replace("topic: caching", "topic: 2020-13-01")
        with pytest.raises(Rejected, match="2020-13-01"):
            Catalog(None).parse_inline(text, {})

    def test_an_alias_bomb_in_an_input_is_not_expanded(self, tmp_path: Path) -> None:
        """An input string is read with the same bounds as a file: an alias bomb stays a string."""
        folder = _dir(tmp_path)
        (folder / "listy.yaml").write_text(FLOW.format(name="listy").replace("topic: caching", "topic: [a, b]"),
                                           encoding="utf-8")
        bomb = ("&a [x, x, x, x, x, x, x, x, x, x]" + "".join(
            f" , &l{i} [{', '.join(['*a' if i == 0 else f'*l{i - 1}'] * 10)}]" for i in range(7)))
        spec, _ = Catalog(folder).resolve("listy", {"topic": f"[{bomb}]"})
        assert isinstance(spec.vars["topic"], str)
