"""Tests for ``agentfleet.analysis.analyze``: every number checked against hand-built runs.

Times are exact binary fractions so sums compare with ``==``; quotients compare with the
decimal literal of the exact quotient (IEEE division is correctly rounded).
"""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest

from agentfleet._types import TaskRecord, TaskState
from agentfleet.analysis import AgentStats, PathStep, RunReport, analyze


def rec(
    task_id: str,
    agent: str,
    start: float | None,
    end: float | None,
    *,
    ready: float | None = None,
    deps: tuple[str, ...] = (),
    state: str = TaskState.DONE,
    **extra: object,
) -> TaskRecord:
    """A finished task record; ``ready`` defaults to ``start`` (no queue wait)."""
    return TaskRecord(
        task_id=task_id,
        agent=agent,
        state=state,
        depends_on=deps,
        ready_at=start if ready is None else ready,
        started_at=start,
        ended_at=end,
        **extra,  # type: ignore[arg-type]
    )


def diamond() -> list[TaskRecord]:
    """split -> (a, b) -> release; b is slower and queued, release queued too."""
    return [
        rec("split", "arch", 0.0, 2.0, tokens_in=100, tokens_out=50),
        rec("a", "dev", 2.0, 5.0, deps=("split",), tokens_in=10, tokens_out=20),
        rec("b", "dev", 2.5, 6.5, ready=2.0, deps=("split",), tokens_in=30, tokens_out=40),
        rec("release", "rel", 7.0, 8.0, ready=6.5, deps=("a", "b"), tokens_in=1, tokens_out=2),
    ]


def fan() -> list[TaskRecord]:
    """plan -> impl[0..3] -> merge, with two slots so impl[2] and impl[3] queue."""
    impls = ("impl[0]", "impl[1]", "impl[2]", "impl[3]")
    return [
        rec("plan", "lead", 0.0, 1.0),
        rec("impl[0]", "dev", 1.0, 2.0, deps=("plan",)),
        rec("impl[1]", "dev", 1.0, 4.0, deps=("plan",)),
        rec("impl[2]", "dev", 2.0, 4.5, ready=1.0, deps=("plan",)),
        rec("impl[3]", "dev", 4.0, 4.25, ready=1.0, deps=("plan",)),
        rec("merge", "lead", 4.5, 5.0, deps=impls),
    ]


def path_ids(report: RunReport) -> list[str]:
    return [step.task_id for step in report.critical_path]


class TestTiming:
    def test_diamond_makespan_sum_speedup(self) -> None:
        """Makespan is first start to last end; speedup is the sum of task times over it."""
        report = analyze(diamond())
        assert report.first_start == 0.0
        assert report.last_end == 8.0
        assert report.makespan == 8.0
        assert report.total_task_time == 10.0
        assert report.speedup == 1.25

    def test_efficiency_against_peak(self) -> None:
        """Efficiency divides speedup by the peak concurrency measured from the intervals."""
        report = analyze(diamond())
        assert report.peak_concurrency == 2
        assert report.max_parallel is None
        assert report.efficiency == 0.625

    def test_efficiency_capped_by_max_parallel(self) -> None:
        """A max_parallel below the measured peak becomes the denominator."""
        report = analyze(diamond(), max_parallel=1)
        assert report.max_parallel == 1
        assert report.efficiency == 1.25

    def test_efficiency_uses_peak_below_limit(self) -> None:
        """A generous max_parallel does not dilute efficiency: the measured peak is used."""
        assert analyze(diamond(), max_parallel=8).efficiency == 0.625

    def test_fan_out_fan_in(self) -> None:
        """Fan-out with queued instances: makespan, sum, speedup and efficiency exact."""
        report = analyze(fan(), max_parallel=2)
        assert report.makespan == 5.0
        assert report.total_task_time == 8.25
        assert report.speedup == 1.65
        assert report.peak_concurrency == 2
        assert report.efficiency == 0.825

    def test_peak_counts_overlaps_half_open(self) -> None:
        """A task starting exactly when another ends does not overlap it; true overlaps do."""
        records = [
            rec("x", "a", 0.0, 4.0),
            rec("y", "a", 1.0, 3.0),
            rec("z", "a", 2.0, 4.0),
            rec("w", "a", 4.0, 5.0),
        ]
        assert analyze(records).peak_concurrency == 3

    def test_sequential_run(self) -> None:
        """A strict chain has speedup 1 and efficiency 1."""
        records = [rec("a", "x", 0.0, 1.5), rec("b", "x", 1.5, 4.0, deps=("a",))]
        report = analyze(records)
        assert report.makespan == 4.0
        assert report.speedup == 1.0
        assert report.peak_concurrency == 1
        assert report.efficiency == 1.0

    def test_makespan_starts_at_first_start(self) -> None:
        """Time before the first task starts is not part of the makespan."""
        records = [rec("a", "x", 0.5, 2.5), rec("b", "x", 1.5, 3.0)]
        report = analyze(records)
        assert report.makespan == 2.5
        assert report.total_task_time == 3.5
        assert report.speedup == 1.4

    def test_time_to_first_result(self) -> None:
        """Time to first result is the earliest end of a done task, on the run's clock."""
        assert analyze(diamond()).time_to_first_result == 2.0
        assert analyze(fan()).time_to_first_result == 1.0


