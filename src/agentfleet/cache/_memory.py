"""L1: an in-process LRU cache with TTLs, bounded by entry count and total bytes.

# Design
# An OrderedDict in recency order (oldest first) gives O(1) get, put and eviction: a hit
# moves the key to the end, eviction pops from the front. Expiry is lazy: an expired entry is
# dropped when it is next read (or evicted as the oldest), so no timer or sweep is needed.
# A tag index (tag -> keys) makes invalidation proportional to the entries it removes.
#
# ``get`` is the hot path (a benchmark targets p99 < 5 µs): one dict lookup, one comparison,
# one move_to_end and a counter. Values are returned as stored, without a copy; treat them
# as read-only. Sizes are the caller's estimate of an entry's bytes (by default the length
# of its compact JSON), computed once per put.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Iterable
from dataclasses import dataclass

from ._values import CacheHit, CacheValue, encode_value

__all__ = ["MemoryCache", "MemoryCacheStatistics"]


@dataclass(frozen=True, slots=True)
class MemoryCacheStatistics:
    """What the memory level holds and has done since it was made."""

    entries: int
    bytes: int
    max_entries: int
    max_bytes: int
    hits: int
    misses: int
    puts: int
    evictions: int  # removed to make room (count or bytes over the limit)
    expirations: int  # found expired when read
    invalidations: int  # removed by tag invalidation
    rejected: int  # single values larger than max_bytes, never stored


class _Entry:
    __slots__ = ("expires", "size", "tags", "value")

    def __init__(self, value: CacheValue, expires: float | None, size: int, tags: tuple[str, ...]) -> None:
        self.value = value
        self.expires = expires
        self.size = size
        self.tags = tags


class MemoryCache:
    """An LRU + TTL cache in memory; ``now`` is passed in (wall-clock seconds, like the other levels)."""

    name = "memory"

    def __init__(self, *, max_entries: int = 10_000, max_bytes: int = 64 * 1024 * 1024) -> None:
        if max_entries < 1 or max_bytes < 1:
            raise ValueError("max_entries and max_bytes must be at least 1")
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._data: OrderedDict[str, _Entry] = OrderedDict()
        self._tags: dict[str, set[str]] = {}
        self._bytes = 0
        self._hits = 0
        self._misses = 0
        self._puts = 0
        self._evictions = 0
        self._expirations = 0
        self._invalidations = 0
        self._rejected = 0

    # -- the synchronous API (all the logic) ---------------------------------------------

    def get(self, key: str, now: float) -> CacheValue | None:
        """The value under ``key`` if present and not expired at ``now``; a hit makes it most recent."""
        entry = self._data.get(key)
        if entry is None:
            self._misses += 1
            return None
        expires = entry.expires
        if expires is not None and now >= expires:
            self._remove(key, entry)
            self._expirations += 1
            self._misses += 1
            return None
        self._data.move_to_end(key)
        self._hits += 1
        return entry.value

    def get_entry(self, key: str, now: float) -> CacheHit | None:
        """Like ``get`` but with the expiry, tags and size (what promotion to another level needs)."""
        value = self.get(key, now)
        if value is None:
            return None
        entry = self._data[key]
        return CacheHit(value, entry.expires, entry.tags, entry.size)

    def put(self, key: str, value: CacheValue, now: float, ttl: float | None = None,
            tags: Iterable[str] = (), *, size: int | None = None) -> bool:
        """Store ``value`` for ``ttl`` seconds from ``now`` (None = until evicted); False if it can never fit."""
        return self.put_until(key, value, None if ttl is None else now + ttl, tags, size=size)

    def put_until(self, key: str, value: CacheValue, expires: float | None, tags: Iterable[str] = (), *,
                  size: int | None = None) -> bool:
        """Store ``value`` until the absolute time ``expires`` (None = until evicted)."""
        if size is None:
            size = len(encode_value(value).encode("utf-8"))
        self._puts += 1
        old = self._data.get(key)
        if old is not None:
            self._remove(key, old)
        if size > self._max_bytes:
            self._rejected += 1
            return False
        entry = _Entry(value, expires, size, tuple(dict.fromkeys(tags)))
        self._data[key] = entry
        self._bytes += size
        for tag in entry.tags:
            self._tags.setdefault(tag, set()).add(key)
        while len(self._data) > self._max_entries or self._bytes > self._max_bytes:
            oldest, victim = next(iter(self._data.items()))
            self._remove(oldest, victim)
            self._evictions += 1
        return True

    def delete(self, key: str) -> bool:
        """Remove ``key``; whether it was there."""
        entry = self._data.get(key)
        if entry is None:
            return False
        self._remove(key, entry)
        return True

    def invalidate_tags(self, tags: Collection[str]) -> set[str]:
        """Remove every entry carrying any of ``tags``; the keys removed."""
        removed: set[str] = set()
        for tag in tags:
            for key in tuple(self._tags.get(tag, ())):
                entry = self._data.get(key)
                if entry is not None:
                    self._remove(key, entry)
                    removed.add(key)
        self._invalidations += len(removed)
        return removed

    def clear(self) -> None:
        """Remove every entry (the counters stay)."""
        self._data.clear()
        self._tags.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def statistics(self) -> MemoryCacheStatistics:
        """Entries, bytes, limits and the hit, miss, put, eviction, expiry and invalidation counts."""
        return MemoryCacheStatistics(
            entries=len(self._data), bytes=self._bytes, max_entries=self._max_entries, max_bytes=self._max_bytes,
            hits=self._hits, misses=self._misses, puts=self._puts, evictions=self._evictions,
            expirations=self._expirations, invalidations=self._invalidations, rejected=self._rejected,
        )

    def _remove(self, key: str, entry: _Entry) -> None:
        del self._data[key]
        self._bytes -= entry.size
        for tag in entry.tags:
            keys = self._tags.get(tag)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._tags[tag]

    # -- the CacheLevel protocol (thin async wrappers) -----------------------------------

    async def lookup(self, key: str, now: float) -> CacheHit | None:
        return self.get_entry(key, now)

    async def store(self, key: str, value: CacheValue, *, now: float, expires: float | None,
                    tags: tuple[str, ...], size: int) -> None:
        self.put_until(key, value, expires, tags, size=size)

    async def discard_tags(self, tags: Collection[str]) -> set[str]:
        return self.invalidate_tags(tags)

    async def discard_all(self) -> None:
        self.clear()
