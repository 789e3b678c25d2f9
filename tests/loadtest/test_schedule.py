"""Arrival schedules: exact open-loop send times per scenario kind, phases, laziness, validation."""

from __future__ import annotations

import itertools
import math
import random
import time
import tracemalloc
from typing import Any

import numpy as np
import pytest

from agentfleet.errors import SpecError
from agentfleet.loadtest import (
    Arrival,
    EnduranceScenario,
    Phase,
    SpikeScenario,
    SteadyScenario,
    StressScenario,
    VolumeScenario,
    arrivals,
    expected_arrivals,
    phases,
    scenario_from_dict,
)


def _times(scenario: Any) -> list[float]:
    return [a.t for a in arrivals(scenario)]


class TestSteady:
    def test_constant_spacing_is_exactly_k_over_rate(self) -> None:
        """10 req/s for 2 s sends at 0, 0.1, ..., 1.9, each bit-for-bit k / 10."""
        assert _times(SteadyScenario(rate=10, duration=2)) == [k / 10 for k in range(20)]

    def test_arrivals_carry_phase_and_no_size(self) -> None:
        """Every arrival of a steady run is in phase 0 with no payload size."""
        got = list(arrivals(SteadyScenario(rate=3, duration=1)))
        assert got == [Arrival(0.0, 0, None), Arrival(1 / 3, 0, None), Arrival(2 / 3, 0, None)]

    def test_fractional_count_stops_before_the_end(self) -> None:
        """7 req/s for 0.5 s is 3.5 sends due: 4 sends, all before 0.5 s."""
        assert _times(SteadyScenario(rate=7, duration=0.5)) == [k / 7 for k in range(4)]

    def test_ramp_up_climbs_linearly_then_holds(self) -> None:
        """A 2 s ramp to 10 req/s sends 10 requests at sqrt(0.4 k), then exactly 2 + j/10."""
        scenario = SteadyScenario(rate=10, duration=5, ramp_up=2)
        assert [(p.name, p.start, p.end, p.start_rate, p.rate) for p in phases(scenario)] == [
            ("ramp-up", 0.0, 2.0, 0.0, 10.0),
            ("steady", 2.0, 5.0, 10.0, 10.0),
        ]
        got = list(arrivals(scenario))
        ramp = [a.t for a in got if a.phase == 0]
        assert ramp == pytest.approx([math.sqrt(0.4 * k) for k in range(10)], rel=1e-12, abs=0)
        gaps = [b - a for a, b in itertools.pairwise(ramp)]
        assert all(later < earlier for earlier, later in itertools.pairwise(gaps))  # the rate rises
        assert [a.t for a in got if a.phase == 1] == [2.0 + j / 10 for j in range(30)]
        assert len(got) == expected_arrivals(scenario) == 40


class TestLaziness:
    def test_an_eight_hour_schedule_is_a_generator(self) -> None:
        """28.8 million sends cost nothing up front: the first thousand allocate < 512 KB, not gigabytes."""
        scenario = EnduranceScenario(rate=1000, duration=8 * 3600, sample_every=60)
        tracemalloc.start()
        try:
            stream = arrivals(scenario)
            assert iter(stream) is stream
            first = list(itertools.islice(stream, 1000))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert first[-1].t == 999 / 1000
        assert peak < 512 * 1024
        assert expected_arrivals(scenario) == 28_800_000

    def test_a_million_arrivals_stream_quickly_without_drift(self) -> None:
        """1e6 sends at 3 req/s stream through within the bound; the last is exactly k / 3 (no error
        accumulated by adding 1/3 a million times)."""
        started = time.perf_counter()
        count, last = 0, None
        for last in arrivals(SteadyScenario(rate=3, duration=333_334)):  # noqa: B007
            count += 1
        assert time.perf_counter() - started < 8.0
        assert count == 1_000_002
        assert last is not None and last.t == 1_000_001 / 3