class TestCriticalPath:
    def test_diamond_picks_latest_finishing_branch(self) -> None:
        """From the last task, each step goes to the dependency that finished last."""
        report = analyze(diamond())
        assert report.critical_path == (
            PathStep("split", "arch", 2.0, 0.0, 0.0, 2.0),
            PathStep("b", "dev", 4.0, 0.5, 2.5, 6.5),
            PathStep("release", "rel", 1.0, 0.5, 7.0, 8.0),
        )
        assert report.critical_path_length == 7.0
        assert report.critical_path_queue_wait == 1.0
        assert report.critical_path_queue_share == 0.125

    def test_diamond_other_branch_when_it_finishes_later(self) -> None:
        """Swapping which branch finishes last swaps the path."""
        records = diamond()
        records[1] = rec("a", "dev", 2.0, 6.75, deps=("split",))
        assert path_ids(analyze(records)) == ["split", "a", "release"]

    def test_fan_in_picks_latest_instance(self) -> None:
        """At a fan-in the path goes through the instance that finished last, not the longest."""
        report = analyze(fan())
        assert path_ids(report) == ["plan", "impl[2]", "merge"]
        assert report.critical_path_length == 4.0
        assert report.critical_path_queue_wait == 1.0
        assert report.critical_path_queue_share == 0.2

    def test_tie_goes_to_first_declared_dependency(self) -> None:
        """Dependencies finishing at the same instant resolve to the first in depends_on."""
        records = [
            rec("s", "x", 0.0, 1.0),
            rec("p", "x", 1.0, 3.0, deps=("s",)),
            rec("q", "x", 1.0, 3.0, deps=("s",)),
            rec("end", "x", 3.0, 4.0, deps=("q", "p")),
        ]
        assert path_ids(analyze(records)) == ["s", "q", "end"]

    def test_ends_at_task_that_finished_last(self) -> None:
        """The path ends at the last task to finish, even if it has no dependencies."""
        records = [
            rec("a", "x", 0.0, 1.0),
            rec("b", "x", 1.0, 2.0, deps=("a",)),
            rec("lone", "y", 0.0, 3.0),
        ]
        report = analyze(records)
        assert path_ids(report) == ["lone"]
        assert report.critical_path_length == 3.0

    def test_unknown_dependency_ignored(self) -> None:
        """A dependency id with no record ends the walk instead of failing."""
        records = [rec("a", "x", 0.0, 1.0, deps=("ghost",))]
        assert path_ids(analyze(records)) == ["a"]

    def test_dependency_cycle_does_not_loop(self) -> None:
        """Malformed records with a dependency cycle still produce a finite path."""
        records = [
            rec("a", "x", 0.0, 1.0, deps=("b",)),
            rec("b", "x", 0.0, 2.0, deps=("a",)),
        ]
        assert path_ids(analyze(records)) == ["a", "b"]


