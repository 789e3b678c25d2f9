"""From a WorkflowSpec to a validated DAG of steps; pure, no I/O.

# Design
# A *step* is one TaskSpec; a step with ``map`` becomes several *instances* at run time
# (``implement[0]``, ``implement[1]`` ...). Validation and static analysis work on steps,
# the scheduler on instances. Every graph error is found here, before anything runs,
# and names the file, line and field it came from.
# ``inputs`` imply a dependency: a task cannot read an output that is not finished.
"""

from __future__ import annotations

import difflib
import heapq
from dataclasses import dataclass, field
from typing import Any, Literal

import jinja2
import jinja2.meta
from jinja2 import nodes as jnodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from ..errors import PlanError
from ..spec._models import AgentSpec, TaskSpec, WorkflowSpec

__all__ = ["AGGREGATE_AGENT", "MapKind", "Plan", "Step", "build_plan", "template_env"]

MapKind = Literal["none", "static", "dynamic", "zip"]

# Sandboxed: a template is text from the workflow (and, through the service, from whoever submits
# it); it may read the values it is given, never reach Python internals (``''.__class__...``).
_ENV = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True)


def _json_default(value: object) -> Any:
    """``tojson`` for objects that know their JSON form (an output passed by reference)."""
    hook = getattr(type(value), "__json__", None)
    if hook is None:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    return hook(value)


_ENV.policies["json.dumps_kwargs"] = {"sort_keys": True, "default": _json_default}


def template_env() -> jinja2.Environment:
    """The one Jinja2 environment prompts are parsed and rendered with (strict undefined)."""
    return _ENV


# Expected latency (seconds) of the sim's built-in model profiles, for static analysis
# when an agent declares none.
#: The pseudo-agent of a task with ``aggregate`` and no ``agent``: the runtime folds the
#: results itself. Parentheses keep it apart from every valid agent name.
AGGREGATE_AGENT = "(aggregate)"

_SIM_PROFILE_MEDIANS = {"sim-fast": 0.3, "sim-default": 1.0, "sim-gpt": 2.0, "sim-large": 5.0}


@dataclass(frozen=True, slots=True)
class Step:
    """A validated task of the workflow, with its dependencies resolved."""

    id: str
    index: int
    agent: str
    deps: tuple[str, ...]
    inputs: tuple[str, ...]
    tier: str
    priority: int
    map_kind: MapKind = "none"
    map_source: str | None = None  # the task a dynamic/zip map reads
    map_field: tuple[str, ...] = ()  # path inside the source's output
    static_items: tuple[Any, ...] = ()
    expected_count: int = 1  # instances expected (static count, or an estimate)
    count_assumed: bool = False
    mode: str = "all"
    quorum: int | None = None
    max_items: int = 10_000
    expected_latency: float = 1.0
    timeout: float | None = None
    retries: int = 0
    phase: str | None = None
    spec: TaskSpec | None = field(default=None, compare=False, repr=False)

    @property
    def mapped(self) -> bool:
        return self.map_kind != "none"


@dataclass(frozen=True, slots=True)
class Plan:
    """A validated workflow: steps in topological order and who depends on whom."""

    spec: WorkflowSpec
    steps: dict[str, Step]
    order: tuple[str, ...]
    dependents: dict[str, tuple[str, ...]]

    @property
    def agents(self) -> dict[str, AgentSpec]:
        return self.spec.agents


def _err(spec: WorkflowSpec, message: str, *path: object) -> PlanError:
    file, line = spec.locate(*path)
    field_name = ""
    for part in path:
        field_name += f"[{part}]" if isinstance(part, int) else ("." if field_name else "") + str(part)
    return PlanError(message, file=file, line=line, field=field_name or None)


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    if close:
        return f"; did you mean {close[0]!r}?"
    return f" (known: {', '.join(sorted(known)[:12])})" if known else ""


def _input_refs(template: jnodes.Template, name: str = "inputs") -> set[str]:
    """The attribute names read from ``name`` (``inputs.x``, ``inputs['x']``) in a template."""
    refs: set[str] = set()
    for node in template.find_all((jnodes.Getattr, jnodes.Getitem)):
        target = getattr(node, "node", None)
        if isinstance(target, jnodes.Name) and target.name == name:
            if isinstance(node, jnodes.Getattr):
                refs.add(node.attr)
            elif isinstance(node, jnodes.Getitem) and isinstance(node.arg, jnodes.Const) \
                    and isinstance(node.arg.value, str):
                refs.add(node.arg.value)
    return refs


