"""Tests for ``agentfleet.analysis`` bottlenecks, recurring patterns and the what-if estimator.

Hand-built records pin each rule with exact binary-fraction times; real runs on virtual time
(sim agents) check that the runtime's records produce the same classes.
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError
from typing import Any

import pytest

from agentfleet._types import TaskRecord, TaskState
from agentfleet.analysis import (
    BOTTLENECK_KINDS,
    Bottleneck,
    Pattern,
    Thresholds,
    analyze,
    classify_bottlenecks,
    recurring,
    what_if,
)
from agentfleet.plan import build_plan
from agentfleet.runtime import RunResult

from ..runtime.kit import build, run
from .test_metrics import rec


def sim(latency: float, **fields: Any) -> dict[str, Any]:
    return {"provider": "sim", "options": {"latency": {"fixed": latency}}, **fields}


def classify(records: list[TaskRecord], *, max_parallel: int | None = None, **kw: Any) -> list[Bottleneck]:
    return classify_bottlenecks(records, analyze(records, max_parallel=max_parallel), **kw)


def kinds(found: list[Bottleneck]) -> list[tuple[str, str]]:
    return [(b.kind, b.subject) for b in found]


def only(found: list[Bottleneck], kind: str) -> Bottleneck:
    matching = [b for b in found if b.kind == kind]
    assert len(matching) == 1, found
    return matching[0]


def real(spec: Any) -> tuple[RunResult, list[Bottleneck]]:
    """Run ``spec`` on virtual time and classify its bottlenecks with its plan."""
    result = run(spec, cache=False)
    assert result.ok
    report = analyze(result.records, max_parallel=result.max_parallel)
    return result, classify_bottlenecks(result.records, report, plan=build_plan(spec))


def fan_spec(dev: dict[str, Any], *, lead: float = 1.0, width: int = 6, **settings: Any) -> Any:
    """plan -> impl[0..width) -> merge; lead plans and merges, dev implements."""
    return build(
        [
            {"id": "plan", "agent": "lead", "prompt": "plan"},
            {"id": "impl", "agent": "dev", "prompt": "do {{ item }}", "depends_on": ["plan"],
             "map": list(range(width))},
            {"id": "merge", "agent": "lead", "prompt": "merge", "depends_on": ["impl"]},
        ],
        {"lead": sim(lead), "dev": dev},
        **settings,
    )


def balanced() -> list[TaskRecord]:
    """plan -> impl[0..3] -> merge with enough slots: no waits, equal steps."""
    impls = tuple(f"impl[{i}]" for i in range(4))
    return [
        rec("plan", "lead", 0.0, 2.0, context_tokens=900),
        *(rec(t, "dev", 2.0, 4.0, deps=("plan",), context_tokens=1000 + 10 * i, attempts=1)
          for i, t in enumerate(impls)),
        rec("merge", "lead", 4.0, 6.0, deps=impls, context_tokens=3000),
    ]


# -- what-if -------------------------------------------------------------------------------


def star() -> list[TaskRecord]:
    """a (2 s) -> b (4 s), c (1 s), d (1 s) -> e (1 s); recorded with two slots."""
    return [
        rec("a", "lead", 0.0, 2.0),
        rec("b", "dev", 2.0, 6.0, deps=("a",)),
        rec("c", "dev", 2.0, 3.0, deps=("a",)),
        rec("d", "dev", 3.0, 4.0, ready=2.0, deps=("a",)),
        rec("e", "lead", 6.0, 7.0, deps=("b", "c", "d")),
    ]


class TestWhatIf:
    def test_known_dag(self) -> None:
        """Exact makespans of the star DAG under several global limits."""
        records = star()
        assert what_if(records, concurrency=1) == 9.0
        assert what_if(records, concurrency=2) == 7.0
        assert what_if(records, concurrency=100) == 7.0
        assert what_if(records) == 7.0  # the measured peak concurrency (2)

    def test_agent_faster(self) -> None:
        """dev twice as fast: b 2 s, c and d 0.5 s each; with two slots c then d beside b."""
        assert what_if(star(), concurrency=2, agent_speedup={"dev": 2.0}) == 5.0
        assert what_if(star(), concurrency=1, agent_speedup={"dev": 2.0, "lead": 3.0}) == 4.0

    def test_agent_limit(self) -> None:
        """One dev slot serialises b, c and d whatever the global limit."""
        assert what_if(star(), concurrency=3, agent_concurrency={"dev": 1}) == 9.0

    def test_critical_path_order(self) -> None:
        """The long task starts first even when it is last in record order (FIFO would take 4 s)."""
        records = [rec("x", "w", 0.0, 1.0), rec("y", "w", 1.0, 2.0, ready=0.0), rec("z", "w", 0.0, 3.0)]
        assert what_if(records, concurrency=2) == 3.0
        assert what_if(records, concurrency=1) == 5.0

    def test_ignores_what_did_not_run(self) -> None:
        """Resumed and skipped tasks are not replayed; a dependency on them is met at once."""
        records = [
            rec("old", "w", 0.0, 50.0, resumed=True),
            rec("new", "w", 1.0, 3.0, deps=("old",)),
            TaskRecord("never", "w", state=TaskState.SKIPPED, depends_on=("new",)),
        ]
        assert what_if(records) == 2.0
        assert what_if([]) == 0.0

    def test_cycle_does_not_hang(self) -> None:
        """Malformed records with a cycle are replayed with the closing edge dropped."""
        records = [rec("p", "w", 0.0, 1.0, deps=("q",)), rec("q", "w", 1.0, 2.0, deps=("p",))]
        assert what_if(records, concurrency=2) == 2.0

    def test_rejects_bad_arguments(self) -> None:
        with pytest.raises(ValueError, match="concurrency"):
            what_if(star(), concurrency=0)
        with pytest.raises(ValueError, match="agent_speedup"):
            what_if(star(), agent_speedup={"dev": 0.0})
        with pytest.raises(ValueError, match="agent_concurrency"):
            what_if(star(), agent_concurrency={"dev": 0})

    def test_real_run(self) -> None:
        """A run capped at two dev slots replays exactly, and lifting the cap halves the fan-out."""
        result = run(fan_spec(sim(2.0, max_concurrency=2)), cache=False)
        assert max(r.ended_at or 0.0 for r in result.records) == 8.0
        assert what_if(result.records, agent_concurrency={"dev": 2}) == 8.0
        assert what_if(result.records, concurrency=10) == 4.0
        assert what_if(result.records, concurrency=10, agent_speedup={"dev": 2.0}) == 3.0


# -- no false positives ----------------------------------------------------------------------


class TestBalanced:
    def test_hand_built(self) -> None:
        assert classify(balanced(), max_parallel=8) == []
        assert classify(balanced()) == []

    def test_real_run(self) -> None:
        """Equal steps, enough slots, no limits: nothing to report, with or without the plan."""
        spec = fan_spec(sim(1.0), lead=1.0, max_parallel=16)
        result, found = real(spec)
        assert found == []
        assert classify_bottlenecks(result.records, analyze(result.records)) == []

    def test_small_waits_under_the_floor(self) -> None:
        """A 0.25 s queue wait in an 8 s run is noise (under 5% of the makespan)."""
        records = [
            rec("a", "w", 0.0, 4.0),
            rec("b", "w", 0.25, 4.0, ready=0.0),
            rec("c", "w", 4.0, 8.0, deps=("a", "b")),
            rec("d", "w", 4.0, 8.0, deps=("a", "b")),
        ]
        assert classify(records, max_parallel=1) == []


# -- each kind -------------------------------------------------------------------------------


class TestSlowTask:
    def test_dominant_step(self) -> None:
        """build is 8 of the 10 s path: splitting it or a faster model; 8 s at stake."""
        records = [
            rec("spec", "lead", 0.0, 1.0),
            rec("build", "coder", 1.0, 9.0, deps=("spec",)),
            rec("ship", "lead", 9.0, 10.0, deps=("build",)),
        ]
        b = only(classify(records), "slow_task")
        assert b.subject == "build"
        assert b.severity == 8.0
        assert b.setting == "agents.coder.model"
        assert "tasks[build]" in b.recommendation and "agents.coder.model" in b.recommendation
        assert "8.0s of the 10.0s critical path (80%)" in b.evidence

    def test_outlier_instance(self) -> None:
        """impl[3] took 9 s against siblings' 2 s: hedging, and 7 s at stake."""
        records = [
            rec("plan", "lead", 0.0, 1.0),
            *(rec(f"impl[{i}]", "dev", 1.0, 3.0, deps=("plan",)) for i in range(3)),
            rec("impl[3]", "dev", 1.0, 10.0, deps=("plan",)),
            rec("merge", "lead", 10.0, 11.0, deps=tuple(f"impl[{i}]" for i in range(4))),
        ]
        b = only(classify(records), "slow_task")
        assert b.subject == "impl[3]"
        assert b.severity == 7.0
        assert b.setting == "agents.dev.hedge"
        assert "agents.dev.hedge" in b.recommendation and "tasks[impl].timeout" in b.recommendation

    def test_rate_limit_wait_is_not_slowness(self) -> None:
        """A task long only because it waited on a limiter is a rate_limit, not a slow task."""
        records = [
            rec("spec", "lead", 0.0, 1.0),
            rec("build", "coder", 1.0, 9.0, deps=("spec",), meta={"limit_wait": 7.0}),
            rec("ship", "lead", 9.0, 10.0, deps=("build",)),
        ]
        assert kinds(classify(records)) == [("rate_limit", "coder")]

    def test_single_task_runs_are_not_flagged(self) -> None:
        assert classify([rec("only", "w", 0.0, 5.0)]) == []


