"""Open-loop arrival schedules: when each request of a load test is meant to be sent.

# Design
# A scenario (steady, spike, endurance, stress, volume) is a frozen dataclass validated on
# construction; ``phases(scenario)`` cuts it into ``Phase``s, each a span of time with a rate that
# is constant or changes linearly (a ramp), and, for volume tests, a payload size.
#
# The phases define a cumulative intensity Λ(t), the number of requests due by time t. Arrival k
# is sent when Λ reaches k: with constant spacing k = 0, 1, 2, ...; with Poisson arrivals (an
# injected random generator) the unit-rate Poisson sequence E1, E1+E2, ... (the time-change
# construction of a non-homogeneous Poisson process, so ramps work for both). Inside a phase that
# starts at ``start`` with Λ(start) = c, a constant rate gives ``t = start + (k - c) / rate`` and a
# ramp the closed-form root of its quadratic: every time is computed afresh from k, never by adding
# up gaps, so an 8-hour schedule has no drift and ``steady`` at 10/s gives exactly ``k / 10``.
# Phase counts within 1e-9 of a whole number are snapped to it, so 0.1 s * 10/s counts 1, not 0.999...
#
# ``arrivals`` is a generator: an 8-hour run at 1,000 req/s (28.8 million sends) costs the memory
# of one ``Arrival``. Whether the system under test keeps up is the engine's business: the
# schedule is open-loop and never waits for responses (no coordinated omission).
"""

from __future__ import annotations

import dataclasses
import difflib
import itertools
import math
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, NamedTuple, Protocol

from ..errors import SpecError
from ._thresholds import parse_duration

__all__ = [
    "Arrival",
    "EnduranceScenario",
    "Phase",
    "Scenario",
    "SpikeScenario",
    "SteadyScenario",
    "StressScenario",
    "SupportsExponential",
    "VolumeScenario",
    "arrivals",
    "expected_arrivals",
    "phases",
    "scenario_from_dict",
]

_SNAP = 1e-9
_MAX_STEPS = 10_000
_BATCH = 1024


class Arrival(NamedTuple):
    """One intended send: ``t`` seconds from the start, the index of its phase, its payload size."""

    t: float
    phase: int
    size: int | None


@dataclass(frozen=True, slots=True)
class Phase:
    """A span ``[start, end)`` of the schedule, in seconds from the start.

    The rate goes linearly from ``start_rate`` to ``rate`` (equal unless the phase is a ramp);
    ``size`` is the payload or context size of a volume test's phase, None otherwise."""

    index: int
    name: str
    start: float
    end: float
    rate: float
    start_rate: float
    size: int | None = None

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def is_ramp(self) -> bool:
        return self.start_rate != self.rate

    @property
    def expected_count(self) -> float:
        """Requests due in the phase: the area under its rate."""
        return (self.start_rate + self.rate) / 2.0 * self.duration

    def offset(self, x: float) -> float:
        """Seconds into the phase at which ``x`` requests (0 <= x <= expected_count) are due."""
        if not self.is_ramp:
            return x / self.rate
        if x <= 0.0:
            return 0.0
        slope = (self.rate - self.start_rate) / self.duration
        # The root of start_rate*t + slope*t²/2 = x, in the form that stays exact as slope -> 0.
        return 2.0 * x / (self.start_rate + math.sqrt(self.start_rate**2 + 2.0 * slope * x))


# -- validation ------------------------------------------------------------------------------


