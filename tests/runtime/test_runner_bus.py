"""The runner on the message bus: batched progress, streamed results, agents asking each other,
DAG-aware pool warming and pool limits, on virtual time."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

import agentfleet
from agentfleet._types import ProviderRequest, TaskRecord
from agentfleet.errors import AgentFleetError
from agentfleet.messaging import InProcessBus
from agentfleet.runtime import Runner
from agentfleet.testing import run_virtual
from tests.runtime.kit import build, python, rec, run, sim


def chain_and_fan() -> Any:
    return build(
        [{"id": "a", "agent": "s"}, {"id": "b", "agent": "s", "depends_on": ["a"]},
         {"id": "w", "agent": "w", "map": [1, 2, 3], "depends_on": ["b"]}],
        {"s": sim(1.0), "w": sim(2.0)},
    )


class TestProgressOnTheBus:
    def test_watchers_receive_every_event_in_batches(self) -> None:
        """A watcher gets every state change of every task, batched, all delivered before run() returns."""
        seen: list[list[Any]] = []
        batches = 0

        def watcher(batch: list[list[Any]]) -> None:
            nonlocal batches
            batches += 1
            seen.extend(batch)

        runner = Runner(chain_and_fan())
        runner.watch(watcher)
        result = run_virtual(runner.run())
        assert result.ok
        done = [e[1] for e in seen if e[0] == "done"]
        assert sorted(done) == sorted(r.task_id for r in result.records)
        assert {e[0] for e in seen} >= {"ready", "started", "done"}
        assert batches < len(seen)  # batched, not one message per event

    def test_progress_is_published_on_a_shared_bus(self) -> None:
        """Another subscriber of the given bus sees the run's batches under run.<key>.progress."""

        async def main() -> tuple[list[Any], Any]:
            bus = InProcessBus()
            sub = bus.subscribe("run.k1.>", maxsize=10_000)
            result = await Runner(chain_and_fan(), bus=bus, run_key="k1").run()
            got = []
            while True:
                message = sub.get_nowait()
                if message is None:
                    break
                got.append(message)
            return got, result

        messages, result = run_virtual(main())
        topics = {m.topic for m in messages}
        assert topics == {"run.k1.progress", "run.k1.end"}
        events = [e for m in messages if m.topic.endswith("progress") for e in m.data]
        assert sum(1 for e in events if e[0] == "done") == len(result.records)
        assert messages[-1].data["status"] == "succeeded"


class TestStreamingResults:
    def test_results_arrive_as_tasks_finish(self) -> None:
        """Runner.results() yields each record when its task finishes, in finishing order, before the run ends."""

        async def main() -> list[tuple[str, float, float]]:
            loop = asyncio.get_running_loop()
            got = []
            async for record in Runner(chain_and_fan()).results():
                got.append((record.task_id, record.ended_at or 0.0, loop.time()))
            return got

        got = run_virtual(main())
        assert [t for t, _, _ in got][:2] == ["a", "b"]
        assert len(got) == 5
        first_seen = got[0][2]
        assert first_seen < got[-1][1] + 0.5  # the first result came long before the last task ended
        assert [end for _, end, _ in got] == sorted(end for _, end, _ in got)

    def test_public_stream_function(self) -> None:
        """agentfleet.stream() yields the records of a workflow file as they finish."""

        async def main() -> list[TaskRecord]:
            return [r async for r in agentfleet.stream(chain_and_fan())]

        records = run_virtual(main())
        assert [r.task_id for r in records][:2] == ["a", "b"] and all(r.state == "done" for r in records)

    def test_failed_tasks_are_streamed_too(self) -> None:
        """A failed task is yielded with its error; the stream then ends with the run."""

        async def boom(request: ProviderRequest) -> str:
            raise RuntimeError("no")

        spec = build([{"id": "x", "agent": "p"}], {"p": python(boom)})

        async def main() -> list[TaskRecord]:
            return [r async for r in Runner(spec).results()]

        records = run_virtual(main())
        assert [(r.task_id, r.state) for r in records] == [("x", "failed")]
        assert "no" in (records[0].error or "")

    def test_breaking_out_cancels_the_run(self) -> None:
        """Leaving the loop early (closing the generator) cancels the rest of the run."""

        async def main() -> Runner:
            runner = Runner(chain_and_fan())
            async with contextlib.aclosing(runner.results()) as results:
                async for _record in results:
                    break
            return runner

        runner = run_virtual(main())
        assert runner.result.status == "interrupted"