class TestContention:
    def test_critical_path_waits_for_run_slots(self) -> None:
        """Two slots, four 2 s tasks: impl[2] waits 2 s on the critical path for a run slot."""
        records = [
            rec("plan", "lead", 0.0, 1.0),
            rec("impl[0]", "dev", 1.0, 3.0, deps=("plan",)),
            rec("impl[1]", "dev", 1.0, 3.0, deps=("plan",)),
            rec("impl[2]", "dev", 3.0, 5.0, ready=1.0, deps=("plan",)),
            rec("impl[3]", "dev", 3.0, 5.0, ready=1.0, deps=("plan",)),
            rec("merge", "lead", 5.0, 6.0, deps=tuple(f"impl[{i}]" for i in range(4))),
        ]
        found = classify(records, max_parallel=2)
        b = only(found, "contention")
        assert kinds(found) == [("contention", "dev")]
        assert b.setting == "settings.max_parallel"
        assert "raise settings.max_parallel from 2 to 4" in b.recommendation
        assert b.severity == 2.0  # 6 s -> 4 s with four slots

    def test_waits_with_free_slots_point_at_tiers(self) -> None:
        """c waited 2 s while nothing ran: neither limit was full, so tiers are the suspect."""
        records = [
            rec("a", "dev", 0.0, 1.0),
            rec("b", "dev", 0.0, 1.0),
            rec("c", "dev", 3.0, 4.0, ready=1.0, deps=("a",)),
        ]
        b = only(classify(records, max_parallel=8), "contention")
        assert (b.subject, b.setting, b.severity) == ("dev", "tasks[c].tier", 2.0)
        assert "tasks[c].tier" in b.recommendation and "settings.tiers" in b.recommendation

    def test_agents_waiting_on_the_run_limit_are_reported_once(self) -> None:
        """Both agents wait for run slots: one entry for the one change, under the longest waiter."""
        records = [
            rec("a0", "alpha", 0.0, 2.0),
            rec("b0", "beta", 0.0, 2.0),
            rec("a1", "alpha", 2.0, 4.0, ready=0.0),
            rec("b1", "beta", 2.0, 4.0, ready=0.0),
            rec("a2", "alpha", 4.0, 6.0, ready=0.0),
            rec("b2", "beta", 4.0, 6.0, ready=0.0),
        ]
        found = classify(records, max_parallel=2)
        assert kinds(found) == [("contention", "alpha")]
        assert "other agents waiting for run slots: beta 6.0s" in found[0].evidence
        assert "from 2 to 6" in found[0].recommendation
        assert found[0].severity == 4.0  # 6 s with two slots, 2 s with six

    def test_real_run_max_parallel(self) -> None:
        """A real run with max_parallel 2: dev's six 2 s tasks queue for run slots."""
        _, found = real(fan_spec(sim(2.0), max_parallel=2))
        assert kinds(found) == [("contention", "dev")]
        b = found[0]
        assert b.setting == "settings.max_parallel"
        assert "raise settings.max_parallel from 2 to 6" in b.recommendation
        assert b.severity == 4.0  # 8 s -> 4 s
        assert "12.0s" in b.evidence


