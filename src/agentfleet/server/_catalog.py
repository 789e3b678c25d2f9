"""The workflows the service runs: files from a configured directory, by name, and inline YAML.

# Design
# Parsing and validating a workflow costs milliseconds; a submission must cost far less. A parsed
# workflow is kept per (file, modification time, size, inputs) and per (inline text, inputs), a few
# hundred of each (LRU), so repeated submissions of the same workflow validate once. A changed file
# is parsed again on its next submission.
#
# Inline YAML comes from whoever holds a submit token, so by default it may only use what cannot
# reach outside the service: the sim provider, and no hooks, includes, Python callables, shell
# commands, webhooks, endpoints or Redis URLs (``inline="sim"``). ``inline="trusted"`` lifts that for
# teams whose submitters may run anything the service's user can; ``inline="off"`` refuses inline
# workflows. Files in the workflows directory are the operator's and are always trusted.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ..plan import build_plan
from ..spec import WorkflowSpec, parse_workflow
from ..spec._loader import _compose

__all__ = ["INLINE_MODES", "Catalog", "Entry", "Rejected"]

INLINE_MODES = ("sim", "trusted", "off")
#: keys an untrusted inline workflow may not use anywhere: they run code, read files or reach out
_UNSAFE_KEYS = frozenset({"include", "hooks", "command", "python", "module", "webhook", "validator", "redis",
                          "base_url", "url", "api_key_env", "env", "cwd", "workers",
                          # the agents' memory is shared with the operator's workflows
                          "remember", "memory"})
#: the largest inline workflow accepted, and the largest kept parsed (the parse keeps a line per value)
MAX_INLINE = 64 * 1024
CACHE_INLINE = 16 * 1024
_CACHE = 256
RESCAN = 1.0  # seconds between looks at the directory


class Rejected(Exception):
    """A submission the service will not run: ``loc`` is the field (FastAPI-style path), ``status``
    the HTTP status (422 for the body's content, 403 for what the service's policy forbids)."""

    def __init__(self, loc: list[str | int], message: str, *, kind: str = "value_error", status: int = 422) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message
        self.kind = kind
        self.status = status


@dataclass(frozen=True, slots=True)
class Entry:
    """A workflow file in the catalog."""

    name: str
    path: Path
    description: str
    vars: dict[str, Any]
    tasks: int


class Catalog:
    """Named workflows from ``directory`` (``*.yaml``/``*.yml``, by ``name:`` and by file stem)."""

    def __init__(self, directory: str | os.PathLike[str] | None, *, inline: str = "sim",
                 clock: Callable[[], float] = time.monotonic) -> None:
        if inline not in INLINE_MODES:
            raise SpecError(f"--inline must be one of {', '.join(INLINE_MODES)}, not {inline!r}")
        self.directory = Path(directory) if directory is not None else None
        self.inline = inline
        self._entries: dict[str, Entry] = {}
        self._scanned: tuple[float, int] | None = None
        self._clock = clock
        self._looked = float("-inf")
        self._lock = threading.Lock()
        self._parsed: OrderedDict[tuple[Any, ...], WorkflowSpec] = OrderedDict()
        self._bad: dict[Path, str] = {}  # files that do not validate, with why (listed in the log, not served)

    def entries(self) -> list[Entry]:
        self._rescan()
        seen: dict[Path, Entry] = {}
        for entry in self._entries.values():
            seen.setdefault(entry.path, entry)
        return sorted(seen.values(), key=lambda e: e.name)

    def problems(self) -> dict[Path, str]:
        """Files in the directory that are not valid workflows, with the first problem of each."""
        self._rescan()
        return dict(self._bad)

    def _rescan(self) -> None:
        """Read the directory again when it changed (files added, removed or edited); looked at no more
        than once a second (listing it costs more than the rest of a submission)."""
        now = self._clock()
        if now - self._looked < RESCAN:
            return
        self._looked = now
        if self.directory is None or not self.directory.is_dir():
            self._entries = {}
            return
        files = sorted([*self.directory.glob("*.yaml"), *self.directory.glob("*.yml")])
        try:
            stamp = (max((f.stat().st_mtime for f in files), default=0.0), len(files))
        except OSError:
            stamp = None  # a file vanished while listing: read again
        if stamp is not None and stamp == self._scanned:
            return
        entries: dict[str, Entry] = {}
        self._bad = {}
        for file in files:
            try:
                spec = self._parse_file(file, {})
            except (SpecError, OSError) as exc:  # invalid, or gone since the listing
                self._bad[file] = str(exc)
                continue
            entry = Entry(name=spec.name, path=file, description=spec.description or "",
                          vars=dict(spec.vars), tasks=len(spec.tasks))
            entries.setdefault(file.stem, entry)
            entries.setdefault(spec.name, entry)
        self._entries = entries
        self._scanned = stamp

    def resolve(self, name: str, inputs: dict[str, Any]) -> tuple[WorkflowSpec, str]:
        """The validated workflow ``name`` with ``inputs`` laid over its vars, and its path."""
        self._rescan()
        entry = self._entries.get(name)
        if entry is None:
            known = ", ".join(sorted({e.name for e in self._entries.values()})) or "none (no --workflows directory)"
            raise Rejected(["body", "workflow"], f"no workflow named {name!r}; known: {known}")
        try:
            return self._checked(lambda: self._parse_file(entry.path, inputs), inputs), str(entry.path)
        except OSError:  # removed since the directory was last listed
            self._looked = float("-inf")
            raise Rejected(["body", "workflow"], f"workflow {name!r} is no longer in the workflows directory") from None

    def cached(self, name: str, inputs: dict[str, Any]) -> tuple[WorkflowSpec, str] | None:
        """``resolve`` when its answer is already parsed (no parsing here: the event loop may call it)."""
        entry = self._entries.get(name)
        if entry is None:
            return None
        try:
            stat = entry.path.stat()
        except OSError:
            return None
        with self._lock:
            spec = self._parsed.get(_file_key(entry.path, stat, inputs))
        return None if spec is None else (spec, str(entry.path))

    def parse_inline(self, text: str, inputs: dict[str, Any]) -> WorkflowSpec:
        """The validated inline workflow ``text``, checked against the inline policy."""
        if self.inline == "off":
            raise Rejected(["body", "yaml"], "this service does not accept inline workflows (--inline off); "
                           "submit one by name from GET /v1/workflows", status=403)
        if len(text) > MAX_INLINE:
            raise Rejected(["body", "yaml"], f"an inline workflow may be at most {MAX_INLINE // 1024} KiB; "
                           "put a larger one in the --workflows directory")
        key = ("inline", text, _inputs_key(inputs))
        with self._lock:
            spec = self._parsed.get(key)
            if spec is not None:
                self._parsed.move_to_end(key)
                return spec
        if self.inline == "sim":
            _check_untrusted(text)
        spec = self._checked(lambda: _validated(text, "<inline>", inputs), inputs)
        if self.inline == "sim":  # what persona templates (``extends:``) brought in, too
            for name, agent in spec.agents.items():
                kinds = {agent.provider, *(f.provider for f in agent.fallbacks)}
                if {k.strip().lower() for k in kinds} != {"sim"}:
                    raise Rejected(["body", "yaml", "agents", name, "provider"], "inline workflows may only use the "
                                   "sim provider on this service (--inline sim)", status=403)
        if len(text) <= CACHE_INLINE:
            self._remember(key, spec)
        return spec

    def _parse_file(self, path: Path, inputs: dict[str, Any]) -> WorkflowSpec:
        key = _file_key(path, path.stat(), inputs)
        with self._lock:
            spec = self._parsed.get(key)
            if spec is not None:
                self._parsed.move_to_end(key)
                return spec
        spec = _validated(path.read_bytes(), str(path), inputs)
        self._remember(key, spec)
        return spec

    def _remember(self, key: tuple[Any, ...], spec: WorkflowSpec) -> None:
        with self._lock:  # inline workflows are parsed in worker threads
            self._parsed[key] = spec
            if len(self._parsed) > _CACHE:
                self._parsed.popitem(last=False)

    @staticmethod
    def _checked(parse: Any, inputs: dict[str, Any]) -> WorkflowSpec:
        """Run ``parse``, turning a SpecError into a Rejected naming the field it is about."""
        try:
            spec: WorkflowSpec = parse()
        except SpecError as exc:
            message = exc.message + (f" (line {exc.line})" if exc.line else "")
            if "--set " in exc.message:  # an input the workflow does not declare
                name = next((k for k in inputs if f"--set {k}=" in exc.message), None)
                text = exc.message.replace(f"--set {name}=...: ", "") if name is not None else exc.message
                raise Rejected(["body", "inputs", *([name] if name is not None else [])], text) from None
            loc: list[str | int] = ["body", "yaml" if exc.file == "<inline>" else "workflow"]
            if exc.field:
                loc += [int(p) if p.isdigit() else p for p in exc.field.replace("[", ".").replace("]", "").split(".")
                        if p]
            raise Rejected(loc, message) from None
        return spec


def _validated(text: str | bytes, file: str, inputs: dict[str, Any]) -> WorkflowSpec:
    """Parse and validate, the graph too: an unknown agent or a cycle is the submitter's to fix now."""
    spec = parse_workflow(text, file=file, overrides=inputs or None)
    build_plan(spec)
    return spec


