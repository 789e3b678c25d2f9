"""SLA rules: parsing with units and clear errors, edge-triggered evaluation."""

from __future__ import annotations

import pytest

from agentfleet.errors import SpecError
from agentfleet.telemetry._sla import SLAMonitor, evaluate, parse_rule


@pytest.mark.parametrize(("text", "metric", "op", "threshold"), [
    ("p95_task_latency < 2s", "p95_task_latency", "<", 2.0),
    ("p99_task_latency<=750ms", "p99_task_latency", "<=", 0.75),
    ("makespan < 5m", "makespan", "<", 300.0),
    ("error_rate < 1%", "error_rate", "<", 0.01),
    ("cache_hit_rate >= 0.5", "cache_hit_rate", ">=", 0.5),
    ("queue_depth < 2k", "queue_depth", "<", 2000.0),
    ("cost_per_run < $0.50", "cost_per_run", "<", 0.5),
])
def test_rules_parse_with_units(text: str, metric: str, op: str, threshold: float) -> None:
    rule = parse_rule(text)
    assert (rule.metric, rule.op) == (metric, op)
    assert rule.threshold == pytest.approx(threshold)


@pytest.mark.parametrize(("text", "message"), [
    ("p95_latency < 2s", "did you mean 'p95_task_latency'"),
    ("p95_task_latency < 2%", "is a duration"),
    ("error_rate < 2s", "is a ratio"),
    ("error_rate < 150%", "above 100%"),
    ("cost_per_run < 3s", "cost in USD"),
    ("queue_depth < $4", "is a count"),
    ("p95_task_latency is fast", "is not a rule"),
])
def test_bad_rules_are_spec_errors_naming_the_rule(text: str, message: str) -> None:
    with pytest.raises(SpecError, match=message) as caught:
        parse_rule(text, where="settings.sla[0]")
    assert caught.value.exit_code == 2 and "settings.sla[0]" in str(caught.value)


def test_evaluate_skips_unmeasured_metrics() -> None:
    rules = [parse_rule("error_rate < 5%"), parse_rule("cache_hit_rate > 50%")]
    failing = evaluate(rules, {"error_rate": 0.1, "cache_hit_rate": None}, now=3.0)
    assert [v.rule.metric for v in failing] == ["error_rate"]
    assert failing[0].message == "SLA violated: error_rate < 5% (measured 10.0%)"


def test_monitor_fires_once_per_episode_and_reports_recovery() -> None:
    monitor = SLAMonitor.from_texts(["p95_task_latency < 2s"])
    assert monitor.update({"p95_task_latency": 1.0}, 0.0) == []
    fired = monitor.update({"p95_task_latency": 3.0}, 1.0)
    assert [v.message for v in fired] == ["SLA violated: p95_task_latency < 2s (measured 3.00s)"]
    assert monitor.update({"p95_task_latency": 4.0}, 2.0) == []  # still failing: no new alert
    assert monitor.update({"p95_task_latency": None}, 3.0) == []  # unknown: neither way
    recovered = monitor.update({"p95_task_latency": 0.5}, 4.0)
    assert recovered[0].recovered and recovered[0].message.startswith("SLA recovered")
    assert monitor.update({"p95_task_latency": 2.5}, 5.0)[0].at == 5.0
    assert monitor.fired == 2 and len(monitor.failing) == 1
