"""Agent memory that persists across runs: what an agent (or its team) learned, in the run database.

# Design
# An entry belongs to an owner, an agent or a team (``scope``), and sits in a category.
# The conventional categories are ``patterns``, ``mistakes``, ``best_practices`` and
# ``project_context``; any other name works. An entry with a ``key`` is a slot: adding the
# same owner/scope/category/key again replaces its content and restarts its expiry, so a
# fact that changes ("the test command is ...") is kept once, current.
#
# Memory is injected into prompts, so it is bounded three ways: an entry is truncated at
# ``max_entry_chars`` (with a visible marker: a reader knows something was cut), a category
# keeps at most ``max_entries`` per owner (the least recently updated are evicted), and
# ``for_agent`` fills a character budget newest first. Expired entries are invisible to
# every query and removed by ``purge_expired`` (and, per category, whenever one is added).
#
# Times are wall-clock epoch seconds from an injected clock: memory outlives processes,
# so a monotonic clock would mean nothing to the next run.
"""

from __future__ import annotations

import math
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any, Literal

from ..errors import ArtifactNotFound, StoreError
from ._db import apply_schema, connect, transaction
from ._sqlite import DEFAULT_DB

__all__ = [
    "CATEGORIES",
    "MemoryEntry",
    "MemoryScope",
    "MemoryStatistics",
    "MemoryStore",
    "parse_ttl",
    "render_memory",
]

MemoryScope = Literal["agent", "team"]

#: The conventional categories, in the order ``render_memory`` prints them.
CATEGORIES: tuple[str, ...] = ("project_context", "best_practices", "patterns", "mistakes")

_SCOPES: tuple[MemoryScope, ...] = ("agent", "team")
_COLUMNS = "id, owner, scope, category, key, content, created, updated, expires, source, uses"
_LIVE = "(expires IS NULL OR expires > ?)"

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS memory (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        owner TEXT NOT NULL,
        scope TEXT NOT NULL,
        category TEXT NOT NULL,
        key TEXT,
        content TEXT NOT NULL,
        created REAL NOT NULL,
        updated REAL NOT NULL,
        expires REAL,
        source TEXT,
        uses INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX IF NOT EXISTS memory_owner ON memory(owner, scope, category, updated)",
    "CREATE UNIQUE INDEX IF NOT EXISTS memory_key ON memory(owner, scope, category, key) WHERE key IS NOT NULL",
)


@dataclass(frozen=True, slots=True)
class MemoryEntry:
    """One remembered item. ``expires`` is an epoch time, or None for a permanent entry."""

    id: int
    owner: str
    scope: MemoryScope
    category: str
    key: str | None
    content: str
    created: float
    updated: float
    expires: float | None
    source: str | None
    uses: int

    def expired(self, now: float) -> bool:
        """Whether the entry has expired at epoch time ``now``."""
        return self.expires is not None and self.expires <= now


@dataclass(frozen=True, slots=True)
class MemoryStatistics:
    """What is stored, and what this store object has done since it was opened."""

    entries: int
    owners: int
    expired: int
    chars: int
    adds: int
    updates: int
    evictions: int
    truncations: int
    recalls: int