def _positive(kind: str, name: str, value: float, *, unit: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise SpecError(f"{kind} scenario: {name} must be a positive number of {unit}, got {value!r}")


def _non_negative(kind: str, name: str, value: float, *, unit: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise SpecError(f"{kind} scenario: {name} must be a number of {unit} >= 0, got {value!r}")


def _check_ramp(kind: str, ramp_up: float, duration: float) -> None:
    _non_negative(kind, "ramp_up", ramp_up, unit="seconds")
    if ramp_up >= duration:
        raise SpecError(f"{kind} scenario: ramp_up ({ramp_up:g}s) must be shorter than duration ({duration:g}s)")


def _ramped(rate: float, duration: float, ramp_up: float) -> list[Phase]:
    if ramp_up == 0:
        return [Phase(0, "steady", 0.0, float(duration), float(rate), float(rate))]
    return [
        Phase(0, "ramp-up", 0.0, float(ramp_up), float(rate), 0.0),
        Phase(1, "steady", float(ramp_up), float(duration), float(rate), float(rate)),
    ]


# -- scenarios -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SteadyScenario:
    """``rate`` req/s for ``duration`` seconds; the first ``ramp_up`` seconds of it climb linearly from 0."""

    kind: ClassVar[str] = "steady"

    rate: float
    duration: float
    ramp_up: float = 0.0

    def __post_init__(self) -> None:
        _positive(self.kind, "rate", self.rate, unit="requests per second")
        _positive(self.kind, "duration", self.duration, unit="seconds")
        _check_ramp(self.kind, self.ramp_up, self.duration)

    def phases(self) -> list[Phase]:
        """``steady``, preceded by ``ramp-up`` when there is one."""
        return _ramped(self.rate, self.duration, self.ramp_up)


@dataclass(frozen=True, slots=True)
class SpikeScenario:
    """``baseline_rate``, then ``spike_rate`` from ``spike_start`` for ``spike_duration``, then baseline again.

    Phases 0, 1, 2 are ``baseline``, ``spike`` and ``recovery``; a report measures recovery from
    ``spike_end`` (the recovery phase's start) until latency is back to the baseline's."""

    kind: ClassVar[str] = "spike"

    baseline_rate: float
    spike_rate: float
    spike_start: float
    spike_duration: float
    duration: float

    def __post_init__(self) -> None:
        _positive(self.kind, "baseline_rate", self.baseline_rate, unit="requests per second")
        _positive(self.kind, "spike_rate", self.spike_rate, unit="requests per second")
        _positive(self.kind, "spike_start", self.spike_start, unit="seconds")
        _positive(self.kind, "spike_duration", self.spike_duration, unit="seconds")
        _positive(self.kind, "duration", self.duration, unit="seconds")
        if self.spike_end >= self.duration:
            raise SpecError(
                f"spike scenario: the spike ends at {self.spike_end:g}s, not before the end ({self.duration:g}s); "
                "leave time after it to measure recovery"
            )

    @property
    def spike_end(self) -> float:
        return self.spike_start + self.spike_duration

    def phases(self) -> list[Phase]:
        base, peak = float(self.baseline_rate), float(self.spike_rate)
        return [
            Phase(0, "baseline", 0.0, float(self.spike_start), base, base),
            Phase(1, "spike", float(self.spike_start), self.spike_end, peak, peak),
            Phase(2, "recovery", self.spike_end, float(self.duration), base, base),
        ]


@dataclass(frozen=True, slots=True)
class EnduranceScenario:
    """A long steady run (a soak): like ``SteadyScenario``, tagged so the engine samples memory and
    latency drift every ``sample_every`` seconds."""

    kind: ClassVar[str] = "endurance"

    rate: float
    duration: float
    ramp_up: float = 0.0
    sample_every: float = 60.0

    def __post_init__(self) -> None:
        _positive(self.kind, "rate", self.rate, unit="requests per second")
        _positive(self.kind, "duration", self.duration, unit="seconds")
        _check_ramp(self.kind, self.ramp_up, self.duration)
        _positive(self.kind, "sample_every", self.sample_every, unit="seconds")
        if self.sample_every > self.duration:
            raise SpecError(f"endurance scenario: sample_every ({self.sample_every:g}s) is longer than the run "
                            f"({self.duration:g}s)")

    def phases(self) -> list[Phase]:
        return _ramped(self.rate, self.duration, self.ramp_up)


@dataclass(frozen=True, slots=True)
class StressScenario:
    """Steps of ``step_duration`` seconds from ``start_rate`` up to ``max_rate``.

    ``mode="add"``: each step adds ``step`` req/s; ``mode="multiply"``: each step multiplies the rate
    by ``step``. Rates are ``start_rate + i*step`` or ``start_rate * step**i`` (no accumulated error);
    the last step runs at ``max_rate`` exactly. The engine decides when to stop early (a threshold
    breaking); ``phases`` are the steps (``start``, ``end``, ``rate``)."""

    kind: ClassVar[str] = "stress"

    start_rate: float
    step: float
    step_duration: float
    max_rate: float
    mode: Literal["add", "multiply"] = "add"

    def __post_init__(self) -> None:
        _positive(self.kind, "start_rate", self.start_rate, unit="requests per second")
        _positive(self.kind, "step_duration", self.step_duration, unit="seconds")
        _positive(self.kind, "max_rate", self.max_rate, unit="requests per second")
        if self.mode not in ("add", "multiply"):
            raise SpecError(f"stress scenario: mode must be 'add' or 'multiply', got {self.mode!r}")
        _positive(self.kind, "step", self.step, unit="requests per second" if self.mode == "add" else "times")
        if self.mode == "multiply" and self.step <= 1:
            raise SpecError(f"stress scenario: a multiplying step must be above 1, got {self.step!r}")
        if self.max_rate < self.start_rate:
            raise SpecError(f"stress scenario: max_rate ({self.max_rate:g}) is below start_rate ({self.start_rate:g})")
        self.rates()  # refuses a silly number of steps now, not when the run starts

    def rates(self) -> list[float]:
        """The rate of every step, ending with ``max_rate``."""
        out: list[float] = []
        top = self.max_rate * (1.0 - _SNAP)
        for i in itertools.count():
            rate = self.start_rate + i * self.step if self.mode == "add" else self.start_rate * self.step**i
            if rate >= top:
                break
            if i >= _MAX_STEPS:
                raise SpecError(f"stress scenario: more than {_MAX_STEPS} steps from {self.start_rate:g} to "
                                f"{self.max_rate:g} req/s; take bigger steps")
            out.append(float(rate))
        out.append(float(self.max_rate))
        return out

    @property
    def duration(self) -> float:
        return len(self.rates()) * self.step_duration

    def phases(self) -> list[Phase]:
        width = self.step_duration
        steps = enumerate(self.rates())
        return [Phase(i, f"step {i + 1}", i * width, (i + 1) * width, rate, rate) for i, rate in steps]


@dataclass(frozen=True, slots=True)
class VolumeScenario:
    """A fixed ``rate`` with a payload or context size per phase: ``phase_duration`` seconds at each of ``sizes``."""

    kind: ClassVar[str] = "volume"

    rate: float
    phase_duration: float
    sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        _positive(self.kind, "rate", self.rate, unit="requests per second")
        _positive(self.kind, "phase_duration", self.phase_duration, unit="seconds")
        if not isinstance(self.sizes, tuple) or not self.sizes:
            raise SpecError(f"volume scenario: sizes must be a non-empty tuple of sizes, got {self.sizes!r}")
        for size in self.sizes:
            if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
                raise SpecError(f"volume scenario: every size must be a positive whole number, got {size!r}")

    @property
    def duration(self) -> float:
        return len(self.sizes) * self.phase_duration

    def phases(self) -> list[Phase]:
        rate, width = float(self.rate), self.phase_duration
        return [
            Phase(i, f"size {size}", i * width, (i + 1) * width, rate, rate, size) for i, size in enumerate(self.sizes)
        ]


#: Any scenario kind.
Scenario = SteadyScenario | SpikeScenario | EnduranceScenario | StressScenario | VolumeScenario

_KINDS: dict[str, type[Scenario]] = {
    cls.kind: cls for cls in (SteadyScenario, SpikeScenario, EnduranceScenario, StressScenario, VolumeScenario)
}


# -- arrivals --------------------------------------------------------------------------------


class SupportsExponential(Protocol):
    """A ``numpy.random.Generator`` (anything with ``exponential(scale, size)``)."""

    def exponential(self, scale: float = ..., size: int = ...) -> Any: ...


def phases(scenario: Scenario) -> list[Phase]:
    """The scenario's phases in time order, indexed from 0."""
    return scenario.phases()


def _snap(x: float) -> float:
    whole = round(x)
    return float(whole) if abs(x - whole) <= _SNAP * max(1.0, abs(x)) else x


def expected_arrivals(scenario: Scenario) -> int:
    """How many arrivals ``arrivals(scenario)`` yields with constant spacing (for progress bars)."""
    total = 0.0
    for phase in scenario.phases():
        total = _snap(total + phase.expected_count)
    return math.ceil(total)


def _unit_poisson(rng: random.Random | SupportsExponential) -> Iterator[float]:
    """E1, E1+E2, ...: the arrival counts of a unit-rate Poisson process."""
    s = 0.0
    if isinstance(rng, random.Random):
        draw = rng.expovariate
        while True:
            s += draw(1.0)
            yield s
    while True:
        for gap in rng.exponential(1.0, _BATCH).tolist():
            s += gap
            yield s


def arrivals(scenario: Scenario, *, rng: random.Random | SupportsExponential | None = None) -> Iterator[Arrival]:
    """The intended send times of ``scenario``, lazily, in order.

    Without ``rng`` the spacing is constant within a phase (``t = start + k/rate``; the first send
    is at 0); with a ``random.Random`` or ``numpy.random.Generator`` the sends are a Poisson process
    with the same rates, reproducible from the generator's seed."""
    counts: Iterator[float] = itertools.count() if rng is None else _unit_poisson(rng)
    return _walk(scenario.phases(), counts)


def _walk(plan: list[Phase], counts: Iterator[float]) -> Iterator[Arrival]:
    s = next(counts)
    base = 0.0
    for phase in plan:
        top = _snap(base + phase.expected_count)
        start, index, size, offset = phase.start, phase.index, phase.size, phase.offset
        while s < top:
            yield Arrival(start + offset(s - base), index, size)
            s = next(counts)
        base = top


# -- loading ---------------------------------------------------------------------------------

_DURATIONS = {"duration", "ramp_up", "spike_start", "spike_duration", "sample_every", "step_duration", "phase_duration"}


def _number(value: object, key: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SpecError(f"{key} must be a number, got {value!r}", field=where)
    return float(value)


def _stress_step(value: object, where: str) -> tuple[float, str | None]:
    """``10`` or ``"+10"`` (add) or ``"x1.5"`` / ``"*1.5"`` (multiply)."""
    if isinstance(value, str):
        text = value.strip()
        mode = "multiply" if text[:1] in ("x", "*") else "add"
        try:
            return float(text.lstrip("+x*").strip()), mode
        except ValueError:
            raise SpecError(f"step {value!r} is not '+10' (add 10 req/s) or 'x1.5' (multiply by 1.5)",
                            field=where) from None
    return _number(value, "step", where), None


def scenario_from_dict(data: Mapping[str, Any], *, where: str = "scenario") -> Scenario:
    """A scenario from a mapping (YAML): ``kind`` and the scenario's fields.

    Durations take seconds or strings like ``"30s"``/``"5m"``/``"8h"``; a stress ``step`` may be
    ``"+10"`` or ``"x1.5"``. Raises ``SpecError`` naming ``where`` for an unknown kind or key."""
    kind = data.get("kind")
    if kind not in _KINDS:
        close = difflib.get_close_matches(str(kind), _KINDS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise SpecError(f"kind must be one of {', '.join(_KINDS)}, got {kind!r}{hint}", field=where)
    cls = _KINDS[kind]
    fields = [f.name for f in dataclasses.fields(cls)]
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key == "kind":
            continue
        if key not in fields:
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else f" (known: {', '.join(fields)})"
            raise SpecError(f"unknown key {key!r} for a {kind} scenario{hint}", field=where)
        values[key] = _field(cls, key, value, values, where)
    try:
        return cls(**values)
    except TypeError as exc:  # a required field is missing
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in values and f.default is dataclasses.MISSING]
        raise SpecError(f"a {kind} scenario needs {', '.join(missing)}", field=where) from exc
    except SpecError as exc:
        raise SpecError(exc.message, field=where) from None


def _field(cls: type[Scenario], key: str, value: object, values: dict[str, Any], where: str) -> Any:
    if key in _DURATIONS:
        return parse_duration(value, where=f"{where}.{key}")
    if key == "sizes":
        if not isinstance(value, list | tuple):
            raise SpecError(f"sizes must be a list of sizes, got {value!r}", field=where)
        return tuple(value)
    if key == "mode":
        if values.get("mode", value) != value:
            raise SpecError(f"mode {value!r} contradicts the step, which says {values['mode']!r}", field=where)
        return value
    if cls is StressScenario and key == "step":
        step, mode = _stress_step(value, where)
        if mode is not None and values.setdefault("mode", mode) != mode:
            raise SpecError(f"step {value!r} contradicts mode {values['mode']!r}", field=where)
        return step
    return _number(value, key, where)