class TestAgentOverload:
    def test_hand_built(self) -> None:
        """One dev slot, busy all the time, three tasks queued behind it."""
        records = [
            rec("t0", "dev", 0.0, 2.0),
            rec("t1", "dev", 2.0, 4.0, ready=0.0),
            rec("t2", "dev", 4.0, 6.0, ready=0.0),
            rec("t3", "dev", 6.0, 8.0, ready=0.0),
        ]
        b = only(classify(records, max_parallel=8), "agent_overload")
        assert b.subject == "dev"
        assert b.setting == "agents.dev.max_concurrency"
        assert "agents.dev.max_concurrency to 4 (it never ran more than 1 at once)" in b.recommendation
        assert b.severity == 6.0  # 8 s serial -> 2 s with four slots

    def test_real_run_agent_limit(self) -> None:
        """A real run with dev.max_concurrency 2: overload named with the declared limit."""
        _, found = real(fan_spec(sim(2.0, max_concurrency=2), max_parallel=16))
        assert kinds(found) == [("agent_overload", "dev")]
        b = found[0]
        assert "raise agents.dev.max_concurrency from 2 to 6" in b.recommendation
        assert b.severity == 4.0
        assert "100% busy" in b.evidence

    def test_saturation_threshold(self) -> None:
        """dev idles 1 s of its 6 s span (83% busy): contention by default, overload at 0.8."""
        records = [
            rec("t0", "dev", 0.0, 2.0),
            rec("t1", "dev", 2.0, 4.0, ready=0.0),
            rec("t2", "dev", 5.0, 6.0, ready=0.0),
        ]
        report = analyze(records, max_parallel=8)
        assert kinds(classify_bottlenecks(records, report)) == [("contention", "dev")]
        lenient = Thresholds(overload_utilisation=0.8)
        assert kinds(classify_bottlenecks(records, report, thresholds=lenient)) == [("agent_overload", "dev")]


