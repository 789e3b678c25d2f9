"""Runs, task attempts, events and results in SQLite (WAL).

# Design
# One connection per RunStore, used from the event loop's thread. Writes are small
# and WAL with synchronous=NORMAL makes a commit cost tens of microseconds, so the
# runner commits a task's result *before* the scheduler counts the task done: a run
# killed at any instant loses at most the tasks that were still running. State
# changes and events are buffered and written in the same transaction as the next
# result, or by a periodic flush, so progress costs no extra fsyncs.
# Times in task rows are seconds relative to the start of the session that ran them.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._types import TaskRecord, TaskState
from ..errors import RunNotFound, StoreError
from ._db import transaction, user_error

__all__ = ["DEFAULT_DB", "TERMINAL", "RunRow", "RunStore"]

DEFAULT_DB = os.path.join(".agentfleet", "agentfleet.db")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    ended_at REAL,
    spec_path TEXT,
    spec_text TEXT,
    overrides TEXT NOT NULL DEFAULT '{}',
    options TEXT NOT NULL DEFAULT '{}',
    sessions INTEGER NOT NULL DEFAULT 1,
    error TEXT,
    summary TEXT
);
CREATE TABLE IF NOT EXISTS tasks (
    run_id TEXT NOT NULL REFERENCES runs(id),
    task_id TEXT NOT NULL,
    agent TEXT NOT NULL,
    state TEXT NOT NULL,
    tier TEXT NOT NULL DEFAULT '',
    depends_on TEXT NOT NULL DEFAULT '[]',
    ready_at REAL, started_at REAL, ended_at REAL,
    attempts INTEGER NOT NULL DEFAULT 0,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    provider TEXT NOT NULL DEFAULT '',
    error TEXT,
    expected_latency REAL NOT NULL DEFAULT 0,
    resumed INTEGER NOT NULL DEFAULT 0,
    session INTEGER NOT NULL DEFAULT 1,
    context_tokens INTEGER NOT NULL DEFAULT 0,
    naive_tokens INTEGER NOT NULL DEFAULT 0,
    score REAL,
    meta TEXT,
    PRIMARY KEY (run_id, task_id)
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    session INTEGER NOT NULL,
    state TEXT NOT NULL,
    started_at REAL, ended_at REAL,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    PRIMARY KEY (run_id, task_id, session, attempt)
);
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    output TEXT NOT NULL,
    PRIMARY KEY (run_id, task_id)
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    session INTEGER NOT NULL,
    t REAL NOT NULL,
    kind TEXT NOT NULL,
    task_id TEXT,
    data TEXT
);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id, id);
CREATE TABLE IF NOT EXISTS run_extras (
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run_id, kind)
);
CREATE TABLE IF NOT EXISTS metric_history (
    run_id TEXT NOT NULL,
    workflow TEXT NOT NULL,
    at REAL NOT NULL,
    metric TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (run_id, metric)
);
CREATE INDEX IF NOT EXISTS metric_history_workflow ON metric_history(workflow, at);
CREATE INDEX IF NOT EXISTS runs_created ON runs(created_at);
"""
# After the columns added to older databases exist: the service's queue, oldest first.
_QUEUE_INDEXES = ("CREATE INDEX IF NOT EXISTS runs_queued ON runs(created_at) WHERE status = 'queued'",
                  "CREATE INDEX IF NOT EXISTS runs_status ON runs(status)")
#: a run in one of these states will not change again unless resumed
TERMINAL = frozenset({"succeeded", "failed", "interrupted", "cancelled"})
_RUN_COLUMNS = ("id, name, status, created_at, ended_at, spec_path, spec_text, overrides, options, sessions,"
                " error, summary, started_at")


@dataclass(frozen=True, slots=True)
class RunRow:
    """One run as listed by ``agentfleet runs``."""

    id: str
    name: str
    status: str
    created_at: float
    ended_at: float | None
    spec_path: str | None
    spec_text: str | None
    overrides: dict[str, Any]
    options: dict[str, Any]
    sessions: int
    error: str | None
    summary: dict[str, Any] | None
    #: when a process began executing it (Unix seconds; None while queued)
    started_at: float | None = None


