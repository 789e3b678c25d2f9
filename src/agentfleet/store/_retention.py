"""Data retention for the run database: remove old runs (archived first), restore them, describe the store.

# Design
# A run is eligible when it has ended (succeeded, failed, interrupted, cancelled: never queued or
# running) before ``now - older_than``; its end is ``ended_at``, or ``created_at`` for rows of old
# databases that never recorded one. Removing a run removes its rows in every run table
# (``RUN_TABLES``) and nothing else: the artifact tables (content-addressed, shared between runs),
# agent memory, the response cache and the benchmark tables (runs, results, baselines) are never
# touched. Time is always a parameter: no function here reads the wall clock.
#
# Work goes in batches of runs. For each batch the rows are read in one read transaction (a
# consistent snapshot that does not block writers) and encoded as one gzip member of JSON lines.
# Then, in one write transaction, the batch is checked again (each run's row and its row count per
# table must be what was read: a run resumed or touched meanwhile is skipped and left alone), the
# member is written and fsynced to the archive, and only then are the rows deleted and the
# transaction committed. A kill at any instant loses nothing: rows are deleted only once their copy
# is on disk, and a copy whose deletion never committed is a duplicate that ``restore_runs``
# skips. Concatenated gzip members are one valid gzip file, so an archive is still one
# ``.jsonl.gz`` however many batches wrote it.
#
# Each archive line is one run: ``{"format", "version", "run": {...}, "tasks": [...], ...}``, every
# row as a column -> value object, exactly as stored (JSON text columns stay text), so a restore
# writes back identical rows. Events keep their ids (AUTOINCREMENT never reuses one, so in the
# same database they are free); where an id is taken, as in another database, the run's events
# get new ids in their original order.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import math
import os
import re
import sqlite3
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ..errors import StoreError
from ._db import transaction, user_error
from ._memory import parse_ttl
from ._sqlite import TERMINAL, RunStore

__all__ = [
    "ARCHIVE_FORMAT",
    "RUN_TABLES",
    "GcPlan",
    "GcResult",
    "RestoreResult",
    "StoreInfo",
    "archive_name",
    "compact",
    "export_runs",
    "gc_runs",
    "parse_age",
    "plan_gc",
    "restore_runs",
    "store_files",
    "store_info",
]

#: The ``format`` of every archive line (``version`` says which layout of it).
ARCHIVE_FORMAT = "agentfleet-run-archive"
_VERSION = 1
#: The tables that hold a run's rows, besides ``runs`` itself: gc removes exactly these (by ``run_id``).
RUN_TABLES: tuple[str, ...] = ("tasks", "attempts", "results", "events", "run_extras", "metric_history")
# Tables `store_info` counts when the database has them (the others live beside the runs).
_OTHER_TABLES: tuple[str, ...] = ("artifacts", "artifact_links", "memory", "cache_entries", "bench_runs",
                                  "bench_results", "bench_baselines")
_ENDED = "COALESCE(ended_at, created_at)"
_IDS = "(SELECT value FROM json_each(?))"  # a batch of run ids as one JSON parameter: no variable limit
_AGE = re.compile(r"^\s*\d+(?:\.\d+)?\s*[smhdw]\s*$", re.IGNORECASE)

Database = RunStore | sqlite3.Connection
ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class GcPlan:
    """What ``gc_runs`` would remove: runs ended before ``cutoff`` and their rows per table."""

    cutoff: float
    runs: int
    #: rows per table, ``runs`` first, then ``RUN_TABLES``
    rows: dict[str, int]
    by_status: dict[str, int]
    #: when the oldest and newest of those runs ended (None when there are none)
    oldest_ended: float | None
    newest_ended: float | None


@dataclass(frozen=True, slots=True)
class GcResult:
    """What ``gc_runs`` removed, and where the copy went."""

    cutoff: float
    runs: int
    rows: dict[str, int]
    #: the archive file (None with no archive, or when nothing was removed)
    archive: str | None
    #: compressed bytes written to the archive
    bytes_archived: int
    #: eligible runs left alone because they changed while gc ran (resumed, written to)
    skipped: int
    batches: int


@dataclass(frozen=True, slots=True)
class RestoreResult:
    """What ``restore_runs`` brought back."""

    restored: int
    #: runs already in the database (an archive restored twice, or a gc killed before it committed)
    skipped: int
    rows: dict[str, int]
    #: the archive ended mid-batch (the gc writing it was killed): every complete line was restored
    truncated: bool


@dataclass(frozen=True, slots=True)
class StoreInfo:
    """Sizes, row counts and free space of a run database."""

    path: str
    #: bytes of the database file and its ``-wal`` and ``-shm`` files (those that exist)
    files: dict[str, int]
    page_size: int
    page_count: int
    #: pages inside the file that hold nothing: what VACUUM would return to the filesystem
    freelist_pages: int
    #: rows per table, for the tables this database has
    tables: dict[str, int]
    runs_by_status: dict[str, int]
    #: creation times of the oldest and newest run (None without runs)
    oldest_run: float | None
    newest_run: float | None
    #: artifact links whose run is no longer in the database (gc leaves artifacts alone)
    orphan_artifact_links: int = 0

    @property
    def total_bytes(self) -> int:
        return sum(self.files.values())

    @property
    def free_bytes(self) -> int:
        return self.freelist_pages * self.page_size


# -- ages and names ---------------------------------------------------------------------


def parse_age(text: str) -> float:
    """Seconds from an age with a unit: ``30d``, ``12h``, ``90m``, ``45s``, ``2w``, ``1.5d``.

    The unit is required (a bare ``30`` would mean seconds, and remove nearly everything) and
    the age must be positive; anything else raises a ValueError naming the value.
    """
    if not isinstance(text, str) or not _AGE.match(text):
        raise ValueError(f"invalid age {text!r}: give a number and a unit, like 30d, 12h, 90m, 2w")
    try:
        seconds = parse_ttl(text)
    except ValueError:
        seconds = None
    if seconds is None:  # zero, or too large to be finite ('permanent' does not match the pattern)
        raise ValueError(f"invalid age {text!r}: it must be a positive duration, like 30d, 12h, 90m, 2w")
    return seconds


def archive_name(now: float) -> str:
    """``runs-<UTC time>.jsonl.gz`` for an archive written at epoch time ``now``."""
    return f"runs-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime(now))}.jsonl.gz"


def store_files(path: str | os.PathLike[str]) -> dict[str, int]:
    """Bytes of the database file and its ``-wal`` and ``-shm`` files, for those that exist."""
    where = str(path)
    if where == ":memory:" or not where:
        return {}
    sizes = {}
    for label, name in (("db", where), ("wal", where + "-wal"), ("shm", where + "-shm")):
        try:
            sizes[label] = os.path.getsize(name)
        except OSError:
            continue
    return sizes


# -- planning ---------------------------------------------------------------------------


def _statuses(keep_failed: bool) -> list[str]:
    return sorted(TERMINAL - {"failed"} if keep_failed else TERMINAL)


def _eligible(keep_failed: bool) -> tuple[str, list[Any]]:
    statuses = _statuses(keep_failed)
    return f"status IN ({', '.join('?' * len(statuses))}) AND {_ENDED} < ?", list(statuses)


def plan_gc(db: Database, *, now: float, older_than: float, keep_failed: bool = False) -> GcPlan:
    """What a gc at epoch time ``now`` would remove: runs that ended more than ``older_than`` seconds
    before it (``keep_failed`` keeps failed ones), with their row counts. Changes nothing."""
    conn = _conn(db)
    cutoff = _cutoff(now, older_than)
    where, args = _eligible(keep_failed)
    args.append(cutoff)
    with _errors(conn), _read(conn):
        by_status = {str(s): int(n) for s, n in conn.execute(
            f"SELECT status, COUNT(*) FROM runs WHERE {where} GROUP BY status ORDER BY status", args)}
        oldest, newest = conn.execute(f"SELECT MIN({_ENDED}), MAX({_ENDED}) FROM runs WHERE {where}",
                                      args).fetchone()
        rows = {"runs": sum(by_status.values())}
        for table in RUN_TABLES:
            (n,) = conn.execute(f"SELECT COUNT(*) FROM {table} WHERE run_id IN (SELECT id FROM runs WHERE {where})",
                                args).fetchone()
            rows[table] = int(n)
    return GcPlan(cutoff=cutoff, runs=rows["runs"], rows=rows, by_status=by_status,
                  oldest_ended=None if oldest is None else float(oldest),
                  newest_ended=None if newest is None else float(newest))


# -- reading runs -----------------------------------------------------------------------


def export_runs(db: Database, run_ids: Iterable[str]) -> list[dict[str, Any]]:
    """Archive records of these runs (unknown ids are left out), in the order given: the run row and
    every row of it in ``RUN_TABLES``, as column -> value objects exactly as stored."""
    conn = _conn(db)
    ids = list(dict.fromkeys(run_ids))
    with _errors(conn), _read(conn):
        return _export(conn, ids)


def _export(conn: sqlite3.Connection, ids: Sequence[str]) -> list[dict[str, Any]]:
    param = json.dumps(list(ids))
    runs = {row["id"]: row for row in _rows(conn, f"SELECT * FROM runs WHERE id IN {_IDS}", param)}
    children: dict[str, dict[str, list[dict[str, Any]]]] = {run_id: {t: [] for t in RUN_TABLES} for run_id in runs}
    for table in RUN_TABLES:
        order = "id" if table == "events" else "rowid"
        for row in _rows(conn, f"SELECT * FROM {table} WHERE run_id IN {_IDS} ORDER BY {order}", param):
            if row["run_id"] in children:
                children[row["run_id"]][table].append(row)
    return [{"format": ARCHIVE_FORMAT, "version": _VERSION, "run": runs[i], **children[i]} for i in ids if i in runs]


def _rows(conn: sqlite3.Connection, sql: str, *args: Any) -> Iterator[dict[str, Any]]:
    cursor = conn.execute(sql, args)
    names = [d[0] for d in cursor.description]
    for row in cursor:
        yield dict(zip(names, row, strict=True))


def _fingerprint(record: dict[str, Any]) -> tuple[Any, ...]:
    return (tuple(sorted(record["run"].items())), *(len(record[t]) for t in RUN_TABLES))


def _current_fingerprints(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, tuple[Any, ...]]:
    param = json.dumps(list(ids))
    counts: dict[str, dict[str, int]] = {}
    for table in RUN_TABLES:
        for run_id, n in conn.execute(f"SELECT run_id, COUNT(*) FROM {table} WHERE run_id IN {_IDS} GROUP BY run_id",
                                      (param,)):
            counts.setdefault(run_id, {})[table] = int(n)
    return {row["id"]: (tuple(sorted(row.items())), *(counts.get(row["id"], {}).get(t, 0) for t in RUN_TABLES))
            for row in _rows(conn, f"SELECT * FROM runs WHERE id IN {_IDS}", param)}


# -- removing ---------------------------------------------------------------------------


def gc_runs(db: Database, *, now: float, older_than: float, archive: str | os.PathLike[str] | IO[bytes] | None,
            keep_failed: bool = False, batch_size: int = 500, progress: ProgressFn | None = None) -> GcResult:
    """Remove runs that ended more than ``older_than`` seconds before epoch time ``now``, with all their
    rows, ``batch_size`` runs per transaction; each batch is written to ``archive`` (a file to create,
    or an open binary file) and flushed to disk before its rows are deleted. ``archive=None`` deletes
    without a copy. ``progress(done, total)`` is called after each batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    conn = _conn(db)
    cutoff = _cutoff(now, older_than)
    total = plan_gc(conn, now=now, older_than=older_than, keep_failed=keep_failed).runs
    where, base_args = _eligible(keep_failed)
    rows = dict.fromkeys(("runs", *RUN_TABLES), 0)
    removed = skipped = written = batches = done = 0
    sink: IO[bytes] | None = None
    owned = False
    target: str | None = None
    after = 0  # the rowid of the last run looked at: each page continues the scan, so all of it is one pass
    if progress is not None:
        progress(0, total)
    try:
        while True:
            with _errors(conn):
                # '+status': walk the table in rowid order rather than sort the status index's matches every page
                page = conn.execute(f"SELECT rowid, id FROM runs WHERE rowid > ? AND +{where} ORDER BY rowid LIMIT ?",
                                    (after, *base_args, cutoff, batch_size)).fetchall()
            if not page:
                break
            after = int(page[-1][0])
            ids = [str(r[1]) for r in page]
            records: list[dict[str, Any]] = []
            read: dict[str, tuple[Any, ...]] = {}
            payload = b""
            if archive is not None:
                with _errors(conn), _read(conn):
                    records = _export(conn, ids)
                read = {r["run"]["id"]: _fingerprint(r) for r in records}
                payload = _encode(records)
            with _errors(conn), transaction(conn):
                if archive is not None:
                    # what was read must still be what is there: a run resumed or written to meanwhile stays
                    current = _current_fingerprints(conn, ids)
                    keep = [i for i in ids if i in read and current.get(i) == read[i]]
                    if len(keep) != len(records):
                        kept = set(keep)
                        records = [r for r in records if r["run"]["id"] in kept]
                        payload = _encode(records)
                    if records:
                        if sink is None:
                            sink, owned, target = _open_archive(archive)
                        _write(sink, payload, target)
                        written += len(payload)
                else:
                    # no copy to keep consistent: delete what is still eligible now
                    keep = [str(r[0]) for r in conn.execute(f"SELECT id FROM runs WHERE id IN {_IDS} AND {where}",
                                                            (json.dumps(ids), *base_args, cutoff))]
                counts = _delete(conn, keep)
            for table, n in counts.items():
                rows[table] += n
            removed += len(keep)
            skipped += len(ids) - len(keep)
            done += len(ids)
            batches += 1
            if progress is not None:
                progress(done, max(total, done))
    finally:
        if sink is not None and owned:
            sink.close()
    return GcResult(cutoff=cutoff, runs=removed, rows=rows, archive=target, bytes_archived=written, skipped=skipped,
                    batches=batches)


