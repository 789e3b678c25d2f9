"""The pure core of ``agentfleet loadtest``: open-loop schedules, thresholds, windowed recording.

    SteadyScenario, SpikeScenario, EnduranceScenario, StressScenario, VolumeScenario
                        validated scenario kinds (frozen dataclasses; ``SpecError`` when wrong);
                        ``scenario_from_dict`` builds one from YAML (``kind`` + fields)
    phases              a scenario cut into ``Phase``s: (start, end, rate[, start_rate], size)
    arrivals            the intended send times, lazily: ``Arrival(t, phase, size)``; constant
                        spacing ``t = start + k/rate`` or Poisson with an injected generator
    expected_arrivals   how many sends a constant-spacing schedule makes
    parse_threshold, parse_thresholds, evaluate_thresholds, aborting
                        ``"p95 < 500ms"``, ``"error_rate < 0.1%"``, ``"p99 < 1s abort"`` (or
                        ``{expr: ..., abort: true}``) -> ``Threshold``; results -> ``Verdict``s
    WindowedRecorder    latency (from the INTENDED send time) and outcomes per time window in
                        bounded memory; ``summary()`` -> ``LoadSummary``, ``series()`` ->
                        ``WindowRow``s, ``histogram()`` -> the merged ``LatencyHistogram``

Nothing here reads a clock or does I/O: the engine passes the times in.
"""

from __future__ import annotations

from ._recorder import LoadSummary, RecorderStatistics, WindowedRecorder, WindowRow
from ._schedule import (
    Arrival,
    EnduranceScenario,
    Phase,
    Scenario,
    SpikeScenario,
    SteadyScenario,
    StressScenario,
    SupportsExponential,
    VolumeScenario,
    arrivals,
    expected_arrivals,
    phases,
    scenario_from_dict,
)
from ._thresholds import (
    DURATION_UNITS,
    METRICS,
    Threshold,
    Verdict,
    aborting,
    evaluate_thresholds,
    format_value,
    parse_duration,
    parse_threshold,
    parse_thresholds,
)

__all__ = [
    "DURATION_UNITS",
    "METRICS",
    "Arrival",
    "EnduranceScenario",
    "LoadSummary",
    "Phase",
    "RecorderStatistics",
    "Scenario",
    "SpikeScenario",
    "SteadyScenario",
    "StressScenario",
    "SupportsExponential",
    "Threshold",
    "Verdict",
    "VolumeScenario",
    "WindowRow",
    "WindowedRecorder",
    "aborting",
    "arrivals",
    "evaluate_thresholds",
    "expected_arrivals",
    "format_value",
    "parse_duration",
    "parse_threshold",
    "parse_thresholds",
    "phases",
    "scenario_from_dict",
]