class TestRateLimit:
    def test_hand_built(self) -> None:
        """Waits summed per agent; severity is the simulated gain without them."""
        records = [
            rec("a", "writer", 0.0, 1.0),
            rec("b", "writer", 0.0, 11.0, meta={"limit_wait": 10.0}),
            rec("c", "writer", 0.0, 21.0, meta={"limit_wait": 20.0}),
            rec("d", "editor", 0.0, 1.0),
        ]
        b = only(classify(records), "rate_limit")
        assert b.subject == "writer"
        assert b.severity == 20.0  # 21 s -> 1 s
        assert "30.0s" in b.evidence and "longest: c" in b.evidence
        assert b.setting == "agents.writer.rate_limit"
        assert "agents.writer.rate_limit" in b.recommendation and "agents.writer.fallbacks" in b.recommendation

    def test_real_run_agent_rpm(self) -> None:
        """A real run with rate_limit rpm 2: three of five calls wait 30, 60 and 90 s."""
        spec = build(
            [{"id": f"t{i}", "agent": "dev", "prompt": f"job {i}"} for i in range(5)]
            + [{"id": "report", "agent": "lead", "prompt": "sum", "depends_on": [f"t{i}" for i in range(5)]}],
            {"dev": sim(2.0, rate_limit={"rpm": 2}), "lead": sim(1.0, model="sim-fast")},
            max_parallel=10,
        )
        result, found = real(spec)
        assert sorted(r.meta.get("limit_wait", 0.0) for r in result.records) == [0, 0, 0, 30, 60, 90]
        assert kinds(found) == [("rate_limit", "dev")]
        b = found[0]
        assert b.setting == "agents.dev.rate_limit.rpm"
        assert "raise agents.dev.rate_limit.rpm (now 2)" in b.recommendation
        assert b.severity == 90.0  # 93 s -> 3 s
        assert "3 tasks of agent dev waited 3m00.0s" in b.evidence

    def test_real_run_settings_limit(self) -> None:
        """A limit from settings.resilience.limits is named by its key."""
        spec = build(
            [{"id": f"t{i}", "agent": "dev", "prompt": f"job {i}"} for i in range(4)],
            {"dev": sim(2.0)},
            max_parallel=10,
            resilience={"limits": {"sim/sim-default": {"rpm": 2}}},
        )
        _, found = real(spec)
        b = only(found, "rate_limit")
        assert b.setting == "settings.resilience.limits['sim/sim-default'].rpm"
        assert b.setting in b.recommendation

    def test_adaptive_limit_without_a_declared_one(self) -> None:
        """Waits with no limit declared come from adaptive concurrency: fallbacks are the advice."""
        spec = build([{"id": "a", "agent": "w", "prompt": "x"}, {"id": "b", "agent": "w", "prompt": "y"}],
                     {"w": sim(1.0)})
        records = [rec("a", "w", 0.0, 1.0), rec("b", "w", 0.0, 9.0, meta={"limit_wait": 8.0})]
        b = only(classify(records, plan=build_plan(spec)), "rate_limit")
        assert b.setting == "agents.w.fallbacks"
        assert "agents.w.fallbacks" in b.recommendation
        assert "settings.resilience.limits['sim/sim-default']" in b.recommendation

    def test_real_run_limit_shared_through_the_model(self) -> None:
        """lead calls the same provider+model as dev, so dev's rpm limit makes lead wait too."""
        spec = build(
            [{"id": f"t{i}", "agent": "dev", "prompt": f"job {i}"} for i in range(2)]
            + [{"id": "report", "agent": "lead", "prompt": "sum", "depends_on": ["t0", "t1"]}],
            {"dev": sim(2.0, rate_limit={"rpm": 2}), "lead": sim(1.0)},
            max_parallel=10,
        )
        result, found = real(spec)
        assert [r.meta.get("limit_wait", 0.0) for r in result.records] == [0.0, 0.0, 28.0]
        b = only(found, "rate_limit")
        assert b.subject == "lead"
        assert b.setting == "agents.dev.rate_limit.rpm"
        assert "raise agents.dev.rate_limit.rpm (now 2, shared with lead)" in b.recommendation