def _check_template(spec: WorkflowSpec, text: str, where: tuple[object, ...], declared: set[str] | None,
                    allowed_names: set[str]) -> None:
    if "{" not in text:
        return  # plain text: nothing to parse (and nothing to render at run time)
    try:
        tree = _ENV.parse(text)
    except jinja2.TemplateSyntaxError as exc:
        raise _err(spec, f"template syntax error: {exc.message} (template line {exc.lineno})", *where) from None
    unknown = jinja2.meta.find_undeclared_variables(tree) - allowed_names
    if unknown:
        names = ", ".join(sorted(unknown))
        raise _err(spec, f"template uses unknown variable(s) {names}; available: "
                         f"{', '.join(sorted(allowed_names))}", *where)
    unknown_vars = _input_refs(tree, "vars") - set(spec.vars)
    if unknown_vars:
        name = sorted(unknown_vars)[0]
        raise _err(spec, f"template reads vars.{name} but the workflow has no such var"
                         f"{_suggest(name, list(spec.vars))} (declare it under 'vars:' or pass --set {name}=...)",
                   *where)
    if declared is not None:
        missing = _input_refs(tree) - declared
        if missing:
            names = ", ".join(sorted(missing))
            raise _err(spec, f"template reads inputs.{sorted(missing)[0]} but 'inputs:' does not declare {names}",
                       *where)


def _expected_latency(task: TaskSpec, agent: AgentSpec, scale: float) -> float:
    if task.expected_latency is not None:
        return task.expected_latency * scale
    if agent.expected_latency is not None:
        return agent.expected_latency * scale
    latency = agent.options.get("latency") if isinstance(agent.options, dict) else None
    if isinstance(latency, (int, float)) and not isinstance(latency, bool):
        return float(latency) * scale
    if isinstance(latency, dict):
        for key in ("fixed", "median"):
            value = latency.get(key)
            if isinstance(value, (int, float)):
                return float(value) * scale
    if agent.provider == "sim":
        return _SIM_PROFILE_MEDIANS.get(agent.model, 1.0) * scale
    return 1.0 * scale


def _schema_count(source: TaskSpec | None, path: tuple[str, ...]) -> int | None:
    if source is None or not isinstance(source.output_schema, dict):
        return None
    node: Any = source.output_schema
    for part in path:
        props = node.get("properties") if isinstance(node, dict) else None
        if not isinstance(props, dict) or part not in props:
            return None
        node = props[part]
    if isinstance(node, dict) and node.get("type") == "array":
        for key in ("minItems", "maxItems"):
            if isinstance(node.get(key), int):
                return int(node[key])
    return None


def _find_cycle(ids: list[str], deps: dict[str, tuple[str, ...]]) -> list[str] | None:
    color = {i: 0 for i in ids}
    stack: list[str] = []
    for root in ids:
        if color[root]:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                color[node] = 1
                stack.append(node)
            children = deps[node]
            if i < len(children):
                work.append((node, i + 1))
                child = children[i]
                if color[child] == 1:
                    start = stack.index(child)
                    return stack[start:] + [child]
                if color[child] == 0:
                    work.append((child, 0))
            else:
                color[node] = 2
                stack.pop()
    return None


