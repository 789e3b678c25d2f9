"""The scheduler's ordering, limits, fan-out modes and policies, on virtual time."""

from __future__ import annotations

import asyncio
from itertools import pairwise
from typing import Any

import pytest

from agentfleet.plan import build_plan
from agentfleet.runtime import Instance, Scheduler
from agentfleet.spec import Workflow
from agentfleet.testing import run_virtual


def make(tasks: list[dict[str, Any]], agents: dict[str, dict[str, Any]] | None = None, **settings: Any):
    wf = Workflow("t", **settings)
    for name, fields in (agents or {"a": {}}).items():
        wf.agent(name, **fields)
    for t in tasks:
        t = dict(t)
        wf.task(t.pop("id"), agent=t.pop("agent", "a"), **t)
    return build_plan(wf.build())


class Harness:
    """Runs a plan where each task sleeps for ``durations[step]`` and may fail."""

    def __init__(self, plan, durations=None, fail=(), outputs=None, **kw: Any) -> None:
        self.durations = durations or {}
        self.fail = set(fail)
        self.outputs = outputs or {}
        self.started: list[tuple[float, str]] = []
        self.scheduler = Scheduler(plan, self.execute, **kw)

    async def execute(self, inst: Instance) -> None:
        self.started.append((round(self.scheduler.now(), 6), inst.id))
        await asyncio.sleep(self.durations.get(inst.step.id, 1.0))
        if inst.id in self.fail or inst.step.id in self.fail:
            inst.record.error = f"{inst.id} broke"
            raise RuntimeError("boom")
        inst.record.output = self.outputs.get(inst.step.id, f"out-{inst.id}")

    def run(self) -> dict[str, Any]:
        run_virtual(self.scheduler.run())
        return {i: (inst.record.state, inst.record.started_at, inst.record.ended_at)
                for i, inst in self.scheduler.instances.items()}


class TestEventDriven:
    def test_task_starts_when_last_dependency_finishes(self) -> None:
        """No barrier: a task starts the instant its own dependencies are done."""
        plan = make([
            {"id": "a1"}, {"id": "a2", "depends_on": ["a1"]},
            {"id": "b"}, {"id": "c", "depends_on": ["a2", "b"]},
        ])
        h = Harness(plan, durations={"a1": 1, "a2": 1, "b": 5, "c": 1})
        states = h.run()
        assert states["a2"][1] == pytest.approx(1.0)
        assert states["c"][1] == pytest.approx(5.0)
        assert states["c"][2] == pytest.approx(6.0)

    def test_no_superstep_barrier(self) -> None:
        """Chain of 10 x 10 ms beside one 500 ms task finishes at 500 ms, not 590."""
        tasks = [{"id": "b0"}] + [{"id": f"a{i}", **({"depends_on": [f"a{i-1}"]} if i else {})} for i in range(10)]
        tasks.append({"id": "end", "depends_on": ["a9", "b0"]})
        durations = {f"a{i}": 0.01 for i in range(10)} | {"b0": 0.5, "end": 0.0}
        h = Harness(make(tasks), durations=durations)
        states = h.run()
        assert states["end"][2] == pytest.approx(0.5)

    def test_thousand_agents_wide_fanout_is_exact(self) -> None:
        """1,000 parallel 2 s tasks with enough slots finish in exactly 2 s of virtual time."""
        plan = make([{"id": "w", "map": list(range(1000))}, {"id": "j", "depends_on": ["w"]}],
                    max_parallel=1000)
        states = Harness(plan, durations={"w": 2.0, "j": 0.0}).run()
        assert len(states) == 1001
        assert states["j"][2] == pytest.approx(2.0)


