"""The local resource guard: run fewer CPU-bound agents, and hold back low tiers, while the machine is busy.

# Design
# ``ResourceGuard`` is a pure policy fed one sample at a time (CPU and memory use of the whole
# machine, as fractions) and answering a ``GuardDecision``:
#
# * pressure: a sample is *over* when CPU or memory is above its high mark, *clear* when both
#   are below their low marks, and in between otherwise. In between changes nothing
#   (hysteresis), so a load hovering around one mark does not flap.
# * ``factor`` in [``min_factor``, 1] scales the parallelism of CPU-bound agents (command,
#   python). Multiplicative decrease, additive increase, as AIMD: each over sample multiplies
#   it by ``step``, each clear sample adds ``recover``. Load reacts late to a change in
#   parallelism (processes take time to start and finish), so backing off fast and coming
#   back gently avoids overshooting again; the floor keeps work moving.
# * ``hold``: work of tiers with a priority below ``hold_tiers_below`` waits while the
#   machine is over, from the first over sample until the first clear one. Higher tiers and
#   work already running are never touched.
#
# Samples come from ``ResourceSampler`` (psutil). It computes CPU use from its own
# ``cpu_times()`` deltas rather than ``psutil.cpu_percent(interval=None)``, whose reference
# point is one global shared by every caller in the process: another caller would shorten
# our window, and a call right after another would read 0 % (idle) and release the guard.
# ``ResourceMonitor`` samples every ``interval`` seconds on an injected clock and calls
# ``on_change`` only when the decision changes.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple, Protocol

from .._types import Clock

if TYPE_CHECKING:
    from psutil._ntuples import scputimes

__all__ = [
    "GuardDecision",
    "ResourceGuard",
    "ResourceGuardStatistics",
    "ResourceMonitor",
    "ResourceSampler",
    "SupportsSample",
]


@dataclass(frozen=True, slots=True)
class GuardDecision:
    """What the guard asks of the scheduler now: run CPU-bound agents at ``factor`` (0, 1] of their
    parallelism, and, while ``hold``, start no work of a tier whose priority is below
    ``hold_tiers_below`` (None: the guard never holds tiers)."""

    factor: float = 1.0
    hold: bool = False
    hold_tiers_below: int | None = None

    def holds(self, priority: int) -> bool:
        """Whether new work of a tier with ``priority`` must wait now."""
        return self.hold and self.hold_tiers_below is not None and priority < self.hold_tiers_below

    def scale(self, limit: int) -> int:
        """``limit`` scaled by ``factor``, rounded down but at least 1."""
        return max(1, math.floor(limit * self.factor + 1e-9))


@dataclass(frozen=True, slots=True)
class ResourceGuardStatistics:
    """The current ``factor`` and ``hold``; how many ``samples``, ``decreases`` and ``increases`` of
    the factor, times it started holding (``holds``) and seconds spent holding (``held_s``, the
    current hold included); the last sample's ``cpu`` and ``memory`` (None before any)."""

    factor: float
    hold: bool
    samples: int
    decreases: int
    increases: int
    holds: int
    held_s: float
    cpu: float | None
    memory: float | None


class ResourceGuard:
    """Hysteresis over CPU and memory use (fractions of the machine): above ``cpu_high`` or
    ``mem_high`` the factor for CPU-bound agents shrinks by ``step`` per sample (not below
    ``min_factor``) and tiers below priority ``hold_tiers_below`` are held; below ``cpu_low`` and
    ``mem_low`` the factor grows by ``recover`` per sample (up to 1) and the hold is released.

    ``hold_tiers_below`` defaults to 2, the priority of the built-in ``primary`` tier (so
    ``secondary`` and ``specialised`` work waits); None never holds."""

    def __init__(
        self,
        cpu_high: float = 0.85,
        cpu_low: float = 0.6,
        mem_high: float = 0.9,
        mem_low: float = 0.75,
        min_factor: float = 0.25,
        step: float = 0.5,
        hold_tiers_below: int | None = 2,
        *,
        recover: float = 0.25,
    ) -> None:
        for name, low, high in (("cpu", cpu_low, cpu_high), ("mem", mem_low, mem_high)):
            if not 0 < low <= high <= 1:
                raise ValueError(f"need 0 < {name}_low <= {name}_high <= 1, got {low!r} and {high!r}")
        if not 0 < min_factor <= 1:
            raise ValueError(f"min_factor must be in (0, 1], got {min_factor!r}")
        if not 0 < step < 1:
            raise ValueError(f"step must be in (0, 1), got {step!r}")
        if not 0 < recover <= 1:
            raise ValueError(f"recover must be in (0, 1], got {recover!r}")
        self.cpu_high = cpu_high
        self.cpu_low = cpu_low
        self.mem_high = mem_high
        self.mem_low = mem_low
        self.min_factor = min_factor
        self.step = step
        self.recover = recover
        self.hold_tiers_below = hold_tiers_below
        self._decision = GuardDecision(hold_tiers_below=hold_tiers_below)
        self._samples = 0
        self._decreases = 0
        self._increases = 0
        self._holds = 0
        self._held = 0.0
        self._held_since: float | None = None
        self._cpu: float | None = None
        self._mem: float | None = None

    @property
    def decision(self) -> GuardDecision:
        """The decision after the last sample (full parallelism, nothing held, before any)."""
        return self._decision

    def update(self, cpu_fraction: float, mem_fraction: float, now: float) -> GuardDecision:
        """Account one sample taken at ``now`` and return the decision. Values are clamped to [0, 1];
        a NaN sample carries no information and changes nothing."""
        if math.isnan(cpu_fraction) or math.isnan(mem_fraction):
            return self._decision
        cpu = min(1.0, max(0.0, cpu_fraction))
        mem = min(1.0, max(0.0, mem_fraction))
        self._samples += 1
        self._cpu, self._mem = cpu, mem
        factor, hold = self._decision.factor, self._decision.hold
        if cpu > self.cpu_high or mem > self.mem_high:
            new = max(self.min_factor, factor * self.step)
            if new < factor:
                self._decreases += 1
            factor = new
            if not hold and self.hold_tiers_below is not None:
                hold = True
                self._holds += 1
                self._held_since = now
        elif cpu < self.cpu_low and mem < self.mem_low:
            new = min(1.0, factor + self.recover)
            if new > factor:
                self._increases += 1
            factor = new
            if hold:
                hold = False
                if self._held_since is not None:
                    self._held += max(0.0, now - self._held_since)
                self._held_since = None
        if factor != self._decision.factor or hold != self._decision.hold:
            self._decision = GuardDecision(factor=factor, hold=hold, hold_tiers_below=self.hold_tiers_below)
        return self._decision

    def statistics(self, now: float) -> ResourceGuardStatistics:
        """The decision and counters at ``now``."""
        held = self._held
        if self._held_since is not None:
            held += max(0.0, now - self._held_since)
        return ResourceGuardStatistics(
            factor=self._decision.factor,
            hold=self._decision.hold,
            samples=self._samples,
            decreases=self._decreases,
            increases=self._increases,
            holds=self._holds,
            held_s=held,
            cpu=self._cpu,
            memory=self._mem,
        )