class TestContextBloat:
    def test_step_far_above_the_run(self) -> None:
        """integrate was sent 18,000 tokens where the other steps' median is 2,100."""
        records = [
            rec("a", "w", 0.0, 1.0, context_tokens=2000),
            rec("b", "w", 1.0, 2.0, deps=("a",), context_tokens=2100),
            rec("c", "w", 2.0, 3.0, deps=("b",), context_tokens=2200),
            rec("integrate", "w", 3.0, 4.0, deps=("c",), context_tokens=18000),
        ]
        b = only(classify(records), "context_bloat")
        assert b.subject == "integrate"
        assert b.setting == "tasks[integrate].context.max_tokens"
        assert "set tasks[integrate].context.max_tokens" in b.recommendation
        assert "18,000 tokens vs a median of 2,100" in b.recommendation
        assert b.severity == pytest.approx(1.0 - 2100 / 18000)

    def test_instance_far_above_its_siblings(self) -> None:
        """impl[3] got 9,000 tokens where its siblings got about 1,100."""
        records = [
            rec("plan", "lead", 0.0, 1.0, context_tokens=500),
            *(rec(f"impl[{i}]", "dev", 1.0, 2.0, deps=("plan",), context_tokens=1000 + 100 * i) for i in range(3)),
            rec("impl[3]", "dev", 1.0, 2.0, deps=("plan",), context_tokens=9000),
        ]
        found = classify(records)
        assert kinds(found) == [("context_bloat", "impl[3]")]
        assert "tasks[impl].context.max_tokens" in found[0].recommendation
        assert "the median of the other 3 instances of impl" in found[0].evidence

    def test_floor_and_ratio(self) -> None:
        """Below the absolute floor, or under 3x, is not bloat."""
        small = [rec(s, "w", 0.0, 1.0, context_tokens=n) for s, n in (("a", 100), ("b", 100), ("c", 3000))]
        assert classify(small) == []
        close = [rec(s, "w", 0.0, 1.0, context_tokens=n) for s, n in (("a", 4000), ("b", 4000), ("c", 11000))]
        assert classify(close) == []

    def test_budget_in_the_plan_is_named(self) -> None:
        """With a plan, an existing budget is quoted."""
        spec = build(
            [{"id": s, "agent": "w", "prompt": s} for s in ("a", "b", "c")]
            + [{"id": "big", "agent": "w", "prompt": "x", "context": {"max_tokens": 50000}}],
            {"w": sim(1.0)},
        )
        records = [rec(s, "w", 0.0, 1.0, context_tokens=1000) for s in ("a", "b", "c")]
        records.append(rec("big", "w", 0.0, 1.0, context_tokens=40000))
        b = only(classify(records, plan=build_plan(spec)), "context_bloat")
        assert "lower tasks[big].context.max_tokens (now 50,000)" in b.recommendation