class TestLimits:
    def test_max_parallel_is_respected(self) -> None:
        """With max_parallel 3, ten 1 s tasks take 4 s and never more than 3 run."""
        plan = make([{"id": "w", "map": list(range(10))}], max_parallel=3)
        h = Harness(plan)
        states = h.run()
        assert max(e for _, _, e in states.values()) == pytest.approx(4.0)
        assert h.scheduler.peak_running == 3

    def test_per_agent_concurrency(self) -> None:
        """An agent's max_concurrency caps its tasks while other agents use free slots."""
        plan = make([{"id": "x", "agent": "slow", "map": list(range(4))}, {"id": "y", "agent": "fast", "map": [1, 2]}],
                    agents={"slow": {"max_concurrency": 1}, "fast": {}}, max_parallel=10)
        states = Harness(plan).run()
        assert sorted(s for _, s, _ in [v for k, v in states.items() if k.startswith("x")]) == [0, 1, 2, 3]
        assert all(states[f"y[{i}]"][1] == 0 for i in range(2))

    def test_tier_priority_first(self) -> None:
        """A higher tier's ready task is started before a lower tier's."""
        plan = make([{"id": "low", "agent": "lo", "map": [1, 2]}, {"id": "high", "agent": "hi"}],
                    agents={"lo": {"tier": "secondary"}, "hi": {"tier": "orchestrator"}}, max_parallel=1)
        h = Harness(plan)
        h.run()
        assert h.started[0][1] == "high"

    def test_tier_reservation(self) -> None:
        """Slots reserved for a tier are kept from lower tiers while that tier has work to come."""
        tiers = {"orchestrator": {"priority": 3, "reserve": 0.5}, "primary": {"priority": 1}}
        plan = make([
            {"id": "bulk", "agent": "p", "map": list(range(4))},
            {"id": "gate", "agent": "p"},
            {"id": "boss", "agent": "o", "depends_on": ["gate"]},
        ], agents={"p": {"tier": "primary"}, "o": {"tier": "orchestrator"}}, max_parallel=2, tiers=tiers)
        h = Harness(plan, durations={"bulk": 1, "gate": 1, "boss": 1})
        states = h.run()
        boss_end = states["boss"][2]
        before = sorted((v[1], v[2]) for k, v in states.items() if k != "boss" and v[1] < boss_end)
        # Until the orchestrator's task is done, one slot stays free for it ...
        assert all(a_end <= b_start for (_, a_end), (b_start, _) in pairwise(before))
        assert states["boss"][1] == pytest.approx(states["gate"][2])
        # ... and then the reservation is released: two primary tasks run together.
        after = [v[1] for k, v in states.items() if k != "boss" and v[1] >= boss_end]
        assert len(after) >= 2 and after.count(min(after)) == 2

    def test_reservation_never_deadlocks(self) -> None:
        """A tier reserving every slot cannot starve the work its own tasks wait for."""
        tiers = {"orchestrator": {"priority": 3, "reserve": 1.0}, "primary": {"priority": 1}}
        plan = make([{"id": "work", "agent": "p"}, {"id": "boss", "agent": "o", "depends_on": ["work"]}],
                    agents={"p": {"tier": "primary"}, "o": {"tier": "orchestrator"}}, max_parallel=4, tiers=tiers)
        states = Harness(plan).run()
        assert states["boss"][0] == "done" and states["boss"][2] == pytest.approx(2.0)


class TestAdmission:
    def test_critical_path_first_beats_fifo(self) -> None:
        """With scarce slots, the long chain's head starts first under critical_path, last under fifo."""
        tasks = [{"id": f"s{i}"} for i in range(8)]
        tasks += [{"id": "c0"}] + [{"id": f"c{i}", "depends_on": [f"c{i-1}"]} for i in range(1, 5)]
        durations = {f"s{i}": 1.0 for i in range(8)} | {f"c{i}": 1.0 for i in range(5)}
        fast = Harness(make(tasks, admission="critical_path", max_parallel=2), durations=durations)
        slow = Harness(make(tasks, admission="fifo", max_parallel=2), durations=durations)
        end_fast = max(e for _, _, e in fast.run().values())
        end_slow = max(e for _, _, e in slow.run().values())
        assert fast.started[0][1] == "c0"
        assert end_fast < end_slow