class TestSpike:
    def test_phases_expose_the_spike_and_recovery_boundaries(self) -> None:
        """baseline [0, start), spike [start, spike_end), recovery [spike_end, duration)."""
        scenario = SpikeScenario(baseline_rate=2, spike_rate=10, spike_start=1, spike_duration=0.5, duration=3)
        assert scenario.spike_end == 1.5
        assert [(p.index, p.name, p.start, p.end, p.rate) for p in phases(scenario)] == [
            (0, "baseline", 0.0, 1.0, 2.0),
            (1, "spike", 1.0, 1.5, 10.0),
            (2, "recovery", 1.5, 3.0, 2.0),
        ]

    def test_arrivals_are_exact_in_every_phase(self) -> None:
        """Each phase restarts exact spacing from its own start."""
        scenario = SpikeScenario(baseline_rate=2, spike_rate=10, spike_start=1, spike_duration=0.5, duration=3)
        got = [(a.t, a.phase) for a in arrivals(scenario)]
        baseline = [(k / 2, 0) for k in range(2)]
        spike = [(1.0 + k / 10, 1) for k in range(5)]
        recovery = [(1.5 + k / 2, 2) for k in range(3)]
        assert got == baseline + spike + recovery

    def test_a_spike_must_leave_time_to_recover(self) -> None:
        """A spike that runs to the end cannot measure recovery: refused."""
        with pytest.raises(SpecError, match="leave time after it"):
            SpikeScenario(baseline_rate=2, spike_rate=10, spike_start=1, spike_duration=2, duration=3)


class TestEndurance:
    def test_is_steady_with_a_sampling_period(self) -> None:
        """Same phases and sends as steady; sample_every is exposed for the engine."""
        soak = EnduranceScenario(rate=5, duration=60, ramp_up=10, sample_every=15)
        assert soak.sample_every == 15
        assert phases(soak) == phases(SteadyScenario(rate=5, duration=60, ramp_up=10))
        assert _times(soak) == _times(SteadyScenario(rate=5, duration=60, ramp_up=10))

    def test_sample_every_must_fit_the_run(self) -> None:
        """Sampling less than once per run is a mistake."""
        with pytest.raises(SpecError, match="sample_every"):
            EnduranceScenario(rate=5, duration=60, sample_every=120)


class TestStress:
    def test_additive_steps_end_at_max_rate(self) -> None:
        """10, 35, 60, 85 req/s then the max, 100; phases are (start, end, rate)."""
        scenario = StressScenario(start_rate=10, step=25, step_duration=5, max_rate=100)
        assert scenario.rates() == [10.0, 35.0, 60.0, 85.0, 100.0]
        assert [(p.start, p.end, p.rate) for p in phases(scenario)] == [
            (0.0, 5.0, 10.0), (5.0, 10.0, 35.0), (10.0, 15.0, 60.0), (15.0, 20.0, 85.0), (20.0, 25.0, 100.0),
        ]
        assert scenario.duration == 25.0

    def test_multiplying_steps(self) -> None:
        """x2 from 10 up to 100: 10, 20, 40, 80, 100."""
        scenario = StressScenario(start_rate=10, step=2, step_duration=1, max_rate=100, mode="multiply")
        assert scenario.rates() == [10.0, 20.0, 40.0, 80.0, 100.0]

    def test_arrivals_in_each_step_are_exact(self) -> None:
        """In step i the sends are i*width + j/rate exactly."""
        scenario = StressScenario(start_rate=10, step=10, step_duration=2, max_rate=30)
        got = [(a.t, a.phase) for a in arrivals(scenario)]
        expected = [(i * 2.0 + j / rate, i) for i, rate in enumerate((10.0, 20.0, 30.0)) for j in range(int(2 * rate))]
        assert got == expected

    def test_start_at_max_is_one_step(self) -> None:
        """start_rate == max_rate is a single step."""
        assert StressScenario(start_rate=50, step=10, step_duration=3, max_rate=50).rates() == [50.0]

    @pytest.mark.parametrize(("kwargs", "message"), [
        ({"start_rate": 10, "step": 1, "step_duration": 1, "max_rate": 5}, "below start_rate"),
        ({"start_rate": 10, "step": 1, "step_duration": 1, "max_rate": 50, "mode": "multiply"}, "above 1"),
        ({"start_rate": 1, "step": 0.001, "step_duration": 1, "max_rate": 1000}, "more than 10000 steps"),
        ({"start_rate": 1, "step": 1, "step_duration": 1, "max_rate": 5, "mode": "double"}, "mode must be"),
    ])
    def test_bad_steps_are_refused(self, kwargs: dict[str, Any], message: str) -> None:
        """Steps that go nowhere, or too many of them, are spec errors."""
        with pytest.raises(SpecError, match=message):
            StressScenario(**kwargs)


