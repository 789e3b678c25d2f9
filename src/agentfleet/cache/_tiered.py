"""The tiered cache: memory (L1), Redis (L2), SQLite (L3), read in order, written through.

# Design
# ``get`` asks each level in order; a hit at level i is copied into levels 0..i-1 with its
# remaining lifetime and its tags (so a promoted entry expires and invalidates exactly as the
# original), which is what makes the next read an L1 hit. ``put`` writes every level.
# A level that fails (``CacheError``, ``StoreError``) counts an error and is skipped: a
# broken cache slows a run down, it never fails it.
#
# Tags and derivations: an entry carries its ``tags`` and the tags it is ``derived_from``;
# put records edges ``source -> tag`` for each pair in the tag graph. ``invalidate(tag)``
# takes the tag's closure under the graph and removes, in every level, each entry carrying
# any tag in it. The graph lives in the first SQLite level (persistent and shared between
# processes) or, without one, in memory.
#
# Times: ``clock`` is wall-clock seconds (entries outlive processes, so monotonic time
# would not do); ``timer`` measures lookup latency (perf_counter by default).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ..errors import CacheError, StoreError
from ._graph import TagGraph, TagGraphStore
from ._memory import MemoryCache
from ._sqlite import SqliteCache
from ._values import CacheHit, CacheValue, encode_value

__all__ = ["CacheLevel", "LevelStatistics", "TieredCache", "TieredCacheStatistics"]


class CacheLevel(Protocol):
    """One level of a tiered cache. ``MemoryCache``, ``RedisCache`` and ``SqliteCache`` are levels.

    Times are wall-clock seconds; ``expires`` is absolute (None = never). Failures raise
    ``CacheError`` or ``StoreError``.
    """

    name: str

    async def lookup(self, key: str, now: float) -> CacheHit | None: ...

    async def store(self, key: str, value: CacheValue, *, now: float, expires: float | None,
                    tags: tuple[str, ...], size: int) -> None: ...

    async def discard_tags(self, tags: Collection[str]) -> set[str]: ...

    async def discard_all(self) -> None: ...


@dataclass(frozen=True, slots=True)
class LevelStatistics:
    """One level as the tiered cache saw it: lookups, hits, misses, errors and lookup latency (seconds)."""

    name: str
    lookups: int
    hits: int
    misses: int
    errors: int
    latency_total: float
    latency_max: float

    @property
    def latency_mean(self) -> float:
        return self.latency_total / self.lookups if self.lookups else 0.0


@dataclass(frozen=True, slots=True)
class TieredCacheStatistics:
    """Gets, hits (at any level), misses (at every level), puts, promotions, invalidations, per level."""

    gets: int
    hits: int
    misses: int
    puts: int
    promotions: int
    invalidated: int
    levels: tuple[LevelStatistics, ...]


class _LevelCounts:
    __slots__ = ("errors", "hits", "latency_max", "latency_total", "lookups", "misses")

    def __init__(self) -> None:
        self.lookups = 0
        self.hits = 0
        self.misses = 0
        self.errors = 0
        self.latency_total = 0.0
        self.latency_max = 0.0


class TieredCache:
    """Levels read fastest first, promoted on a hit, written through on a put; tag invalidation across all."""

    def __init__(self, levels: Sequence[CacheLevel], *, graph: TagGraphStore | None = None,
                 default_ttl: float | None = None, clock: Callable[[], float] = time.time,
                 timer: Callable[[], float] = time.perf_counter) -> None:
        if not levels:
            raise ValueError("a tiered cache needs at least one level")
        self._levels = tuple(levels)
        if graph is None:
            graph = next((level for level in self._levels if isinstance(level, SqliteCache)), None) or TagGraph()
        self._graph = graph
        self._default_ttl = default_ttl
        self._clock = clock
        self._timer = timer
        self._counts = tuple(_LevelCounts() for _ in self._levels)
        # The fast path: an in-memory first level is read synchronously, without a CacheHit.
        first = self._levels[0]
        self._l1 = first if isinstance(first, MemoryCache) else None
        self._gets = 0
        self._hits = 0
        self._misses = 0
        self._puts = 0
        self._promotions = 0
        self._invalidated = 0
        #: the name of the level that answered the last ``get`` (None after a miss)
        self.last_level: str | None = None

    @property
    def levels(self) -> tuple[CacheLevel, ...]:
        return self._levels

    async def get(self, key: str) -> CacheValue | None:
        """The value from the first level that has it (copied into the levels above), or None."""
        self._gets += 1
        now = self._clock()
        timer = self._timer
        start = 0
        l1 = self._l1
        if l1 is not None:
            counts = self._counts[0]
            started = timer()
            value = l1.get(key, now)
            elapsed = timer() - started
            counts.lookups += 1
            counts.latency_total += elapsed
            if elapsed > counts.latency_max:
                counts.latency_max = elapsed
            if value is not None:
                counts.hits += 1
                self._hits += 1
                self.last_level = l1.name
                return value
            counts.misses += 1
            start = 1
        for index in range(start, len(self._levels)):
            level = self._levels[index]
            counts = self._counts[index]
            started = timer()
            try:
                hit = await level.lookup(key, now)
            except (CacheError, StoreError):
                hit = None
                counts.errors += 1
            elapsed = timer() - started
            counts.lookups += 1
            counts.latency_total += elapsed
            if elapsed > counts.latency_max:
                counts.latency_max = elapsed
            if hit is None:
                counts.misses += 1
                continue
            counts.hits += 1
            self._hits += 1
            for upper in range(index):
                if await self._store(upper, key, hit.value, now, hit.expires, hit.tags, hit.size):
                    self._promotions += 1
            self.last_level = level.name
            return hit.value
        self._misses += 1
        self.last_level = None
        return None

    async def put(self, key: str, value: CacheValue, *, ttl: float | None = None, tags: Iterable[str] = (),
                  derived_from: Iterable[str] = ()) -> None:
        """Write ``value`` to every level for ``ttl`` seconds (default: the cache's ``default_ttl``).

        ``tags`` label the entry; ``derived_from`` names the tags it was computed from, so
        invalidating any of those (or anything they derive from) removes it too.
        """
        own = tuple(dict.fromkeys(tags))
        sources = tuple(dict.fromkeys(derived_from))
        if sources:
            self._graph.add_edges((source, tag) for source in sources for tag in own)
        all_tags = tuple(dict.fromkeys(own + sources))
        now = self._clock()
        if ttl is None:
            ttl = self._default_ttl
        expires = None if ttl is None else now + ttl
        size = len(encode_value(value).encode("utf-8"))
        self._puts += 1
        for index in range(len(self._levels)):
            await self._store(index, key, value, now, expires, all_tags, size)

    async def invalidate(self, tag: str) -> set[str]:
        """Remove every entry carrying ``tag`` or a tag derived from it (transitively); the keys removed."""
        tags = self._graph.closure([tag])
        removed: set[str] = set()
        for index, level in enumerate(self._levels):
            try:
                removed |= await level.discard_tags(tags)
            except (CacheError, StoreError):
                self._counts[index].errors += 1
        self._invalidated += len(removed)
        return removed

    def derive(self, source: str, derived: str) -> None:
        """Record that ``derived`` is computed from ``source`` (invalidating ``source`` invalidates it)."""
        self._graph.add_edges([(source, derived)])

    async def clear(self) -> None:
        """Remove every entry from every level (the tag graph stays: it describes tags, not entries)."""
        for index, level in enumerate(self._levels):
            try:
                await level.discard_all()
            except (CacheError, StoreError):
                self._counts[index].errors += 1

    def statistics(self) -> TieredCacheStatistics:
        """Totals and, per level, lookups, hits, misses, errors and lookup latency."""
        levels = tuple(
            LevelStatistics(name=level.name, lookups=c.lookups, hits=c.hits, misses=c.misses, errors=c.errors,
                            latency_total=c.latency_total, latency_max=c.latency_max)
            for level, c in zip(self._levels, self._counts, strict=True)
        )
        return TieredCacheStatistics(gets=self._gets, hits=self._hits, misses=self._misses, puts=self._puts,
                                     promotions=self._promotions, invalidated=self._invalidated, levels=levels)

    async def _store(self, index: int, key: str, value: CacheValue, now: float, expires: float | None,
                     tags: tuple[str, ...], size: int) -> bool:
        try:
            await self._levels[index].store(key, value, now=now, expires=expires, tags=tags, size=size)
        except (CacheError, StoreError):
            self._counts[index].errors += 1
            return False
        return True
