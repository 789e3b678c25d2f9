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

Those are pure: the engine passes the times in. Around them:
    run_open_loop, run_closed_loop   the engine (``_engine``): sends at the intended times (latency
                        from the intended start; late and dropped sends counted; a saturated
                        generator says so) or keeps N virtual users busy
    HttpClient          a keep-alive HTTP/1.1 client for load (``_http``; SSE/chunked streams give time
                        to first token and inter-token gaps)
    load_test_file, run_load_test, render_loadtest_html
                        a load test file (target, scenario, mode, thresholds), running it, its report
"""

from __future__ import annotations

from ._engine import DROPPED, LoopStats, Result, call_target, generator_saturation, run_closed_loop, run_open_loop
from ._http import HttpClient
from ._plan import LoadTestSpec, StressLimits, TargetSpec, load_test_file, load_test_spec
from ._recorder import LoadSummary, RecorderStatistics, WindowedRecorder, WindowRow
from ._report import render_loadtest_html
from ._run import LoadTestResult, run_load_test
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
    "DROPPED",
    "DURATION_UNITS",
    "METRICS",
    "Arrival",
    "EnduranceScenario",
    "HttpClient",
    "LoadSummary",
    "LoadTestResult",
    "LoadTestSpec",
    "LoopStats",
    "Phase",
    "RecorderStatistics",
    "Result",
    "Scenario",
    "SpikeScenario",
    "SteadyScenario",
    "StressLimits",
    "StressScenario",
    "SupportsExponential",
    "TargetSpec",
    "Threshold",
    "Verdict",
    "VolumeScenario",
    "WindowRow",
    "WindowedRecorder",
    "aborting",
    "arrivals",
    "call_target",
    "evaluate_thresholds",
    "expected_arrivals",
    "format_value",
    "generator_saturation",
    "load_test_file",
    "load_test_spec",
    "parse_duration",
    "parse_threshold",
    "parse_thresholds",
    "phases",
    "render_loadtest_html",
    "run_closed_loop",
    "run_load_test",
    "run_open_loop",
    "scenario_from_dict",
]
