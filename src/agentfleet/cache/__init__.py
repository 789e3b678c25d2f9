"""The tiered response cache: keys for provider requests, memory / Redis / SQLite levels, single flight.

    cache_key(request, provider=...)    a stable sha256 of what decides the answer
    cacheable(request, opt_in=...)      temperature 0, or the task opts in
    MemoryCache                         L1: LRU + TTL, bounded by entries and bytes
    RedisCache                          L2: shared by a fleet's workers
    SqliteCache                         L3: in the run database, kept across runs; per-entry hits,
                                        cumulative per-level counters (add_counters / counters)
                                        and a summary for ``agentfleet cache stats``
    TieredCache                         reads in order, promotes on a hit, writes through;
                                        tag invalidation following derivations
    Coalescer                           concurrent identical calls share one
"""

from __future__ import annotations

from ..errors import CacheError
from ._coalesce import Coalescer, CoalescerStatistics
from ._graph import TagGraph, TagGraphStore
from ._keys import cache_key, cacheable
from ._memory import MemoryCache, MemoryCacheStatistics
from ._redis import RedisCache, RedisCacheStatistics, RedisCacheSummary
from ._sqlite import SqliteCache, SqliteCacheEntry, SqliteCacheStatistics, SqliteCacheSummary
from ._tiered import CacheLevel, LevelStatistics, TieredCache, TieredCacheStatistics
from ._values import CacheHit, CacheValue, response_from_json, response_to_json

__all__ = [
    "CacheError",
    "CacheHit",
    "CacheLevel",
    "CacheValue",
    "Coalescer",
    "CoalescerStatistics",
    "LevelStatistics",
    "MemoryCache",
    "MemoryCacheStatistics",
    "RedisCache",
    "RedisCacheStatistics",
    "RedisCacheSummary",
    "SqliteCache",
    "SqliteCacheEntry",
    "SqliteCacheStatistics",
    "SqliteCacheSummary",
    "TagGraph",
    "TagGraphStore",
    "TieredCache",
    "TieredCacheStatistics",
    "cache_key",
    "cacheable",
    "response_from_json",
    "response_to_json",
]
