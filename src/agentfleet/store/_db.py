"""One SQLite connection recipe for the store's tables and the cache's: WAL, a busy timeout,
transactions that join a caller's, and user errors (exit 2) for a path that cannot be used.

``RunStore`` keeps its own connection code (it migrates and buffers); the artifact store,
the memory store, the SQLite cache level and the benchmark store share this one.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ..errors import StoreError

__all__ = ["apply_schema", "connect", "transaction", "user_error"]


def connect(path: str | os.PathLike[str] | sqlite3.Connection, *, create: bool,
             what: str) -> tuple[sqlite3.Connection, str, bool]:
    """(connection, path for messages, whether the caller owns and must close it)."""
    if isinstance(path, sqlite3.Connection):
        rows = path.execute("PRAGMA database_list").fetchall()
        name = next((str(r[2]) for r in rows if r[1] == "main"), "")
        return path, name or ":memory:", False
    where = str(path)
    if not create and where != ":memory:" and not os.path.exists(where):
        error = StoreError(f"no {what} database at this path yet", path=where)
        error.exit_code = 2
        raise error
    try:
        if where != ":memory:":
            Path(where).parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(where, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA busy_timeout=5000")
    except sqlite3.DatabaseError as exc:
        raise user_error(StoreError(f"cannot open {what} database: {exc}", path=where)) from None
    except OSError as exc:
        raise user_error(StoreError(f"cannot create {what} database: {exc.strerror}", path=where)) from None
    return db, where, True


def apply_schema(db: sqlite3.Connection, statements: Sequence[str], path: str) -> None:
    # One execute per statement: executescript() would COMMIT a caller's open transaction.
    try:
        with transaction(db):
            for statement in statements:
                db.execute(statement)
    except sqlite3.DatabaseError as exc:
        raise user_error(StoreError(f"cannot open database: {exc}", path=path)) from None


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[None]:
    """BEGIN ... COMMIT, or join the caller's transaction when one is open (they commit it)."""
    if db.in_transaction:
        yield
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:  # a failed COMMIT too: never leave the write lock held
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def user_error(exc: StoreError) -> StoreError:
    """A database path that cannot be used is the user's to fix: exit code 2."""
    exc.exit_code = 2
    return exc