class TestFanOut:
    def test_dynamic_map_expands_from_output(self) -> None:
        """A map over an upstream output's list creates one instance per item."""
        plan = make([
            {"id": "split", "output_schema": {"type": "object"}},
            {"id": "do", "map": "split.items", "inputs": ["split"]},
            {"id": "join", "inputs": ["do"]},
        ])
        h = Harness(plan, outputs={"split": {"items": ["a", "b", "c"]}})
        states = h.run()
        assert [k for k in states if k.startswith("do[")] == ["do[0]", "do[1]", "do[2]"]
        assert h.scheduler.instances["do[2]"].item == "c"
        assert h.scheduler.outputs("do") == ["out-do[0]", "out-do[1]", "out-do[2]"]

    def test_zip_map_starts_each_twin_as_soon_as_ready(self) -> None:
        """review[i] starts when implement[i] is done, not when all implements are done."""
        plan = make([
            {"id": "impl", "map": [3, 1, 2]},
            {"id": "review", "map": "impl", "inputs": ["impl"]},
        ])
        h = Harness(plan)
        h.durations = {"review": 1.0}

        async def execute(inst: Instance) -> None:
            await asyncio.sleep(inst.item if inst.step.id == "impl" else 1.0)

        h.scheduler._execute = execute
        states = h.run()
        assert states["review[1]"][1] == pytest.approx(1.0)
        assert states["review[0]"][1] == pytest.approx(3.0)

    def test_first_mode_cancels_losers(self) -> None:
        """mode first: the first success wins and the others are skipped."""
        plan = make([{"id": "race", "map": {"over": [3, 1, 2], "mode": "first"}},
                     {"id": "after", "depends_on": ["race"]}])
        h = Harness(plan)

        async def execute(inst: Instance) -> None:
            await asyncio.sleep(inst.item if inst.step.id == "race" else 0.5)

        h.scheduler._execute = execute
        states = h.run()
        assert states["race[1]"][0] == "done"
        assert states["race[0]"][0] == "skipped"
        assert states["after"][1] == pytest.approx(1.0)

    def test_quorum_mode(self) -> None:
        """mode quorum k ends the fan-out once k instances succeed."""
        plan = make([{"id": "q", "map": {"over": [1, 2, 3, 4], "mode": "quorum", "quorum": 2}},
                     {"id": "after", "depends_on": ["q"]}])
        h = Harness(plan)

        async def execute(inst: Instance) -> None:
            await asyncio.sleep(inst.item if inst.step.id == "q" else 0)

        h.scheduler._execute = execute
        states = h.run()
        assert [states[f"q[{i}]"][0] for i in range(4)] == ["done", "done", "skipped", "skipped"]
        assert states["after"][1] == pytest.approx(2.0)


class TestRaces:
    def test_zip_after_first_runs_only_the_winner(self) -> None:
        """A per-item step after a won race runs for the winner; the losers' items are not failures."""
        plan = make([{"id": "race", "map": {"over": [3, 1, 2], "mode": "first"}},
                     {"id": "after", "map": "race"}, {"id": "final", "depends_on": ["after"]}])
        h = Harness(plan)

        async def execute(inst: Instance) -> None:
            await asyncio.sleep(inst.item if inst.step.id == "race" else 1.0)

        h.scheduler._execute = execute
        states = h.run()
        assert states["after[1]"][0] == "done"
        assert states["after[0]"][0] == "skipped" and states["after[2]"][0] == "skipped"
        assert states["final"][0] == "done"
        assert h.scheduler.failure is None

    def test_won_quorum_with_a_loser_succeeds(self) -> None:
        """One failed voter does not fail a quorum that was reached."""
        plan = make([{"id": "q", "map": {"over": [1, 2, 3], "mode": "quorum", "quorum": 2}},
                     {"id": "after", "depends_on": ["q"]}])
        h = Harness(plan, fail={"q[0]"})
        states = h.run()
        assert states["q[0]"][0] == "failed"
        assert states["after"][0] == "done"
        assert h.scheduler.failure is None

    def test_lost_quorum_fails_the_run(self) -> None:
        """A quorum that can no longer be reached fails the step."""
        plan = make([{"id": "q", "map": {"over": [1, 2, 3], "mode": "quorum", "quorum": 2}},
                     {"id": "after", "depends_on": ["q"]}], policy="continue")
        h = Harness(plan, fail={"q[0]", "q[1]"})
        states = h.run()
        assert states["after"][0] == "skipped"
        assert h.scheduler.failure is not None and h.scheduler.failure[0] == "q"

    def test_quorum_larger_than_dynamic_fanout_fails(self) -> None:
        """quorum k over fewer than k dynamic items fails instead of silently lowering k."""
        plan = make([{"id": "split", "output_schema": {"type": "object"}},
                     {"id": "q", "map": {"over": "split.items", "mode": "quorum", "quorum": 5}, "inputs": ["split"]}],
                    policy="continue")
        h = Harness(plan, outputs={"split": {"items": [1, 2, 3]}})
        h.run()
        assert h.scheduler.failure == ("q", "quorum 5 but q has only 3 item(s)")