async def qa_asks(request: ProviderRequest) -> str:
    answer = await agentfleet.team().ask("developer", "Why integer cents?", timeout=30)
    return f"QA got: {answer}"


def qa_asks_sync(request: ProviderRequest) -> str:
    return "QA got: " + agentfleet.team().ask_sync("developer", "Why integer cents?", timeout=30)


async def developer(request: ProviderRequest) -> str:
    await asyncio.sleep(0.5)
    return f"answer to [{request.prompt}] from {request.agent}"


class TestAgentsAskEachOther:
    @pytest.mark.parametrize("qa", [qa_asks, qa_asks_sync], ids=["async", "sync-thread"])
    def test_qa_asks_a_developer_during_the_run(self, qa: Any) -> None:
        """A python agent asks another agent a question over the bus and uses the answer."""
        spec = build([{"id": "review", "agent": "qa"}], {"qa": python(qa), "developer": python(developer)})
        # the developer runs no task of its own, so it gets a pool only if some task uses it:
        spec.tasks.append(type(spec.tasks[0])(id="build", agent="developer"))
        result = run(spec)
        assert result.ok, result.failure
        out = rec(result, "review").output
        assert out.startswith("QA got: answer to [qa (working on review) asks you:")
        assert "Why integer cents?" in out and "from developer" in out

    def test_asking_an_unknown_agent_fails_clearly(self) -> None:
        """Asking an agent that has no pool raises a bus error naming the topic, failing the task."""

        async def asks_nobody(request: ProviderRequest) -> str:
            return await agentfleet.team().ask("ghost", "hello?", timeout=1)

        spec = build([{"id": "t", "agent": "p"}], {"p": python(asks_nobody)})
        result = run(spec)
        assert not result.ok
        assert "ghost" in (rec(result, "t").error or "")

    def test_team_outside_a_run_is_an_error(self) -> None:
        """agentfleet.team() outside a task says where it can be used."""
        with pytest.raises(AgentFleetError, match="only available while a task"):
            agentfleet.team()


WORKERS = Path(__file__).resolve().parents[1] / "fixtures" / "workers"


def worker_agent(script: str = "protocol_worker.py", *args: str, **pool: Any) -> dict[str, Any]:
    """A command agent in worker mode: one long-lived process per pool member."""
    return {"provider": "command", "command": [sys.executable, str(WORKERS / script), *args], "mode": "worker",
            "pool": pool or {"size": 1}}


async def half_second(request: ProviderRequest) -> str:
    await asyncio.sleep(0.5)
    return "ready"


def warm_spec(**pool: Any) -> Any:
    return build(
        [{"id": "a", "agent": "p"},
         {"id": "w", "agent": "w", "map": [1, 2, 3], "depends_on": ["a"], "prompt": "pid"}],
        {"p": python(half_second), "w": worker_agent(**(pool or {"size": 1}))},
    )


