"""SLA rules: ``"p95_task_latency < 2s"``, ``"error_rate < 1%"``, ``"cost_per_run < $0.50"``.

# Design
# A rule is ``<metric> <op> <threshold>``; the metric names a figure the run can measure (the
# table ``METRICS``), ``op`` is one of ``< <= > >=`` and the threshold may carry a unit that must
# suit the metric (``ms``/``s``/``m`` for durations, ``%`` for ratios, ``$`` for costs). Parsing is
# strict: an unknown metric (with a "did you mean"), a unit that does not fit, or a malformed rule
# is a ``SpecError`` naming the rule, so a typo never silently disables an alert.
#
# ``SLAMonitor`` is the pure state machine evaluated during a run (every sample) and at its end:
# a rule fires once when it starts failing and again only after it has recovered, so a violation
# that lasts a minute is one alert, not sixty. A metric the run cannot measure yet (None: no task
# finished, no cache lookups) neither fires nor recovers. Delivering alerts (log, webhook,
# command) is the caller's business; this module only decides.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..errors import SpecError

__all__ = ["METRICS", "SLAMonitor", "SLARule", "Violation", "evaluate", "parse_rule"]

#: metric -> (kind, what it is). Kinds: duration (seconds), ratio (0-1), count, cost (USD).
METRICS: dict[str, tuple[str, str]] = {
    "p50_task_latency": ("duration", "median task duration"),
    "p95_task_latency": ("duration", "95th percentile of task durations"),
    "p99_task_latency": ("duration", "99th percentile of task durations"),
    "max_task_latency": ("duration", "longest task"),
    "makespan": ("duration", "first start to last end"),
    "queue_wait_p95": ("duration", "95th percentile of the time ready tasks waited for a slot"),
    "error_rate": ("ratio", "failed tasks / finished tasks"),
    "retry_rate": ("ratio", "retries / attempts"),
    "cache_hit_rate": ("ratio", "cache hits / cacheable lookups"),
    "rate_limit_share": ("ratio", "time waiting on rate limits / task time"),
    "queue_depth": ("count", "tasks ready but not started"),
    "in_flight": ("count", "tasks running"),
    "failed_tasks": ("count", "tasks that failed"),
    "tokens_per_run": ("count", "tokens in + out"),
    "cost_per_run": ("cost", "estimated cost in USD"),
}

_OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
_RULE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*(\$?)\s*([0-9]*\.?[0-9]+(?:e[-+]?\d+)?)\s*"
                   r"(ms|s|m|h|%|k|)\s*$")
_DURATION = {"ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


@dataclass(frozen=True, slots=True)
class SLARule:
    """One parsed rule; ``threshold`` in the metric's base unit (seconds, 0-1, count, USD)."""

    metric: str
    op: str
    threshold: float
    text: str

    def holds(self, value: float) -> bool:
        return bool(_OPS[self.op](value, self.threshold))


@dataclass(frozen=True, slots=True)
class Violation:
    """A rule that started failing at ``at`` with ``value`` (``recovered``: the all-clear)."""

    rule: SLARule
    value: float
    at: float
    recovered: bool = False

    @property
    def message(self) -> str:
        kind = METRICS[self.rule.metric][0]
        shown = _show(self.value, kind)
        if self.recovered:
            return f"SLA recovered: {self.rule.text} (now {shown})"
        return f"SLA violated: {self.rule.text} (measured {shown})"


def _show(value: float, kind: str) -> str:
    if kind == "duration":
        return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"
    if kind == "ratio":
        return f"{value:.1%}"
    if kind == "cost":
        return f"${value:.4f}"
    return f"{value:g}"


def parse_rule(text: str, *, where: str = "sla") -> SLARule:
    """Parse ``"metric op threshold[unit]"``; a SpecError naming ``where`` and the rule if it is not one."""
    match = _RULE.match(text)
    if match is None:
        raise SpecError(f"{where}: {text!r} is not a rule like 'p95_task_latency < 2s' or 'error_rate < 1%'",
                        field=where)
    metric, op, dollar, number, unit = match.groups()
    if metric not in METRICS:
        close = difflib.get_close_matches(metric, METRICS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(METRICS)})"
        raise SpecError(f"{where}: unknown metric {metric!r} in {text!r}{hint}", field=where)
    kind = METRICS[metric][0]
    value = float(number)
    if not math.isfinite(value):
        raise SpecError(f"{where}: {text!r}: the threshold must be a finite number", field=where)
    if kind == "duration":
        if dollar or unit not in _DURATION:
            raise SpecError(f"{where}: {text!r}: {metric} is a duration; give ms, s, m or h (e.g. 2s)", field=where)
        value *= _DURATION[unit]
    elif kind == "ratio":
        if dollar or unit not in ("%", ""):
            raise SpecError(f"{where}: {text!r}: {metric} is a ratio; give a percentage (e.g. 1%) or 0-1",
                            field=where)
        value = value / 100.0 if unit == "%" else value
        if value > 1.0:
            raise SpecError(f"{where}: {text!r}: a ratio above 100% can never be crossed", field=where)
    elif kind == "cost":
        if unit not in ("", "k"):
            raise SpecError(f"{where}: {text!r}: {metric} is a cost in USD (e.g. $0.50)", field=where)
        value *= 1000.0 if unit == "k" else 1.0
    else:
        if dollar or unit not in ("", "k"):
            raise SpecError(f"{where}: {text!r}: {metric} is a count (e.g. 100 or 2k)", field=where)
        value *= 1000.0 if unit == "k" else 1.0
    return SLARule(metric=metric, op=op, threshold=value, text=" ".join(text.split()))


def evaluate(rules: Iterable[SLARule], values: Mapping[str, float | None], now: float = 0.0) -> list[Violation]:
    """The rules failing for ``values`` right now (unmeasured metrics are skipped)."""
    out = []
    for rule in rules:
        value = values.get(rule.metric)
        if value is not None and not rule.holds(value):
            out.append(Violation(rule, value, now))
    return out


class SLAMonitor:
    """Edge-triggered evaluation: ``update(values, now)`` returns new violations and recoveries."""

    def __init__(self, rules: Iterable[SLARule]) -> None:
        self.rules = tuple(rules)
        self._failing: dict[SLARule, Violation] = {}
        self.fired = 0

    @classmethod
    def from_texts(cls, texts: Iterable[str], *, where: str = "sla") -> SLAMonitor:
        return cls(parse_rule(text, where=f"{where}[{n}]") for n, text in enumerate(texts))

    @property
    def failing(self) -> list[Violation]:
        """Rules failing now, with the value and time they started failing at."""
        return list(self._failing.values())

    def update(self, values: Mapping[str, float | None], now: float) -> list[Violation]:
        changes: list[Violation] = []
        for rule in self.rules:
            value = values.get(rule.metric)
            if value is None:
                continue
            ok = rule.holds(value)
            if not ok and rule not in self._failing:
                violation = Violation(rule, value, now)
                self._failing[rule] = violation
                self.fired += 1
                changes.append(violation)
            elif ok and rule in self._failing:
                del self._failing[rule]
                changes.append(Violation(rule, value, now, recovered=True))
        return changes
