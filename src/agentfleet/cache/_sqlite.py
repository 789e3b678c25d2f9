"""L3: a persistent cache level in the run database, shared by processes and kept across runs.

# Design
# Four tables of our own in the run database file (one file to copy or delete):
#   cache_entries(key PK, value JSON text, created, expires, accessed, size, tags JSON array,
#                 hits, last_hit_at)
#   cache_tags(tag, key)              which entries carry a tag (for invalidation)
#   cache_tag_edges(source, derived)  the tag graph: invalidating ``source`` invalidates ``derived``
#   cache_counters(level PK, hits, misses, writes, evictions, saved_tokens, saved_seconds,
#                  lookup_seconds, reports)   cumulative per-level counters across runs
# Every write is its own committed transaction (WAL, busy timeout), so another process
# sees an entry as soon as ``put`` returns. Opening a file made by an older version adds the
# missing columns (ALTER TABLE ... ADD COLUMN inside the schema transaction, so two processes
# opening it at once do not race) and the missing tables.
#
# A hit is one short write: ``hits + 1`` and ``last_hit_at`` on the entry, in the same
# UPDATE that refreshes ``accessed`` (BEGIN IMMEDIATE, so it waits on the busy timeout rather
# than failing on a stale WAL snapshot). That makes an L3 hit ~0.1 ms on a local file instead
# of ~0.03 ms (a miss stays a read), which is cheap where it happens: an L3 hit replaces a
# provider call and is promoted into L1, so each process reads a key from here about once.
# ``accessed`` (the eviction order) still moves only when it is older than ``touch_interval``
# seconds. Per-entry hits therefore count reads served by this level, not the L1 hits that
# follow a promotion.
#
# Size is bounded in bytes and entries with LRU-ish eviction: a put that goes over a limit
# first drops expired entries, then the least recently accessed ones. The totals are read
# with SUM/COUNT inside the put's transaction, so they are exact across processes (a scan;
# fine for the tens of thousands of entries a run database holds).
#
# The counters are written by whoever runs the cache (the runtime, once per level at the end
# of a run) with ``add_counters``, one UPSERT adding to the stored totals; ``counters`` and
# ``summary`` read them back for ``agentfleet cache stats``.
#
# The tag graph's closure is one recursive CTE (UNION, so cycles terminate).
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import StoreError
from ..store import DEFAULT_DB
from ..store._db import connect, transaction, user_error
from ._values import CacheHit, CacheValue, encode_value

__all__ = ["SqliteCache", "SqliteCacheEntry", "SqliteCacheStatistics", "SqliteCacheSummary"]

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS cache_entries (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        created REAL NOT NULL,
        expires REAL,
        accessed REAL NOT NULL,
        size INTEGER NOT NULL,
        tags TEXT NOT NULL,
        hits INTEGER NOT NULL DEFAULT 0,
        last_hit_at REAL
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
    """CREATE TABLE IF NOT EXISTS cache_counters (
        level TEXT PRIMARY KEY,
        hits INTEGER NOT NULL DEFAULT 0,
        misses INTEGER NOT NULL DEFAULT 0,
        writes INTEGER NOT NULL DEFAULT 0,
        evictions INTEGER NOT NULL DEFAULT 0,
        saved_tokens INTEGER NOT NULL DEFAULT 0,
        saved_seconds REAL NOT NULL DEFAULT 0,
        lookup_seconds REAL NOT NULL DEFAULT 0,
        reports INTEGER NOT NULL DEFAULT 0
    )""",
)

# Columns added to cache_entries after its first version: (name, declaration) for ALTER TABLE.
_ADDED_ENTRY_COLUMNS = (
    ("hits", "INTEGER NOT NULL DEFAULT 0"),
    ("last_hit_at", "REAL"),
)

_COUNTER_FIELDS = ("hits", "misses", "writes", "evictions", "saved_tokens", "saved_seconds", "lookup_seconds")
"""The cumulative counters kept per level, in ``add_counters``' order (``counters()`` adds ``reports``)."""