def build_plan(spec: WorkflowSpec) -> Plan:
    """Validate the graph of ``spec`` and return its Plan, or raise PlanError naming the place."""
    tasks = spec.tasks
    by_id: dict[str, tuple[int, TaskSpec]] = {}
    for i, task in enumerate(tasks):
        if task.id in by_id:
            first = by_id[task.id][0]
            _, first_line = spec.locate("tasks", first, "id")
            raise _err(spec, f"duplicate task id {task.id!r} (first defined at line {first_line})",
                       "tasks", i, "id")
        by_id[task.id] = (i, task)
    agent_names = list(spec.agents)
    tiers = spec.settings.tiers
    scale = spec.settings.latency_scale

    steps: dict[str, Step] = {}
    deps_of: dict[str, tuple[str, ...]] = {}
    for i, task in enumerate(tasks):
        agent: AgentSpec | None = None
        if task.agent or task.aggregate is None:
            agent = spec.agents.get(task.agent)
            if agent is None:
                raise _err(spec, f"unknown agent {task.agent!r}{_suggest(task.agent, agent_names)}",
                           "tasks", i, "agent")
        _check_task_refs(spec, task, i, by_id)
        task_inputs = list(task.inputs)
        if task.aggregate is not None and task.aggregate.over not in task_inputs:
            task_inputs.append(task.aggregate.over)
        deps: list[str] = []
        seen: set[str] = set()
        for j, dep in enumerate(task.depends_on):
            if dep == task.id:
                raise _err(spec, "a task cannot depend on itself", "tasks", i, "depends_on", j)
            if dep not in by_id:
                raise _err(spec, f"depends on unknown task {dep!r}{_suggest(dep, list(by_id))}",
                           "tasks", i, "depends_on", j)
            if dep not in seen:
                seen.add(dep)
                deps.append(dep)
        for j, name in enumerate(task_inputs):
            if name == task.id:
                raise _err(spec, "a task cannot take its own output as input", "tasks", i, "inputs", j)
            if name not in by_id:
                raise _err(spec, f"input {name!r} is not produced by any task{_suggest(name, list(by_id))}",
                           "tasks", i, "inputs", j)
            if name not in seen:
                seen.add(name)
                deps.append(name)

        map_kind: MapKind = "none"
        map_source: str | None = None
        map_field: tuple[str, ...] = ()
        static_items: tuple[Any, ...] = ()
        expected_count = 1
        assumed = False
        mode, quorum, max_items = "all", None, 10_000
        if task.map is not None:
            m = task.map
            mode, quorum, max_items = m.mode, m.quorum, m.max_items
            if isinstance(m.over, list):
                map_kind, static_items = "static", tuple(m.over)
            else:
                ref = m.over.strip()
                head, _, rest = ref.partition(".")
                if head == "vars":
                    if rest not in spec.vars:
                        raise _err(spec, f"map over unknown variable {rest!r}"
                                         f"{_suggest(rest, list(spec.vars))}", "tasks", i, "map")
                    value = spec.vars[rest]
                    if isinstance(value, str):
                        value = [line.strip() for line in value.splitlines() if line.strip()]
                    if not isinstance(value, list):
                        raise _err(spec, f"map over vars.{rest}: expected a list, got {type(value).__name__}",
                                   "tasks", i, "map")
                    map_kind, static_items = "static", tuple(value)
                elif head in by_id:
                    if head == task.id:
                        raise _err(spec, "a task cannot map over its own output", "tasks", i, "map")
                    source = by_id[head][1]
                    if not rest and source.map is not None:
                        map_kind = "zip"
                    else:
                        map_kind = "dynamic"
                        map_field = tuple(p for p in rest.split(".") if p)
                    map_source = head
                    if head not in seen:
                        seen.add(head)
                        deps.append(head)
                else:
                    raise _err(spec, f"map over {ref!r}: not a list, 'vars.NAME' or an upstream task"
                                     f"{_suggest(head, list(by_id))}", "tasks", i, "map")
            if map_kind == "static":
                if len(static_items) > max_items:
                    raise _err(spec, f"map has {len(static_items)} items, more than max_items={max_items}",
                               "tasks", i, "map")
                expected_count = len(static_items)
            elif map_kind == "dynamic":
                assert map_source is not None
                counted = m.expect if m.expect is not None else _schema_count(by_id[map_source][1], map_field)
                assumed = counted is None
                expected_count = counted if counted is not None else 3
            if mode == "quorum" and map_kind == "static" and quorum is not None and quorum > expected_count:
                raise _err(spec, f"quorum {quorum} is larger than the {expected_count} items mapped over",
                           "tasks", i, "map")

        tier = task.tier or (agent.tier if agent is not None else _top_tier(tiers))
        if tier not in tiers:
            raise _err(spec, f"unknown tier {tier!r}{_suggest(tier, list(tiers))}",
                       *(("tasks", i, "tier") if task.tier else ("agents", task.agent, "tier")))
        steps[task.id] = Step(
            id=task.id,
            index=i,
            agent=task.agent or AGGREGATE_AGENT,
            deps=tuple(deps),
            inputs=tuple(task_inputs),
            tier=tier,
            priority=tiers[tier].priority,
            map_kind=map_kind,
            map_source=map_source,
            map_field=map_field,
            static_items=static_items,
            expected_count=expected_count,
            count_assumed=assumed,
            mode=mode,
            quorum=quorum,
            max_items=max_items,
            expected_latency=_expected_latency(task, agent, scale) if agent is not None else 0.0,
            timeout=task.timeout or (agent.timeout if agent is not None else None),
            retries=task.retries if task.retries is not None else (agent.retries if agent is not None else 0),
            phase=task.phase,
            spec=task,
        )
        deps_of[task.id] = tuple(deps)

    cycle = _find_cycle(list(by_id), deps_of)
    if cycle:
        index = by_id[cycle[0]][0]
        path = " -> ".join(cycle)
        raise _err(spec, f"dependency cycle (each task depends on the next): {path}", "tasks", index,
                   "depends_on")

    # Zip maps need their twin's instances; quorum on a zip is checked at run time.
    names = {"vars", "inputs", "item", "index", "task", "agent"}
    for i, task in enumerate(tasks):
        step = steps[task.id]
        if step.map_kind == "none":
            _check_template(spec, task.prompt, ("tasks", i, "prompt"), set(step.inputs), names - {"item", "index"})
        else:
            _check_template(spec, task.prompt, ("tasks", i, "prompt"), set(step.inputs), names)
    for name, agent in spec.agents.items():
        _check_template(spec, agent.system, ("agents", name, "system"), None, {"vars", "agent", "task"})

    order = _topo_order(list(by_id), deps_of)
    dependents: dict[str, list[str]] = {sid: [] for sid in order}
    for sid in order:
        for dep in deps_of[sid]:
            dependents[dep].append(sid)
    return Plan(
        spec=spec,
        steps={sid: steps[sid] for sid in order},
        order=tuple(order),
        dependents={k: tuple(v) for k, v in dependents.items()},
    )


