"""``agentfleet init``: the text of a commented, valid starter workflow built from persona templates.

# Design
# The output is meant to be read and edited by a person, so it is assembled as text:
# hand-written comments around the parts a newcomer must understand (extends, inputs, map,
# output_schema, settings, hooks) and PyYAML only for the data (vars and tasks), with literal
# blocks for multi-line prompts. Each persona template ships `example_tasks` (its agent is
# called `me`) and the `example_vars` they use; the default team workflow is defined here.
# Every scaffold is parsed by the tests, so a template edit that breaks one fails CI.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import yaml

from ._templates import _load_all, persona_names

__all__ = ["scaffold", "templates_table"]

_SELF = "me"  # the agent name example tasks use for "the persona this template defines"


def templates_table() -> list[tuple[str, str]]:
    """``(name, one-line description)`` of every built-in persona template, sorted by name."""
    docs = _load_all()
    return [(name, str(docs[name].get("description", "")).strip()) for name in persona_names()]


def scaffold(template: str | None = None, *, file: str | None = None) -> str:
    """The YAML text of a starter workflow for ``template``; ``None`` gives a small team workflow.

    ``file`` is the name the text will be saved under, for the commands in its header.
    Raises ``KeyError`` naming the known templates when ``template`` is not one of them.
    """
    if template is None:
        return _render(_default_team(), file)
    docs = _load_all()
    if template not in docs:
        known = ", ".join(persona_names()) or "none"
        raise KeyError(f"unknown persona template {template!r} (known: {known})")
    doc = copy.deepcopy(docs[template])
    tasks = []
    for task in doc.get("example_tasks") or []:
        if task.get("agent") == _SELF:
            task["agent"] = template
        tasks.append(task)
    agent = doc.get("agent", {})
    return _render(
        _Plan(
            command=f"agentfleet init {template}",
            name=f"{template.replace('_', '-')}-workflow",
            description=str(doc.get("description", "")).strip(),
            vars=doc.get("example_vars") or {},
            agents=[_Agent(key=template, extends=template, base=agent)],
            tasks=tasks,
        ),
        file,
    )


# -- the plan of a scaffold -------------------------------------------------------------


@dataclass(slots=True)
class _Agent:
    key: str
    extends: str
    base: dict[str, Any]
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Plan:
    command: str
    name: str
    description: str
    vars: dict[str, Any]
    agents: list[_Agent]
    tasks: list[dict[str, Any]]
    max_parallel: int = 8


def _default_team() -> _Plan:
    docs = _load_all()
    stories_schema = {
        "type": "object",
        "required": ["stories"],
        "properties": {
            "stories": {
                "type": "array",
                "minItems": 3,
                "maxItems": 3,
                "items": {
                    "type": "object",
                    "required": ["id", "title", "acceptance_criteria"],
                    "properties": {
                        "id": {"type": "string"},
                        "title": {"type": "string"},
                        "acceptance_criteria": {
                            "type": "array",
                            "minItems": 2,
                            "items": {"type": "string"},
                        },
                    },
                },
            }
        },
    }
    tasks: list[dict[str, Any]] = [
        {
            "id": "plan",
            "agent": "product_owner",
            "phase": "plan",
            "prompt": (
                "Goal: {{ vars.goal }}\n\n"
                "Split this goal into exactly 3 independent user stories that can be built in parallel.\n"
                "Give each an id (S1, S2, S3), a title and its acceptance criteria.\n"
            ),
            "output_schema": stories_schema,
        },
        {
            "id": "implement",
            "agent": "developer",
            "phase": "build",
            "map": {"over": "plan.stories", "expect": 3},
            "inputs": ["plan"],
            "prompt": (
                "Goal of the sprint: {{ vars.goal }}\n\n"
                "Implement story {{ item.id }}: {{ item.title }}\n"
                "Acceptance criteria:\n"
                "{% for criterion in item.acceptance_criteria %}- {{ criterion }}\n{% endfor %}"
            ),
        },
        {
            "id": "review",
            "agent": "qa",
            "phase": "verify",
            "map": "implement",
            "inputs": ["implement"],
            "prompt": (
                "Review story {{ item.id }} ({{ item.title }}) against its acceptance criteria:\n"
                "{% for criterion in item.acceptance_criteria %}- {{ criterion }}\n{% endfor %}\n"
                "The implementation:\n{{ inputs.implement }}\n"
            ),
        },
        {
            "id": "accept",
            "agent": "product_owner",
            "phase": "ship",
            "inputs": ["review"],
            "prompt": (
                "Goal: {{ vars.goal }}\n\n"
                "Decide, story by story, whether the sprint goal is met and what goes to the next sprint.\n"
                "{% for text in inputs.review %}\n## Review {{ loop.index }}\n{{ text }}\n{% endfor %}"
            ),
        },
    ]
    return _Plan(
        command="agentfleet init",
        name="team-workflow",
        description="A small team sprint: a product owner plans, developers build in parallel, QA reviews each story.",
        vars={
            "goal": (
                "Let workspace admins invite teammates by email, with a role (admin, member, viewer) "
                "chosen at invite time and invites that expire after 7 days."
            )
        },
        agents=[
            _Agent("product_owner", "product_owner", docs["product_owner"].get("agent", {})),
            _Agent(
                "developer",
                "developer",
                docs["developer"].get("agent", {}),
                {"max_concurrency": 3, "pool": {"size": 3}},
            ),
            _Agent("qa", "qa", docs["qa"].get("agent", {}), {"max_concurrency": 3}),
        ],
        tasks=tasks,
    )


# -- rendering --------------------------------------------------------------------------


class _Dumper(yaml.SafeDumper):
    """Block style with indented lists; flow style only for short all-scalar lists and mappings."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


