"""Runner-side of the service: claiming queued runs exactly once, running them like the CLI does,
cancelling on request, and putting interrupted runs back in the queue on shutdown."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from agentfleet.server import Executor
from agentfleet.spec import parse_workflow
from agentfleet.store import RunStore

FLOW = """\
name: pair
agents:
  a: {{provider: sim, options: {{latency: {{median: {latency}, sigma: 0.01}}}}}}
tasks:
  - {{id: one, agent: a, prompt: "first"}}
  - {{id: two, agent: a, prompt: "second", depends_on: [one]}}
"""


def _queue(db: str, n: int, latency: float = 0.01) -> list[str]:
    text = FLOW.format(latency=latency)
    spec = parse_workflow(text)
    with RunStore(db) as store:
        return [store.create_run(name=spec.name, spec_path="<inline>", spec_text=spec.source_text,
                                 options={"service": True}, queued=True) for _ in range(n)]


async def _until(predicate: object, timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not predicate():  # type: ignore[operator]
            await asyncio.sleep(0.02)


class TestClaims:
    def test_concurrent_claims_take_each_run_once(self, tmp_path: Path) -> None:
        """Four connections claiming at once from 200 queued runs: every run claimed by exactly one."""
        db = str(tmp_path / "a.db")
        queued = _queue(db, 200)
        got: list[list[str]] = [[] for _ in range(4)]

        def claim(i: int) -> None:
            with RunStore(db) as store:
                while batch := store.claim_queued(7):
                    got[i].extend(batch)

        threads = [threading.Thread(target=claim, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        claimed = [run for part in got for run in part]
        assert sorted(claimed) == sorted(queued)  # all of them, none twice
        with RunStore(db) as store:
            assert store.queued_count() == 0
            assert set(store.statuses(queued).values()) == {"running"}

    def test_claims_come_oldest_first(self, tmp_path: Path) -> None:
        """The queue is first in, first out."""
        db = str(tmp_path / "a.db")
        queued = _queue(db, 5)
        with RunStore(db) as store:
            assert store.claim_queued(3) == queued[:3]
            assert store.claim_queued(3) == queued[3:]
            assert store.claim_queued(3) == []

    def test_a_queued_run_cancelled_is_never_claimed(self, tmp_path: Path) -> None:
        """Cancelling a queued run ends it at once; a runner never sees it."""
        db = str(tmp_path / "a.db")
        first, second = _queue(db, 2)
        with RunStore(db) as store:
            assert store.request_cancel(first) == "cancelled"
            assert store.claim_queued(5) == [second]
            assert store.request_cancel(second) == "cancelling"
            assert store.get_run(first).status == "cancelled"


    def test_cancelling_a_run_whose_process_is_gone_ends_it(self, tmp_path: Path) -> None:
        """A 'running' run with no live process (a crash) is cancelled at once: nobody else would."""
        db = str(tmp_path / "a.db")
        (run,) = _queue(db, 1)
        with RunStore(db) as store:
            store.claim_queued(1)
            store._db.execute("UPDATE runs SET pid = 999999999 WHERE id = ?", (run,))  # a pid that is not running
            assert store.request_cancel(run) == "cancelled"
            assert store.get_run(run).status == "cancelled"


    def test_the_cli_does_not_resume_a_run_queued_for_the_service(self, tmp_path: Path) -> None:
        """``agentfleet resume`` of a queued run is refused (the service will run it), exit 2."""
        from typer.testing import CliRunner

        from agentfleet.cli import app

        db = str(tmp_path / "a.db")
        (run,) = _queue(db, 1)
        result = CliRunner().invoke(app, ["resume", run, "--db", db])
        assert result.exit_code == 2
        assert "queued for agentfleet serve" in result.output
        with RunStore(db) as store:
            assert store.get_run(run).status == "queued"


class TestExecutor:
    def test_runs_queued_runs_to_the_end(self, tmp_path: Path) -> None:
        """Every queued run is executed once and stored like a CLI run (tasks, results, events)."""
        asyncio.run(self._runs_queued_runs_to_the_end(tmp_path))

    async def _runs_queued_runs_to_the_end(self, tmp_path: Path) -> None:
        db = str(tmp_path / "a.db")
        queued = _queue(db, 12)
        executor = Executor(db, max_runs=4, poll=0.01)
        serving = asyncio.create_task(executor.serve())
        with RunStore(db) as store:
            await _until(lambda: set(store.statuses(queued).values()) == {"succeeded"})
            for run in queued:
                records = store.load_tasks(run)
                assert [r.state for r in records] == ["done", "done"]
                assert all(r.attempts == 1 for r in records)
                assert {e[2] for e in store.events(run)} >= {"started", "done"}
        executor.stop()
        await serving

    def test_cancel_request_stops_a_running_run(self, tmp_path: Path) -> None:
        """A running run flagged for cancel ends 'cancelled'; its finished tasks are kept."""
        asyncio.run(self._cancel_request_stops_a_running_run(tmp_path))

    async def _cancel_request_stops_a_running_run(self, tmp_path: Path) -> None:
        db = str(tmp_path / "a.db")
        (run,) = _queue(db, 1, latency=0.3)
        executor = Executor(db, poll=0.01)
        serving = asyncio.create_task(executor.serve())
        with RunStore(db) as store:
            await _until(lambda: [r.state for r in store.load_tasks(run)][:1] == ["done"])
            assert store.request_cancel(run) == "cancelling"
            await _until(lambda: store.statuses([run])[run] != "running")
            row = store.get_run(run)
            assert row.status == "cancelled" and "cancelled by request" in (row.error or "")
            assert {r.task_id: r.state for r in store.load_tasks(run)}["one"] == "done"
            assert store.request_cancel(run) is None  # already ended
        executor.stop()
        await serving

    def test_shutdown_queues_interrupted_runs_again_and_the_next_runner_resumes(self, tmp_path: Path) -> None:
        """Stopping a runner mid-run puts the run back in the queue; the next runner resumes it."""
        asyncio.run(self._shutdown_queues_interrupted_runs_again_and_the_next_runner_resumes(tmp_path))

    async def _shutdown_queues_interrupted_runs_again_and_the_next_runner_resumes(self, tmp_path: Path) -> None:
        db = str(tmp_path / "a.db")
        (run,) = _queue(db, 1, latency=0.3)
        first = Executor(db, poll=0.01)
        serving = asyncio.create_task(first.serve())
        with RunStore(db) as store:
            await _until(lambda: [r.state for r in store.load_tasks(run)][:1] == ["done"])
            first.stop()
            await serving
            assert store.get_run(run).status == "queued"
            second = Executor(db, poll=0.01)
            serving = asyncio.create_task(second.serve())
            await _until(lambda: store.statuses([run])[run] == "succeeded")
            second.stop()
            await serving
            records = {r.task_id: r for r in store.load_tasks(run)}
            assert records["one"].resumed and not records["two"].resumed
            assert store.get_run(run).sessions == 2

    def test_a_run_that_cannot_start_fails_with_the_reason(self, tmp_path: Path) -> None:
        """A stored workflow whose provider cannot be built fails the run with the message."""
        asyncio.run(self._a_run_that_cannot_start_fails_with_the_reason(tmp_path))

    async def _a_run_that_cannot_start_fails_with_the_reason(self, tmp_path: Path) -> None:
        db = str(tmp_path / "a.db")
        text = FLOW.format(latency=0.01).replace("provider: sim", "provider: nosuchprovider")
        with RunStore(db) as store:
            run = store.create_run(name="pair", spec_path="<inline>", spec_text=text, options={"service": True},
                                   queued=True)
        executor = Executor(db, poll=0.01)
        serving = asyncio.create_task(executor.serve())
        with RunStore(db) as store:
            await _until(lambda: store.statuses([run])[run] != "queued" and store.statuses([run])[run] != "running")
            row = store.get_run(run)
            assert row.status == "failed" and "nosuchprovider" in (row.error or "")
        executor.stop()
        await serving

