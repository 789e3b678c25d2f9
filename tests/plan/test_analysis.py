"""Static analysis: critical path, width, depth, predicted speedup, false parallelism."""

from __future__ import annotations

import pytest

from agentfleet.plan import analyze_plan, build_plan, remaining_path
from agentfleet.spec import Workflow


def sprint(max_parallel: int = 8):
    wf = Workflow("s", max_parallel=max_parallel)
    wf.agent("po", expected_latency=2)
    wf.agent("dev", expected_latency=8)
    wf.agent("qa", expected_latency=3)
    schema = {"type": "object", "properties": {"stories": {"type": "array", "minItems": 4, "maxItems": 4}}}
    wf.task("split", agent="po", output_schema=schema, phase="plan")
    wf.task("implement", agent="dev", map="split.stories", inputs=["split"], phase="build")
    wf.task("review", agent="qa", map="implement", inputs=["implement"], phase="build")
    wf.task("release", agent="po", inputs=["review"], phase="ship")
    return build_plan(wf.build())


class TestAnalysis:
    def test_sprint_shape(self) -> None:
        """The sprint: critical path 2+8+3+2 s, width 4, depth 4, count from the schema."""
        a = analyze_plan(sprint())
        assert a.critical_path_seconds == pytest.approx(15.0)
        assert [t for t, _ in a.critical_path] == ["split", "implement[0]", "review[0]", "release"]
        assert a.width == 4
        assert a.depth == 4
        assert a.instances == 10
        assert a.sequential_seconds == pytest.approx(2 + 4 * 8 + 4 * 3 + 2)
        assert a.predicted_makespan == pytest.approx(15.0)
        assert a.predicted_speedup == pytest.approx(48 / 15)
        assert a.assumed_counts == ()

    def test_prediction_respects_max_parallel(self) -> None:
        """With 2 slots the four 8 s implementations need two rounds."""
        a = analyze_plan(sprint(), max_parallel=2)
        assert a.predicted_makespan == pytest.approx(2 + 8 + 8 + 3 + 3 + 2)

    def test_false_parallelism_found(self) -> None:
        """implement and review share phase 'build' but review depends on implement."""
        a = analyze_plan(sprint())
        assert [(f.upstream, f.downstream, f.chain) for f in a.false_parallel] == [
            ("implement", "review", ("implement", "review"))
        ]

    def test_remaining_path_uses_measured_latency(self) -> None:
        """Measured latencies replace expected ones in the ranking."""
        plan = sprint()
        assert remaining_path(plan)["split"] == pytest.approx(15.0)
        assert remaining_path(plan, {"implement": 1.0})["split"] == pytest.approx(8.0)

    def test_dynamic_count_assumed_when_unknown(self) -> None:
        """A fan-out with no declared size is flagged as assumed."""
        wf = Workflow("x")
        wf.agent("a")
        wf.task("s", agent="a")
        wf.task("m", agent="a", map="s.items", inputs=["s"])
        a = analyze_plan(build_plan(wf.build()))
        assert a.assumed_counts == ("m",)