_ADD_COUNTERS = (
    "INSERT INTO cache_counters (level, hits, misses, writes, evictions, saved_tokens, saved_seconds,"
    " lookup_seconds, reports) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1)"
    " ON CONFLICT(level) DO UPDATE SET hits = hits + excluded.hits, misses = misses + excluded.misses,"
    " writes = writes + excluded.writes, evictions = evictions + excluded.evictions,"
    " saved_tokens = saved_tokens + excluded.saved_tokens, saved_seconds = saved_seconds + excluded.saved_seconds,"
    " lookup_seconds = lookup_seconds + excluded.lookup_seconds, reports = reports + 1"
)

# A hit: count it, stamp it, and refresh ``accessed`` only when it is older than the touch interval.
_RECORD_HIT = (
    "UPDATE cache_entries SET hits = hits + 1, last_hit_at = ?,"
    " accessed = CASE WHEN ? - accessed >= ? THEN ? ELSE accessed END WHERE key = ?"
)

# The most-hit entries, with the model and provider when the value is a cached response.
_TOP = (
    "SELECT key, hits, last_hit_at, size, created, expires, tags,"
    " CASE WHEN json_valid(value) THEN json_extract(value, '$.model') END,"
    " CASE WHEN json_valid(value) THEN json_extract(value, '$.provider') END"
    " FROM cache_entries WHERE hits > 0 ORDER BY hits DESC, last_hit_at DESC, key LIMIT ?"
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


@dataclass(frozen=True, slots=True)
class SqliteCacheEntry:
    """One stored entry as ``summary`` reports it (model and provider when the value is a cached response)."""

    key: str
    hits: int  # reads served by the SQLite level (L1 hits after a promotion are not seen here)
    last_hit_at: float | None
    size: int  # bytes of the value's compact JSON
    created: float
    expires: float | None
    model: str | None
    provider: str | None
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SqliteCacheSummary:
    """What the SQLite level holds now, written by every process (wall-clock times, seconds)."""

    entries: int  # expired ones included until they are read or evicted
    bytes: int
    expired: int  # entries past their expiry at the time asked
    tags: int  # distinct tags carried by entries
    tag_edges: int  # derivations in the tag graph
    hits: int  # per-entry hits summed over the entries stored now
    oldest: float | None  # creation time of the oldest entry
    newest: float | None  # creation time of the newest entry
    top: tuple[SqliteCacheEntry, ...]  # most hit first; only entries hit at least once


class SqliteCache:
    """A cache level in a SQLite file (``":memory:"`` for tests, or an open connection to share).

    ``now`` is wall-clock seconds (``time.time()``), since entries outlive the process.
    """

    name = "sqlite"

    def __init__(self, path: str | os.PathLike[str] | sqlite3.Connection = DEFAULT_DB, *,
                 max_entries: int = 100_000, max_bytes: int = 256 * 1024 * 1024,
                 touch_interval: float = 1.0, create: bool = True) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be at least 1")
        # create=False: a missing file is a StoreError (exit 2) instead of a new database.
        self._db, self.path, self._owned = connect(path, create=create, what="cache")
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
                columns = {str(row[1]) for row in self._db.execute("PRAGMA table_info(cache_entries)")}
                for column, declaration in _ADDED_ENTRY_COLUMNS:
                    if column not in columns:
                        self._db.execute(f"ALTER TABLE cache_entries ADD COLUMN {column} {declaration}")
        except sqlite3.DatabaseError as exc:
            if self._owned:
                self._db.close()
            raise user_error(StoreError(f"cannot create the cache tables: {exc}", path=self.path)) from None

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
                value_text, expires, _accessed, size, tags_text = row
                if expires is not None and now >= expires:
                    with transaction(self._db):
                        self._delete_keys([key])
                    self._expirations += 1
                    self._misses += 1
                    return None
                with transaction(self._db):
                    self._db.execute(_RECORD_HIT, (now, now, self._touch_interval, now, key))
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

    def clear(self, *, tag_graph: bool = False, counters: bool = False) -> int:
        """Remove every entry; the number removed.

        The tag graph stays unless ``tag_graph`` (it describes tags, not entries), and the
        cumulative counters stay unless ``counters``.
        """
        with self._lock:
            try:
                with transaction(self._db):
                    self._db.execute("DELETE FROM cache_tags")
                    removed = self._db.execute("DELETE FROM cache_entries").rowcount
                    if tag_graph:
                        self._db.execute("DELETE FROM cache_tag_edges")
                    if counters:
                        self._db.execute("DELETE FROM cache_counters")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot clear the cache: {exc}", path=self.path) from None
        return max(removed, 0)

    # -- cumulative counters and the summary ---------------------------------------------

    def add_counters(self, level: str, *, hits: int = 0, misses: int = 0, writes: int = 0, evictions: int = 0,
                     saved_tokens: int = 0, saved_seconds: float = 0.0, lookup_seconds: float = 0.0) -> None:
        """Add to ``level``'s cumulative counters (one UPSERT, committed before this returns).

        ``level`` is a level's name ("memory", "redis", "sqlite"); ``saved_tokens`` and
        ``saved_seconds`` are the tokens and provider latency of the answers that level served
        instead of the provider; ``lookup_seconds`` is the total time its lookups took.
        """
        if not isinstance(level, str) or not level:
            raise ValueError("level must be a non-empty string")
        counts = (hits, misses, writes, evictions, saved_tokens)
        times = (saved_seconds, lookup_seconds)
        for name, amount in zip(_COUNTER_FIELDS, (*counts, *times), strict=True):
            if not math.isfinite(amount) or amount < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {amount!r}")
        with self._lock:
            try:
                with transaction(self._db):
                    self._db.execute(_ADD_COUNTERS, (level, *(int(c) for c in counts), *(float(t) for t in times)))
            except sqlite3.Error as exc:
                raise StoreError(f"cannot record cache counters: {exc}", path=self.path) from None

    def counters(self) -> dict[str, dict[str, float]]:
        """Every level's cumulative counters by name: hits, misses, writes, evictions, saved_tokens,
        saved_seconds, lookup_seconds, and reports (how many ``add_counters`` calls added to them)."""
        columns = (*_COUNTER_FIELDS, "reports")
        with self._lock:
            try:
                rows = self._db.execute(
                    f"SELECT level, {', '.join(columns)} FROM cache_counters ORDER BY level").fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"cannot read cache counters: {exc}", path=self.path) from None
        return {str(row[0]): dict(zip(columns, row[1:], strict=True)) for row in rows}

    def summary(self, now: float | None = None, *, top: int = 10) -> SqliteCacheSummary:
        """Entries, bytes, expired entries (at ``now``, default the wall clock), tags, age range, most hit."""
        if now is None:
            now = time.time()
        with self._lock:
            try:
                entries, total, expired, hits, oldest, newest = self._db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(size), 0),"
                    " COALESCE(SUM(expires IS NOT NULL AND expires <= ?), 0), COALESCE(SUM(hits), 0),"
                    " MIN(created), MAX(created) FROM cache_entries", (now,)).fetchone()
                (tags,) = self._db.execute("SELECT COUNT(DISTINCT tag) FROM cache_tags").fetchone()
                (edges,) = self._db.execute("SELECT COUNT(*) FROM cache_tag_edges").fetchone()
                rows = self._db.execute(_TOP, (top,)).fetchall() if top > 0 else []
            except sqlite3.Error as exc:
                raise StoreError(f"cannot summarise the cache: {exc}", path=self.path) from None
        return SqliteCacheSummary(
            entries=int(entries), bytes=int(total), expired=int(expired), tags=int(tags), tag_edges=int(edges),
            hits=int(hits), oldest=None if oldest is None else float(oldest),
            newest=None if newest is None else float(newest), top=tuple(_top_entry(row) for row in rows),
        )

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


def _top_entry(row: Sequence[Any]) -> SqliteCacheEntry:
    key, hits, last_hit_at, size, created, expires, tags_text, model, provider = row
    try:
        loaded = json.loads(tags_text)
        tags = tuple(str(t) for t in loaded) if isinstance(loaded, list) else ()
    except (TypeError, ValueError):
        tags = ()
    return SqliteCacheEntry(
        key=str(key), hits=int(hits), last_hit_at=None if last_hit_at is None else float(last_hit_at),
        size=int(size), created=float(created), expires=None if expires is None else float(expires),
        model=None if model is None else str(model), provider=None if provider is None else str(provider), tags=tags,
    )