class MemoryStore:
    """Persistent agent and team memory in the run database. ``":memory:"`` works for tests.

    ``path`` may also be an open ``sqlite3.Connection``, which the store then neither
    configures nor closes. ``create=False`` refuses to create a missing database (a
    StoreError with exit code 2).
    """

    def __init__(self, path: str | os.PathLike[str] | sqlite3.Connection = DEFAULT_DB, *,
                 clock: Callable[[], float] = time.time, max_entries: int = 200, max_entry_chars: int = 8_000,
                 create: bool = True) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, got {max_entries}")
        if max_entry_chars < 100:
            raise ValueError(f"max_entry_chars must be at least 100, got {max_entry_chars}")
        self.max_entries = max_entries
        self.max_entry_chars = max_entry_chars
        self._db, self.path, self._owned = connect(path, create=create, what="memory")
        apply_schema(self._db, _SCHEMA, self.path)
        self._clock = clock
        self._lock = threading.RLock()
        self._adds = 0
        self._updates = 0
        self._evictions = 0
        self._truncations = 0
        self._recalls = 0

    def close(self) -> None:
        """Close the connection if this store opened it."""
        if self._owned:
            self._db.close()

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing -----------------------------------------------------------------------

    def add(self, owner: str, category: str, content: str, *, scope: MemoryScope = "agent", key: str | None = None,
            ttl: float | str | None = None, source: str | None = None) -> MemoryEntry:
        """Remember ``content``; with a ``key``, replace that slot's content and restart its expiry.

        ``ttl`` is seconds (or ``"30d"``-style text, see ``parse_ttl``); None keeps the entry
        until it is cleared or evicted. Content over ``max_entry_chars`` is truncated with a marker.
        """
        owner, category = _name("owner", owner), _name("category", category)
        _check_scope(scope)
        if not content.strip():
            raise ValueError("memory content is empty")
        seconds = parse_ttl(ttl)
        key = key or None
        content, truncated = self._fit(content)
        with self._lock:
            now = self._clock()
            expires = now + seconds if seconds is not None else None
            try:
                with transaction(self._db):
                    row = None
                    if key is not None:
                        row = self._db.execute(
                            "SELECT id FROM memory WHERE owner = ? AND scope = ? AND category = ? AND key = ?",
                            (owner, scope, category, key)).fetchone()
                    if row is not None:
                        entry_id = int(row[0])
                        self._db.execute("UPDATE memory SET content = ?, updated = ?, expires = ?, source = ?"
                                         " WHERE id = ?", (content, now, expires, source, entry_id))
                    else:
                        cur = self._db.execute(
                            "INSERT INTO memory (owner, scope, category, key, content, created, updated, expires,"
                            " source, uses) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 0)",
                            (owner, scope, category, key, content, now, now, expires, source))
                        entry_id = int(cur.lastrowid or 0)
                    evicted = self._enforce_limit(owner, scope, category, keep=entry_id, now=now)
                    entry = self._row(entry_id)
            except sqlite3.Error as exc:
                raise StoreError(f"cannot write agent memory: {exc}", path=self.path) from None
            if row is None:
                self._adds += 1
            else:
                self._updates += 1
            self._evictions += evicted
            self._truncations += truncated
        assert entry is not None
        return entry

    def _fit(self, content: str) -> tuple[str, bool]:
        if len(content) <= self.max_entry_chars:
            return content, False
        marker = f" …[truncated: {len(content):,} chars, kept the first "
        keep = self.max_entry_chars - len(marker) - len(f"{self.max_entry_chars:,}]")
        marker += f"{keep:,}]"
        return content[:keep] + marker, True

    def _enforce_limit(self, owner: str, scope: str, category: str, *, keep: int, now: float) -> int:
        where = "owner = ? AND scope = ? AND category = ?"
        self._db.execute(f"DELETE FROM memory WHERE {where} AND expires IS NOT NULL AND expires <= ?",
                         (owner, scope, category, now))
        (count,) = self._db.execute(f"SELECT COUNT(*) FROM memory WHERE {where}", (owner, scope, category)).fetchone()
        over = int(count) - self.max_entries
        if over <= 0:
            return 0
        self._db.execute(
            f"DELETE FROM memory WHERE id IN (SELECT id FROM memory WHERE {where} AND id != ?"
            " ORDER BY updated ASC, id ASC LIMIT ?)", (owner, scope, category, keep, over))
        return over

    def delete(self, entry_id: int) -> bool:
        """Forget one entry; False if there was none with that id."""
        with self._lock, transaction(self._db):
            return self._db.execute("DELETE FROM memory WHERE id = ?", (entry_id,)).rowcount > 0

    def clear(self, owner: str | None = None, *, scope: MemoryScope | None = None, category: str | None = None) -> int:
        """Forget every entry matching the filters (all of them when none is given); returns how many."""
        where, params = _filters(owner, scope, category)
        with self._lock, transaction(self._db):
            return int(self._db.execute(f"DELETE FROM memory WHERE {where}", params).rowcount)

    def count(self, owner: str | None = None, *, scope: MemoryScope | None = None, category: str | None = None) -> int:
        """How many stored entries ``clear`` with the same filters would remove (expired ones included)."""
        where, params = _filters(owner, scope, category)
        with self._lock:
            (n,) = self._db.execute(f"SELECT COUNT(*) FROM memory WHERE {where}", params).fetchone()
        return int(n)

    def purge_expired(self) -> int:
        """Remove every expired entry; returns how many."""
        with self._lock, transaction(self._db):
            return int(self._db.execute("DELETE FROM memory WHERE expires IS NOT NULL AND expires <= ?",
                                        (self._clock(),)).rowcount)

    # -- reading -----------------------------------------------------------------------

    def get(self, entry_id: int) -> MemoryEntry:
        """One entry by id; ArtifactNotFound (exit code 2) if there is none or it has expired."""
        with self._lock:
            entry = self._row(entry_id)
            now = self._clock()
        if entry is None:
            raise ArtifactNotFound(f"no memory entry {entry_id} in this database", path=self.path)
        if entry.expired(now):
            raise ArtifactNotFound(f"memory entry {entry_id} has expired", path=self.path)
        return entry

    def entries(self, owner: str | None, *, scope: MemoryScope | None = "agent",
                categories: Iterable[str] | None = None, limit: int | None = None) -> list[MemoryEntry]:
        """Live entries of ``owner`` in ``scope``, most recently updated first.

        ``owner=None`` or ``scope=None`` match any owner or scope.
        """
        where, params = _filters(owner, scope, None)
        clauses, args = [where, _LIVE], [*params]
        with self._lock:
            args.append(self._clock())
            cats = _categories(categories)
            if cats is not None:
                clauses.append(f"category IN ({', '.join('?' * len(cats))})")
                args.extend(cats)
            sql = f"SELECT {_COLUMNS} FROM memory WHERE {' AND '.join(clauses)} ORDER BY updated DESC, id DESC"
            if limit is not None:
                sql += " LIMIT ?"
                args.append(max(0, limit))
            rows = self._db.execute(sql, args).fetchall()
        return [_entry(r) for r in rows]

    def for_agent(self, agent: str, *, team: str | None = None, categories: Iterable[str] | None = None,
                  max_chars: int | None = None) -> list[MemoryEntry]:
        """What to put in ``agent``'s context: its entries and its team's, newest first, within ``max_chars``.

        Entries are taken newest first; one that does not fit in what is left of the budget
        is skipped and smaller, older ones may still fit. Each returned entry's ``uses`` goes up by one.
        """
        if max_chars is not None and max_chars < 0:
            raise ValueError(f"max_chars must not be negative, got {max_chars}")
        clauses = [_LIVE, "((owner = ? AND scope = 'agent') OR (owner = ? AND scope = 'team'))"]
        with self._lock:
            args: list[Any] = [self._clock(), agent, team]
            cats = _categories(categories)
            if cats is not None:
                clauses.append(f"category IN ({', '.join('?' * len(cats))})")
                args.extend(cats)
            rows = self._db.execute(f"SELECT {_COLUMNS} FROM memory WHERE {' AND '.join(clauses)}"
                                    " ORDER BY updated DESC, id DESC", args).fetchall()
            chosen: list[MemoryEntry] = []
            left = max_chars
            for entry in map(_entry, rows):
                if left is not None:
                    if len(entry.content) > left:
                        continue
                    left -= len(entry.content)
                chosen.append(entry)
            if chosen:
                with transaction(self._db):
                    self._db.executemany("UPDATE memory SET uses = uses + 1 WHERE id = ?", [(e.id,) for e in chosen])
            self._recalls += len(chosen)
        return [replace(e, uses=e.uses + 1) for e in chosen]

    def owners(self) -> list[tuple[str, MemoryScope, int]]:
        """(owner, scope, live entries) for every owner with memory, sorted by owner then scope."""
        with self._lock:
            rows = self._db.execute(f"SELECT owner, scope, COUNT(*) FROM memory WHERE {_LIVE}"
                                    " GROUP BY owner, scope ORDER BY owner, scope", (self._clock(),)).fetchall()
        return [(str(r[0]), _scope(r[1]), int(r[2])) for r in rows]

    def statistics(self) -> MemoryStatistics:
        """Live entries, owners, expired-but-not-purged entries, content size, and this object's activity."""
        with self._lock:
            now = self._clock()
            live, chars, owners = self._db.execute(
                f"SELECT COUNT(*), COALESCE(SUM(LENGTH(content)), 0), COUNT(DISTINCT owner || char(0) || scope)"
                f" FROM memory WHERE {_LIVE}", (now,)).fetchone()
            (expired,) = self._db.execute("SELECT COUNT(*) FROM memory WHERE expires IS NOT NULL AND expires <= ?",
                                          (now,)).fetchone()
            return MemoryStatistics(entries=int(live), owners=int(owners), expired=int(expired), chars=int(chars),
                                    adds=self._adds, updates=self._updates, evictions=self._evictions,
                                    truncations=self._truncations, recalls=self._recalls)

    def _row(self, entry_id: int) -> MemoryEntry | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM memory WHERE id = ?", (entry_id,)).fetchone()
        return _entry(row) if row is not None else None