class _Block(dict):  # type: ignore[type-arg]
    """A mapping always written in block style (the top level of a dumped fragment)."""


def _is_short_scalar(value: Any) -> bool:
    return isinstance(value, (int, float, bool)) or (
        isinstance(value, str) and len(value) <= 40 and "\n" not in value
    )


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = None
    if "\n" in value:
        style = "|"
    elif len(value) > 80 and value == value.strip():
        style = ">"
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _represent_list(dumper: yaml.SafeDumper, value: list[Any]) -> yaml.Node:
    flow = all(_is_short_scalar(v) for v in value) and len(value) <= 6
    return dumper.represent_sequence("tag:yaml.org,2002:seq", value, flow_style=flow)


def _represent_dict(dumper: yaml.SafeDumper, value: dict[Any, Any]) -> yaml.Node:
    flow = (
        not isinstance(value, _Block)
        and len(value) <= 2
        and all(_is_short_scalar(v) for v in value.values())
    )
    return dumper.represent_mapping("tag:yaml.org,2002:map", value.items(), flow_style=flow)


_Dumper.add_representer(str, _represent_str)
_Dumper.add_representer(list, _represent_list)
_Dumper.add_representer(dict, _represent_dict)
_Dumper.add_representer(_Block, _represent_dict)


def _dump(data: dict[str, Any] | list[Any], indent: int = 0) -> str:
    """Block-style YAML for ``data`` (a mapping or a list of mappings), indented by ``indent``."""
    if isinstance(data, dict):
        data = _Block(data)
    else:
        data = [_Block(item) if isinstance(item, dict) else item for item in data]
    text = yaml.dump(data, Dumper=_Dumper, sort_keys=False, width=92, allow_unicode=True, indent=2)
    pad = " " * indent
    return "".join(pad + line if line.strip() else line for line in text.splitlines(keepends=True))


_HEADER = """\
# {file} - scaffolded by `{command}`
#
# {description}
#
#   agentfleet check {file}      validate, then show the critical path and predicted speedup
#   agentfleet run {file}        run it (add --set NAME=value to override a var)
#
# How a workflow runs: a task starts the moment the tasks it needs have finished; there are no
# phase barriers (`phase:` only labels tasks in reports). Prompts are Jinja2 templates that see
#   vars            the variables below, overridable with --set
#   inputs.X        the output of task X, for each X listed in the task's `inputs:`
#                   (parsed JSON when X has an output_schema; a list when X is mapped)
#   item, index     the current element when the task has `map:`
#   task, agent     the task id and the agent name
# The agents below run on `sim`, a simulated LLM, so this file runs as is, offline and free.
# Point an agent at a real model by overriding `provider:` and `model:`.
"""