def _delete(conn: sqlite3.Connection, ids: Sequence[str]) -> dict[str, int]:
    counts = dict.fromkeys(("runs", *RUN_TABLES), 0)
    if not ids:
        return counts
    param = json.dumps(list(ids))
    for table in RUN_TABLES:
        counts[table] = conn.execute(f"DELETE FROM {table} WHERE run_id IN {_IDS}", (param,)).rowcount
    counts["runs"] = conn.execute(f"DELETE FROM runs WHERE id IN {_IDS}", (param,)).rowcount
    return counts


def _encode(records: Sequence[dict[str, Any]]) -> bytes:
    text = "".join(json.dumps(r, default=_blob, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records)
    return gzip.compress(text.encode("utf-8"), compresslevel=6, mtime=0)


def _blob(value: object) -> Any:
    if isinstance(value, bytes):  # no run column is a BLOB, but SQLite would let one in
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"cannot archive a {type(value).__name__}")


def _unblob(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"$bytes"}:
        return base64.b64decode(value["$bytes"])
    return value


def _open_archive(archive: str | os.PathLike[str] | IO[bytes]) -> tuple[IO[bytes], bool, str | None]:
    """(file, whether gc_runs opened it and closes it, its path)."""
    if not isinstance(archive, (str, os.PathLike)):
        name = getattr(archive, "name", None)
        return archive, False, name if isinstance(name, str) else None
    path = Path(archive)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return open(path, "xb"), True, str(path)
    except FileExistsError:
        raise user_error(StoreError("the archive file exists already: not overwriting it", path=str(path))) from None
    except OSError as exc:
        raise user_error(StoreError(f"cannot create the archive: {exc.strerror or exc}", path=str(path))) from None