# -- parsing and rendering ------------------------------------------------------------

_TTL = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw]?)$")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
_PERMANENT = ("permanent", "never", "none", "forever")


def parse_ttl(value: str | float | None) -> float | None:
    """Seconds from ``"30d"``, ``"12h"``, ``"15m"``, ``"45s"``, ``"2w"`` or a number; None for permanent.

    ``None`` and ``"permanent"`` (or ``"never"``) mean no expiry. Anything else raises a
    ValueError naming the value.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"invalid ttl {value!r}: give seconds or a duration like 30d, 12h, 15m, 45s")
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = value.strip().lower()
        if text in _PERMANENT:
            return None
        match = _TTL.match(text)
        if match is None:
            raise ValueError(f"invalid ttl {value!r}: give a duration like 30d, 12h, 15m, 45s, or 'permanent'")
        seconds = float(match.group(1)) * _UNITS[match.group(2)]
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValueError(f"invalid ttl {value!r}: it must be a positive duration (or 'permanent')")
    return seconds


def render_memory(entries: Iterable[MemoryEntry], *, title: str = "Memory") -> str:
    """A compact markdown block of ``entries`` grouped by category, for a system prompt; "" if none.

    The conventional categories come first in a fixed order, then others as they appear;
    within a category entries keep the order given (newest first from ``for_agent``).
    """
    groups: dict[str, list[MemoryEntry]] = {}
    for entry in entries:
        groups.setdefault(entry.category, []).append(entry)
    if not groups:
        return ""
    order = [c for c in CATEGORIES if c in groups] + [c for c in groups if c not in CATEGORIES]
    lines = [f"## {title}"]
    for category in order:
        lines.append(f"### {category}")
        for entry in groups[category]:
            text = "\n  ".join(line.rstrip() for line in entry.content.strip().splitlines())
            lines.append(f"- {entry.key}: {text}" if entry.key else f"- {text}")
    return "\n".join(lines)


# -- rows -------------------------------------------------------------------------------


def _entry(row: tuple[Any, ...]) -> MemoryEntry:
    return MemoryEntry(id=int(row[0]), owner=str(row[1]), scope=_scope(row[2]), category=str(row[3]), key=row[4],
                       content=str(row[5]), created=float(row[6]), updated=float(row[7]),
                       expires=float(row[8]) if row[8] is not None else None, source=row[9], uses=int(row[10]))


def _scope(value: object) -> MemoryScope:
    for scope in _SCOPES:
        if value == scope:
            return scope
    raise StoreError(f"unknown memory scope {value!r}")


def _check_scope(scope: object) -> None:
    if scope not in _SCOPES:
        raise ValueError(f"memory scope must be 'agent' or 'team', got {scope!r}")


def _name(what: str, value: str) -> str:
    value = value.strip()
    if not value:
        raise ValueError(f"memory {what} is empty")
    return value


def _categories(categories: Iterable[str] | None) -> list[str] | None:
    if categories is None:
        return None
    return [categories] if isinstance(categories, str) else list(categories)


def _filters(owner: str | None, scope: MemoryScope | None, category: str | None) -> tuple[str, list[Any]]:
    clauses, params = ["1 = 1"], []
    if owner is not None:
        clauses.append("owner = ?")
        params.append(owner)
    if scope is not None:
        _check_scope(scope)
        clauses.append("scope = ?")
        params.append(scope)
    if category is not None:
        clauses.append("category = ?")
        params.append(category)
    return " AND ".join(clauses), params