class TestAgents:
    def test_busy_and_queue_wait_per_agent(self) -> None:
        """Busy is the sum of durations; queue wait mean/max/total over the agent's tasks."""
        agents = analyze(diamond()).agents
        assert list(agents) == ["arch", "dev", "rel"]
        assert agents["dev"] == AgentStats(
            agent="dev",
            tasks=2,
            busy=7.0,
            queue_wait_total=0.5,
            queue_wait_mean=0.25,
            queue_wait_max=0.5,
            utilisation=0.875,
            tokens_in=40,
            tokens_out=60,
        )
        assert agents["arch"].busy == 2.0
        assert agents["arch"].utilisation == 0.25
        assert agents["rel"].queue_wait_mean == 0.5

    def test_fan_out_queue_waits(self) -> None:
        """Queued fan-out instances show up in the agent's mean and max wait."""
        dev = analyze(fan()).agents["dev"]
        assert dev.tasks == 4
        assert dev.busy == 6.75
        assert dev.queue_wait_total == 4.0
        assert dev.queue_wait_mean == 1.0
        assert dev.queue_wait_max == 3.0
        assert dev.utilisation == 1.35

    def test_agent_with_only_skipped_tasks(self) -> None:
        """An agent whose tasks never ran is listed with zeros."""
        records = [
            rec("a", "x", 0.0, 1.0, state=TaskState.FAILED),
            rec("b", "y", None, None, deps=("a",), state=TaskState.SKIPPED),
        ]
        y = analyze(records).agents["y"]
        assert (y.tasks, y.busy, y.queue_wait_mean, y.queue_wait_max) == (0, 0.0, 0.0, 0.0)
        assert y.utilisation == 0.0


class TestTokensAndCounts:
    def test_token_totals(self) -> None:
        """Token totals sum every record of this run."""
        report = analyze(diamond())
        assert (report.tokens_in, report.tokens_out) == (141, 112)
        assert (report.agents["arch"].tokens_in, report.agents["arch"].tokens_out) == (100, 50)

    def test_counts_by_state_in_canonical_order(self) -> None:
        """Counts list states done, failed, skipped, cancelled... whatever order records come in."""
        records = [
            rec("c", "x", None, None, state=TaskState.CANCELLED),
            rec("s", "x", None, None, state=TaskState.SKIPPED),
            rec("f", "x", 0.0, 1.0, state=TaskState.FAILED),
            rec("d", "x", 0.0, 1.0),
            rec("d2", "x", 1.0, 2.0),
        ]
        report = analyze(records)
        assert list(report.counts.items()) == [
            ("done", 2),
            ("failed", 1),
            ("skipped", 1),
            ("cancelled", 1),
        ]
        assert (report.tasks_done, report.tasks_failed, report.tasks_total) == (2, 1, 5)
        assert report.tasks_ran == 3

    def test_retries_are_attempts_beyond_the_first(self) -> None:
        """Retries sum attempts - 1 per task; never-started tasks (0 attempts) add nothing."""
        records = [
            rec("a", "x", 0.0, 1.0, attempts=3),
            rec("b", "x", 0.0, 1.0, attempts=1),
            rec("c", "x", None, None, state=TaskState.SKIPPED, attempts=0),
            rec("d", "x", 0.0, 1.0, state=TaskState.FAILED, attempts=2),
        ]
        assert analyze(records).retries == 3

    def test_providers_merged_from_records(self) -> None:
        """Providers named in records join those passed in, sorted and deduplicated."""
        records = [rec("a", "x", 0.0, 1.0, provider="sim"), rec("b", "x", 0.0, 1.0)]
        report = analyze(records, providers={"openai", "sim"})
        assert report.providers == ("openai", "sim")
        assert report.simulated


