"""The resource guard: exact decisions for sequences of samples, the monitor on virtual time,
and the psutil sampler on this machine."""

from __future__ import annotations

import asyncio
import math

import pytest

from agentfleet._types import LoopClock
from agentfleet.resilience import GuardDecision, ResourceGuard, ResourceMonitor, ResourceSampler
from agentfleet.testing import run_virtual


def trace(guard: ResourceGuard, samples: list[tuple[float, float]]) -> list[tuple[float, bool]]:
    """(factor, hold) after each sample, one per second."""
    out = []
    for t, (cpu, mem) in enumerate(samples):
        decision = guard.update(cpu, mem, float(t))
        out.append((decision.factor, decision.hold))
    return out


class TestResourceGuard:
    def test_backs_off_to_the_floor_holds_in_between_and_recovers(self) -> None:
        """Halve per sample over the high mark (floor 0.25), change nothing between the marks,
        +0.25 per sample below the low marks; the hold lasts from the first high to the first low."""
        guard = ResourceGuard()  # cpu 0.6/0.85, mem 0.75/0.9, floor 0.25, step 0.5
        assert trace(guard, [
            (0.50, 0.50),  # clear: nothing to do
            (0.90, 0.50),  # over: halve, hold
            (0.95, 0.50),  # over: halve again
            (0.99, 0.50),  # over: at the floor
            (0.70, 0.50),  # between: hysteresis, keep everything
            (0.84, 0.50),  # between (not above 0.85)
            (0.59, 0.50),  # clear: release the hold, +0.25
            (0.70, 0.50),  # between: no recovery
            (0.10, 0.10),  # clear: +0.25
            (0.10, 0.10),  # clear: back to 1
            (0.10, 0.10),  # clear: stays at 1
        ]) == [
            (1.0, False),
            (0.5, True),
            (0.25, True),
            (0.25, True),
            (0.25, True),
            (0.25, True),
            (0.5, False),
            (0.5, False),
            (0.75, False),
            (1.0, False),
            (1.0, False),
        ]
        stats = guard.statistics(11.0)
        assert (stats.samples, stats.decreases, stats.increases, stats.holds) == (11, 2, 3, 1)
        assert stats.held_s == 5.0  # held from t=1 to t=6
        assert (stats.cpu, stats.memory) == (0.1, 0.1)

    def test_memory_alone_triggers_and_both_must_be_clear_to_recover(self) -> None:
        """Memory over its high mark acts like CPU; recovery needs CPU and memory below their low marks."""
        guard = ResourceGuard()
        assert trace(guard, [
            (0.10, 0.95),  # memory over
            (0.10, 0.80),  # memory between: keep
            (0.10, 0.74),  # both clear
            (0.90, 0.10),  # CPU over again
            (0.50, 0.80),  # CPU clear but memory between: keep
        ]) == [(0.5, True), (0.5, True), (0.75, False), (0.375, True), (0.375, True)]

    def test_custom_policy_and_no_tier_hold(self) -> None:
        """Step, floor and recovery are parameters; ``hold_tiers_below=None`` never holds."""
        guard = ResourceGuard(cpu_high=0.8, cpu_low=0.5, min_factor=0.1, step=0.25, hold_tiers_below=None,
                              recover=0.5)
        assert trace(guard, [(0.9, 0.0), (0.9, 0.0), (0.9, 0.0), (0.4, 0.0), (0.4, 0.0), (0.4, 0.0)]) == [
            (0.25, False), (0.1, False), (0.1, False), (0.6, False), (1.0, False), (1.0, False)]
        assert guard.statistics(6.0).holds == 0

    def test_a_decision_changes_only_when_factor_or_hold_does(self) -> None:
        """The same decision object comes back while nothing changes (cheap change detection)."""
        guard = ResourceGuard()
        first = guard.update(0.3, 0.3, 0.0)
        assert guard.update(0.7, 0.3, 1.0) is first
        assert guard.decision is first and first == GuardDecision(hold_tiers_below=2)
        assert guard.update(0.9, 0.3, 2.0) != first

    def test_decision_helpers(self) -> None:
        """``holds(priority)`` holds tiers below the mark only while holding; ``scale`` keeps at least 1."""
        held = GuardDecision(factor=0.25, hold=True, hold_tiers_below=2)
        assert [held.holds(p) for p in (0, 1, 2, 3)] == [True, True, False, False]
        assert not GuardDecision(factor=0.25, hold=False, hold_tiers_below=2).holds(0)
        assert not GuardDecision(factor=0.25, hold=True, hold_tiers_below=None).holds(0)
        assert [held.scale(n) for n in (1, 3, 4, 8, 10)] == [1, 1, 1, 2, 2]
        assert GuardDecision(factor=0.75).scale(4) == 3
        assert GuardDecision().scale(7) == 7

    def test_out_of_range_samples_are_clamped_and_nan_ignored(self) -> None:
        """A reading above 1 counts as 1; a NaN reading changes nothing and is not counted."""
        guard = ResourceGuard()
        assert guard.update(math.nan, 0.1, 0.0).factor == 1.0
        assert guard.statistics(0.0).samples == 0
        assert guard.update(1.7, -0.2, 1.0).factor == 0.5
        assert (guard.statistics(1.0).cpu, guard.statistics(1.0).memory) == (1.0, 0.0)

    def test_rejects_bad_parameters(self) -> None:
        """Marks out of order or outside (0, 1], a step outside (0, 1) and a zero floor are errors."""
        for kwargs in ({"cpu_low": 0.9, "cpu_high": 0.8}, {"mem_high": 1.5}, {"cpu_low": 0.0},
                       {"step": 1.0}, {"step": 0.0}, {"min_factor": 0.0}, {"recover": 0.0}):
            with pytest.raises(ValueError):
                ResourceGuard(**kwargs)


