"""Retention: which runs gc removes, the archive it writes and restores, what it never touches, store info.

Every test passes ``now`` explicitly: no wall clock decides what is old.
"""

from __future__ import annotations

import gzip
import io
import json
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from agentfleet._types import TaskRecord
from agentfleet.bench._runner import BenchResult
from agentfleet.bench._store import BenchStore
from agentfleet.errors import StoreError
from agentfleet.store import (
    ARCHIVE_FORMAT,
    RUN_TABLES,
    ArtifactStore,
    MemoryStore,
    RunStore,
    archive_name,
    compact,
    export_runs,
    gc_runs,
    parse_age,
    plan_gc,
    restore_runs,
    store_info,
)
from agentfleet.store import _retention as retention

DAY = 86400.0
NOW = 1_750_000_000.0  # a fixed "now" for every test
ALL_TABLES = ("runs", *RUN_TABLES)


def make_run(store: RunStore, *, status: str = "succeeded", ended_days_ago: float | None = 40.0,
             created_days_ago: float | None = None, now: float = NOW, tasks: int = 2, name: str = "w") -> str:
    """A run with rows in every run table: tasks, attempts, results, events, an extra and metric history."""
    created = now - DAY * (created_days_ago if created_days_ago is not None else (ended_days_ago or 0.0) + 0.01)
    run_id = store.create_run(name=name, spec_path=f"{name}.yaml", spec_text="agents: {}", overrides={"k": 1},
                              queued=status == "queued", created_at=created)
    for i in range(tasks):
        rec = TaskRecord(task_id=f"t{i}", agent="dev", state="done", output={"i": i, "text": "naïve ✓"},
                         tokens_in=3 + i, tokens_out=4, attempts=1, started_at=0.5 + i, ended_at=1.25 + i,
                         depends_on=(f"t{i - 1}",) if i else ())
        store.note_event(run_id, 1, 0.1 * i, "task_started", rec.task_id, {"i": i})
        store.record_attempt(run_id, 1, rec, "done", 0.5, 1.5, None)
        store.commit_result(run_id, 1, rec)
    store.note_event(run_id, 1, 9.0, "run_finished", None, None)
    store.flush()
    store.put_extra(run_id, "resources", json.dumps({"cpu": [0.5, 0.25]}))
    store.record_metrics(run_id, name, created, {"makespan": 1.5, "p95": 0.125})
    if status not in ("queued", "running"):
        ended = None if ended_days_ago is None else now - DAY * ended_days_ago
        store._db.execute("UPDATE runs SET status = ?, ended_at = ?, summary = ? WHERE id = ?",
                          (status, ended, json.dumps({"tasks": tasks}), run_id))
    return run_id