class TestResumed:
    def test_resumed_excluded_from_timing(self) -> None:
        """A resumed task's old times are left out of makespan, sums, path and agents."""
        records = diamond()
        records[0] = rec("split", "arch", 0.0, 100.0, resumed=True, tokens_in=100, attempts=4)
        report = analyze(records)
        assert report.makespan == 6.0
        assert report.total_task_time == 8.0
        assert path_ids(report) == ["b", "release"]
        assert report.agents["arch"].tasks == 0
        assert report.agents["arch"].busy == 0.0
        assert report.time_to_first_result == 5.0

    def test_resumed_counted_not_spent(self) -> None:
        """Resumed tasks appear in counts and tasks_resumed but not in tokens or retries."""
        records = diamond()
        records[0] = rec("split", "arch", 0.0, 2.0, resumed=True, tokens_in=100, attempts=4)
        report = analyze(records)
        assert report.tasks_resumed == 1
        assert report.tasks_done == 4
        assert report.tasks_ran == 3
        assert report.tokens_in == 41
        assert report.retries == 0

    def test_all_resumed(self) -> None:
        """A run where everything was resumed has no timing but counts every task."""
        records = [rec("a", "x", 0.0, 1.0, resumed=True)]
        report = analyze(records)
        assert report.makespan == 0.0
        assert report.speedup is None
        assert report.critical_path == ()
        assert report.tasks_done == 1


class TestFailures:
    def test_failed_task_counts_as_ran(self) -> None:
        """A failed task's time counts; its skipped dependants add nothing."""
        records = [
            rec("a", "x", 0.0, 1.0),
            rec("b", "x", 1.0, 2.5, deps=("a",), state=TaskState.FAILED, error="boom"),
            rec("c", "y", None, None, deps=("b",), state=TaskState.SKIPPED),
        ]
        report = analyze(records)
        assert report.makespan == 2.5
        assert report.total_task_time == 2.5
        assert path_ids(report) == ["a", "b"]
        assert report.time_to_first_result == 1.0

    def test_all_failed(self) -> None:
        """With no done task there is no first result, but timing is still measured."""
        records = [
            rec("a", "x", 0.0, 1.0, state=TaskState.FAILED),
            rec("b", "x", 0.0, 0.5, state=TaskState.FAILED),
        ]
        report = analyze(records)
        assert report.time_to_first_result is None
        assert report.makespan == 1.0
        assert report.speedup == 1.5
        assert report.efficiency == 0.75
        assert report.tasks_failed == 2

    def test_cancelled_before_and_during(self) -> None:
        """A task cancelled mid-flight counts its time; one cancelled before starting does not."""
        records = [
            rec("a", "x", 0.0, 2.0),
            rec("b", "x", 0.0, 1.0, state=TaskState.CANCELLED),
            rec("c", "x", None, None, state=TaskState.CANCELLED),
        ]
        report = analyze(records)
        assert report.total_task_time == 3.0
        assert report.tasks_ran == 2

    def test_interrupted_without_end_ignored(self) -> None:
        """A task still running when the run stopped has no end and no timing."""
        records = [
            rec("a", "x", 0.0, 2.0),
            rec("b", "x", 1.0, None, state=TaskState.INTERRUPTED),
        ]
        report = analyze(records)
        assert report.makespan == 2.0
        assert report.counts == {"done": 1, "interrupted": 1}


class TestDegenerate:
    def test_empty_run(self) -> None:
        """No records: zeros, Nones and empty collections, no exception."""
        report = analyze([])
        assert report.makespan == 0.0
        assert report.total_task_time == 0.0
        assert report.speedup is None
        assert report.efficiency is None
        assert report.peak_concurrency == 0
        assert report.critical_path == ()
        assert report.critical_path_length == 0.0
        assert report.critical_path_queue_share is None
        assert report.agents == {}
        assert report.counts == {}
        assert report.time_to_first_result is None
        assert report.first_start is None and report.last_end is None
        assert report.static is None

    def test_zero_makespan(self) -> None:
        """Zero-length tasks give makespan 0 and undefined ratios, not a division error."""
        records = [rec("a", "x", 1.0, 1.0), rec("b", "x", 1.0, 1.0)]
        report = analyze(records, max_parallel=4)
        assert report.makespan == 0.0
        assert report.speedup is None
        assert report.efficiency is None
        assert report.peak_concurrency == 1
        assert report.agents["x"].utilisation is None
        assert report.critical_path_queue_share is None
        assert report.time_to_first_result == 1.0

    def test_end_before_start_is_untimed(self) -> None:
        """A record whose end precedes its start is treated as having no timing."""
        records = [rec("a", "x", 0.0, 1.0), rec("b", "x", 3.0, 2.0)]
        report = analyze(records)
        assert report.makespan == 1.0
        assert report.tasks_ran == 1

    def test_bad_arguments(self) -> None:
        """A non-positive latency_scale or max_parallel is rejected."""
        with pytest.raises(ValueError, match="latency_scale"):
            analyze([], latency_scale=0.0)
        with pytest.raises(ValueError, match="max_parallel"):
            analyze([], max_parallel=0)

    def test_report_is_frozen(self) -> None:
        """RunReport is immutable."""
        report = analyze([])
        with pytest.raises(FrozenInstanceError):
            report.makespan = 1.0  # type: ignore[misc]


