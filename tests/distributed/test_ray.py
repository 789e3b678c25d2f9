"""The Ray executor on a local Ray (``ray.init(num_cpus=2)``): the same results as local, a killed
actor replaced with its task retried once, and resume of a run started on Ray."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentfleet.runtime import Runner
from agentfleet.spec import parse_workflow
from agentfleet.store import RunStore

ray = pytest.importorskip("ray", reason="ray not installed: pip install 'agentfleet[ray]'")

FLOW = """\
name: ray-layers
settings: {{max_parallel: 8, cache: false}}
agents:
  writer:
    provider: sim
    pool: {{size: 2}}
    options:
      latency: {{median: {latency}, sigma: 0.3}}
      tokens_out: [20, 60]
tasks:
  - {{id: plan, agent: writer, prompt: "plan the work"}}
  - {{id: part, agent: writer, map: [a, b, c, d, e, f], inputs: [plan], prompt: "do {{{{ item }}}}"}}
  - {{id: merge, agent: writer, inputs: [part], prompt: "merge {{{{ inputs.part }}}}"}}
"""


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        yield
    finally:
        ray.shutdown()


def _run(executor: str, latency: float = 0.02, *, seed: int = 7, store: RunStore | None = None,
         resume: str | None = None) -> Any:
    spec = parse_workflow(FLOW.format(latency=latency))
    runner = Runner(spec, executor=executor, seed=seed, store=store)
    return runner, asyncio.run(runner.run(resume=resume))


class TestRayExecutor:
    def test_same_results_as_local(self) -> None:
        """Sim provider, fixed seed: every task's output and tokens are the same on Ray and locally."""
        _, local = _run("local")
        runner, remote = _run("ray")
        assert local.ok and remote.ok
        assert remote.outputs == local.outputs
        assert {r.task_id: (r.tokens_in, r.tokens_out) for r in remote.records} == \
               {r.task_id: (r.tokens_in, r.tokens_out) for r in local.records}
        provider = runner._providers["writer"]
        assert type(provider).__name__ == "RayProvider" and provider.calls == len(remote.records)

    def test_a_killed_actor_is_replaced_and_its_task_retried_once(self) -> None:
        """An actor killed mid-call: the run still succeeds; the actor is replaced, the task retried."""
        spec = parse_workflow(FLOW.format(latency=0.4))
        runner = Runner(spec, executor="ray", seed=3)
        killed: list[Any] = []

        def on_event(event: Any) -> None:
            if event.kind == "started" and event.instance.id == "part[2]" and not killed:
                provider = runner._providers["writer"]
                busiest = max(range(len(provider._actors)), key=provider._inflight.__getitem__)
                killed.append(provider._actors[busiest])
                ray.kill(killed[0])

        runner.subscribe(on_event)
        result = asyncio.run(runner.run())
        assert killed and result.ok, result.failure
        assert runner._providers["writer"].replaced >= 1
        retried = [r for r in result.records if r.attempts > 1]
        assert retried and all(r.attempts == 2 for r in retried)  # once, not more

    def test_resume_of_a_run_started_on_ray(self, tmp_path: Path) -> None:
        """A Ray run interrupted midway resumes (on Ray) with its finished tasks kept."""
        db = tmp_path / "a.db"
        spec = parse_workflow(FLOW.format(latency=0.3))
        with RunStore(db) as store:
            runner = Runner(spec, executor="ray", seed=5, store=store)

            async def interrupt() -> None:
                task = asyncio.ensure_future(runner.run())
                while runner.scheduler is None or not any(
                        i.record.state == "done" for i in runner.scheduler.instances.values()):
                    await asyncio.sleep(0.02)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

            asyncio.run(interrupt())
            run_id = runner.run_id
            assert run_id is not None and store.get_run(run_id).status == "interrupted"
            done_before = {r.task_id for r in store.load_tasks(run_id) if r.state == "done"}
            _, result = _run("ray", 0.3, seed=5, store=store, resume=run_id)
            assert result.ok
            records = {r.task_id: r for r in result.records}
            assert done_before and all(records[t].resumed for t in done_before)