_SETTINGS = """\
settings:
  max_parallel: {max_parallel}    # at most this many tasks run at once, across all agents
  policy: fail_fast  # fail_fast stops at the first failed task; `continue` runs what still can
  admission: critical_path  # when slots are scarce, start tasks on the longest remaining path first
"""

_HOOKS = """\
# Lifecycle hooks for your integrations (before_task, after_task, on_failure, on_run_end).
# A hook is a Python callable `module:function` called with (event, payload), or a shell
# command that gets the payload as JSON on stdin and AGENTFLEET_EVENT / AGENTFLEET_TASK_ID /
# AGENTFLEET_RUN_ID in its environment:
# hooks:
#   after_task: "cat >> task-events.jsonl"
#   on_failure:
#     - python: mycompany.alerts:page_on_call
#       timeout: 10
"""


def _render(plan: _Plan, file: str | None = None) -> str:
    out = [_HEADER.format(file=file or f"{plan.name}.yaml", command=plan.command, description=plan.description)]
    out.append(f"name: {plan.name}\n")
    out.append(_dump({"description": plan.description}))
    if plan.vars:
        out.append(
            "\n# Variables the prompts use as {{ vars.NAME }}; override with --set NAME=value.\n"
        )
        out.append(_dump({"vars": plan.vars}))
    out.append("\n")
    out.append(_SETTINGS.format(max_parallel=plan.max_parallel))
    out.append("\nagents:\n")
    for agent in plan.agents:
        out.append(_render_agent(agent))
    out.append("\ntasks:\n")
    mapped = {t["id"] for t in plan.tasks if t.get("map") is not None}
    for i, task in enumerate(plan.tasks):
        if i:
            out.append("\n")
        for note in _task_notes(task, mapped):
            out.append(f"  # {note}\n")
        out.append(_dump([task], indent=2))
    out.append("\n")
    out.append(_HOOKS)
    return "".join(out)


def _render_agent(agent: _Agent) -> str:
    base = agent.base
    inherited = ", ".join(
        f"{key} {base[key]}"
        for key in ("tier", "provider", "model", "max_concurrency", "timeout", "retries")
        if key in base
    )
    lines = [
        f"  {agent.key}:\n",
        f"    extends: {agent.extends}  # a built-in persona: role, system prompt and limits\n",
        f"    # inherited: {inherited}\n",
        "    # Any field set here overrides the persona (`options:` is merged key by key), e.g.\n",
        "    #   model: sim-large\n",
        "    #   system: |\n",
        "    #     You are ...\n",
    ]
    if agent.overrides:
        lines.append(_dump(agent.overrides, indent=4))
    return "".join(lines)


def _task_notes(task: dict[str, Any], mapped: set[str]) -> list[str]:
    notes: list[str] = []
    over = task.get("map")
    if isinstance(over, dict):
        over = over.get("over")
    if isinstance(over, str):
        head = over.split(".", 1)[0]
        if over.startswith("vars."):
            notes.append(f"Fan-out: one instance per element of {over}, all started at once.")
        elif over in mapped:
            notes.append(
                f"Per-item chain: one instance per instance of `{over}`, each starting as soon as"
            )
            notes.append(
                f"its twin finishes; `item` is the twin's item, inputs.{over} the twin's output."
            )
        else:
            notes.append(
                f"Fan-out: one instance per element of {over}, created when `{head}` finishes."
            )
    elif isinstance(over, list):
        notes.append("Fan-out: one instance per element of the list.")
    fan_in = [name for name in task.get("inputs") or [] if name in mapped and name != over]
    if fan_in and over is None:
        joined = ", ".join(f"inputs.{name}" for name in fan_in)
        notes.append(
            f"Fan-in: waits for every instance; {joined} is the list of their outputs, in item order."
        )
    elif task.get("inputs") and over is None:
        notes.append(
            "`inputs:` makes this task wait for those tasks and passes it only their outputs."
        )
    if task.get("output_schema"):
        notes.append(
            "output_schema: the answer must be JSON matching it; downstream prompts get the parsed data."
        )
    return notes