class TestScaling:
    def test_unscaled_makespan(self) -> None:
        """latency_scale is carried through; the unscaled makespan divides by it."""
        report = analyze(diamond(), latency_scale=0.5, providers=["sim"])
        assert report.latency_scale == 0.5
        assert report.unscaled_makespan == 16.0
        assert report.makespan == 8.0
        assert report.providers == ("sim",)


def with_expected(records: list[TaskRecord], expected: dict[str, float]) -> list[TaskRecord]:
    for record in records:
        record.expected_latency = expected.get(record.task_id, 0.0)
    return records


class TestStatic:
    def test_absent_without_expected_latency(self) -> None:
        """No expected latencies, no static comparison."""
        assert analyze(diamond()).static is None

    def test_same_path_as_predicted(self) -> None:
        """The predicted longest path by expected latency is compared with the measured one."""
        records = with_expected(diamond(), {"split": 2.0, "a": 3.0, "b": 5.0, "release": 1.0})
        static = analyze(records).static
        assert static is not None
        assert static.predicted_path == ("split", "b", "release")
        assert static.predicted_length == 8.0
        assert static.predicted_scaled == 8.0
        assert static.measured_length == 7.0
        assert static.makespan_ratio == 1.0
        assert static.path_ratio == 0.875
        assert static.same_path

    def test_scaled_prediction(self) -> None:
        """Expected latencies are unscaled; the prediction for the run multiplies by the scale."""
        records = with_expected(diamond(), {"split": 2.0, "a": 3.0, "b": 5.0, "release": 1.0})
        static = analyze(records, latency_scale=0.5).static
        assert static is not None
        assert static.predicted_length == 8.0
        assert static.predicted_scaled == 4.0
        assert static.makespan_ratio == 2.0
        assert static.path_ratio == 1.75

    def test_same_steps_different_instance_is_same_path(self) -> None:
        """A fan-out's instances tie in the prediction; the chain is compared step by step."""
        records = [
            rec("split", "po", 0.0, 1.0),
            rec("impl[0]", "dev", 1.0, 3.0, deps=("split",)),
            rec("impl[1]", "dev", 1.0, 4.0, deps=("split",)),
            rec("note", "po", 4.0, 5.0, deps=("impl[0]", "impl[1]")),
        ]
        records = with_expected(records, {"split": 1.0, "impl[0]": 2.0, "impl[1]": 2.0, "note": 1.0})
        static = analyze(records).static
        assert static is not None
        assert static.predicted_path == ("split", "impl[0]", "note")
        assert [s.task_id for s in analyze(records).critical_path] == ["split", "impl[1]", "note"]
        assert static.same_path

    def test_different_path(self) -> None:
        """When the plan expected another branch to dominate, same_path is False."""
        records = with_expected(diamond(), {"split": 2.0, "a": 6.0, "b": 1.0, "release": 1.0})
        static = analyze(records).static
        assert static is not None
        assert static.predicted_path == ("split", "a", "release")
        assert static.predicted_length == 9.0
        assert not static.same_path

    def test_fan_in_prediction(self) -> None:
        """The prediction covers all instances, including tasks that never ran."""
        records = with_expected(fan(), {"plan": 1.0, "impl[3]": 4.0, "merge": 0.5})
        records.append(rec("later", "x", None, None, deps=("merge",), state=TaskState.SKIPPED))
        records[-1].expected_latency = 2.0
        static = analyze(records).static
        assert static is not None
        assert static.predicted_path == ("plan", "impl[3]", "merge", "later")
        assert static.predicted_length == 7.5