def _file_key(path: Path, stat: os.stat_result, inputs: dict[str, Any]) -> tuple[Any, ...]:
    """A parsed file's cache key: the file as it is now (an edit changes it) and the inputs."""
    return ("file", str(path), stat.st_mtime_ns, stat.st_size, _inputs_key(inputs))


def _inputs_key(inputs: dict[str, Any]) -> str:
    return json.dumps(inputs, sort_keys=True, default=str) if inputs else ""


def _check_untrusted(text: str) -> None:
    """Refuse what an inline workflow may not do under ``--inline sim`` (see the module notes). The
    text is read by the workflow parser's own bounded reader (depth, values, aliases), so what is
    checked here is exactly what would run; text it cannot read is refused with its reason."""
    try:
        data, _ = _compose(text, "<inline>")
    except SpecError as exc:
        raise Rejected(["body", "yaml"], exc.message + (f" (line {exc.line})" if exc.line else "")) from None
    if not isinstance(data, dict):
        return

    def walk(node: Any, path: list[str | int]) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                here = [*path, str(key)]
                if key in _UNSAFE_KEYS:
                    raise Rejected(["body", "yaml", *here], f"inline workflows may not use {key!r} on this service "
                                   "(--inline sim); put the workflow in the --workflows directory", status=403)
                if key == "provider" and isinstance(value, str) and value.strip().lower() != "sim":
                    raise Rejected(["body", "yaml", *here], f"inline workflows may only use the sim provider on this "
                                   f"service, not {value!r} (--inline sim)", status=403)
                if key == "fold" and isinstance(value, str) and ":" in value:
                    raise Rejected(["body", "yaml", *here], "inline workflows may not call Python functions "
                                   "(--inline sim)", status=403)
                if key == "fallbacks" and isinstance(value, list):
                    for i, item in enumerate(value):
                        if isinstance(item, str) and item.partition("/")[0].strip().lower() != "sim":
                            raise Rejected(["body", "yaml", *here, i], "inline workflows may only use the sim "
                                           f"provider on this service, not {item!r} (--inline sim)", status=403)
                walk(value, here)
        elif isinstance(node, list):
            for i, item in enumerate(node):
                walk(item, [*path, i])

    walk(data, [])
