"""A load test file: the target, the scenario, open or closed loop, thresholds.

```yaml
name: api
target:
  url: http://127.0.0.1:8000/v1/chat/completions   # any HTTP endpoint
  method: POST
  headers: {content-type: application/json}
  body: '{"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": true}'
  stream: true          # measure time to first token and inter-token gaps
  # or: workflow: flow.yaml   (one request = one run of the workflow in this process)
scenario: {kind: steady, rate: 50, duration: 30s}
mode: open              # open (default: arrivals fixed by the schedule) or closed (virtual users)
users: 20               # closed loop only
timeout: 30s
max_outstanding: 10000
thresholds: ["p95 < 500ms", "error_rate < 1% abort"]
stress: {p99: 2s, error_rate: 5%, recovery: 10s}    # for kind: stress
```

Strict: unknown keys, a missing target, a closed loop without users are ``SpecError`` naming the
file and the field (exit 2).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SpecError
from ._schedule import Scenario, scenario_from_dict
from ._thresholds import Threshold, parse_duration, parse_thresholds

__all__ = ["LoadTestSpec", "StressLimits", "TargetSpec", "load_test_file", "load_test_spec"]


@dataclass(frozen=True)
class TargetSpec:
    url: str | None = None
    workflow: str | None = None
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str | None = None
    stream: bool = False
    max_connections: int = 1000


@dataclass(frozen=True)
class StressLimits:
    """Where a stress test stops: the first step whose window p99 or error rate crosses these."""

    p99: float = 2.0
    error_rate: float = 0.05
    recovery: float = 10.0


@dataclass(frozen=True)
class LoadTestSpec:
    name: str
    target: TargetSpec
    scenario: Scenario
    mode: str = "open"
    users: int | None = None
    think_time: float = 0.0
    timeout: float = 30.0
    max_outstanding: int = 10_000
    thresholds: tuple[Threshold, ...] = ()
    stress: StressLimits = field(default_factory=StressLimits)
    base: str = ""

    def workflow_path(self) -> str:
        assert self.target.workflow is not None
        path = Path(self.target.workflow)
        return str(path if path.is_absolute() or not self.base else Path(self.base) / path)


def _check_keys(data: dict[str, Any], allowed: set[str], where: str, file: str | None) -> None:
    import difflib

    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise SpecError(f"unknown key {key!r}{hint}", file=file, field=f"{where}{key}")


def _seconds(value: Any, where: str, file: str | None) -> float:
    try:
        seconds = parse_duration(value) if isinstance(value, str) else float(value)
    except (SpecError, TypeError, ValueError) as exc:
        raise SpecError(f"not a duration: {value!r} ({exc})", file=file, field=where) from None
    if not seconds >= 0:
        raise SpecError(f"must be >= 0, got {value!r}", file=file, field=where)
    return seconds


def _ratio(value: Any, where: str, file: str | None) -> float:
    text = str(value).strip()
    try:
        ratio = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise SpecError(f"not a ratio: {value!r} (e.g. 5% or 0.05)", file=file, field=where) from None
    if not 0 <= ratio <= 1:
        raise SpecError(f"must be between 0 and 100%, got {value!r}", file=file, field=where)
    return ratio


def load_test_spec(data: Any, *, file: str | None = None, base: str = "") -> LoadTestSpec:
    if not isinstance(data, dict):
        raise SpecError("a load test is a mapping with target: and scenario:", file=file)
    _check_keys(data, {"name", "target", "scenario", "mode", "users", "think_time", "timeout", "max_outstanding",
                       "thresholds", "stress"}, "", file)
    raw_target = data.get("target")
    if not isinstance(raw_target, dict):
        raise SpecError("target: is required (url: ... or workflow: ...)", file=file, field="target")
    _check_keys(raw_target, {"url", "workflow", "method", "headers", "body", "stream", "max_connections"}, "target.",
                file)
    if (raw_target.get("url") is None) == (raw_target.get("workflow") is None):
        raise SpecError("give exactly one of url: (an HTTP endpoint) or workflow: (a YAML file)", file=file,
                        field="target")
    url = raw_target.get("url")
    if url is not None:
        from urllib.parse import urlsplit

        parts = urlsplit(str(url))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise SpecError(f"url must be http:// or https:// with a host, got {url!r}", file=file,
                            field="target.url")
    connections = raw_target.get("max_connections", 1000)
    if not isinstance(connections, int) or isinstance(connections, bool) or not 1 <= connections <= 100_000:
        raise SpecError(f"max_connections must be an integer from 1 to 100000, got {connections!r}", file=file,
                        field="target.max_connections")
    headers = raw_target.get("headers") or {}
    if not isinstance(headers, dict):
        raise SpecError("headers must be a mapping", file=file, field="target.headers")
    body = raw_target.get("body")
    target = TargetSpec(url=url, workflow=raw_target.get("workflow"), method=str(raw_target.get("method", "GET")),
                        headers={str(k): str(v) for k, v in headers.items()},
                        body=None if body is None else str(body), stream=bool(raw_target.get("stream", False)),
                        max_connections=connections)
    raw_scenario = data.get("scenario")
    if not isinstance(raw_scenario, dict):
        raise SpecError("scenario: is required, e.g. {kind: steady, rate: 50, duration: 30s}", file=file,
                        field="scenario")
    try:
        scenario = scenario_from_dict(raw_scenario, where="scenario")
    except SpecError as exc:
        raise SpecError(exc.message, file=file, field=exc.field or "scenario") from None
    mode = str(data.get("mode", "open"))
    if mode not in ("open", "closed"):
        raise SpecError(f"mode must be open or closed, got {mode!r}", file=file, field="mode")
    users = data.get("users")
    if mode == "closed" and (not isinstance(users, int) or users < 1):
        raise SpecError("a closed loop needs users: N (virtual users, >= 1)", file=file, field="users")
    if mode == "closed" and raw_scenario.get("kind") not in ("steady", "endurance"):
        raise SpecError(f"a closed loop has no rate to shape: use kind steady or endurance (its duration), not "
                        f"{raw_scenario.get('kind')!r}", file=file, field="mode")
    raw_stress = data.get("stress") or {}
    if not isinstance(raw_stress, dict):
        raise SpecError("stress must be a mapping {p99, error_rate, recovery}", file=file, field="stress")
    _check_keys(raw_stress, {"p99", "error_rate", "recovery"}, "stress.", file)
    stress = StressLimits(p99=_seconds(raw_stress.get("p99", 2.0), "stress.p99", file),
                          error_rate=_ratio(raw_stress.get("error_rate", 0.05), "stress.error_rate", file),
                          recovery=_seconds(raw_stress.get("recovery", 10.0), "stress.recovery", file))
    try:
        thresholds = tuple(parse_thresholds(data.get("thresholds") or [], where="thresholds"))
    except SpecError as exc:
        raise SpecError(exc.message, file=file, field=exc.field) from None
    max_outstanding = data.get("max_outstanding", 10_000)
    if not isinstance(max_outstanding, int) or max_outstanding < 1:
        raise SpecError("max_outstanding must be an integer >= 1", file=file, field="max_outstanding")
    return LoadTestSpec(name=str(data.get("name", "loadtest")), target=target, scenario=scenario, mode=mode,
                        users=users if mode == "closed" else None,
                        think_time=_seconds(data.get("think_time", 0.0), "think_time", file),
                        timeout=_seconds(data.get("timeout", 30.0), "timeout", file) or 30.0,
                        max_outstanding=max_outstanding, thresholds=thresholds, stress=stress, base=base)


def load_test_file(path: str | os.PathLike[str]) -> LoadTestSpec:
    from ..spec._loader import read_yaml_file

    file = str(path)
    data = read_yaml_file(path, "the load test")
    spec = load_test_spec(data, file=file, base=str(Path(path).resolve().parent))
    if spec.target.workflow is not None and not Path(spec.workflow_path()).is_file():
        raise SpecError(f"no such workflow file {spec.target.workflow!r}", file=file, field="target.workflow")
    return spec
