"""Load-test thresholds: ``"p95 < 500ms"``, ``"error_rate < 0.1%"``, ``"rps >= 100"``, ``"p99 < 1s abort"``.

# Design
# A threshold is ``<metric> <op> <number>[unit] [abort]``. The metric names a figure a load test
# measures (the table ``METRICS``: latency percentiles, ``ttft_`` percentiles of the time to first
# token, error rate, throughput, counts); ``op`` is one of ``< <= > >=``; the unit must suit the
# metric (``us``/``ms``/``s``/``m``/``h`` for durations, ``%`` or a bare 0-1 for ratios, a bare
# number or ``/s`` for throughput, a bare number or ``k`` for counts). Parsing is strict: a missing
# operator, an unknown metric (with a "did you mean"), a missing or unsuitable unit is a
# ``SpecError`` naming the expression, so a typo never silently passes a load test.
#
# Abort: a trailing word ``abort`` (``"p99 < 1s abort"``) marks a threshold whose failure should
# stop the run early; the mapping form ``{"expr": "p99 < 1s", "abort": true}`` (from YAML) means
# the same. The engine decides when to evaluate (``Verdict.aborts`` says which failures ask for it).
#
# A metric the results do not hold, or hold as None (no request finished, no TTFT measured), is
# a failed verdict with ``measured=None``: a threshold that cannot be checked does not pass.
#
# The SLA rules of ``telemetry._sla`` use the same grammar, but their parser accepts only the run
# metrics of its own table and keeps its unit tables private, so the (small) unit handling lives
# here too; ``parse_duration`` is shared with the scenario loader.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import SpecError

__all__ = [
    "DURATION_UNITS",
    "METRICS",
    "Threshold",
    "Verdict",
    "aborting",
    "evaluate_thresholds",
    "format_value",
    "parse_duration",
    "parse_threshold",
    "parse_thresholds",
]

#: Seconds per duration unit.
DURATION_UNITS: dict[str, float] = {"us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}

_LATENCY = ("min", "mean", "p50", "p90", "p95", "p99", "p99.9", "max")


def _metric_table() -> dict[str, tuple[str, str]]:
    table: dict[str, tuple[str, str]] = {}
    for name in _LATENCY:
        table[name] = ("duration", f"{name} of request latency (from the intended send time)")
    for name in _LATENCY:
        table[f"ttft_{name}"] = ("duration", f"{name} of the time to first token")
    table.update({
        "max_lag": ("duration", "the latest a send left after its intended time"),
        "error_rate": ("ratio", "failed requests / completed requests"),
        "rps": ("rate", "completed requests per second over the measured span"),
        "ok_rps": ("rate", "successful requests per second over the measured span"),
        "requests": ("count", "completed requests"),
        "errors": ("count", "failed requests"),
        "late": ("count", "sends that left late"),
        "dropped": ("count", "sends that were never made"),
    })
    return table


#: metric -> (kind, what it is). Kinds: duration (seconds), ratio (0-1), rate (per second), count.
METRICS: dict[str, tuple[str, str]] = _metric_table()

_OPS = {"<": lambda a, b: a < b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}
_EXPR = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_.]*)\s*(?P<op><=|>=|<|>)\s*"
    r"(?P<number>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<unit>[A-Za-zµμ%/]*)"
    r"(?:\s+(?P<abort>abort))?\s*$"
)
_UNITS_BY_KIND = {
    "duration": "a duration: give us, ms, s, m or h (e.g. 500ms)",
    "ratio": "a ratio: give a percentage (e.g. 0.1%) or a number from 0 to 1",
    "rate": "a rate: give requests per second (e.g. 100 or 100/s)",
    "count": "a count: give a number (e.g. 100 or 2k)",
}
_MAPPING_KEYS = ("expr", "abort")
_DURATION_TEXT = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(us|µs|μs|ms|s|m|h)\s*$")


@dataclass(frozen=True, slots=True)
class Threshold:
    """One parsed threshold; ``value`` in the metric's base unit (seconds, 0-1, per second, count).

    ``expression`` is the normalised text without the ``abort`` word; ``abort`` asks the engine to
    stop the run when the threshold fails."""

    metric: str
    op: str
    value: float
    expression: str
    abort: bool = False

    @property
    def kind(self) -> str:
        """duration, ratio, rate or count."""
        return METRICS[self.metric][0]

    def holds(self, measured: float) -> bool:
        """Whether ``measured`` (base unit) satisfies the threshold."""
        return bool(_OPS[self.op](measured, self.value))

    def __str__(self) -> str:
        return f"{self.expression} abort" if self.abort else self.expression


@dataclass(frozen=True, slots=True)
class Verdict:
    """A threshold checked against results: ``measured`` is None when the results lack the metric."""

    threshold: Threshold
    measured: float | None
    passed: bool

    @property
    def expression(self) -> str:
        return self.threshold.expression

    @property
    def aborts(self) -> bool:
        """The threshold failed and asks for the run to stop."""
        return self.threshold.abort and not self.passed

    @property
    def message(self) -> str:
        """``"PASS p95 < 500ms (measured 420ms)"``, ``"FAIL ... (not measured)"``."""
        word = "PASS" if self.passed else "FAIL"
        if self.measured is None:
            shown = "not measured"
        else:
            shown = f"measured {format_value(self.measured, self.threshold.kind)}"
        return f"{word} {self.threshold} ({shown})"


def format_value(value: float, kind: str) -> str:
    """A figure in the unit a person reads: 420ms, 1.25s, 0.10%, 103.2/s, 12."""
    if kind == "duration":
        if value < 1e-3:
            return f"{value * 1e6:.0f}us"
        return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"
    if kind == "ratio":
        return f"{value:.2%}"
    if kind == "rate":
        return f"{value:.1f}/s"
    return f"{value:g}"


def parse_duration(value: object, *, where: str = "duration") -> float:
    """Seconds from a number (seconds) or a string like ``"500ms"``, ``"30s"``, ``"5m"``, ``"8h"``.

    Raises ``SpecError`` naming ``where`` for anything else, or a negative or non-finite value."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise SpecError(f"expected a duration like 30s or 5m, got {value!r}", field=where)
    if isinstance(value, str):
        match = _DURATION_TEXT.match(value)
        if match is None:
            raise SpecError(f"{value!r} is not a duration: give a number and us, ms, s, m or h (e.g. 30s)",
                            field=where)
        seconds = float(match.group(1)) * DURATION_UNITS[match.group(2)]
    else:
        seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0:
        raise SpecError(f"a duration must be a finite number of seconds >= 0, got {value!r}", field=where)
    return seconds