class SupportsSample(Protocol):
    """A source of ``(cpu_fraction, mem_fraction)`` samples of the machine, both in [0, 1]."""

    def sample(self) -> tuple[float, float]: ...


class _CpuTimes(NamedTuple):
    busy: float
    total: float


class ResourceSampler:
    """Whole-machine CPU and memory use from psutil, as fractions in [0, 1].

    CPU use is the busy share of all CPUs' time since the previous ``sample()`` (the first one
    measures from construction); memory is ``virtual_memory().percent`` / 100 (used: total minus
    available)."""

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        self._last = _cpu_times(psutil.cpu_times())
        self._cpu = 0.0

    def sample(self) -> tuple[float, float]:
        """``(cpu_fraction, mem_fraction)`` now. Two samples too close together to measure (no CPU
        time counted in between) repeat the previous CPU reading."""
        now = _cpu_times(self._psutil.cpu_times())
        busy = now.busy - self._last.busy
        total = now.total - self._last.total
        if total > 0:
            self._cpu = min(1.0, max(0.0, busy / total))
            self._last = now
        mem = min(1.0, max(0.0, self._psutil.virtual_memory().percent / 100.0))
        return self._cpu, mem


def _cpu_times(times: scputimes) -> _CpuTimes:
    """Busy and total CPU seconds, counted as psutil's ``cpu_percent`` does (guest time is
    already in user time on Linux; idle and iowait are not busy)."""
    total = sum(times) - getattr(times, "guest", 0.0) - getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return _CpuTimes(busy=total - idle, total=total)


class ResourceMonitor:
    """Samples ``sampler`` every ``interval`` seconds of ``clock``, feeds ``guard``, and calls
    ``on_change(decision)`` whenever the decision differs from the previous one.

    ``start()`` begins sampling (first sample one interval later), ``aclose()`` stops it; also an
    async context manager. A sampler or callback that raises is counted in ``errors`` (the last
    one kept in ``last_error``) and sampling goes on."""

    def __init__(
        self,
        guard: ResourceGuard,
        sampler: SupportsSample,
        clock: Clock,
        interval: float = 0.5,
        on_change: Callable[[GuardDecision], None] | None = None,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        self.guard = guard
        self.sampler = sampler
        self.clock = clock
        self.interval = interval
        self.on_change = on_change
        self.errors = 0
        self.last_error: Exception | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def decision(self) -> GuardDecision:
        """The guard's current decision."""
        return self.guard.decision

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start sampling in the running loop (no-op when already running)."""
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="agentfleet resource monitor")

    async def _run(self) -> None:
        previous = self.guard.decision
        while True:
            await self.clock.sleep(self.interval)
            try:
                cpu, mem = self.sampler.sample()
                decision = self.guard.update(cpu, mem, self.clock.now())
                if decision != previous:
                    previous = decision
                    if self.on_change is not None:
                        self.on_change(decision)
            except Exception as exc:  # noqa: BLE001 - the guard must outlive a bad sample or callback
                self.errors += 1
                self.last_error = exc

    async def aclose(self) -> None:
        """Stop sampling and wait for the loop to end."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def __aenter__(self) -> ResourceMonitor:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()