class TestPoolsInRuns:
    def test_lookahead_warms_the_next_steps_pool_before_it_is_needed(self) -> None:
        """When every dependency of a step has started, its pool is warmed to the fan-out's width:
        the three worker processes start while `a` runs, and no task waits for one."""
        result = asyncio.run(Runner(warm_spec()).run())
        assert result.ok, result.failure
        stats = result.pools["w"]
        assert stats.spawned == 3 and stats.cold_waits == 0 and stats.activations == 3
        pids = {result.output(f"w[{i}]") for i in range(3)}
        assert len(pids) == 3  # one process per member

    def test_prewarm_false_starts_members_on_demand(self) -> None:
        """With prewarm off, members start only when tasks ask for them (counted as cold waits)."""
        result = asyncio.run(Runner(warm_spec(size=1, prewarm=False)).run())
        assert result.ok, result.failure
        assert result.pools["w"].cold_waits >= 1

    def test_a_worker_crashing_mid_task_is_replaced_and_the_task_redone(self, tmp_path: Path) -> None:
        """A worker that dies mid-task is retired; the task runs again at once on a fresh worker
        (no retries configured) and the run succeeds."""
        marker = tmp_path / "crashed"
        spec = build([{"id": "t", "agent": "w", "prompt": "hello"}],
                     {"w": worker_agent("crash_once_worker.py", str(marker))})
        result = asyncio.run(Runner(spec).run())
        assert result.ok, result.failure
        pid, prompt = str(result.output("t")).split()
        assert prompt == "hello" and pid != marker.read_text()
        assert rec(result, "t").attempts == 2
        assert result.pools["w"].lost == 1

    def test_pool_max_limits_the_agents_concurrency(self) -> None:
        """pool.max bounds how many of the agent's tasks run at once (the scheduler admits no more)."""
        spec = build([{"id": "w", "agent": "w", "map": list(range(6))}], {"w": sim(1.0)})
        spec.agents["w"].pool.max = 2
        spec.agents["w"].pool.size = 1
        result = run(spec)
        assert result.ok
        ends = sorted(r.ended_at or 0 for r in result.records)
        assert ends[-1] == pytest.approx(3.0)  # 6 tasks, 2 at a time, 1 s each
        assert result.pools["w"].peak_members <= 2

    def test_slot_pools_need_no_members(self) -> None:
        """Agents with nothing to warm (sim, python) get slots over their one provider: no spawns."""
        result = run(chain_and_fan())
        stats = result.pools["w"]
        assert stats.spawned == 0 and stats.spawn_failures == 0
        assert stats.activations == 3 and stats.peak_members == 3

    def test_pool_statistics_are_in_the_report(self) -> None:
        """The run's report carries each pool's spawns, failures and waits."""
        from agentfleet.analysis import analyze, report_to_dict

        result = asyncio.run(Runner(warm_spec()).run())
        report = analyze(result.records, pools={k: dataclasses.asdict(v) for k, v in result.pools.items()})
        data = report_to_dict(report)
        assert data["pools"]["w"]["spawned"] == 3
        assert data["pools"]["w"]["spawn_failures"] == 0


class TestRunnerOnRedis:
    def test_progress_and_questions_cross_processes_through_redis(self) -> None:
        """With a RedisBus, another process's bus sees the run's progress and end, and a task's
        question to another agent travels through Redis and back."""
        from tests.redis_kit import REDIS_URL, delete_namespace, redis_problem

        problem = redis_problem()
        if problem is not None:
            pytest.skip(problem)
        from agentfleet.messaging import RedisBus

        namespace = f"aftest-run-{uuid.uuid4().hex[:8]}"
        spec = build([{"id": "review", "agent": "qa"}, {"id": "build", "agent": "developer"}],
                     {"qa": python(qa_asks), "developer": python(developer)})

        async def main() -> tuple[Any, list[Any]]:
            watcher = RedisBus(REDIS_URL, namespace=namespace, block_ms=100)
            await watcher.connect()
            sub = watcher.subscribe("run.k9.>", maxsize=10_000)
            bus = RedisBus(REDIS_URL, namespace=namespace, block_ms=100)
            try:
                result = await Runner(spec, bus=bus, run_key="k9").run()
                messages = []
                while not messages or messages[-1].topic != "run.k9.end":
                    messages.append(await asyncio.wait_for(sub.get(), 5))
                return result, messages
            finally:
                await bus.aclose()
                await watcher.aclose()

        try:
            result, messages = asyncio.run(main())
        finally:
            delete_namespace(namespace)
        assert result.ok, result.failure
        assert "Why integer cents?" in rec(result, "review").output
        done = {e[1] for m in messages if m.topic.endswith("progress") for e in m.data if e[0] == "done"}
        assert done == {"review", "build"}
        assert messages[-1].data == {"run_id": None, "status": "succeeded"}

    def test_an_unreachable_redis_is_one_clear_error_before_the_run(self) -> None:
        """A RedisBus that cannot connect fails run() with a BusError naming the URL; nothing runs."""
        from agentfleet.errors import BusError
        from agentfleet.messaging import RedisBus

        calls: list[str] = []

        async def agent(request: ProviderRequest) -> str:
            calls.append(request.task_id)
            return "x"

        spec = build([{"id": "t", "agent": "p"}], {"p": python(agent)})
        bus = RedisBus("redis://127.0.0.1:1/0", connect_timeout=0.5)
        with pytest.raises(BusError, match=r"127\.0\.0\.1:1"):
            asyncio.run(Runner(spec, bus=bus).run())
        assert calls == []