class TestVolume:
    def test_phases_carry_growing_sizes(self) -> None:
        """A fixed rate, one phase per size; every arrival carries its phase's size."""
        scenario = VolumeScenario(rate=4, phase_duration=1, sizes=(1024, 4096, 16384))
        assert [(p.start, p.end, p.size) for p in phases(scenario)] == [
            (0.0, 1.0, 1024), (1.0, 2.0, 4096), (2.0, 3.0, 16384),
        ]
        got = list(arrivals(scenario))
        assert [(a.t, a.size) for a in got] == [
            (i + k / 4, size) for i, size in enumerate((1024, 4096, 16384)) for k in range(4)
        ]

    def test_short_phases_snap_to_whole_counts(self) -> None:
        """0.1 s at 10 req/s is one send per phase, however 0.1 rounds."""
        scenario = VolumeScenario(rate=10, phase_duration=0.1, sizes=(1, 2, 3))
        assert [(a.t, a.size) for a in arrivals(scenario)] == [(0.0, 1), (0.1, 2), (0.2, 3)]

    @pytest.mark.parametrize("sizes", [(), (0,), (1.5,), (True,)])
    def test_bad_sizes(self, sizes: tuple[Any, ...]) -> None:
        """Sizes are a non-empty tuple of positive whole numbers."""
        with pytest.raises(SpecError, match="volume scenario"):
            VolumeScenario(rate=1, phase_duration=1, sizes=sizes)


class TestPoisson:
    @pytest.mark.parametrize("make", [lambda: random.Random(42), lambda: np.random.default_rng(42)])
    def test_reproducible_from_the_seed(self, make: Any) -> None:
        """Same seed, same schedule; times ascend and stay inside the run."""
        scenario = SpikeScenario(baseline_rate=50, spike_rate=500, spike_start=2, spike_duration=1, duration=5)
        first = list(arrivals(scenario, rng=make()))
        assert first == list(arrivals(scenario, rng=make()))
        times = [a.t for a in first]
        assert times == sorted(times) and 0 < times[0] and times[-1] < 5
        for a in first:
            phase = phases(scenario)[a.phase]
            assert phase.start <= a.t < phase.end

    def test_rate_matches_on_average(self) -> None:
        """20,000 sends due: the Poisson count is within 5 standard deviations."""
        count = sum(1 for _ in arrivals(SteadyScenario(rate=200, duration=100), rng=random.Random(1)))
        assert abs(count - 20_000) < 5 * math.sqrt(20_000)

    def test_ramps_thin_the_start(self) -> None:
        """Under a ramp from 0 the first half holds about a quarter of the ramp's sends."""
        scenario = SteadyScenario(rate=1000, duration=11, ramp_up=10)
        ramp = [a.t for a in arrivals(scenario, rng=np.random.default_rng(3)) if a.phase == 0]
        early = sum(1 for t in ramp if t < 5)
        assert abs(len(ramp) - 5000) < 5 * math.sqrt(5000)
        assert abs(early / len(ramp) - 0.25) < 0.03

    def test_another_seed_differs(self) -> None:
        """A different seed gives a different schedule."""
        scenario = SteadyScenario(rate=10, duration=10)
        assert list(arrivals(scenario, rng=random.Random(1))) != list(arrivals(scenario, rng=random.Random(2)))


