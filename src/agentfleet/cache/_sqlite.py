"""L3: a persistent cache level in the run database, shared by processes and kept across runs.

# Design
# Three tables of our own in the run database file (one file to copy or delete):
#   cache_entries(key PK, value JSON text, created, expires, accessed, size, tags JSON array)
#   cache_tags(tag, key)              which entries carry a tag (for invalidation)
#   cache_tag_edges(source, derived)  the tag graph: invalidating ``source`` invalidates ``derived``
# Every write is its own committed transaction (WAL, busy timeout), so another process
# sees an entry as soon as ``put`` returns.
#
# Size is bounded in bytes and entries with LRU-ish eviction: ``accessed`` is refreshed on
# a hit only when it is older than ``touch_interval`` seconds (a write per hit would make
# every read a write transaction), and a put that goes over a limit first drops expired
# entries, then the least recently accessed ones. The totals are read with SUM/COUNT inside
# the put's transaction, so they are exact across processes (a scan; fine for the tens of
# thousands of entries a run database holds).
#
# The tag graph's closure is one recursive CTE (UNION, so cycles terminate).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from ..errors import StoreError
from ..store import DEFAULT_DB
from ..store._db import connect, transaction
from ._values import CacheHit, CacheValue, encode_value

__all__ = ["SqliteCache", "SqliteCacheStatistics"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS cache_entries (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        created REAL NOT NULL,
        expires REAL,
        accessed REAL NOT NULL,
        size INTEGER NOT NULL,
        tags TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS cache_entries_accessed ON cache_entries(accessed)",
    """CREATE TABLE IF NOT EXISTS cache_tags (
        tag TEXT NOT NULL,
        key TEXT NOT NULL,
        PRIMARY KEY (tag, key)
    )""",
    "CREATE INDEX IF NOT EXISTS cache_tags_key ON cache_tags(key)",
    """CREATE TABLE IF NOT EXISTS cache_tag_edges (
        source TEXT NOT NULL,
        derived TEXT NOT NULL,
        PRIMARY KEY (source, derived)
    )""",
)

_CLOSURE = (
    "WITH RECURSIVE closure(tag) AS (SELECT value FROM json_each(?)"
    " UNION SELECT e.derived FROM cache_tag_edges e JOIN closure c ON e.source = c.tag)"
    " SELECT tag FROM closure"
)


@dataclass(frozen=True, slots=True)
class SqliteCacheStatistics:
    """What the SQLite level holds (all processes) and what this object has done."""

    entries: int
    bytes: int
    max_entries: int
    max_bytes: int
    hits: int
    misses: int
    puts: int
    evictions: int
    expirations: int
    invalidations: int


class SqliteCache:
    """A cache level in a SQLite file (``":memory:"`` for tests, or an open connection to share).

    ``now`` is wall-clock seconds (``time.time()``), since entries outlive the process.
    """

    name = "sqlite"

    def __init__(self, path: str | os.PathLike[str] | sqlite3.Connection = DEFAULT_DB, *,
                 max_entries: int = 100_000, max_bytes: int = 256 * 1024 * 1024,
                 touch_interval: float = 1.0) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be at least 1")
        self._db, self.path, self._owned = connect(path, create=True, what="cache")
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._touch_interval = touch_interval
        self._lock = threading.RLock()
        self._hits = 0
        self._misses = 0
        self._puts = 0
        self._evictions = 0
        self._expirations = 0
        self._invalidations = 0
        try:
            with self._lock, transaction(self._db):
                for statement in _SCHEMA:
                    self._db.execute(statement)
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot create the cache tables: {exc}", path=self.path) from None

    def close(self) -> None:
        """Close the connection if this object opened it."""
        if self._owned:
            self._db.close()

    def __enter__(self) -> SqliteCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- entries -------------------------------------------------------------------------

    def get(self, key: str, now: float) -> CacheValue | None:
        """The value under ``key`` if present and not expired at ``now``."""
        hit = self.get_entry(key, now)
        return None if hit is None else hit.value

    def get_entry(self, key: str, now: float) -> CacheHit | None:
        """The entry under ``key`` with its expiry, tags and size, or None (expired entries are deleted)."""
        with self._lock:
            try:
                row = self._db.execute("SELECT value, expires, accessed, size, tags FROM cache_entries WHERE key = ?",
                                       (key,)).fetchone()
                if row is None:
                    self._misses += 1
                    return None
                value_text, expires, accessed, size, tags_text = row
                if expires is not None and now >= expires:
                    with transaction(self._db):
                        self._delete_keys([key])
                    self._expirations += 1
                    self._misses += 1
                    return None
                if now - accessed >= self._touch_interval:
                    with transaction(self._db):
                        self._db.execute("UPDATE cache_entries SET accessed = ? WHERE key = ?", (now, key))
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the cache: {exc}", path=self.path) from None
            self._hits += 1
        try:
            value = json.loads(value_text)
            tags = tuple(json.loads(tags_text))
        except ValueError as exc:
            raise StoreError(f"cache entry {key[:12]} is damaged: {exc}", path=self.path) from None
        return CacheHit(value, None if expires is None else float(expires), tags, int(size))

    def put(self, key: str, value: CacheValue, now: float, ttl: float | None = None,
            tags: Iterable[str] = ()) -> bool:
        """Store ``value`` for ``ttl`` seconds from ``now`` (None = until evicted); False if it can never fit."""
        return self.put_until(key, value, now, None if ttl is None else now + ttl, tags)

    def put_until(self, key: str, value: CacheValue, now: float, expires: float | None,
                  tags: Iterable[str] = ()) -> bool:
        """Store ``value`` until the absolute time ``expires``; committed before this returns."""
        text = encode_value(value)
        size = len(text.encode("utf-8"))
        tag_list = list(dict.fromkeys(tags))
        with self._lock:
            self._puts += 1
            try:
                with transaction(self._db):
                    self._delete_keys([key])
                    if size > self._max_bytes:
                        return False
                    self._db.execute(
                        "INSERT INTO cache_entries (key, value, created, expires, accessed, size, tags)"
                        " VALUES (?, ?, ?, ?, ?, ?, ?)", (key, text, now, expires, now, size, json.dumps(tag_list)))
                    self._db.executemany("INSERT OR IGNORE INTO cache_tags (tag, key) VALUES (?, ?)",
                                         [(tag, key) for tag in tag_list])
                    self._make_room(now)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write to the cache: {exc}", path=self.path) from None
        return True

    def delete(self, key: str) -> bool:
        """Remove ``key``; whether it was there."""
        with self._lock:
            try:
                with transaction(self._db):
                    return self._delete_keys([key]) > 0
            except sqlite3.Error as exc:
                raise StoreError(f"cannot delete from the cache: {exc}", path=self.path) from None

    def invalidate_tags(self, tags: Collection[str]) -> set[str]:
        """Remove every entry carrying any of ``tags``; the keys removed."""
        if not tags:
            return set()
        with self._lock:
            try:
                with transaction(self._db):
                    rows = self._db.execute(
                        "SELECT DISTINCT key FROM cache_tags WHERE tag IN (SELECT value FROM json_each(?))",
                        (json.dumps(list(tags)),)).fetchall()
                    keys = [str(r[0]) for r in rows]
                    self._delete_keys(keys)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot invalidate cache tags: {exc}", path=self.path) from None
            self._invalidations += len(keys)
        return set(keys)

    def clear(self) -> None:
        """Remove every entry (the tag graph stays: it describes tags, not entries)."""
        with self._lock:
            try:
                with transaction(self._db):
                    self._db.execute("DELETE FROM cache_tags")
                    self._db.execute("DELETE FROM cache_entries")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot clear the cache: {exc}", path=self.path) from None

    # -- the tag graph -------------------------------------------------------------------

    def add_edges(self, edges: Iterable[tuple[str, str]]) -> None:
        """Record ``(source, derived)`` pairs: invalidating ``source`` will invalidate ``derived``."""
        pairs = [(s, d) for s, d in edges if s != d]
        if not pairs:
            return
        with self._lock:
            try:
                with transaction(self._db):
                    self._db.executemany("INSERT OR IGNORE INTO cache_tag_edges (source, derived) VALUES (?, ?)",
                                         pairs)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot record cache tag edges: {exc}", path=self.path) from None

    def closure(self, tags: Iterable[str]) -> set[str]:
        """``tags`` and every tag derived from them, transitively."""
        with self._lock:
            try:
                rows = self._db.execute(_CLOSURE, (json.dumps(list(tags)),)).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read the cache tag graph: {exc}", path=self.path) from None
        return {str(r[0]) for r in rows}

    def statistics(self) -> SqliteCacheStatistics:
        """Entries and bytes stored (by every process), limits, and this object's counts."""
        with self._lock:
            count, total = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM cache_entries").fetchone()
            return SqliteCacheStatistics(
                entries=int(count), bytes=int(total), max_entries=self._max_entries, max_bytes=self._max_bytes,
                hits=self._hits, misses=self._misses, puts=self._puts, evictions=self._evictions,
                expirations=self._expirations, invalidations=self._invalidations,
            )

    def _delete_keys(self, keys: list[str]) -> int:
        if not keys:
            return 0
        packed = json.dumps(keys)
        self._db.execute("DELETE FROM cache_tags WHERE key IN (SELECT value FROM json_each(?))", (packed,))
        cur = self._db.execute("DELETE FROM cache_entries WHERE key IN (SELECT value FROM json_each(?))", (packed,))
        return max(cur.rowcount, 0)

    def _make_room(self, now: float) -> None:
        count, total = self._db.execute("SELECT COUNT(*), COALESCE(SUM(size), 0) FROM cache_entries").fetchone()
        if count <= self._max_entries and total <= self._max_bytes:
            return
        expired = [str(r[0]) for r in self._db.execute(
            "SELECT key FROM cache_entries WHERE expires IS NOT NULL AND expires <= ?", (now,)).fetchall()]
        if expired:
            self._delete_keys(expired)
            self._expirations += len(expired)
            count, total = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(size), 0) FROM cache_entries").fetchone()
        victims: list[str] = []
        for key, size in self._db.execute("SELECT key, size FROM cache_entries ORDER BY accessed, rowid"):
            if count <= self._max_entries and total <= self._max_bytes:
                break
            victims.append(str(key))
            count -= 1
            total -= int(size)
        self._delete_keys(victims)
        self._evictions += len(victims)

    # -- the CacheLevel protocol (thin async wrappers; SQLite calls are short and local) --

    async def lookup(self, key: str, now: float) -> CacheHit | None:
        return self.get_entry(key, now)

    async def store(self, key: str, value: CacheValue, *, now: float, expires: float | None,
                    tags: tuple[str, ...], size: int) -> None:
        self.put_until(key, value, now, expires, tags)

    async def discard_tags(self, tags: Collection[str]) -> set[str]:
        return self.invalidate_tags(tags)

    async def discard_all(self) -> None:
        self.clear()
