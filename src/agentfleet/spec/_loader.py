"""Load a workflow from YAML with line numbers, safely, and turn every failure into a SpecError.

# Design
# PyYAML's composer gives nodes with start marks; we convert nodes to plain Python
# ourselves so we can (a) remember the line of every mapping key and list item by its
# path, to point pydantic's errors at a line, and (b) bound the work: the file size,
# the nesting depth and the number of nodes produced (aliases are expanded by our
# converter, so a "billion laughs" file hits the node cap in microseconds instead of
# eating memory). Only the safe loader's tags are accepted.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from ..errors import SpecError
from ._models import WorkflowSpec
from ._templates import persona

__all__ = ["MAX_FILE_BYTES", "load_workflow", "parse_workflow"]

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_DEPTH = 64
MAX_NODES = 200_000

Path_ = tuple[Any, ...]


class _Converter:
    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[Path_, int] = {}
        self.nodes = 0

    def convert(self, node: yaml.Node, path: Path_, depth: int) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise SpecError(
                f"document expands to more than {MAX_NODES:,} values (alias bomb or huge file?)",
                file=self.file,
                line=node.start_mark.line + 1,
            )
        if depth > MAX_DEPTH:
            raise SpecError(f"nesting deeper than {MAX_DEPTH} levels", file=self.file, line=node.start_mark.line + 1)
        self.lines.setdefault(path, node.start_mark.line + 1)
        if not isinstance(node, yaml.ScalarNode) and node.tag not in _COLLECTION_TAGS:
            raise SpecError(f"unsupported YAML tag {node.tag!r}", file=self.file, line=node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    raise SpecError("YAML merge keys ('<<') are not supported", file=self.file,
                                    line=key_node.start_mark.line + 1)
                key = self.convert(key_node, path + ("<key>",), depth + 1)
                if not isinstance(key, (str, int, float, bool)) or key is None:
                    raise SpecError("mapping keys must be plain scalars", file=self.file,
                                    line=key_node.start_mark.line + 1)
                if key in out:
                    raise SpecError(f"duplicate key {key!r}", file=self.file, line=key_node.start_mark.line + 1,
                                    field=_dotted(path + (key,)))
                self.lines[path + (key,)] = key_node.start_mark.line + 1
                out[key] = self.convert(value_node, path + (key,), depth + 1)
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.convert(item, path + (i,), depth + 1) for i, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        try:
            return _SCALARS.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            raise SpecError(f"bad value: {exc}", file=self.file, line=node.start_mark.line + 1) from None
        except (ValueError, OverflowError) as exc:  # 2020-13-01 looks like a date and is not one
            raise SpecError(f"bad value {node.value!r}: {exc}", file=self.file,
                            line=node.start_mark.line + 1) from None


_SCALARS = yaml.SafeLoader("")
_COLLECTION_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _line_for(lines: dict[Path_, int], loc: Path_) -> int | None:
    # Walk from the full path up to the nearest ancestor we saw in the file.
    for end in range(len(loc), -1, -1):
        line = lines.get(tuple(loc[:end]))
        if line is not None:
            return line
    return None


def _yaml_error(exc: yaml.YAMLError, file: str) -> SpecError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"YAML syntax error: {problem}" + (f" ({context})" if context else "")
    return SpecError(message, file=file, line=(mark.line + 1) if mark else None)


def _compose(text: str, file: str) -> tuple[Any, dict[Path_, int]]:
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.YAMLError as exc:
        raise _yaml_error(exc, file) from None
    except RecursionError:
        raise SpecError(f"nesting deeper than {MAX_DEPTH} levels", file=file) from None
    nodes = [n for n in nodes if n is not None]
    if not nodes:
        raise SpecError("the file is empty; a workflow needs 'agents:' and 'tasks:'", file=file, line=1)
    if len(nodes) > 1:
        raise SpecError("the file holds several YAML documents; a workflow is one", file=file,
                        line=nodes[1].start_mark.line + 1)
    converter = _Converter(file)
    data = converter.convert(nodes[0], (), 0)
    return data, converter.lines


def _resolve_extends(data: dict[str, Any], lines: dict[Path_, int], file: str) -> None:
    """Merge each agent over what it ``extends``: another agent of the file or a persona template.

    Agents are resolved recursively, so order in the file does not matter; a cycle of
    ``extends`` is an error naming the agents in it.
    """
    agents = data.get("agents")
    if not isinstance(agents, dict):
        return
    resolved: dict[str, dict[str, Any]] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> dict[str, Any]:
        if name in resolved:
            return resolved[name]
        agent = agents[name]
        if not isinstance(agent, dict) or "extends" not in agent:
            return agent if isinstance(agent, dict) else {}
        line = lines.get(("agents", name, "extends"))
        where: dict[str, Any] = {"file": file, "line": line, "field": f"agents.{name}.extends"}
        base_name = agent["extends"]
        if not isinstance(base_name, str):
            raise SpecError("'extends' must name a persona template or another agent", **where)
        if base_name in chain and base_name != name:
            raise SpecError(f"'extends' cycle: {' -> '.join(chain + (base_name,))}", **where)
        if base_name in agents and base_name != name:
            base = {k: v for k, v in resolve(base_name, chain + (base_name,)).items() if k not in ("name", "extends")}
        else:
            try:
                base = persona(base_name)
            except KeyError as exc:
                raise SpecError(str(exc.args[0]), **where) from None
        merged = copy.deepcopy(base)
        for key, value in agent.items():
            if key == "options" and isinstance(value, dict) and isinstance(merged.get("options"), dict):
                merged["options"] = {**merged["options"], **value}
            else:
                merged[key] = value
        resolved[name] = merged
        return merged

    for name in list(agents):
        if isinstance(agents[name], dict) and "extends" in agents[name]:
            agents[name] = resolve(name, (name,))


def _typed(value: Any, declared: Any) -> Any:
    """A ``--set`` string read as YAML unless the declared var is a string (``1.10`` stays ``1.10``).

    Only JSON-like results are kept (a date stays the text it was typed as).
    """
    if not isinstance(value, str) or isinstance(declared, str):
        return value
    if not value.strip():
        return ""
    try:  # the same bounded reader as files (no alias bombs, no deep nesting)
        parsed, _ = _compose(value, "--set")
    except SpecError:
        return value
    try:
        json.dumps(parsed)
    except (TypeError, ValueError):
        return value
    return parsed


def _overlay(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` laid over ``base``: mappings merged key by key, anything else replaced."""
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _overlay(out[key], value)
        else:
            out[key] = value
    return out