def rows_of(db: str | Path | sqlite3.Connection, run_id: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of one run in each run table, read straight from SQLite (not through the code under test)."""
    conn = db if isinstance(db, sqlite3.Connection) else sqlite3.connect(db)
    try:
        out = {"runs": conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchall()}
        for table in RUN_TABLES:
            out[table] = sorted(conn.execute(f"SELECT * FROM {table} WHERE run_id = ?", (run_id,)).fetchall(),
                                key=repr)
        return out
    finally:
        if not isinstance(db, sqlite3.Connection):
            conn.close()


def dump(path: str | Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table in the database file, order-independent."""
    conn = sqlite3.connect(path)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: sorted(conn.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}
    finally:
        conn.close()


def read_archive(data: bytes | Path) -> list[dict[str, Any]]:
    raw = data.read_bytes() if isinstance(data, Path) else data
    return [json.loads(line) for line in gzip.decompress(raw).decode("utf-8").splitlines()]


def archived_rows(record: dict[str, Any], columns: dict[str, list[str]]) -> dict[str, list[tuple[Any, ...]]]:
    """An archive record's rows as SQLite tuples, in table column order."""
    out = {"runs": [tuple(record["run"][c] for c in columns["runs"])]}
    for table in RUN_TABLES:
        out[table] = sorted((tuple(r[c] for c in columns[table]) for r in record[table]), key=repr)
    return out


def columns_of(path: str | Path) -> dict[str, list[str]]:
    conn = sqlite3.connect(path)
    try:
        return {t: [r[1] for r in conn.execute(f"PRAGMA table_info({t})")] for t in ALL_TABLES}
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "agentfleet.db"


class TestParseAge:
    @pytest.mark.parametrize(("text", "seconds"), [("30d", 30 * DAY), ("12h", 43200.0), ("90m", 5400.0),
                                                   ("2w", 14 * DAY), ("45s", 45.0), ("1.5d", 1.5 * DAY),
                                                   (" 7D ", 7 * DAY)])
    def test_durations(self, text: str, seconds: float) -> None:
        """Ages with a unit parse to seconds, as memory TTLs do."""
        assert parse_age(text) == seconds

    @pytest.mark.parametrize("text", ["30x", "30", "", "d", "-1d", "0d", "permanent", "never", "30 days", "1e3d"])
    def test_rejected(self, text: str) -> None:
        """A bad unit, no unit, no number, zero, negative or 'permanent' is a ValueError naming the value."""
        with pytest.raises(ValueError, match="invalid"):
            parse_age(text)

    def test_archive_name(self) -> None:
        """Archive files are named for the UTC time of the gc."""
        assert archive_name(NOW) == "runs-20250615T150640Z.jsonl.gz"


class TestPlan:
    def test_counts_what_would_go(self, db: Path) -> None:
        """The plan counts old ended runs and their rows per table, by status, and changes nothing."""
        with RunStore(db) as store:
            make_run(store, ended_days_ago=40, tasks=3)
            make_run(store, status="failed", ended_days_ago=35, tasks=1)
            make_run(store, ended_days_ago=5)
            before = dump(db)
            plan = plan_gc(store, now=NOW, older_than=30 * DAY)
        assert plan.runs == 2
        assert plan.by_status == {"failed": 1, "succeeded": 1}
        assert plan.rows == {"runs": 2, "tasks": 4, "attempts": 4, "results": 4, "events": 6, "run_extras": 2,
                             "metric_history": 4}
        assert (plan.oldest_ended, plan.newest_ended) == (NOW - 40 * DAY, NOW - 35 * DAY)
        assert plan.cutoff == NOW - 30 * DAY
        assert dump(db) == before

    def test_boundary_and_statuses(self, db: Path) -> None:
        """Only runs that ended strictly before the cutoff count; every ended status does, queued and
        running never do however old, and --keep-failed keeps failed ones."""
        with RunStore(db) as store:
            make_run(store, ended_days_ago=30)  # exactly at the cutoff: kept
            for status in ("succeeded", "failed", "interrupted", "cancelled"):
                make_run(store, status=status, ended_days_ago=31)
            make_run(store, status="queued", created_days_ago=400)
            make_run(store, status="running", created_days_ago=400)
            assert plan_gc(store, now=NOW, older_than=30 * DAY).by_status == {
                "cancelled": 1, "failed": 1, "interrupted": 1, "succeeded": 1}
            assert "failed" not in plan_gc(store, now=NOW, older_than=30 * DAY, keep_failed=True).by_status

    def test_end_unknown_uses_creation(self, db: Path) -> None:
        """An ended run without ended_at (an old database) is aged by when it was created."""
        with RunStore(db) as store:
            old = make_run(store, ended_days_ago=None, created_days_ago=60)
            make_run(store, ended_days_ago=None, created_days_ago=10)
            result = gc_runs(store, now=NOW, older_than=30 * DAY, archive=None)
            assert result.runs == 1
            assert store.find_run(old) is None


class TestGc:
    def test_removes_old_runs_with_every_row(self, db: Path, tmp_path: Path) -> None:
        """Old ended runs lose their rows in every run table; newer, queued and running runs keep all theirs."""
        with RunStore(db) as store:
            old = [make_run(store, ended_days_ago=d) for d in (31, 45, 400)]
            kept = [make_run(store, ended_days_ago=29), make_run(store, status="queued", created_days_ago=90),
                    make_run(store, status="running", created_days_ago=90)]
            kept_rows = {k: rows_of(store._db, k) for k in kept}
            result = gc_runs(store, now=NOW, older_than=30 * DAY, archive=tmp_path / "a" / "runs.jsonl.gz")
            assert result.runs == 3 and result.skipped == 0
            assert result.rows == {"runs": 3, "tasks": 6, "attempts": 6, "results": 6, "events": 9, "run_extras": 3,
                                   "metric_history": 6}
            for run_id in old:
                assert all(not rows for rows in rows_of(store._db, run_id).values())
            for run_id in kept:
                assert rows_of(store._db, run_id) == kept_rows[run_id]
                assert all(kept_rows[run_id][t] for t in ALL_TABLES)
        assert result.archive == str(tmp_path / "a" / "runs.jsonl.gz")
        assert result.bytes_archived == (tmp_path / "a" / "runs.jsonl.gz").stat().st_size

    def test_archive_holds_every_row(self, db: Path, tmp_path: Path) -> None:
        """Each removed run is one archive line holding exactly its rows in every table, as stored."""
        with RunStore(db) as store:
            old = [make_run(store, ended_days_ago=40 + i, tasks=i + 1) for i in range(3)]
            make_run(store, ended_days_ago=1)
        before = {run_id: rows_of(db, run_id) for run_id in old}
        columns = columns_of(db)
        target = tmp_path / "runs.jsonl.gz"
        with RunStore(db) as store:
            gc_runs(store, now=NOW, older_than=30 * DAY, archive=target)
        records = read_archive(target)
        assert sorted(r["run"]["id"] for r in records) == sorted(old)
        for record in records:
            assert (record["format"], record["version"]) == (ARCHIVE_FORMAT, 1)
            assert archived_rows(record, columns) == before[record["run"]["id"]]

    def test_batches(self, db: Path) -> None:
        """Runs go in batches of batch_size, one transaction and one gzip member each; progress follows."""
        with RunStore(db) as store:
            for i in range(5):
                make_run(store, ended_days_ago=40 + i, tasks=1)
            sink = io.BytesIO()
            calls: list[tuple[int, int]] = []
            result = gc_runs(store, now=NOW, older_than=30 * DAY, archive=sink, batch_size=2,
                             progress=lambda done, total: calls.append((done, total)))
        assert (result.runs, result.batches) == (5, 3)
        assert calls == [(0, 5), (2, 5), (4, 5), (5, 5)]
        assert len(read_archive(sink.getvalue())) == 5  # concatenated members read as one file
        assert result.archive is None and result.bytes_archived == len(sink.getvalue())

    def test_delete_without_archive(self, db: Path, tmp_path: Path) -> None:
        """archive=None removes the same rows and writes nothing."""
        with RunStore(db) as store:
            make_run(store, ended_days_ago=40)
            result = gc_runs(store, now=NOW, older_than=30 * DAY, archive=None)
        assert (result.runs, result.archive, result.bytes_archived) == (1, None, 0)
        assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("agentfleet.db")) == []
        assert dump(db)["runs"] == []

    def test_nothing_old_writes_no_file(self, db: Path, tmp_path: Path) -> None:
        """With nothing to remove no archive file is created."""
        with RunStore(db) as store:
            make_run(store, ended_days_ago=1)
            result = gc_runs(store, now=NOW, older_than=30 * DAY, archive=tmp_path / "arch" / "x.jsonl.gz")
        assert (result.runs, result.archive) == (0, None)
        assert not (tmp_path / "arch").exists()

    def test_existing_archive_file_is_refused(self, db: Path, tmp_path: Path) -> None:
        """An archive path that exists is never overwritten: a user error, and nothing is removed."""
        target = tmp_path / "runs.jsonl.gz"
        target.write_bytes(b"keep me")
        with RunStore(db) as store:
            make_run(store, ended_days_ago=40)
            with pytest.raises(StoreError, match="exists already") as info:
                gc_runs(store, now=NOW, older_than=30 * DAY, archive=target)
            assert info.value.exit_code == 2
            assert store.status_counts() == {"succeeded": 1}
        assert target.read_bytes() == b"keep me"

    def test_failed_write_loses_nothing(self, db: Path) -> None:
        """When the archive cannot be written mid-way, committed batches are archived and removed, and the
        failing batch's runs are all still in the database."""

        class FullDisk(io.BytesIO):
            writes = 0

            def write(self, data: Any) -> int:
                FullDisk.writes += 1
                if FullDisk.writes > 1:
                    raise OSError(28, "No space left on device")
                return super().write(data)

        with RunStore(db) as store:
            ids = [make_run(store, ended_days_ago=40 + i, tasks=1) for i in range(4)]
            sink = FullDisk()
            with pytest.raises(StoreError, match="No space left"):
                gc_runs(store, now=NOW, older_than=30 * DAY, archive=sink, batch_size=2)
            remaining = {r.id for r in store.list_runs(100)}
        archived = {r["run"]["id"] for r in read_archive(sink.getvalue())}
        assert len(archived) == 2 and len(remaining) == 2
        assert archived | remaining == set(ids) and not archived & remaining
        for run_id in remaining:
            assert all(rows_of(db, run_id)[t] for t in ALL_TABLES)

    def test_run_changed_meanwhile_is_kept(self, db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        """A run resumed between the read of its batch and the delete is left alone and not archived."""
        with RunStore(db) as store:
            resumed = make_run(store, ended_days_ago=50)
            other = make_run(store, ended_days_ago=40)
            encode = retention._encode
            calls = []

            def resume_then_encode(records: Any) -> bytes:
                if not calls:  # another process resumes the run while gc encodes the batch
                    with sqlite3.connect(db) as conn:
                        conn.execute("UPDATE runs SET status = 'running', ended_at = NULL WHERE id = ?", (resumed,))
                calls.append(len(records))
                return encode(records)

            monkeypatch.setattr(retention, "_encode", resume_then_encode)
            sink = io.BytesIO()
            result = gc_runs(store, now=NOW, older_than=30 * DAY, archive=sink)
            assert (result.runs, result.skipped) == (1, 1)
            assert store.find_run(resumed) is not None and store.find_run(other) is None
        assert [r["run"]["id"] for r in read_archive(sink.getvalue())] == [other]

    def test_other_tables_untouched(self, db: Path) -> None:
        """Bench runs, results and baselines (even one sharing a removed run's id), artifacts, their links and
        agent memory keep every row."""
        with RunStore(db) as store:
            old = make_run(store, ended_days_ago=40)
        with BenchStore(db) as bench:
            sample = BenchResult(name="b", kind="callable", target="x", samples=[1.0, 2.0], loops=1, processes=1)
            bench_id = bench.save("suite", [sample], {"python": "3.11"})
            bench.save_baseline("main", bench_id)
            bench._db.execute("INSERT INTO bench_runs (id, suite, created_at, env) VALUES (?, 's', 0, '{}')", (old,))
            bench.save_baseline("ancient", old)
        with ArtifactStore(db, clock=lambda: NOW - 100 * DAY) as artifacts:
            artifacts.put("content of an old run", run_id=old, task_id="t0")
        with MemoryStore(db, clock=lambda: NOW - 100 * DAY) as memory:
            memory.add("dev", "patterns", "old lesson")
        others = {t: rows for t, rows in dump(db).items() if t not in ALL_TABLES}
        assert others["bench_baselines"] and others["artifacts"] and others["memory"]
        with RunStore(db) as store:
            assert gc_runs(store, now=NOW, older_than=30 * DAY, archive=None).runs == 1
            assert store_info(store).orphan_artifact_links == 1
        assert {t: rows for t, rows in dump(db).items() if t not in ALL_TABLES} == others
        with BenchStore(db) as bench:
            assert [b[0] for b in bench.baselines()] == ["ancient", "main"]

    def test_bad_arguments(self, db: Path) -> None:
        """A non-positive age or batch size is a ValueError."""
        with RunStore(db) as store:
            with pytest.raises(ValueError, match="older_than"):
                gc_runs(store, now=NOW, older_than=0, archive=None)
            with pytest.raises(ValueError, match="batch_size"):
                gc_runs(store, now=NOW, older_than=DAY, archive=None, batch_size=0)


_KILL_MIDWAY = """
import os, signal, sys
from agentfleet.store import RunStore, gc_runs
from agentfleet.store import _retention

real, batches = _retention._delete, []
def delete_then_die(conn, ids):
    batches.append(ids)
    counts = real(conn, ids)
    if len(batches) == 3:  # the third batch: archived and deleted, not yet committed
        os.kill(os.getpid(), signal.SIGKILL)
    return counts
_retention._delete = delete_then_die
with RunStore(sys.argv[1]) as store:
    gc_runs(store, now=float(sys.argv[2]), older_than=30 * 86400, archive=sys.argv[3], batch_size=2)
"""


class TestKill:
    @pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL")
    def test_kill_midway_loses_nothing(self, db: Path, tmp_path: Path) -> None:
        """A gc killed -9 inside a batch's transaction leaves every run in the database or the archive (the
        killed batch in both), and restoring the archive gives back the database exactly."""
        with RunStore(db) as store:
            ids = [make_run(store, ended_days_ago=40 + i, tasks=2) for i in range(8)]
            make_run(store, ended_days_ago=1)
        before = dump(db)
        target = tmp_path / "runs.jsonl.gz"
        done = subprocess.run([sys.executable, "-c", _KILL_MIDWAY, str(db), repr(NOW), str(target)],
                              capture_output=True, timeout=60, check=False)
        assert done.returncode == -9, done.stderr.decode()
        archived = {r["run"]["id"] for r in read_archive(target)}
        with RunStore(db) as store:
            present = {r.id for r in store.list_runs(100)} & set(ids)
            assert len(archived) == 6 and len(present) == 4 and len(archived & present) == 2
            assert archived | present == set(ids)
            result = restore_runs(store, target)
        assert (result.restored, result.skipped, result.truncated) == (4, 2, False)
        assert dump(db) == before


class TestRestore:
    def test_round_trip_is_identical(self, db: Path, tmp_path: Path) -> None:
        """gc then restore gives back every table exactly, event ids and task order included."""
        with RunStore(db) as store:
            old = [make_run(store, ended_days_ago=40 + i, tasks=3) for i in range(4)]
            make_run(store, ended_days_ago=2)
            order = {r: [t.task_id for t in store.load_tasks(r)] for r in old}
        before = dump(db)
        target = tmp_path / "runs.jsonl.gz"
        with RunStore(db) as store:
            gc_runs(store, now=NOW, older_than=30 * DAY, archive=target, batch_size=3)
            calls: list[int] = []
            result = restore_runs(store, target, batch_size=3, progress=calls.append)
            assert [[t.task_id for t in store.load_tasks(r)] for r in old] == [order[r] for r in old]
        assert (result.restored, result.skipped, result.truncated) == (4, 0, False)
        assert result.rows == {"runs": 4, "tasks": 12, "attempts": 12, "results": 12, "events": 16, "run_extras": 4,
                               "metric_history": 8}
        assert calls == [3, 4]
        assert dump(db) == before

    def test_idempotent(self, db: Path, tmp_path: Path) -> None:
        """Restoring twice (or runs still present) skips them and changes nothing."""
        with RunStore(db) as store:
            make_run(store, ended_days_ago=40)
            gc_runs(store, now=NOW, older_than=30 * DAY, archive=tmp_path / "a.jsonl.gz")
            restore_runs(store, tmp_path / "a.jsonl.gz")
        after_first = dump(db)
        with RunStore(db) as store:
            again = restore_runs(store, tmp_path / "a.jsonl.gz")
        assert (again.restored, again.skipped) == (0, 1)
        assert dump(db) == after_first

    def test_into_another_database(self, db: Path, tmp_path: Path) -> None:
        """An archive restores into a fresh database; taken event ids are replaced, order kept."""
        with RunStore(db) as store:
            run_id = make_run(store, ended_days_ago=40)
            events = store.events(run_id)
            gc_runs(store, now=NOW, older_than=30 * DAY, archive=tmp_path / "a.jsonl.gz")
        with RunStore(tmp_path / "other.db") as other:
            busy = other.create_run(name="x", spec_path=None, spec_text=None)
            for i in range(5):  # takes the event ids the archived run had
                other.note_event(busy, 1, float(i), "e", None)
            other.flush()
            result = restore_runs(other, tmp_path / "a.jsonl.gz")
            assert result.restored == 1
            assert other.events(run_id) == events
            assert len(other.events(busy)) == 5

    def test_truncated_archive(self, db: Path, tmp_path: Path) -> None:
        """An archive cut short in its last batch (a gc killed while writing) restores every complete line
        before the cut, each run identical, and says it was truncated."""
        with RunStore(db) as store:
            ids = [make_run(store, ended_days_ago=40 + i) for i in range(4)]
        before = {run_id: rows_of(db, run_id) for run_id in ids}
        with RunStore(db) as store:
            sink = io.BytesIO()
            gc_runs(store, now=NOW, older_than=30 * DAY, archive=sink, batch_size=2)
            cut = tmp_path / "cut.jsonl.gz"
            cut.write_bytes(sink.getvalue()[:-20])
            result = restore_runs(store, cut)
        assert result.truncated
        assert 2 <= result.restored < 4
        back = [run_id for run_id in ids if rows_of(db, run_id)["runs"]]
        assert len(back) == result.restored
        assert all(rows_of(db, run_id) == before[run_id] for run_id in back)

    @pytest.mark.parametrize(("content", "message"), [
        (b"not gzip at all", "not a readable gzip archive"),
        (gzip.compress(b"{not json\n"), "line 1: not JSON"),
        (gzip.compress(b'{"format": "other"}\n'), "line 1: not an agentfleet run archive record"),
        (gzip.compress(json.dumps({"format": ARCHIVE_FORMAT, "version": 99, "run": {"id": "x"}}).encode() + b"\n"),
         "version 99"),
    ])
    def test_bad_archive(self, db: Path, tmp_path: Path, content: bytes, message: str) -> None:
        """A file that is not a run archive is a user error naming it, and nothing is written."""
        bad = tmp_path / "bad.jsonl.gz"
        bad.write_bytes(content)
        with RunStore(db) as store:
            with pytest.raises(StoreError, match=message) as info:
                restore_runs(store, bad)
            assert info.value.exit_code == 2
            assert store.status_counts() == {}


class TestExport:
    def test_unknown_ids_left_out(self, db: Path) -> None:
        """export_runs keeps the order given and skips ids that are not runs."""
        with RunStore(db) as store:
            a, b = make_run(store), make_run(store)
            records = export_runs(store, [b, "nope", a])
        assert [r["run"]["id"] for r in records] == [b, a]
        assert [e["kind"] for e in records[0]["events"]] == ["task_started", "task_started", "run_finished"]


class TestInfo:
    def test_counts(self, db: Path) -> None:
        """Rows per table, runs by status, oldest and newest run and file sizes are reported."""
        with RunStore(db) as store:
            make_run(store, ended_days_ago=40, tasks=3)
            make_run(store, status="failed", ended_days_ago=3, tasks=1)
            make_run(store, status="queued", created_days_ago=1)
            found = store_info(store)
        assert found.tables == {"runs": 3, "tasks": 6, "attempts": 6, "results": 6, "events": 9, "run_extras": 3,
                                "metric_history": 6}
        assert found.runs_by_status == {"failed": 1, "queued": 1, "succeeded": 1}
        assert found.oldest_run == pytest.approx(NOW - 40.01 * DAY)
        assert found.newest_run == pytest.approx(NOW - DAY)
        assert found.files["db"] > 0 and found.total_bytes == sum(found.files.values())
        assert found.page_size * found.page_count == found.files["db"] or found.files.get("wal", 0) > 0

    def test_other_tables_when_present(self, db: Path) -> None:
        """Artifacts, memory and bench baselines are counted when the database has them."""
        with RunStore(db) as store:
            run_id = make_run(store)
        with ArtifactStore(db) as artifacts:
            artifacts.put("x", run_id=run_id, task_id="t0")
        with MemoryStore(db) as memory:
            memory.add("dev", "patterns", "p")
            memory.add("dev", "mistakes", "m")
        with BenchStore(db) as bench:
            bench.save_baseline("main", bench.save("s", [], {}))
        with RunStore(db) as store:
            tables = store_info(store).tables
        assert (tables["artifacts"], tables["artifact_links"], tables["memory"], tables["bench_baselines"],
                tables["bench_runs"]) == (1, 1, 2, 1, 1)

    def test_free_pages_and_compact(self, db: Path) -> None:
        """Removing runs leaves free pages; a checkpoint empties the WAL and VACUUM returns the pages."""
        with RunStore(db) as store:
            for _ in range(30):
                make_run(store, tasks=20)
            gc_runs(store, now=NOW, older_than=30 * DAY, archive=None)
            busy, _, _ = compact(store)
            assert busy == 0
            assert Path(f"{db}-wal").stat().st_size == 0
            freed = store_info(store)
            assert freed.freelist_pages > 0
            compact(store, vacuum=True)
            vacuumed = store_info(store)
        assert vacuumed.freelist_pages == 0
        assert vacuumed.files["db"] < freed.files["db"]
        assert vacuumed.tables["runs"] == 0

    def test_plain_connection(self) -> None:
        """The functions take a plain sqlite3 connection as well as a RunStore."""
        with RunStore(":memory:") as store:
            make_run(store)
            conn = store._db
            assert store_info(conn).path == ":memory:"
            assert plan_gc(conn, now=NOW, older_than=DAY).runs == 1
