"""The public API of ``agentfleet.cache`` is exactly what its ``__init__`` exports."""

from __future__ import annotations

import agentfleet.cache as cache


class TestExports:
    """``__all__`` is pinned and every name resolves."""

    def test_all_is_pinned(self) -> None:
        """__all__ lists the public names and nothing private."""
        assert sorted(cache.__all__) == sorted([
            "CacheError", "CacheHit", "CacheLevel", "CacheValue", "Coalescer", "CoalescerStatistics",
            "LevelStatistics", "MemoryCache", "MemoryCacheStatistics", "RedisCache", "RedisCacheStatistics",
            "RedisCacheSummary", "SqliteCache", "SqliteCacheEntry", "SqliteCacheStatistics", "SqliteCacheSummary",
            "TagGraph", "TagGraphStore", "TieredCache",
            "TieredCacheStatistics", "cache_key", "cacheable", "response_from_json", "response_to_json",
        ])

    def test_every_name_resolves(self) -> None:
        """Every exported name is an attribute of the package."""
        for name in cache.__all__:
            assert getattr(cache, name) is not None