class FakeSampler:
    """Scripted samples; the last one repeats. ``fail_at`` raises on that call (1-based)."""

    def __init__(self, samples: list[tuple[float, float]], fail_at: int | None = None) -> None:
        self.samples = samples
        self.calls = 0
        self.fail_at = fail_at

    def sample(self) -> tuple[float, float]:
        self.calls += 1
        if self.calls == self.fail_at:
            raise OSError("cannot read /proc/stat")
        return self.samples[min(self.calls, len(self.samples)) - 1]


class TestResourceMonitor:
    def test_reports_only_changes_at_exact_times(self) -> None:
        """Sampling every 0.5 s, the callback sees each change once, at the sample that caused it."""
        sampler = FakeSampler([(0.3, 0.3), (0.9, 0.3), (0.9, 0.3), (0.9, 0.3), (0.7, 0.3), (0.3, 0.3),
                               (0.3, 0.3), (0.3, 0.3), (0.3, 0.3)])

        async def main() -> list[tuple[float, float, bool]]:
            clock = LoopClock()
            seen: list[tuple[float, float, bool]] = []
            monitor = ResourceMonitor(ResourceGuard(), sampler, clock, interval=0.5,
                                      on_change=lambda d: seen.append((clock.now(), d.factor, d.hold)))
            async with monitor:
                await asyncio.sleep(6.25)
                assert monitor.running
            assert not monitor.running
            assert monitor.decision == GuardDecision(hold_tiers_below=2)
            return seen

        assert run_virtual(main()) == [
            (1.0, 0.5, True),
            (1.5, 0.25, True),
            (3.0, 0.5, False),
            (3.5, 0.75, False),
            (4.0, 1.0, False),
        ]
        assert sampler.calls == 12  # t = 0.5 ... 6.0

    def test_survives_a_failing_sample_or_callback_and_stops_on_aclose(self) -> None:
        """A sampler or callback that raises is counted; sampling goes on; ``aclose`` stops it."""
        sampler = FakeSampler([(0.9, 0.1)], fail_at=1)
        calls: list[GuardDecision] = []

        def callback(decision: GuardDecision) -> None:
            calls.append(decision)
            if len(calls) == 1:
                raise RuntimeError("scheduler not ready")

        async def main() -> None:
            clock = LoopClock()
            monitor = ResourceMonitor(ResourceGuard(), sampler, clock, interval=1.0, on_change=callback)
            await monitor.start()
            await monitor.start()  # no second loop
            await asyncio.sleep(3.5)
            await monitor.aclose()
            await asyncio.sleep(5.0)
            assert monitor.errors == 2
            assert isinstance(monitor.last_error, RuntimeError)

        run_virtual(main())
        assert sampler.calls == 3  # t = 1 (fails), 2, 3; none after aclose
        assert [d.factor for d in calls] == [0.5, 0.25]

    def test_rejects_a_non_positive_interval(self) -> None:
        with pytest.raises(ValueError):
            ResourceMonitor(ResourceGuard(), FakeSampler([(0.0, 0.0)]), LoopClock(), interval=0)


class TestResourceSampler:
    def test_real_samples_are_fractions(self) -> None:
        """psutil's readings of this machine are in [0, 1], also for two samples in quick succession."""
        sampler = ResourceSampler()
        sum(i * i for i in range(200_000))  # let some CPU time pass
        for _ in range(3):
            cpu, mem = sampler.sample()
            assert 0.0 <= cpu <= 1.0
            assert 0.0 < mem <= 1.0