def _top_tier(tiers: dict[str, Any]) -> str:
    """The tier an agent-less (aggregate) task runs in: ``primary`` when defined, else the highest."""
    if "primary" in tiers:
        return "primary"
    return max(tiers, key=lambda name: tiers[name].priority)


def _check_task_refs(spec: WorkflowSpec, task: TaskSpec, i: int, by_id: dict[str, tuple[int, TaskSpec]]) -> None:
    """Agents and tasks named by a task's context, review and aggregate settings must exist."""
    agent_names = list(spec.agents)
    if task.review is not None and task.review.agent not in spec.agents:
        raise _err(spec, f"review by unknown agent {task.review.agent!r}{_suggest(task.review.agent, agent_names)}",
                   "tasks", i, "review")
    ctx = task.context
    if ctx is not None:
        if ctx.summarizer is not None and ctx.summarizer not in spec.agents:
            raise _err(spec, f"summarizer is an unknown agent {ctx.summarizer!r}"
                             f"{_suggest(ctx.summarizer, agent_names)}", "tasks", i, "context", "summarizer")
        if isinstance(ctx.full, list):
            declared = list(task.inputs) + ([task.aggregate.over] if task.aggregate is not None else [])
            for j, name in enumerate(ctx.full):
                if name not in declared:
                    raise _err(spec, f"context.full names {name!r}, which is not one of this task's inputs"
                                     f"{_suggest(name, declared)}", "tasks", i, "context", "full", j)
    agg = task.aggregate
    if agg is not None:
        if agg.over not in by_id:
            raise _err(spec, f"aggregate over unknown task {agg.over!r}{_suggest(agg.over, list(by_id))}",
                       "tasks", i, "aggregate")
        if by_id[agg.over][1].map is None:
            raise _err(spec, f"aggregate over {agg.over!r}: that task is not mapped (nothing to fold one by one)",
                       "tasks", i, "aggregate")
        if task.map is not None:
            raise _err(spec, "an aggregate task cannot also be mapped", "tasks", i, "aggregate")
        if not task.agent:
            for name in ("validator", "review", "context", "remember", "output_schema"):
                if getattr(task, name) is not None:
                    raise _err(spec, f"'{name}' has no effect on an aggregate task without an agent (nothing "
                                     "runs a model); give the task an agent or remove it", "tasks", i, name)


def _topo_order(ids: list[str], deps: dict[str, tuple[str, ...]]) -> list[str]:
    """Kahn's algorithm, stable in file order."""
    remaining = {i: len(deps[i]) for i in ids}
    users: dict[str, list[str]] = {i: [] for i in ids}
    for i in ids:
        for d in deps[i]:
            users[d].append(i)
    position = {i: n for n, i in enumerate(ids)}
    ready = [(position[i], i) for i in ids if remaining[i] == 0]
    heapq.heapify(ready)
    out: list[str] = []
    while ready:
        _, node = heapq.heappop(ready)
        out.append(node)
        for user in users[node]:
            remaining[user] -= 1
            if remaining[user] == 0:
                heapq.heappush(ready, (position[user], user))
    return out
