"""Load-test thresholds: strict parsing with units and clear errors, verdicts and abort flags."""

from __future__ import annotations

from typing import Any

import pytest

from agentfleet.errors import SpecError
from agentfleet.loadtest import (
    METRICS,
    Threshold,
    aborting,
    evaluate_thresholds,
    parse_duration,
    parse_threshold,
    parse_thresholds,
)


class TestParse:
    @pytest.mark.parametrize(("text", "metric", "op", "value"), [
        ("p95 < 500ms", "p95", "<", 0.5),
        ("p99 <= 1s", "p99", "<=", 1.0),
        ("error_rate < 0.1%", "error_rate", "<", 0.001),
        ("error_rate < 0.02", "error_rate", "<", 0.02),
        ("rps >= 100", "rps", ">=", 100.0),
        ("ok_rps > 50/s", "ok_rps", ">", 50.0),
        ("max < 2s", "max", "<", 2.0),
        ("p99.9 < 3s", "p99.9", "<", 3.0),
        ("ttft_p95 < 300ms", "ttft_p95", "<", 0.3),
        ("p50<250us", "p50", "<", 0.00025),
        ("mean < 1.5m", "mean", "<", 90.0),
        ("dropped <= 0", "dropped", "<=", 0.0),
        ("requests >= 2k", "requests", ">=", 2000.0),
    ])
    def test_expressions_parse_into_base_units(self, text: str, metric: str, op: str, value: float) -> None:
        """Durations become seconds, percentages fractions, k thousands."""
        threshold = parse_threshold(text)
        assert (threshold.metric, threshold.op, threshold.abort) == (metric, op, False)
        assert threshold.value == pytest.approx(value)

    def test_abort_suffix(self) -> None:
        """A trailing 'abort' sets the flag and is not part of the expression."""
        threshold = parse_threshold("  p99   <  1s   abort ")
        assert threshold == Threshold("p99", "<", 1.0, "p99 < 1s", abort=True)
        assert str(threshold) == "p99 < 1s abort"

    def test_mapping_form(self) -> None:
        """{expr, abort} from YAML means the same as the suffix."""
        assert parse_threshold({"expr": "p99 < 1s", "abort": True}) == parse_threshold("p99 < 1s abort")
        assert parse_threshold({"expr": "p99 < 1s"}).abort is False
        assert parse_threshold({"expr": "p99 < 1s abort"}).abort is True

    @pytest.mark.parametrize(("spec", "message"), [
        ({"expr": "p99 < 1s abort", "abort": False}, "says abort but the mapping says abort: false"),
        ({"expr": "p99 < 1s", "abrt": True}, "unknown key 'abrt'"),
        ({"expr": "p99 < 1s", "abort": "yes"}, "abort must be true or false"),
        ({"abort": True}, "needs expr"),
        (42, "a threshold is a string"),
    ])
    def test_bad_mappings(self, spec: Any, message: str) -> None:
        """The mapping form is as strict as the string."""
        with pytest.raises(SpecError, match=message):
            parse_threshold(spec)


class TestParseErrors:
    @pytest.mark.parametrize(("text", "message"), [
        ("p999 < 3s", r"unknown metric 'p999' in 'p999 < 3s' \(did you mean 'p99.9'\?\)"),
        ("eror_rate < 1%", "did you mean 'error_rate'"),
        ("ttft95 < 300ms", "did you mean 'ttft_p95'"),
        ("throughput_total > 5", "unknown metric 'throughput_total'.*known: min, mean"),
    ])
    def test_unknown_metric_suggests(self, text: str, message: str) -> None:
        """An unknown metric names itself, the expression and the nearest known metric."""
        with pytest.raises(SpecError, match=message):
            parse_threshold(text)

    @pytest.mark.parametrize(("text", "message"), [
        ("p95 < 500", r"unit '\(none\)' does not suit p95, which is a duration"),
        ("p95 < 5%", "unit '%' does not suit p95"),
        ("p95 < 500 parsecs", "unit 'parsecs'"),
        ("error_rate < 2s", "error_rate, which is a ratio"),
        ("error_rate < 150%", "above 100%"),
        ("rps >= 100ms", "rps, which is a rate"),
        ("dropped < 5s", "dropped, which is a count"),
    ])
    def test_bad_unit(self, text: str, message: str) -> None:
        """The unit must suit the metric's kind; the message says which units do."""
        with pytest.raises(SpecError, match=message) as caught:
            parse_threshold(text)
        assert repr(text) in str(caught.value)

    @pytest.mark.parametrize(("text", "message"), [
        ("p95 500ms", "has no comparison operator: use <, <=, > or >="),
        ("p95 == 500ms", "'=' and '==' are not comparisons here"),
        ("p95 < fast", "is not a threshold like 'p95 < 500ms'"),
        ("p95 < -1s", "is not a threshold like"),
        ("", "has no comparison operator"),
    ])
    def test_malformed(self, text: str, message: str) -> None:
        """A missing operator is named as such; other shapes get an example of the grammar."""
        with pytest.raises(SpecError, match=message):
            parse_threshold(text)

    def test_errors_name_the_position_and_exit_2(self) -> None:
        """parse_thresholds names the failing item, and the error is a user error."""
        with pytest.raises(SpecError, match=r"^loadtest.thresholds\[1\]: unknown metric") as caught:
            parse_thresholds(["p95 < 1s", "p95x < 1s"], where="loadtest.thresholds")
        assert caught.value.exit_code == 2 and caught.value.field == "loadtest.thresholds[1]"