def _write(sink: IO[bytes], payload: bytes, target: str | None) -> None:
    try:
        sink.write(payload)
        sink.flush()
        try:
            os.fsync(sink.fileno())
        except (AttributeError, OSError, io.UnsupportedOperation):
            pass  # an in-memory file: nothing to sync
    except OSError as exc:
        raise StoreError(f"cannot write the archive: {exc.strerror or exc}", path=target or "") from None


def compact(db: Database, *, vacuum: bool = False) -> tuple[int, int, int]:
    """Fold the WAL into the database and truncate it (``PRAGMA wal_checkpoint(TRUNCATE)``), after a
    ``VACUUM`` with ``vacuum`` (which rewrites the file without its free pages). Returns the
    checkpoint's (busy, WAL frames, frames checkpointed): busy is 1 when a reader kept it from finishing."""
    conn = _conn(db)
    with _errors(conn):
        if vacuum:
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            conn.execute("VACUUM")
        row = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return (int(row[0]), int(row[1]), int(row[2])) if row is not None else (0, 0, 0)


# -- restoring --------------------------------------------------------------------------


def restore_runs(db: Database, source: str | os.PathLike[str] | IO[bytes], *, batch_size: int = 500,
                 progress: Callable[[int], None] | None = None) -> RestoreResult:
    """Import an archive written by ``gc_runs``: runs already in the database are skipped (so restoring
    twice changes nothing), the others come back with identical rows, ``batch_size`` runs per
    transaction. ``progress(lines read)`` is called after each batch."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    conn = _conn(db)
    where = str(source) if isinstance(source, (str, os.PathLike)) else str(getattr(source, "name", "archive"))
    rows = dict.fromkeys(("runs", *RUN_TABLES), 0)
    restored = skipped = lines = 0
    truncated = False
    columns = {t: _columns(conn, t) for t in ("runs", *RUN_TABLES)}
    try:
        opened = gzip.open(source, "rb") if isinstance(source, (str, os.PathLike)) else gzip.GzipFile(fileobj=source)
    except OSError as exc:
        raise user_error(StoreError(f"cannot read the archive: {exc.strerror or exc}", path=where)) from None
    with opened as fh:
        pending: list[tuple[int, dict[str, Any]]] = []
        reader = iter(fh)
        while True:
            try:
                raw = next(reader, None)
            except EOFError:  # a gzip member cut short: the gc that wrote it was killed mid-batch
                truncated, raw = True, None
            except (OSError, zlib.error) as exc:  # BadGzipFile is an OSError
                raise user_error(StoreError(f"not a readable gzip archive: {exc}", path=where)) from None
            if raw is not None:
                lines += 1
                if raw.strip():
                    pending.append((lines, _record(raw, lines, where)))
            if pending and (raw is None or len(pending) >= batch_size):
                with _errors(conn), transaction(conn):
                    for line, record in pending:
                        if _insert(conn, record, columns, rows, line, where):
                            restored += 1
                        else:
                            skipped += 1
                pending = []
                if progress is not None:
                    progress(lines)
            if raw is None:
                break
    return RestoreResult(restored=restored, skipped=skipped, rows=rows, truncated=truncated)


def _record(raw: bytes, line: int, where: str) -> dict[str, Any]:
    try:
        record = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise user_error(StoreError(f"line {line}: not JSON ({exc})", path=where)) from None
    if not isinstance(record, dict) or record.get("format") != ARCHIVE_FORMAT:
        raise user_error(StoreError(f"line {line}: not an agentfleet run archive record", path=where))
    if record.get("version") != _VERSION:
        raise user_error(StoreError(f"line {line}: archive version {record.get('version')!r} is not one this "
                                    f"agentfleet reads ({_VERSION})", path=where))
    run = record.get("run")
    if not isinstance(run, dict) or not isinstance(run.get("id"), str):
        raise user_error(StoreError(f"line {line}: the record has no run", path=where))
    for table in RUN_TABLES:
        value = record.setdefault(table, [])
        if not isinstance(value, list) or not all(isinstance(r, dict) for r in value):
            raise user_error(StoreError(f"line {line}: {table} is not a list of rows", path=where))
    return record


def _insert(conn: sqlite3.Connection, record: dict[str, Any], columns: dict[str, list[str]], rows: dict[str, int],
            line: int, where: str) -> bool:
    run = record["run"]
    if conn.execute("SELECT 1 FROM runs WHERE id = ?", (run["id"],)).fetchone() is not None:
        return False
    events = record["events"]
    ids = [e["id"] for e in events if e.get("id") is not None]
    fresh_ids = bool(ids) and conn.execute(f"SELECT COUNT(*) FROM events WHERE id IN {_IDS}",
                                           (json.dumps(ids),)).fetchone()[0] > 0
    for table in ("runs", *RUN_TABLES):
        table_rows = [run] if table == "runs" else record[table]
        if table == "events" and fresh_ids:
            table_rows = [{k: v for k, v in e.items() if k != "id"} for e in table_rows]
        for row in table_rows:
            unknown = set(row) - set(columns[table])
            if unknown:
                raise user_error(StoreError(f"line {line}: {table} has no column {sorted(unknown)[0]!r} (an archive "
                                            "of a newer agentfleet?)", path=where))
            names = [c for c in columns[table] if c in row]
            verb = "INSERT" if table in ("runs", "events") else "INSERT OR REPLACE"
            conn.execute(f"{verb} INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})",
                         [_unblob(row[c]) for c in names])
            rows[table] += 1
    return True


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    with _errors(conn):
        return [str(r[1]) for r in conn.execute(f"PRAGMA table_info({table})")]


# -- describing -------------------------------------------------------------------------


def store_info(db: Database, path: str | os.PathLike[str] | None = None) -> StoreInfo:
    """Sizes of the database files (of ``path``, or the connection's own file), rows per table (the run
    tables and, when present, artifacts, memory, cache and benchmark tables), runs by status, the
    oldest and newest run, and the free pages a VACUUM would return."""
    conn = _conn(db)
    where = str(path) if path is not None else _main_file(db, conn)
    with _errors(conn), _read(conn):
        present = {str(r[0]) for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        tables = {}
        for table in ("runs", *RUN_TABLES, *_OTHER_TABLES):
            if table in present:
                tables[table] = int(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
        by_status: dict[str, int] = {}
        oldest = newest = None
        if "runs" in present:
            by_status = {str(s): int(n) for s, n in
                         conn.execute("SELECT status, COUNT(*) FROM runs GROUP BY status ORDER BY status")}
            oldest, newest = conn.execute("SELECT MIN(created_at), MAX(created_at) FROM runs").fetchone()
        orphans = 0
        if {"artifact_links", "runs"} <= present:
            orphans = int(conn.execute("SELECT COUNT(*) FROM artifact_links WHERE run_id NOT IN"
                                       " (SELECT id FROM runs)").fetchone()[0])
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        page_count = int(conn.execute("PRAGMA page_count").fetchone()[0])
        freelist = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    return StoreInfo(path=where, files=store_files(where), page_size=page_size, page_count=page_count,
                     freelist_pages=freelist, tables=tables, runs_by_status=by_status,
                     oldest_run=None if oldest is None else float(oldest),
                     newest_run=None if newest is None else float(newest), orphan_artifact_links=orphans)


# -- connections ------------------------------------------------------------------------


def _conn(db: Database) -> sqlite3.Connection:
    if isinstance(db, RunStore):
        db.flush()  # its buffered rows first, so counts and copies see them
        return db._db
    return db


def _main_file(db: Database, conn: sqlite3.Connection) -> str:
    if isinstance(db, RunStore):
        return db.path
    rows = conn.execute("PRAGMA database_list").fetchall()
    return next((str(r[2]) for r in rows if r[1] == "main"), "") or ":memory:"


def _cutoff(now: float, older_than: float) -> float:
    if not math.isfinite(now) or not math.isfinite(older_than) or older_than <= 0:
        raise ValueError(f"older_than must be a positive number of seconds, got {older_than!r}")
    return now - older_than


@contextmanager
def _read(conn: sqlite3.Connection) -> Iterator[None]:
    """One read transaction (a consistent snapshot under WAL), unless the caller has one open."""
    if conn.in_transaction:
        yield
        return
    conn.execute("BEGIN")
    try:
        yield
    finally:
        if conn.in_transaction:
            conn.execute("COMMIT")


@contextmanager
def _errors(conn: sqlite3.Connection) -> Iterator[None]:
    try:
        yield
    except sqlite3.Error as exc:
        rows = conn.execute("PRAGMA database_list").fetchall() if _usable(conn) else []
        path = next((str(r[2]) for r in rows if r[1] == "main"), "")
        raise StoreError(f"run database: {exc}", path=path) from None


def _usable(conn: sqlite3.Connection) -> bool:
    try:
        conn.execute("SELECT 1")
    except sqlite3.Error:
        return False
    return True