class TestFalseParallelism:
    def test_real_run(self) -> None:
        """design and code share phase 'build' but code waits for design: 2 s at stake."""
        spec = build(
            [
                {"id": "design", "agent": "w", "prompt": "d", "phase": "build"},
                {"id": "code", "agent": "w", "prompt": "c", "depends_on": ["design"], "phase": "build"},
                {"id": "ship", "agent": "w", "prompt": "s", "depends_on": ["code"], "phase": "release"},
            ],
            {"w": sim(2.0)},
        )
        _, found = real(spec)
        b = only(found, "false_parallelism")
        assert b.subject == "code"
        assert b.setting == "tasks[code].depends_on"
        assert "tasks[code].depends_on" in b.recommendation and "tasks[code].phase" in b.recommendation
        assert "design -> code" in b.evidence
        assert b.severity == 2.0

    def test_longest_chain_per_step(self) -> None:
        """a -> b -> c in one phase: c is reported once, with the whole chain."""
        spec = build(
            [
                {"id": "a", "agent": "w", "prompt": "a", "phase": "p"},
                {"id": "b", "agent": "w", "prompt": "b", "depends_on": ["a"], "phase": "p"},
                {"id": "c", "agent": "w", "prompt": "c", "depends_on": ["b"], "phase": "p"},
            ],
            {"w": sim(1.0)},
        )
        found = classify_bottlenecks([], analyze([]), plan=build_plan(spec))
        assert sorted(kinds(found)) == [("false_parallelism", "b"), ("false_parallelism", "c")]
        c = next(b for b in found if b.subject == "c")
        assert "a -> b -> c" in c.evidence and c.severity == 0.0

    def test_needs_a_plan(self) -> None:
        assert [b for b in classify(balanced()) if b.kind == "false_parallelism"] == []