class TestPolicies:
    def test_fail_fast_cancels_the_rest(self) -> None:
        """fail_fast: one failure cancels running and pending tasks."""
        plan = make([{"id": "bad"}, {"id": "long"}, {"id": "after", "depends_on": ["long"]}], policy="fail_fast")
        h = Harness(plan, durations={"bad": 1, "long": 10}, fail={"bad"})
        states = h.run()
        assert states["bad"][0] == "failed"
        assert states["long"][0] == "cancelled"
        assert states["after"][0] == "cancelled"
        assert h.scheduler.failure == ("bad", "bad broke")

    def test_continue_runs_everything_independent(self) -> None:
        """continue: dependants of a failure are skipped, independent work finishes."""
        plan = make([{"id": "bad"}, {"id": "dep", "depends_on": ["bad"]}, {"id": "dep2", "depends_on": ["dep"]},
                     {"id": "ok"}, {"id": "ok2", "depends_on": ["ok"]}], policy="continue")
        states = Harness(plan, fail={"bad"}).run()
        assert states["dep"][0] == "skipped" and states["dep2"][0] == "skipped"
        assert states["ok2"][0] == "done"

    def test_continue_zip_skips_only_the_twin(self) -> None:
        """continue: a failed item skips only its own per-item successor."""
        plan = make([{"id": "i", "map": [0, 1, 2]}, {"id": "r", "map": "i"}], policy="continue")
        states = Harness(plan, fail={"i[1]"}).run()
        assert states["r[1]"][0] == "skipped"
        assert states["r[0]"][0] == "done" and states["r[2]"][0] == "done"

    def test_resume_skips_done_tasks(self) -> None:
        """Instances done in a previous session are restored, not executed again."""
        from agentfleet._types import TaskRecord

        plan = make([{"id": "a"}, {"id": "b", "depends_on": ["a"]}])
        prev = {"a": TaskRecord(task_id="a", agent="a", state="done", output="kept", started_at=0, ended_at=1)}
        h = Harness(plan, previous=prev)
        h.run()
        assert [i for _, i in h.started] == ["b"]
        assert h.scheduler.instances["a"].record.output == "kept"


class TestThrottle:
    """The resource guard's lever: fewer CPU-bound tasks at once, low tiers held, then released."""

    def test_throttle_lowers_an_agents_parallelism_and_lifting_it_restores_it(self) -> None:
        plan = make([{"id": "w", "agent": "cpu", "map": {"over": list(range(8))}}],
                    {"cpu": {"provider": "python"}}, max_parallel=4)
        h = Harness(plan)

        async def go() -> None:
            h.scheduler.throttle(["cpu"], 0.5, None)  # 4 -> 2 at once
            loop = asyncio.get_running_loop()
            loop.call_later(2.5, h.scheduler.throttle, ["cpu"], 1.0, None)
            await h.scheduler.run()

        run_virtual(go())
        starts = [t for t, _ in h.started]
        assert starts == [0, 0, 1, 1, 2, 2, 2.5, 2.5]

    def test_held_tiers_wait_but_never_stall_the_run(self) -> None:
        plan = make([{"id": "hi", "agent": "a", "tier": "primary"},
                     {"id": "lo", "agent": "a", "tier": "secondary"},
                     {"id": "lo2", "agent": "a", "tier": "secondary", "depends_on": ["hi"]}], max_parallel=4)
        h = Harness(plan, durations={"hi": 3.0})

        async def go() -> None:
            h.scheduler.throttle([], 1.0, 2)  # below "primary" (2) waits while something runs
            await h.scheduler.run()

        run_virtual(go())
        assert h.started[0] == (0, "hi")
        # nothing else may start while hi runs; afterwards lo goes first (nothing running), then lo2
        assert next(s for s in h.started if s[1] != "hi")[0] == 3.0