class TestEvaluate:
    def test_verdicts_in_order(self) -> None:
        """Each threshold gets (expression, measured, passed)."""
        thresholds = parse_thresholds(["p95 < 500ms", "error_rate < 0.1%", "rps >= 100", "p99.9 < 3s"])
        results = {"p95": 0.42, "error_rate": 0.002, "rps": 100.0, "p99.9": 3.0}
        verdicts = evaluate_thresholds(thresholds, results)
        assert [(v.expression, v.measured, v.passed) for v in verdicts] == [
            ("p95 < 500ms", 0.42, True),
            ("error_rate < 0.1%", 0.002, False),
            ("rps >= 100", 100.0, True),
            ("p99.9 < 3s", 3.0, False),
        ]
        assert [v.message for v in verdicts] == [
            "PASS p95 < 500ms (measured 420ms)",
            "FAIL error_rate < 0.1% (measured 0.20%)",
            "PASS rps >= 100 (measured 100.0/s)",
            "FAIL p99.9 < 3s (measured 3.00s)",
        ]

    def test_unmeasured_fails(self) -> None:
        """A metric the results lack, or hold as None, cannot pass."""
        verdicts = evaluate_thresholds(parse_thresholds(["ttft_p95 < 300ms", "p50 < 1s"]), {"p50": None})
        assert [(v.measured, v.passed) for v in verdicts] == [(None, False), (None, False)]
        assert verdicts[0].message == "FAIL ttft_p95 < 300ms (not measured)"

    def test_abort_flags(self) -> None:
        """Only failed thresholds marked abort ask to stop the run."""
        thresholds = parse_thresholds([
            "p99 < 1s abort",
            {"expr": "error_rate < 1%", "abort": True},
            "max < 2s",
        ])
        calm = evaluate_thresholds(thresholds, {"p99": 0.5, "error_rate": 0.0, "max": 5.0})
        assert aborting(calm) == [] and not calm[2].passed and not calm[2].aborts
        stormy = evaluate_thresholds(thresholds, {"p99": 1.5, "error_rate": 0.05, "max": 1.0})
        assert [v.expression for v in aborting(stormy)] == ["p99 < 1s", "error_rate < 1%"]
        assert stormy[0].message == "FAIL p99 < 1s abort (measured 1.50s)"


class TestDurations:
    @pytest.mark.parametrize(("value", "seconds"), [
        (30, 30.0), (1.5, 1.5), ("30s", 30.0), ("500ms", 0.5), ("5m", 300.0), ("8h", 28800.0), ("250us", 0.00025),
    ])
    def test_parse_duration(self, value: Any, seconds: float) -> None:
        """Numbers are seconds; strings carry a unit."""
        assert parse_duration(value) == pytest.approx(seconds)

    @pytest.mark.parametrize("value", ["30", "5 minutes", -1, True, None, float("nan")])
    def test_bad_durations(self, value: Any) -> None:
        """A unitless string, a negative, a boolean or None is refused, naming where."""
        with pytest.raises(SpecError, match=r"^scenario\.duration: "):
            parse_duration(value, where="scenario.duration")


def test_every_metric_has_a_kind_and_description() -> None:
    """The metric table is well-formed (kinds drive unit checks and display)."""
    assert {kind for kind, _ in METRICS.values()} == {"duration", "ratio", "rate", "count"}
    assert all(description for _, description in METRICS.values())