class TestRetries:
    def test_extra_attempts_against_peers(self) -> None:
        """impl[3] took 8 s over three attempts where single-attempt peers took 2 s: 6 s lost."""
        records = [
            *(rec(f"impl[{i}]", "dev", 0.0, 2.0, attempts=1) for i in range(3)),
            rec("impl[3]", "dev", 0.0, 8.0, attempts=3),
        ]
        b = only(classify(records), "retries")
        assert b.subject == "dev"
        assert b.severity == 6.0
        assert b.setting == "agents.dev.fallbacks"
        assert "agents.dev.fallbacks" in b.recommendation
        assert "2 extra attempts" in b.evidence

    def test_without_peers_split_evenly(self) -> None:
        """No single-attempt peer: (N-1)/N of the service time is counted lost."""
        records = [rec("only", "dev", 0.0, 8.0, attempts=4), rec("other", "ops", 0.0, 1.0)]
        assert only(classify(records), "retries").severity == 6.0

    def test_timeouts_name_the_timeout(self) -> None:
        """A task that failed on its timeout lost all of it; the plan says which setting applies."""
        spec = build([{"id": "slow", "agent": "dev", "prompt": "x", "timeout": 5}, {"id": "fast", "agent": "dev",
                                                                                    "prompt": "y"}],
                     {"dev": sim(1.0)})
        records = [
            rec("slow", "dev", 0.0, 10.0, attempts=2, state=TaskState.FAILED,
                error="task slow exceeded its timeout of 5s"),
            rec("fast", "dev", 0.0, 1.0, attempts=1),
        ]
        b = only(classify(records, plan=build_plan(spec)), "retries")
        assert b.setting == "tasks[slow].timeout"
        assert "raise tasks[slow].timeout (now 5 s)" in b.recommendation
        assert b.severity == 9.0  # 10 s -> 1 s
        without_plan = only(classify(records), "retries")
        assert without_plan.setting == "agents.dev.timeout"

    def test_rejections_point_at_the_prompt(self) -> None:
        records = [
            rec("draft", "dev", 0.0, 6.0, attempts=3, meta={"rejected": 2}),
            rec("other", "ops", 0.0, 1.0),
        ]
        b = only(classify(records), "retries")
        assert b.setting == "tasks[draft].prompt"
        assert "tasks[draft].prompt" in b.recommendation and "2 answers were rejected" in b.recommendation


# -- the list as a whole --------------------------------------------------------------------


class TestClassify:
    def test_sorted_by_severity(self) -> None:
        """Several kinds at once, most severe first."""
        records = [
            rec("spec", "lead", 0.0, 1.0, context_tokens=1000),
            rec("build", "coder", 1.0, 31.0, deps=("spec",), context_tokens=1200),
            rec("lint", "coder", 1.0, 6.0, deps=("spec",), meta={"limit_wait": 4.0}, context_tokens=1100),
            rec("docs", "writer", 1.0, 2.0, deps=("spec",), context_tokens=20000),
            rec("ship", "lead", 31.0, 32.0, deps=("build", "lint", "docs")),
        ]
        found = classify(records)
        assert [b.kind for b in found] == ["slow_task", "rate_limit", "context_bloat"]
        assert [b.severity for b in found] == sorted((b.severity for b in found), reverse=True)

    def test_bottleneck_is_frozen(self) -> None:
        b = Bottleneck("retries", 1.0, "dev", "e", "r")
        with pytest.raises(FrozenInstanceError):
            b.severity = 2.0  # type: ignore[misc]

    def test_kinds(self) -> None:
        assert set(BOTTLENECK_KINDS) == {"slow_task", "contention", "rate_limit", "context_bloat",
                                         "agent_overload", "false_parallelism", "retries"}

    def test_thresholds_validated(self) -> None:
        with pytest.raises(ValueError):
            Thresholds(min_share=2.0)
        with pytest.raises(ValueError):
            Thresholds(bloat_ratio=1.0)
        with pytest.raises(ValueError):
            Thresholds(slow_task_share=0.0)

    def test_floor_is_tunable(self) -> None:
        """Raising the floor silences a small bottleneck."""
        records = [rec("only", "dev", 0.0, 8.0, attempts=4), rec("other", "ops", 0.0, 1.0)]
        report = analyze(records)
        assert classify_bottlenecks(records, report, thresholds=Thresholds(min_seconds=7.0)) == []

    def test_nothing_ran(self) -> None:
        assert classify([]) == []
        assert classify([TaskRecord("t", "w", state=TaskState.SKIPPED)]) == []