def _apply_includes(data: dict[str, Any], lines: dict[Path_, int], file: str) -> bool:
    """``include: [overlay.yaml, ...]``: each file (a mapping, relative to this one) is laid over the
    workflow in order, later files winning: how ``agentfleet tune`` hands back its settings without
    editing yours. An included file cannot include others."""
    includes = data.pop("include", None)
    if includes is None:
        return False
    line = lines.get(("include",))
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise SpecError("include must be a file name or a list of them", file=file, line=line, field="include")
    here = Path(file).parent if not file.startswith("<") else Path.cwd()
    for name in includes:
        path = Path(name) if Path(name).is_absolute() else here / name
        try:
            raw = path.read_bytes()[: MAX_FILE_BYTES + 1]
        except OSError as exc:
            raise SpecError(f"cannot read {name!r}: {exc.strerror or exc}", file=file, line=line,
                            field="include") from None
        if len(raw) > MAX_FILE_BYTES:
            raise SpecError(f"include {name!r} is too large", file=file, line=line, field="include")
        try:
            overlay, _ = _compose(raw.decode("utf-8"), str(path))
        except UnicodeDecodeError:
            raise SpecError(f"include {name!r} is not UTF-8 text", file=file, line=line, field="include") from None
        if overlay is None:
            continue
        if not isinstance(overlay, dict):
            raise SpecError("an included file must be a mapping (settings:, agents:, vars: ...)", file=str(path))
        if "include" in overlay:
            raise SpecError("an included file cannot include others", file=str(path), field="include")
        for key in [k for k in overlay if isinstance(k, str) and k.startswith("x-")]:
            del overlay[key]
        data.update(_overlay(data, overlay))
    return True


