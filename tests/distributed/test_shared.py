"""Two runner processes sharing a run through the real Redis on 127.0.0.1:6379: every task is
executed exactly once, and when one runner is killed mid-run the other finishes the run."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from agentfleet.store import RunStore

from ..redis_kit import REDIS_URL, redis_problem

WORKFLOW = """\
name: shared-layers
settings: {max_parallel: 6, cache: false}
agents:
  w: {provider: sim, options: {latency: {median: 0.8, sigma: 0.1}}}
tasks:
  - {id: a, agent: w, map: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], prompt: "a {{ item }}"}
  - {id: b, agent: w, map: a, prompt: "b {{ item }}"}
  - {id: c, agent: w, inputs: [b], prompt: "merge"}
"""
TASKS = 25


@pytest.fixture(autouse=True)
def _redis() -> None:
    problem = redis_problem()
    if problem:
        pytest.skip(problem)


def _start(args: list[str], tmp: Path, name: str, **env: str) -> subprocess.Popen[bytes]:
    with open(tmp / f"{name}.out", "wb") as out, open(tmp / f"{name}.err", "wb") as err:
        return subprocess.Popen([sys.executable, "-m", "agentfleet", *args], cwd=tmp, stdout=out, stderr=err,
                                env={**os.environ, **env}, start_new_session=True)


def _run_id(db: Path) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if db.exists():
            with sqlite3.connect(db) as conn:
                try:
                    row = conn.execute("SELECT id FROM runs LIMIT 1").fetchone()
                except sqlite3.OperationalError:
                    row = None
            if row is not None:
                return str(row[0])
        time.sleep(0.05)
    raise AssertionError("the first runner never created its run")


def _started(db: Path, run_id: str, n: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with sqlite3.connect(db) as conn:
            if conn.execute("SELECT COUNT(*) FROM events WHERE run_id=? AND kind='started'",
                            (run_id,)).fetchone()[0] >= n:
                return
        time.sleep(0.05)
    raise AssertionError("the run never got going")


class TestSharedRun:
    def test_two_runners_execute_every_task_exactly_once(self, tmp_path: Path) -> None:
        """Both runners work on the run; each task is executed by one of them, once."""
        (tmp_path / "flow.yaml").write_text(WORKFLOW, encoding="utf-8")
        db = tmp_path / "agentfleet.db"
        first = _start(["run", "flow.yaml", "--db", str(db), "--share", REDIS_URL, "--json"], tmp_path, "first")
        run_id = _run_id(db)
        _started(db, run_id, 1)
        second = _start(["join", run_id, "--db", str(db), "--json"], tmp_path, "second")
        assert first.wait(120) == 0, (tmp_path / "first.err").read_text()
        assert second.wait(120) == 0, (tmp_path / "second.err").read_text()
        one = json.loads((tmp_path / "first.out").read_text())
        two = json.loads((tmp_path / "second.out").read_text())
        assert one["status"] == two["status"] == "succeeded"
        assert one["shared"]["executed"] > 0 and two["shared"]["executed"] > 0  # the work was shared
        assert one["shared"]["executed"] + two["shared"]["executed"] == TASKS  # ... and none done twice
        with RunStore(db, create=False) as store:
            assert store.get_run(run_id).status == "succeeded"
            attempts = store.attempts(run_id)
            records = store.load_tasks(run_id)
        assert len(attempts) == TASKS and len({a[0] for a in attempts}) == TASKS
        assert len(records) == TASKS and all(r.state == "done" for r in records)

    def test_a_killed_runner_s_tasks_are_taken_over_and_the_run_finishes(self, tmp_path: Path) -> None:
        """kill -9 of the first runner mid-run: its claims lapse, the second runs them and ends the run."""
        (tmp_path / "flow.yaml").write_text(WORKFLOW, encoding="utf-8")
        db = tmp_path / "agentfleet.db"
        ttl = {"AGENTFLEET_CLAIM_TTL": "1.5"}
        first = _start(["run", "flow.yaml", "--db", str(db), "--share", REDIS_URL, "--json"], tmp_path, "first",
                       **ttl)
        run_id = _run_id(db)
        _started(db, run_id, 1)
        second = _start(["join", run_id, "--db", str(db), "--json"], tmp_path, "second", **ttl)
        _started(db, run_id, 10)  # both at work
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(10)
        assert second.wait(120) == 0, (tmp_path / "second.err").read_text()
        two = json.loads((tmp_path / "second.out").read_text())
        assert two["status"] == "succeeded" and two["shared"]["executed"] > 0
        with RunStore(db, create=False) as store:
            assert store.get_run(run_id).status == "succeeded"
            records = store.load_tasks(run_id)
        assert len(records) == TASKS and all(r.state == "done" for r in records)