def _diagnose(text: str, where: str) -> SpecError:
    """The error for text the grammar does not match: say which part is missing."""
    if not re.search(r"[<>]", text):
        hint = " ('=' and '==' are not comparisons here)" if "=" in text else ""
        return SpecError(f"{text!r} has no comparison operator: use <, <=, > or >= (e.g. 'p95 < 500ms'){hint}",
                         field=where)
    return SpecError(f"{text!r} is not a threshold like 'p95 < 500ms', 'error_rate < 0.1%' or 'p99 < 1s abort'",
                     field=where)


def _unknown_metric(metric: str, text: str, where: str) -> SpecError:
    close = difflib.get_close_matches(metric, METRICS, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(METRICS)})"
    return SpecError(f"unknown metric {metric!r} in {text!r}{hint}", field=where)


def _scale(metric: str, number: float, unit: str, text: str, where: str) -> float:
    """``number`` with ``unit`` in the metric's base unit, or a SpecError when the unit does not suit."""
    kind = METRICS[metric][0]
    bad = SpecError(f"{text!r}: unit {unit or '(none)'!r} does not suit {metric}, which is {_UNITS_BY_KIND[kind]}",
                    field=where)
    if kind == "duration":
        if unit not in DURATION_UNITS:
            raise bad
        return number * DURATION_UNITS[unit]
    if kind == "ratio":
        if unit not in ("%", ""):
            raise bad
        value = number / 100.0 if unit == "%" else number
        if value > 1.0:
            raise SpecError(f"{text!r}: a ratio above 100% can never be crossed", field=where)
        return value
    if kind == "rate":
        if unit not in ("", "/s", "rps"):
            raise bad
        return number
    if unit not in ("", "k"):
        raise bad
    return number * 1000.0 if unit == "k" else number


def parse_threshold(spec: str | Mapping[str, Any], *, where: str = "thresholds") -> Threshold:
    """Parse ``"metric op number[unit] [abort]"`` or ``{"expr": ..., "abort": bool}``.

    Raises ``SpecError`` naming ``where`` and the expression when it is not a threshold."""
    text, abort = _unpack(spec, where)
    match = _EXPR.match(text)
    if match is None:
        raise _diagnose(text, where)
    metric, op, number, unit = match.group("metric", "op", "number", "unit")
    if metric not in METRICS:
        raise _unknown_metric(metric, text, where)
    value = float(number)
    if not math.isfinite(value):
        raise SpecError(f"{text!r}: the threshold must be a finite number", field=where)
    value = _scale(metric, value, unit, text, where)
    suffix_abort = match.group("abort") is not None
    if abort is False and suffix_abort:
        raise SpecError(f"{text!r} says abort but the mapping says abort: false", field=where)
    expression = f"{metric} {op} {number}{unit}"
    return Threshold(metric=metric, op=op, value=value, expression=expression, abort=bool(abort) or suffix_abort)


def _unpack(spec: str | Mapping[str, Any], where: str) -> tuple[str, bool | None]:
    """The expression text and the mapping's abort flag (None when not given)."""
    if isinstance(spec, str):
        return spec, None
    if not isinstance(spec, Mapping):
        raise SpecError(f"a threshold is a string like 'p95 < 500ms' or a mapping with expr and abort, got {spec!r}",
                        field=where)
    unknown = [key for key in spec if key not in _MAPPING_KEYS]
    if unknown:
        raise SpecError(f"unknown key {unknown[0]!r} in threshold {dict(spec)!r} (known: expr, abort)", field=where)
    text = spec.get("expr")
    if not isinstance(text, str):
        raise SpecError(f"a threshold mapping needs expr: a string like 'p95 < 500ms', got {text!r}", field=where)
    abort = spec.get("abort")
    if abort is not None and not isinstance(abort, bool):
        raise SpecError(f"abort must be true or false in threshold {text!r}, got {abort!r}", field=where)
    return text, abort


def parse_thresholds(specs: Iterable[str | Mapping[str, Any]], *, where: str = "thresholds") -> list[Threshold]:
    """Parse every threshold; errors name ``where[n]``."""
    return [parse_threshold(spec, where=f"{where}[{n}]") for n, spec in enumerate(specs)]


def evaluate_thresholds(thresholds: Iterable[Threshold], results: Mapping[str, float | None]) -> list[Verdict]:
    """A verdict per threshold, in order; a metric missing from ``results`` (or None) fails."""
    verdicts = []
    for threshold in thresholds:
        measured = results.get(threshold.metric)
        if measured is None or math.isnan(measured):
            verdicts.append(Verdict(threshold, None, False))
        else:
            verdicts.append(Verdict(threshold, float(measured), threshold.holds(measured)))
    return verdicts


def aborting(verdicts: Iterable[Verdict]) -> list[Verdict]:
    """The failed verdicts whose threshold asks for the run to stop."""
    return [verdict for verdict in verdicts if verdict.aborts]