def parse_workflow(text: str | bytes, *, file: str = "<string>", overrides: dict[str, Any] | None = None
                   ) -> WorkflowSpec:
    """Parse and validate YAML text; ``overrides`` replace ``vars`` entries (``--set``)."""
    if isinstance(text, bytes):
        raw = text
        if len(raw) > MAX_FILE_BYTES:
            raise SpecError(f"file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; not a workflow",
                            file=file)
        if b"\x00" in raw[:8192]:
            raise SpecError("file is binary, not a YAML workflow", file=file)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise SpecError(f"file is not UTF-8 text (byte {exc.start})", file=file, line=line) from None
    if len(text) > MAX_FILE_BYTES:
        raise SpecError(f"text is larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB; not a workflow", file=file)
    if not text.strip():
        raise SpecError("the file is empty; a workflow needs 'agents:' and 'tasks:'", file=file, line=1)
    data, lines = _compose(text, file)
    if not isinstance(data, dict):
        kind = type(data).__name__
        raise SpecError(f"a workflow must be a mapping with 'agents:' and 'tasks:', not a {kind}", file=file,
                        line=1)
    for key in [k for k in data if isinstance(k, str) and k.startswith("x-")]:
        del data[key]  # extension keys (anchors to reuse, as in docker-compose files)
    included = _apply_includes(data, lines, file)
    if included:
        # what a stored run keeps (resume, report): the workflow with its overlays laid in, so it
        # does not depend on files that may move or change later
        text = "# with its include: files laid in\n" + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    _resolve_extends(data, lines, file)
    if overrides:
        known = data.get("vars") or {}
        if not isinstance(known, dict):
            known = {}
        for key in overrides:
            if key not in known:
                names = ", ".join(sorted(map(str, known))) or "none"
                raise SpecError(f"--set {key}=...: the workflow declares no var {key!r} (vars: {names})",
                                file=file, line=lines.get(("vars",)))
        data["vars"] = {**known, **{k: _typed(v, known[k]) for k, v in overrides.items()}}
    spec = validate_data(data, lines=lines, file=file)
    spec._source = text
    return spec


def validate_data(data: dict[str, Any], *, lines: dict[Path_, int] | None = None, file: str = "<python>"
                  ) -> WorkflowSpec:
    """Validate a plain dict as a WorkflowSpec, turning the first problem into a SpecError."""
    lines = lines or {}
    try:
        spec = WorkflowSpec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        first = errors[0]
        loc = tuple(first["loc"])
        # pydantic reports dict entries as agents.<name>; drop validator-internal parts.
        loc = tuple(p for p in loc if not (isinstance(p, str) and p.startswith("function-")))
        msg = first["msg"]
        if "[key]" in loc:
            key = loc[loc.index("[key]") - 1]
            loc = loc[: loc.index("[key]") - 1]
            msg = (f"key {key!r} must be a name; YAML reads yes/no/on/off/true/false as booleans "
                   "and bare numbers as numbers, so quote it")
        elif first["type"] == "missing":
            msg = f"required field '{loc[-1]}' is missing"
        elif first["type"] == "extra_forbidden":
            msg = f"unknown field '{loc[-1]}'"
        elif first["type"] == "value_error":
            msg = msg.removeprefix("Value error, ")  # our own validators' messages say it all
        elif "input" in first and first["type"] not in ("missing",):
            shown = repr(first["input"])
            if len(shown) > 60:
                shown = shown[:57] + "..."
            msg = f"{msg} (got {shown})"
            if isinstance(first["input"], bool):
                msg += "; YAML reads yes/no/on/off as booleans, quote it"
        more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
        raise SpecError(msg + more, file=file, line=_line_for(lines, loc), field=_dotted(loc) or None) from None
    spec._file = file
    spec._lines = lines
    return spec


def read_yaml_file(path: str | os.PathLike[str], what: str) -> Any:
    """A YAML file's data (suites, load tests); a SpecError naming the file (and line) when it cannot
    be read or parsed. ``what`` names the document in the message ("the suite")."""
    file = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError(f"cannot read {what}: {exc.strerror or exc}", file=file) from None
    except UnicodeDecodeError:
        raise SpecError(f"{what} is not UTF-8 text", file=file) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise SpecError(f"not valid YAML: {getattr(exc, 'problem', None) or exc}", file=file,
                        line=mark.line + 1 if mark is not None else None) from None


def load_workflow(path: str | os.PathLike[str], *, overrides: dict[str, Any] | None = None) -> WorkflowSpec:
    """Read, parse and validate a workflow file."""
    p = Path(path)
    name = str(path)
    try:
        if not p.exists():
            raise SpecError("no such file", file=name)
        if p.is_dir():
            raise SpecError("is a directory, not a workflow file", file=name)
        with p.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"cannot read: {exc.strerror}", file=name) from None
    return parse_workflow(raw, file=name, overrides=overrides)
