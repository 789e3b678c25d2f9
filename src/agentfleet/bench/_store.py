"""Benchmark results in SQLite, beside the runs: every raw sample, the environment, named baselines.

# Design
# Three tables in the run database (``.agentfleet/agentfleet.db`` by default): ``bench_runs`` (one
# per ``agentfleet bench run``, with the environment as JSON), ``bench_results`` (one per benchmark
# of it, with every raw sample as a JSON list: summaries are recomputed, never stored alone) and
# ``bench_baselines`` (a name pointing at a run; saving a name again moves it). Baselines are kept
# whatever else is removed.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import RunNotFound
from ..store._db import apply_schema, connect, transaction
from ._runner import BenchResult

__all__ = ["BenchRun", "BenchStore"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS bench_runs (
        id TEXT PRIMARY KEY,
        suite TEXT NOT NULL,
        created_at REAL NOT NULL,
        env TEXT NOT NULL,
        note TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS bench_results (
        run_id TEXT NOT NULL,
        name TEXT NOT NULL,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        loops INTEGER NOT NULL,
        processes INTEGER NOT NULL,
        samples TEXT NOT NULL,
        per_process TEXT NOT NULL,
        PRIMARY KEY (run_id, name)
    )""",
    """CREATE TABLE IF NOT EXISTS bench_baselines (
        name TEXT PRIMARY KEY,
        run_id TEXT NOT NULL,
        created_at REAL NOT NULL
    )""",
)


@dataclass(frozen=True)
class BenchRun:
    id: str
    suite: str
    created_at: float
    env: dict[str, Any]
    results: dict[str, BenchResult]
    note: str | None = None


class BenchStore:
    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = str(path)
        if not create and self.path != ":memory:" and not os.path.exists(self.path):
            raise RunNotFound("no benchmark results yet: no database at this path", path=self.path)
        self._db, self.path, _ = connect(path, create=True, what="the benchmark")
        apply_schema(self._db, _SCHEMA, self.path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> BenchStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def save(self, suite: str, results: Sequence[BenchResult], env: dict[str, Any], note: str | None = None) -> str:
        run_id = uuid.uuid4().hex[:10]
        with transaction(self._db):
            self._db.execute("INSERT INTO bench_runs (id, suite, created_at, env, note) VALUES (?, ?, ?, ?, ?)",
                             (run_id, suite, time.time(), json.dumps(env), note))
            self._db.executemany(
                "INSERT INTO bench_results VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [(run_id, r.name, r.kind, r.target, r.loops, r.processes, json.dumps(r.samples),
                  json.dumps(r.per_process)) for r in results])
        return run_id

    def save_baseline(self, name: str, run_id: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO bench_baselines (name, run_id, created_at) VALUES (?, ?, ?)",
                         (name, run_id, time.time()))

    def baselines(self) -> list[tuple[str, str, float, str]]:
        """(name, run id, saved at, suite), newest first."""
        rows = self._db.execute(
            "SELECT b.name, b.run_id, b.created_at, r.suite FROM bench_baselines b JOIN bench_runs r"
            " ON r.id = b.run_id ORDER BY b.created_at DESC").fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def baseline(self, name: str) -> BenchRun:
        row = self._db.execute("SELECT run_id FROM bench_baselines WHERE name = ?", (name,)).fetchone()
        if row is None:
            known = [b[0] for b in self.baselines()]
            hint = f" (saved: {', '.join(known)})" if known else " (none saved yet: --save-baseline NAME)"
            raise RunNotFound(f"no baseline named {name!r}{hint}", path=self.path)
        return self.run(row[0])

    def runs(self, suite: str | None = None, limit: int = 20) -> list[tuple[str, str, float, int]]:
        """(id, suite, created at, benchmarks), newest first."""
        rows = self._db.execute(
            "SELECT r.id, r.suite, r.created_at, COUNT(x.name) FROM bench_runs r LEFT JOIN bench_results x"
            " ON x.run_id = r.id WHERE (? IS NULL OR r.suite = ?) GROUP BY r.id ORDER BY r.created_at DESC LIMIT ?",
            (suite, suite, limit)).fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def run(self, run_id: str) -> BenchRun:
        if run_id == "latest":
            row = self._db.execute("SELECT id FROM bench_runs ORDER BY created_at DESC LIMIT 1").fetchone()
        else:
            row = self._db.execute("SELECT id FROM bench_runs WHERE id LIKE ? ORDER BY created_at DESC LIMIT 2",
                                   (run_id + "%",)).fetchone()
        if row is None:
            raise RunNotFound(f"no benchmark run {run_id!r}", path=self.path)
        head = self._db.execute("SELECT id, suite, created_at, env, note FROM bench_runs WHERE id = ?",
                                (row[0],)).fetchone()
        results = {}
        for name, kind, target, loops, processes, samples, per_process in self._db.execute(
                "SELECT name, kind, target, loops, processes, samples, per_process FROM bench_results"
                " WHERE run_id = ? ORDER BY rowid", (head[0],)):
            results[name] = BenchResult(name=name, kind=kind, target=target, samples=json.loads(samples), loops=loops,
                                        processes=processes, per_process=json.loads(per_process))
        return BenchRun(id=head[0], suite=head[1], created_at=head[2], env=json.loads(head[3]), results=results,
                        note=head[4])