class TestValidation:
    @pytest.mark.parametrize(("make", "message"), [
        (lambda: SteadyScenario(rate=-1, duration=1), "rate must be a positive number"),
        (lambda: SteadyScenario(rate=True, duration=1), "rate must be a positive number"),
        (lambda: SteadyScenario(rate=1, duration=math.inf), "duration must be a positive number"),
        (lambda: SteadyScenario(rate=1, duration=10, ramp_up=10), "ramp_up .* shorter than duration"),
        (lambda: SpikeScenario(1, 0, 1, 1, 5), "spike_rate must be"),
        (lambda: SpikeScenario(1, 5, 0, 1, 5), "spike_start must be"),
    ])
    def test_errors_name_the_kind_and_field(self, make: Any, message: str) -> None:
        """A bad scenario is a SpecError (exit 2) naming the scenario kind and the field."""
        with pytest.raises(SpecError, match=message) as caught:
            make()
        assert caught.value.exit_code == 2


class TestFromDict:
    def test_durations_accept_units(self) -> None:
        """YAML-style fields: durations as '5m', '30s'."""
        got = scenario_from_dict({"kind": "steady", "rate": 50, "duration": "5m", "ramp_up": "30s"})
        assert got == SteadyScenario(rate=50, duration=300.0, ramp_up=30.0)

    def test_stress_step_forms(self) -> None:
        """'+10' adds, 'x1.5' multiplies."""
        add = scenario_from_dict({"kind": "stress", "start_rate": 10, "step": "+10", "step_duration": "1m",
                                  "max_rate": 100})
        assert add == StressScenario(10, 10.0, 60.0, 100, "add")
        times = scenario_from_dict({"kind": "stress", "start_rate": 10, "step": "x1.5", "step_duration": 30,
                                    "max_rate": 100})
        assert isinstance(times, StressScenario) and times.mode == "multiply" and times.step == 1.5

    def test_volume_sizes_list(self) -> None:
        """A YAML list of sizes becomes the tuple."""
        got = scenario_from_dict({"kind": "volume", "rate": 5, "phase_duration": "10s", "sizes": [100, 1000]})
        assert got == VolumeScenario(rate=5, phase_duration=10.0, sizes=(100, 1000))

    @pytest.mark.parametrize(("data", "message"), [
        ({"kind": "steddy", "rate": 1, "duration": 1}, "did you mean 'steady'"),
        ({"kind": "steady", "rate": 1, "duraton": 1}, "unknown key 'duraton'.*did you mean 'duration'"),
        ({"kind": "spike", "baseline_rate": 1}, "needs spike_rate, spike_start, spike_duration, duration"),
        ({"kind": "steady", "rate": 1, "duration": "ten"}, "not a duration"),
        ({"kind": "steady", "rate": "fast", "duration": 1}, "rate must be a number"),
        ({"kind": "steady", "rate": 0, "duration": 1}, "rate must be a positive number"),
        ({"kind": "stress", "start_rate": 1, "step": "x2", "mode": "add", "step_duration": 1, "max_rate": 9},
         "contradicts"),
    ])
    def test_errors_name_where(self, data: dict[str, Any], message: str) -> None:
        """Every loading error is a SpecError naming where the scenario came from."""
        with pytest.raises(SpecError, match=message) as caught:
            scenario_from_dict(data, where="loadtest.yaml: scenario")
        assert str(caught.value).startswith("loadtest.yaml: scenario")


class TestPhase:
    def test_offsets_invert_the_cumulative_count(self) -> None:
        """A ramp phase's offset solves its quadratic, and a flat one is x / rate."""
        ramp = Phase(0, "ramp", 0.0, 4.0, 30.0, 10.0)
        assert ramp.expected_count == 80.0
        for t in (0.0, 0.5, 1.0, 3.99):
            due = 10.0 * t + 2.5 * t * t
            assert ramp.offset(due) == pytest.approx(t, rel=1e-12, abs=1e-15)
        assert Phase(0, "flat", 0.0, 1.0, 8.0, 8.0).offset(3.0) == 3.0 / 8.0
