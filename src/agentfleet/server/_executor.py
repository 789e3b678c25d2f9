"""Runner processes: claim queued runs from the run database and execute them.

# Design
# The API process stores a submitted run as 'queued' and answers; an ``Executor`` (in a runner
# process started by ``agentfleet serve``, or in the API process itself with ``--workers 0``) claims
# queued runs, oldest first, in one IMMEDIATE transaction each (two runners never take the same run),
# and executes up to ``max_runs`` at once with the same Runner as ``agentfleet run``, so results,
# events and checkpoints land in the store exactly as from the command line. A run asked to stop
# (``cancel`` flag) is cancelled within one poll and marked 'cancelled'. On SIGTERM the runs in hand
# are interrupted and put back in the queue, so the next start of the service resumes them; a run
# whose runner died without that (kill -9) is found orphaned and queued again by the service.
# A background flush writes buffered events every ``flush`` seconds, so streams see a task start
# even while nothing finishes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time

from ..errors import AgentFleetError
from ..store import RunRow, RunStore

__all__ = ["Executor", "main"]

log = logging.getLogger("agentfleet.server")


class Executor:
    """Claims queued runs from the store at ``db`` and runs up to ``max_runs`` of them at once."""

    def __init__(self, db: str, *, max_runs: int = 32, poll: float = 0.05, flush: float = 0.1,
                 watch_parent: bool = False) -> None:
        self.db = db
        self.max_runs = max_runs
        self.poll = poll
        self.flush = flush
        self.watch_parent = watch_parent
        self.running: dict[str, asyncio.Task[None]] = {}
        self._cancelled: set[str] = set()  # runs stopped because the API asked (not a shutdown)
        self._stop = asyncio.Event()
        self.store: RunStore | None = None
        self.finished = 0

    def stop(self) -> None:
        self._stop.set()

    async def serve(self) -> None:
        """Claim and run until ``stop()``; then interrupt the runs in hand and queue them again."""
        store = self.store = RunStore(self.db)
        parent = os.getppid()
        last_flush = time.monotonic()
        try:
            while not self._stop.is_set():
                free = self.max_runs - len(self.running)
                for run_id in store.claim_queued(free):
                    self.running[run_id] = asyncio.get_running_loop().create_task(self._execute(run_id))
                for run_id in store.cancel_requested(self.running):
                    if run_id not in self._cancelled:
                        self._cancelled.add(run_id)
                        self.running[run_id].cancel()
                if time.monotonic() - last_flush >= self.flush:
                    last_flush = time.monotonic()
                    store.flush()
                if self.watch_parent and os.getppid() != parent:
                    log.warning("the service's process is gone; runner %d stops", os.getpid())
                    break
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll):
                        await self._stop.wait()
        finally:
            tasks = list(self.running.values())
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            store.close()

    async def _execute(self, run_id: str) -> None:
        store = self.store
        assert store is not None
        try:
            row = store.get_run(run_id)
            await self._run(store, row)
        except asyncio.CancelledError:
            if run_id in self._cancelled:
                store.end_open_run(run_id, "cancelled", "cancelled by request (POST /v1/runs/{id}/cancel)")
            elif store.requeue_interrupted(run_id):
                log.info("run %s interrupted by shutdown; queued again to resume", run_id)
        except AgentFleetError as exc:
            # Rejected before its tasks started (a provider that cannot be built, say): the run fails
            # with the message, like ``agentfleet run`` exiting 2 with it.
            store.end_open_run(run_id, "failed", str(exc))
        except Exception as exc:
            log.exception("run %s failed inside the runtime", run_id)
            store.end_open_run(run_id, "failed", f"internal error: {type(exc).__name__}: {exc}")
        finally:
            self.running.pop(run_id, None)
            self._cancelled.discard(run_id)
            self.finished += 1

    async def _run(self, store: RunStore, row: RunRow) -> None:
        from .._api import runner_for
        from .._insights import save_bottlenecks
        from .._report import bottlenecks
        from ..analysis import analyze
        from ..spec import parse_workflow

        if row.spec_text is None:
            raise AgentFleetError(f"run {row.id} has no stored workflow to run")
        spec = parse_workflow(row.spec_text, file=row.spec_path or "<stored spec>", overrides=row.overrides or None)
        runner = runner_for(spec, store, row.options, spec_path=row.spec_path, overrides=row.overrides)
        resume = row.sessions > 1 or bool(store.load_tasks(row.id))  # queued again after a crash or shutdown
        result = await (runner.run(resume=row.id) if resume else runner.run(start=row.id))
        # Kept beside the run like ``agentfleet run`` does: recurring bottlenecks across runs. Never
        # costs the run its verdict.
        try:
            rep = analyze(result.records, max_parallel=result.max_parallel, latency_scale=result.latency_scale)
            if result.run_id is not None:
                save_bottlenecks(store, result.run_id, bottlenecks(result.records, rep, runner.plan))
        except Exception:
            log.warning("run %s: could not keep its bottlenecks", result.run_id, exc_info=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="agentfleet-runner", description="Run queued agentfleet runs.")
    parser.add_argument("--db", required=True)
    parser.add_argument("--max-runs", type=int, default=32)
    parser.add_argument("--nice", type=int, default=5)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """A runner process of ``agentfleet serve``: runs queued runs until SIGTERM or its parent dies."""
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s runner[%(process)d] %(levelname)s %(message)s")
    if args.nice:
        with contextlib.suppress(OSError):
            os.nice(args.nice)
    executor = Executor(args.db, max_runs=args.max_runs, watch_parent=True)

    async def go() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, executor.stop)
        await executor.serve()

    try:
        asyncio.run(go())
    except AgentFleetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0