class RunStore:
    """The run database. Open with a path; ``":memory:"`` works for tests."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_DB, *, create: bool = True) -> None:
        self.path = str(path)
        if not create and self.path != ":memory:" and not os.path.exists(self.path):
            raise RunNotFound("no runs recorded yet: no run database at this path", path=self.path)
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(runs)")}
            for column, kind in (("pid", "INTEGER"), ("host", "TEXT"), ("started_at", "REAL"),
                                 ("cancel", "INTEGER NOT NULL DEFAULT 0")):
                if column not in columns:  # databases made before the owner (or the service's queue) was recorded
                    self._db.execute(f"ALTER TABLE runs ADD COLUMN {column} {kind}")
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(tasks)")}
            for column, kind in (("context_tokens", "INTEGER NOT NULL DEFAULT 0"),
                                 ("naive_tokens", "INTEGER NOT NULL DEFAULT 0"), ("score", "REAL"),
                                 ("meta", "TEXT")):
                if column not in columns:  # databases made before context accounting (issue 3)
                    self._db.execute(f"ALTER TABLE tasks ADD COLUMN {column} {kind}")
            for index in _QUEUE_INDEXES:
                self._db.execute(index)
        except sqlite3.DatabaseError as exc:
            raise user_error(StoreError(f"cannot open run database: {exc}", path=self.path)) from None
        except OSError as exc:
            raise user_error(StoreError(f"cannot create run database: {exc.strerror}", path=self.path)) from None
        self._pending_events: list[tuple[Any, ...]] = []
        self._pending_tasks: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._pending_attempts: list[tuple[Any, ...]] = []

    def close(self) -> None:
        self.flush()
        self._db.close()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs --------------------------------------------------------------------------

    def create_run(self, *, name: str, spec_path: str | None, spec_text: str | None,
                   overrides: dict[str, Any] | None = None, options: dict[str, Any] | None = None,
                   queued: bool = False, created_at: float | None = None) -> str:
        """A new run row, running in this process, or (``queued``) waiting for a process to claim it."""
        run_id = uuid.uuid4().hex[:10]
        now = time.time() if created_at is None else created_at
        owner: tuple[Any, ...] = (None, None, None) if queued else (os.getpid(), socket.gethostname(), now)
        try:
            self._db.execute(
                "INSERT INTO runs (id, name, status, created_at, spec_path, spec_text, overrides, options, pid, host,"
                " started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, name, "queued" if queued else "running", now, spec_path, spec_text,
                 json.dumps(overrides or {}), json.dumps(options or {}), *owner),
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to the run database: {exc}", path=self.path) from None
        return run_id

    def owner_alive(self, run_id: str, *, mine: bool = False) -> int | None:
        """The pid of a live process on this host that is running ``run_id``, else None. This process
        counts only with ``mine`` (a resume from here is never refused by itself)."""
        row = self._db.execute("SELECT status, pid, host FROM runs WHERE id = ?", (self.resolve(run_id),)).fetchone()
        if row is None or row[0] != "running" or row[1] is None or row[2] != socket.gethostname():
            return None
        pid = int(row[1])
        if pid == os.getpid():
            return pid if mine else None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            return pid  # exists, owned by someone else
        return None if _zombie(pid) else pid

    def begin_session(self, run_id: str) -> int:
        """Mark a resumed run running again; returns the new session number."""
        row = self._db.execute("SELECT sessions FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(f"no run {run_id!r}", path=self.path)
        session = int(row[0]) + 1
        with self._transaction():
            self._db.execute("UPDATE runs SET status='running', sessions=?, ended_at=NULL, error=NULL, pid=?,"
                             " host=?, started_at=COALESCE(started_at, ?) WHERE id=?",
                             (session, os.getpid(), socket.gethostname(), time.time(), run_id))
            # Unfinished rows of earlier sessions are rewritten by this one (or were placeholders
            # of groups that now expand): keep only finished work.
            self._db.execute("DELETE FROM tasks WHERE run_id=? AND state != 'done'", (run_id,))
        return session

    def finish_run(self, run_id: str, status: str, *, error: str | None = None,
                   summary: dict[str, Any] | None = None) -> None:
        self.flush()
        self._db.execute(  # no summary given: the one an earlier finish wrote stays
            "UPDATE runs SET status=?, ended_at=?, error=?, summary=COALESCE(?, summary) WHERE id=?",
            (status, time.time(), error, json.dumps(summary) if summary is not None else None, run_id),
        )

    def resolve(self, run_id: str) -> str:
        """The full id of a run given its id or a unique prefix (``latest`` works too)."""
        if run_id in ("latest", "last"):
            row = self._db.execute("SELECT id FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()
            if row is None:
                raise RunNotFound("no runs recorded yet", path=self.path)
            return str(row[0])
        if self._db.execute("SELECT 1 FROM runs WHERE id = ?", (run_id,)).fetchone() is not None:
            return run_id  # the whole id: the primary key, not a scan of every id
        rows = self._db.execute("SELECT id FROM runs WHERE id LIKE ? LIMIT 3",
                                (run_id.replace("%", "").replace("_", "") + "%",)).fetchall()
        if not rows:
            raise RunNotFound(f"no run {run_id!r} in this database (see 'agentfleet runs')", path=self.path)
        if len(rows) > 1 and not any(r[0] == run_id for r in rows):
            raise RunNotFound(f"run id prefix {run_id!r} is ambiguous", path=self.path)
        return str(rows[0][0]) if len(rows) == 1 else run_id

    def get_run(self, run_id: str) -> RunRow:
        row = self._db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (self.resolve(run_id),)).fetchone()
        return _run_row(row)

    def list_runs(self, limit: int = 20) -> list[RunRow]:
        rows = self._db.execute(f"SELECT {_RUN_COLUMNS} FROM runs ORDER BY created_at DESC LIMIT ?",
                                (limit,)).fetchall()
        return [_run_row(r) for r in rows]

    def page_runs(self, limit: int, *, before: tuple[float, str] | None = None,
                  status: str | None = None) -> list[RunRow]:
        """Runs newest first, after the ``(created_at, id)`` of the last one of the previous page."""
        where, args = [], []
        if before is not None:
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            args += [before[0], before[0], before[1]]
        if status is not None:
            where.append("status = ?")
            args.append(status)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        rows = self._db.execute(f"SELECT {_RUN_COLUMNS} FROM runs{clause} ORDER BY created_at DESC, id DESC LIMIT ?",
                                (*args, limit)).fetchall()
        return [_run_row(r) for r in rows]

    def find_run(self, run_id: str) -> RunRow | None:
        """The run with exactly this id, or None (no prefixes, no ``latest``: for the service)."""
        row = self._db.execute(f"SELECT {_RUN_COLUMNS} FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None else _run_row(row)

    def status_counts(self) -> dict[str, int]:
        return {str(status): int(n) for status, n in
                self._db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status")}

    # -- the service's queue -------------------------------------------------------------
    # ``agentfleet serve`` stores a submitted run as 'queued'; runner processes claim queued runs in
    # one IMMEDIATE transaction each (so two never claim the same run), and are asked to stop a run
    # through its ``cancel`` flag. A queued run cancelled before a runner claims it never starts.

    def queued_count(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM runs WHERE status = 'queued'").fetchone()[0])

    def claim_queued(self, limit: int) -> list[str]:
        """Take up to ``limit`` queued runs, oldest first, for this process: they become 'running'."""
        if limit <= 0:
            return []
        try:
            with transaction(self._db):
                rows = self._db.execute(
                    "UPDATE runs SET status='running', pid=?, host=?, started_at=? WHERE id IN ("
                    " SELECT id FROM runs WHERE status='queued' ORDER BY created_at LIMIT ?) AND status='queued'"
                    " RETURNING id, created_at", (os.getpid(), socket.gethostname(), time.time(), limit)).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to the run database: {exc}", path=self.path) from None
        return [str(r[0]) for r in sorted(rows, key=lambda r: r[1])]

    def request_cancel(self, run_id: str) -> str | None:
        """Ask for a run to stop: a queued one (or one whose process is gone) is cancelled at once, a
        running one is flagged for its runner. Returns the status it now has ('cancelled' or
        'cancelling'), or None if it had ended."""
        with transaction(self._db):
            row = self._db.execute("SELECT status FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFound(f"no run {run_id!r}", path=self.path)
            if row[0] == "queued":
                self._db.execute("UPDATE runs SET status='cancelled', ended_at=?, error=? WHERE id=?",
                                 (time.time(), "cancelled before it started", run_id))
                return "cancelled"
            if row[0] == "running":
                if self.owner_alive(run_id, mine=True) is None:  # its process is gone: nobody to ask
                    self._db.execute("UPDATE runs SET status='cancelled', ended_at=?, error=? WHERE id=?",
                                     (time.time(), "cancelled after its process had gone", run_id))
                    return "cancelled"
                self._db.execute("UPDATE runs SET cancel=1 WHERE id=?", (run_id,))
                return "cancelling"
        return None

    def cancel_requested(self, run_ids: Iterable[str]) -> set[str]:
        """Which of these runs have been asked to stop."""
        ids = list(run_ids)
        if not ids:
            return set()
        marks = ",".join("?" * len(ids))
        return {str(r[0]) for r in self._db.execute(f"SELECT id FROM runs WHERE cancel=1 AND id IN ({marks})", ids)}

    def orphaned(self, *, where: str = "service") -> list[str]:
        """Runs left 'running' by a process on this host that is gone (killed, crashed; runs of other
        hosts are theirs to recover), whose
        ``options`` carry ``where`` (the service marks its runs): oldest first."""
        rows = self._db.execute(
            "SELECT id FROM runs WHERE status='running' AND host=? AND json_extract(options, ?) IS NOT NULL"
            " ORDER BY created_at", (socket.gethostname(), f"$.{where}")).fetchall()
        return [str(r[0]) for r in rows if self.owner_alive(str(r[0])) is None]

    def requeue(self, run_id: str) -> bool:
        """Put an orphaned run back in the queue (a runner resumes it); False if it changed meanwhile
        (someone resumed it, or its owner came back)."""
        with transaction(self._db):
            if self.owner_alive(run_id) is not None:
                return False
            cursor = self._db.execute("UPDATE runs SET status='queued', pid=NULL, cancel=0 WHERE id=?"
                                      " AND status='running'", (run_id,))
        return cursor.rowcount == 1

    def requeue_interrupted(self, run_id: str) -> bool:
        """Queue a run this process interrupted on shutdown again (the next runner resumes it)."""
        self.flush()
        with transaction(self._db):
            cursor = self._db.execute("UPDATE runs SET status='queued', pid=NULL, ended_at=NULL WHERE id=?"
                                      " AND status IN ('running', 'interrupted') AND cancel=0 AND pid=?",
                                      (run_id, os.getpid()))
        return cursor.rowcount == 1

    def ended_at(self, run_id: str) -> float | None:
        row = self._db.execute("SELECT ended_at FROM runs WHERE id = ?", (run_id,)).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    def end_open_run(self, run_id: str, status: str, error: str) -> bool:
        """Set the final status of a run unless it already has one (a runner's verdict after the
        Runner itself ended the run: cancelled, or failed before it could start)."""
        self.flush()
        cursor = self._db.execute("UPDATE runs SET status=?, ended_at=?, error=? WHERE id=?"
                                  " AND status IN ('running', 'interrupted')", (status, time.time(), error, run_id))
        return cursor.rowcount == 1

    def statuses(self, run_ids: Iterable[str]) -> dict[str, str]:
        ids = list(run_ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        return {str(r[0]): str(r[1]) for r in self._db.execute(f"SELECT id, status FROM runs WHERE id IN ({marks})",
                                                                 ids)}

    def events_after(self, after: int, *, run_id: str | None = None,
                     limit: int = 5000) -> list[tuple[int, str, int, float, str, str | None, str | None]]:
        """Stored events with an id above ``after`` (of one run, or of all): (id, run, session, t, kind,
        task, data as JSON text), in order."""
        if run_id is None:
            rows = self._db.execute("SELECT id, run_id, session, t, kind, task_id, data FROM events WHERE id > ?"
                                    " ORDER BY id LIMIT ?", (after, limit)).fetchall()
        else:
            rows = self._db.execute("SELECT id, run_id, session, t, kind, task_id, data FROM events"
                                    " WHERE run_id = ? AND id > ? ORDER BY id LIMIT ?",
                                    (run_id, after, limit)).fetchall()
        return [tuple(r) for r in rows]

    def task_counts(self, run_ids: Iterable[str]) -> dict[str, dict[str, int]]:
        """Each run's tasks by state, as its rows stand (a running run's progress)."""
        ids = list(run_ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        out: dict[str, dict[str, int]] = {}
        for run_id, state, n in self._db.execute(
                f"SELECT run_id, state, COUNT(*) FROM tasks WHERE run_id IN ({marks}) GROUP BY run_id, state", ids):
            out.setdefault(str(run_id), {})[str(state)] = int(n)
        return out

    def latest_events(self, run_ids: Iterable[str]) -> dict[str, int]:
        """The id of each run's newest stored event (runs without events are left out)."""
        ids = list(run_ids)
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        return {str(r[0]): int(r[1]) for r in self._db.execute(
            f"SELECT run_id, MAX(id) FROM events WHERE run_id IN ({marks}) GROUP BY run_id", ids)}

    def last_event_id(self) -> int:
        row = self._db.execute("SELECT MAX(id) FROM events").fetchone()
        return int(row[0] or 0)

    # -- tasks -------------------------------------------------------------------------

    def note_task(self, run_id: str, session: int, record: TaskRecord) -> None:
        """Buffer the latest state of a task; written with the next commit or flush."""
        self._pending_tasks[(run_id, record.task_id)] = _task_row(run_id, session, record)

    def note_event(self, run_id: str, session: int, t: float, kind: str, task_id: str | None,
                   data: dict[str, Any] | None = None) -> None:
        self._pending_events.append((run_id, session, t, kind, task_id,
                                     json.dumps(data, default=str) if data else None))

    def record_attempt(self, run_id: str, session: int, record: TaskRecord, state: str,
                       started_at: float, ended_at: float, error: str | None) -> None:
        """Buffer one attempt's outcome; written with the next commit or flush."""
        self._pending_attempts.append((run_id, record.task_id, record.attempts, session, state, started_at,
                                       ended_at, record.tokens_in, record.tokens_out, error))

    def commit_result(self, run_id: str, session: int, record: TaskRecord) -> None:
        """Durably store a finished task's output and state, with everything buffered."""
        try:
            output = json.dumps(record.output, default=str)
        except (TypeError, ValueError):
            output = json.dumps(str(record.output))
        self._pending_tasks[(run_id, record.task_id)] = _task_row(run_id, session, record, state=TaskState.DONE)
        try:
            with self._transaction():
                self._db.execute("INSERT OR REPLACE INTO results VALUES (?, ?, ?)",
                                 (run_id, record.task_id, output))
                self._write_pending()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to the run database: {exc}", path=self.path) from None

    def flush(self) -> None:
        if not self._pending_tasks and not self._pending_events and not self._pending_attempts:
            return
        try:
            with self._transaction():
                self._write_pending()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot write to the run database: {exc}", path=self.path) from None

    def _write_pending(self) -> None:
        if self._pending_tasks:
            # An upsert, not INSERT OR REPLACE: the row keeps its rowid, so tasks list in the
            # order they first appeared (workflow order), however often they are rewritten.
            self._db.executemany(
                "INSERT INTO tasks (run_id, task_id, agent, state, tier, depends_on, ready_at, started_at,"
                " ended_at, attempts, tokens_in, tokens_out, provider, error, expected_latency, resumed, session,"
                " context_tokens, naive_tokens, score, meta)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (run_id, task_id) DO UPDATE SET agent=excluded.agent, state=excluded.state,"
                " tier=excluded.tier, depends_on=excluded.depends_on, ready_at=excluded.ready_at,"
                " started_at=excluded.started_at, ended_at=excluded.ended_at, attempts=excluded.attempts,"
                " tokens_in=excluded.tokens_in, tokens_out=excluded.tokens_out, provider=excluded.provider,"
                " error=excluded.error, expected_latency=excluded.expected_latency, resumed=excluded.resumed,"
                " session=excluded.session, context_tokens=excluded.context_tokens,"
                " naive_tokens=excluded.naive_tokens, score=excluded.score, meta=excluded.meta",
                list(self._pending_tasks.values()),
            )
            self._pending_tasks.clear()
        if self._pending_attempts:
            self._db.executemany("INSERT OR REPLACE INTO attempts VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                 self._pending_attempts)
            self._pending_attempts.clear()
        if self._pending_events:
            self._db.executemany(
                "INSERT INTO events (run_id, session, t, kind, task_id, data) VALUES (?, ?, ?, ?, ?, ?)",
                self._pending_events,
            )
            self._pending_events.clear()

    def _transaction(self) -> _Tx:
        return _Tx(self._db)

    def load_tasks(self, run_id: str) -> list[TaskRecord]:
        """Every task of a run with its output (None unless the task is done)."""
        run_id = self.resolve(run_id)
        self.flush()
        outputs = dict(self._db.execute("SELECT task_id, output FROM results WHERE run_id = ?", (run_id,)))
        records = []
        for row in self._db.execute(
            "SELECT task_id, agent, state, tier, depends_on, ready_at, started_at, ended_at, attempts, tokens_in,"
            " tokens_out, provider, error, expected_latency, resumed, context_tokens, naive_tokens, score, meta"
            " FROM tasks WHERE run_id = ? ORDER BY rowid",
            (run_id,),
        ):
            rec = TaskRecord(
                task_id=row[0], agent=row[1], state=row[2], tier=row[3], depends_on=tuple(json.loads(row[4])),
                ready_at=row[5], started_at=row[6], ended_at=row[7], attempts=row[8], tokens_in=row[9],
                tokens_out=row[10], provider=row[11], error=row[12], expected_latency=row[13],
                resumed=bool(row[14]), context_tokens=row[15] or 0, naive_tokens=row[16] or 0, score=row[17],
                meta=json.loads(row[18]) if row[18] else {},
            )
            if rec.state == TaskState.DONE and rec.task_id in outputs:
                rec.output = json.loads(outputs[rec.task_id])
            elif rec.state == TaskState.DONE:
                rec.state = TaskState.INTERRUPTED  # state written without its result: redo it
            records.append(rec)
        return records

    def attempts(self, run_id: str) -> list[tuple[str, int, int, str]]:
        """(task id, session, attempt, state) for every attempt of a run."""
        rows = self._db.execute(
            "SELECT task_id, session, attempt, state FROM attempts WHERE run_id = ? ORDER BY session, started_at",
            (self.resolve(run_id),),
        ).fetchall()
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def events(self, run_id: str, limit: int = 10_000) -> list[tuple[int, float, str, str | None, str | None]]:
        rows = self._db.execute(
            "SELECT session, t, kind, task_id, data FROM events WHERE run_id = ? ORDER BY id LIMIT ?",
            (self.resolve(run_id), limit),
        ).fetchall()
        return [(r[0], r[1], r[2], r[3], r[4]) for r in rows]

    # -- per-run extras and metric history ----------------------------------------------

    def put_extra(self, run_id: str, kind: str, data: str) -> None:
        """Keep one named document beside a run (resource samples, a profile): replaces any earlier one."""
        self.flush()
        self._db.execute("INSERT OR REPLACE INTO run_extras (run_id, kind, data) VALUES (?, ?, ?)",
                         (run_id, kind, data))

    def get_extra(self, run_id: str, kind: str) -> str | None:
        row = self._db.execute("SELECT data FROM run_extras WHERE run_id = ? AND kind = ?",
                               (self.resolve(run_id), kind)).fetchone()
        return None if row is None else str(row[0])

    def record_metrics(self, run_id: str, workflow: str, at: float, values: dict[str, float]) -> None:
        """Store a finished run's headline figures (makespan, p95, cost...) for ``agentfleet trends``.
        A run resumed later replaces its figures."""
        self.flush()
        with self._transaction():
            self._db.execute("DELETE FROM metric_history WHERE run_id = ?", (run_id,))
            self._db.executemany(
                "INSERT INTO metric_history (run_id, workflow, at, metric, value) VALUES (?, ?, ?, ?, ?)",
                [(run_id, workflow, at, metric, float(value)) for metric, value in values.items()])

    def metric_history(self, workflow: str, limit: int = 50) -> list[tuple[str, float, dict[str, float]]]:
        """The last ``limit`` runs of ``workflow`` with stored figures, oldest first:
        (run id, time the run was created, {metric: value})."""
        rows = self._db.execute(
            "SELECT run_id, at, metric, value FROM metric_history WHERE run_id IN ("
            " SELECT run_id FROM metric_history WHERE workflow = ? GROUP BY run_id ORDER BY MAX(at) DESC LIMIT ?)"
            " ORDER BY at, run_id", (workflow, limit)).fetchall()
        out: dict[str, tuple[float, dict[str, float]]] = {}
        for run_id, at, metric, value in rows:
            out.setdefault(run_id, (at, {}))[1][metric] = value
        return [(run_id, at, values) for run_id, (at, values) in out.items()]

    def workflows(self) -> list[tuple[str, int]]:
        """Workflows with stored metric history and how many runs each has, most recent first."""
        rows = self._db.execute(
            "SELECT workflow, COUNT(DISTINCT run_id), MAX(at) FROM metric_history GROUP BY workflow"
            " ORDER BY MAX(at) DESC").fetchall()
        return [(r[0], r[1]) for r in rows]

    def mark_interrupted(self, run_id: str, task_ids: Iterable[str]) -> None:
        self.flush()
        self._db.executemany("UPDATE tasks SET state='interrupted' WHERE run_id=? AND task_id=? AND state!='done'",
                             [(run_id, t) for t in task_ids])


def _zombie(pid: int) -> bool:
    """A process that has exited but was not reaped (its parent died too, in a container whose init
    does not reap): it answers signals but runs nothing."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


class _Tx:
    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        else:
            self._db.execute("ROLLBACK")


def _task_row(run_id: str, session: int, r: TaskRecord, state: str | None = None) -> tuple[Any, ...]:
    return (run_id, r.task_id, r.agent, state or r.state, r.tier, json.dumps(list(r.depends_on)), r.ready_at,
            r.started_at, r.ended_at, r.attempts, r.tokens_in, r.tokens_out, r.provider, r.error, r.expected_latency,
            int(r.resumed), session, r.context_tokens, r.naive_tokens, r.score,
            json.dumps(r.meta, default=str) if r.meta else None)


def _run_row(row: tuple[Any, ...]) -> RunRow:
    return RunRow(
        id=row[0], name=row[1], status=row[2], created_at=row[3], ended_at=row[4], spec_path=row[5],
        spec_text=row[6], overrides=json.loads(row[7] or "{}"), options=json.loads(row[8] or "{}"),
        sessions=row[9], error=row[10], summary=json.loads(row[11]) if row[11] else None,
        started_at=row[12] if len(row) > 12 else None,
    )
