"""Benchmark suites: what to time and how, from YAML or Python.

# Design
# A suite names benchmarks; each times either a workflow file (one sample = one whole run on the
# runtime, no run store, sim latencies scaled by ``scale``) or a Python callable (``module:function``,
# sync or async, called with ``params`` as keyword arguments; one sample = the mean time of
# ``loops`` calls, calibrated so a sample lasts at least ``min_time``). Settings follow pyperf:
# ``processes`` worker processes (fresh interpreters, so one process's luck with memory layout or
# a JIT-free warm cache does not decide the result), each with ``warmups`` discarded samples and
# ``runs`` measured ones, optional ``cooldown`` seconds between samples, and an optional
# ``budget`` (seconds per benchmark) that stops adding processes when spent. Validation is strict
# (pydantic, extra keys refused) so a typo is an error naming the file and the field.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ..errors import SpecError

__all__ = ["BenchSettings", "BenchSpec", "SuiteSpec", "load_suite"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BenchSettings(_Model):
    """How each benchmark of a suite is sampled (a benchmark may override any of these)."""

    processes: int = Field(3, ge=1, le=64)
    warmups: int = Field(1, ge=0, le=1000)
    runs: int = Field(5, ge=1, le=10_000)
    min_time: float = Field(0.1, gt=0, le=60)
    cooldown: float = Field(0.0, ge=0, le=600)
    budget: float | None = Field(None, gt=0)


class BenchSpec(_Model):
    """One thing to time: a ``workflow`` file or a ``callable`` (``module:function``)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.\-\[\]=,]{1,128}$")
    workflow: str | None = None
    callable: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    set: dict[str, Any] = Field(default_factory=dict)  # workflow vars
    scale: float | None = Field(None, gt=0)  # sim latency scale for a workflow
    max_parallel: int | None = Field(None, ge=1)
    processes: int | None = Field(None, ge=1, le=64)
    warmups: int | None = Field(None, ge=0, le=1000)
    runs: int | None = Field(None, ge=1, le=10_000)
    min_time: float | None = Field(None, gt=0, le=60)
    cooldown: float | None = Field(None, ge=0, le=600)
    budget: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_target(self) -> BenchSpec:
        if (self.workflow is None) == (self.callable is None):
            raise ValueError("give exactly one of workflow: (a YAML file) or callable: (module:function)")
        if self.callable is not None and ":" not in self.callable:
            raise ValueError(f"callable must be module:function, got {self.callable!r}")
        return self

    def settings(self, defaults: BenchSettings) -> BenchSettings:
        """The suite's settings with this benchmark's own overrides."""
        own = {k: v for k in BenchSettings.model_fields if (v := getattr(self, k)) is not None}
        return defaults.model_copy(update=own)


class SuiteSpec(_Model):
    name: str = Field("bench", pattern=r"^[A-Za-z0-9_.\-]{1,128}$")
    settings: BenchSettings = Field(default_factory=lambda: BenchSettings())
    benchmarks: list[BenchSpec] = Field(min_length=1)
    #: the directory relative workflow paths are resolved against (the suite file's)
    base: str = ""

    @model_validator(mode="after")
    def _unique(self) -> SuiteSpec:
        seen: set[str] = set()
        for b in self.benchmarks:
            if b.name in seen:
                raise ValueError(f"benchmark name {b.name!r} is used twice")
            seen.add(b.name)
        return self

    def workflow_path(self, bench: BenchSpec) -> str:
        assert bench.workflow is not None
        path = Path(bench.workflow)
        return str(path if path.is_absolute() or not self.base else Path(self.base) / path)


def _python_suite(target: str) -> SuiteSpec:
    """``module:attribute``: a SuiteSpec, a mapping, or a function returning either (suites in Python)."""
    import importlib

    module, _, name = target.partition(":")
    try:
        obj: Any = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as exc:
        raise SpecError(f"cannot load the suite {target!r}: {type(exc).__name__}: {exc}") from None
    if callable(obj) and not isinstance(obj, SuiteSpec):
        obj = obj()
    if isinstance(obj, SuiteSpec):
        return obj
    if not isinstance(obj, dict):
        raise SpecError(f"{target} is not a suite (a SuiteSpec, a mapping or a function returning one)")
    try:
        return SuiteSpec.model_validate({"base": os.getcwd(), **obj})
    except ValidationError as exc:
        first = exc.errors()[0]
        raise SpecError(first["msg"], file=target, field=".".join(str(p) for p in first["loc"]) or None) from None


def load_suite(path: str | os.PathLike[str]) -> SuiteSpec:
    """A suite from a YAML file, or from Python as ``module:attribute`` (a ``SuiteSpec``, a mapping or a
    function returning one); a SpecError naming the file and the field when it is not one."""
    from ..spec._loader import read_yaml_file

    file = str(path)
    if not file.endswith((".yaml", ".yml")) and ":" in file and not Path(file).exists():
        import sys

        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # a suite module beside you, as its callables are found
        return _python_suite(file)
    data = read_yaml_file(path, "the suite")
    if not isinstance(data, dict):
        raise SpecError("a suite is a mapping with benchmarks: [...]", file=file)
    data.setdefault("base", str(Path(path).resolve().parent))
    try:
        suite = SuiteSpec.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise SpecError(f"{first['msg']}", file=file, field=where or None) from None
    for bench in suite.benchmarks:
        if bench.workflow is not None and not Path(suite.workflow_path(bench)).is_file():
            raise SpecError(f"benchmark {bench.name!r}: no such workflow file {bench.workflow!r}", file=file,
                            field=f"benchmarks.{bench.name}.workflow")
    return suite