# -- recurring -----------------------------------------------------------------------------


def b(kind: Any, subject: str, severity: float = 1.0) -> Bottleneck:
    return Bottleneck(kind, severity, subject, f"{kind} {subject} {severity}", "do something")


class TestRecurring:
    def test_patterns(self) -> None:
        history = [
            [b("contention", "dev", 1.0)],
            [b("contention", "dev", 2.0), b("rate_limit", "writer")],
            [],
            [b("contention", "dev", 3.0), b("rate_limit", "writer")],
            [b("rate_limit", "writer"), b("slow_task", "build")],
        ]
        patterns = recurring(history)
        # equal counts: the most recently seen first
        assert patterns == [
            Pattern("rate_limit", "writer", 3, 1, 4, history[4][0]),
            Pattern("contention", "dev", 3, 0, 3, history[3][0]),
        ]
        assert patterns[1].latest.severity == 3.0

    def test_min_runs(self) -> None:
        history = [[b("retries", "dev")], [b("retries", "dev")], [b("slow_task", "x")]]
        assert recurring(history) == []
        assert [(p.kind, p.subject, p.count) for p in recurring(history, min_runs=2)] == [("retries", "dev", 2)]
        assert len(recurring(history, min_runs=1)) == 2
        with pytest.raises(ValueError):
            recurring(history, min_runs=0)

    def test_counted_once_per_run(self) -> None:
        """Two entries for the same kind and subject in one run count as one run."""
        history = [[b("context_bloat", "t"), b("context_bloat", "t", 5.0)]] * 2 + [[]]
        assert [(p.count, p.first, p.last) for p in recurring(history, min_runs=2)] == [(2, 0, 1)]

    def test_kind_and_subject_both_matter(self) -> None:
        history = [[b("contention", "dev")], [b("agent_overload", "dev")], [b("contention", "qa")]]
        assert recurring(history, min_runs=2) == []

    def test_from_real_runs(self) -> None:
        """Three runs with the same agent limit report the overload as a pattern."""
        spec = fan_spec(sim(2.0, max_concurrency=2), max_parallel=16)
        history = [real(spec)[1] for _ in range(3)]
        (pattern,) = recurring(history)
        assert (pattern.kind, pattern.subject, pattern.count, pattern.first, pattern.last) == (
            "agent_overload", "dev", 3, 0, 2)


def test_what_if_scenarios_answer_the_usual_questions_against_the_same_replay() -> None:
    from agentfleet.analysis import what_if_scenarios

    # lead (1 s) -> 6 reviews of 1 s each, reviewer capped at 2: 1 + 3 = 4 s as run
    records = [rec("lead", "planner", 0.0, 1.0)]
    for i in range(6):
        start = 1.0 + (i // 2)
        records.append(rec(f"review[{i}]", "reviewer", start, start + 1.0, ready=1.0, deps=("lead",)))
    found = {w.setting: w for w in what_if_scenarios(records, max_parallel=8, caps={"reviewer": 2})}
    assert all(w.baseline == 4.0 for w in found.values())
    # more global slots change nothing while the reviewer's cap holds; a wider cap does
    assert found["settings.max_parallel"].makespan == 4.0 and found["settings.max_parallel"].change == 0.0
    assert found["settings.max_parallel"].scenario == "max_parallel 8 -> 16"
    assert found["agents.reviewer.max_concurrency"].makespan == 3.0  # 1 + 2 rounds of 4 at once
    assert found["agents.reviewer.max_concurrency"].scenario == "reviewer max_concurrency 2 -> 4"
    assert found["agents.reviewer.model"].makespan == 2.5  # 1 + 3 rounds of 0.5 s
    assert found["agents.planner.model"].makespan == 3.5
    assert found["agents.planner.model"].change == pytest.approx(3.5 / 4 - 1)
    assert what_if_scenarios([]) == []
    # without max_parallel the replay uses the concurrency the run reached (2 here)
    (first, *_) = what_if_scenarios(records)
    assert first.scenario == "max_parallel 2 -> 4" and first.makespan == 3.0
