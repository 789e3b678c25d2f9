"""The tiered cache: ordered lookup, promotion, write-through, transitive invalidation, failures."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from agentfleet.cache import CacheError, MemoryCache, RedisCache, SqliteCache, TagGraph, TieredCache
from agentfleet.testing import run_virtual
from tests.redis_kit import REDIS_URL

V = {"text": "hello"}


class _Clock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class _Broken:
    """A level whose every call fails."""

    name = "broken"

    async def lookup(self, key: str, now: float) -> None:
        raise CacheError("down", level=self.name)

    async def store(self, key: str, value: object, *, now: float, expires: float | None, tags: tuple[str, ...],
                    size: int) -> None:
        raise CacheError("down", level=self.name)

    async def discard_tags(self, tags: object) -> set[str]:
        raise CacheError("down", level=self.name)

    async def discard_all(self) -> None:
        raise CacheError("down", level=self.name)


class TestTieredCache:
    def test_put_writes_through_every_level(self) -> None:
        """A put lands in memory and SQLite with the same expiry and tags."""
        clock = _Clock()
        l1, l3 = MemoryCache(), SqliteCache(":memory:")
        cache = TieredCache([l1, l3], clock=clock)
        run_virtual(cache.put("k", V, ttl=60.0, tags=["doc"]))
        for level in (l1, l3):
            hit = level.get_entry("k", clock.now)
            assert hit is not None and (hit.value, hit.expires, hit.tags) == (V, 1060.0, ("doc",))

    def test_hit_in_a_lower_level_is_promoted_with_its_lifetime(self) -> None:
        """A hit in L3 is copied into L1 with its remaining TTL and tags; the next get is an L1 hit."""
        clock = _Clock()
        l1, l3 = MemoryCache(), SqliteCache(":memory:")
        l3.put("k", V, now=clock.now, ttl=60.0, tags=["doc"])
        cache = TieredCache([l1, l3], clock=clock)

        async def main() -> None:
            clock.now = 1010.0
            assert await cache.get("k") == V
            hit = l1.get_entry("k", clock.now)
            assert hit is not None and (hit.expires, hit.tags) == (1060.0, ("doc",))
            assert await cache.get("k") == V
            clock.now = 1060.0
            assert await cache.get("k") is None

        run_virtual(main())
        stats = cache.statistics()
        assert (stats.gets, stats.hits, stats.misses, stats.promotions) == (3, 2, 1, 1)
        memory, sqlite = stats.levels
        assert (memory.name, memory.lookups, memory.hits, memory.misses) == ("memory", 3, 1, 2)
        assert (sqlite.name, sqlite.lookups, sqlite.hits, sqlite.misses) == ("sqlite", 2, 1, 1)

    def test_lookup_latency_is_measured_per_level(self) -> None:
        """Each level's lookup time comes from the injected timer."""
        ticks = iter(range(100))
        cache = TieredCache([MemoryCache(), SqliteCache(":memory:")], clock=_Clock(),
                            timer=lambda: float(next(ticks)))
        run_virtual(cache.get("missing"))
        memory, sqlite = cache.statistics().levels
        assert (memory.latency_total, memory.latency_max, memory.latency_mean) == (1.0, 1.0, 1.0)
        assert (sqlite.latency_total, sqlite.lookups) == (1.0, 1)

    def test_default_ttl_applies_when_put_gives_none(self) -> None:
        """Without a ttl, entries expire after the cache's default_ttl."""
        clock = _Clock()
        l1 = MemoryCache()
        cache = TieredCache([l1], default_ttl=5.0, clock=clock)
        run_virtual(cache.put("k", V))
        hit = l1.get_entry("k", clock.now)
        assert hit is not None and hit.expires == 1005.0

    def test_invalidate_follows_derivations_transitively(self) -> None:
        """Invalidating a source removes entries derived from it, and entries derived from those."""
        cache = TieredCache([MemoryCache(), SqliteCache(":memory:")], clock=_Clock())

        async def main() -> None:
            await cache.put("research", V, tags=["task:research"])
            await cache.put("summary", V, tags=["task:summary"], derived_from=["task:research"])
            await cache.put("review", V, tags=["task:review"], derived_from=["task:summary"])
            await cache.put("unrelated", V, tags=["task:other"])
            assert await cache.invalidate("task:research") == {"research", "summary", "review"}
            for key in ("research", "summary", "review"):
                assert await cache.get(key) is None
            assert await cache.get("unrelated") == V

        run_virtual(main())
        assert cache.statistics().invalidated == 3

    def test_derived_entry_without_tags_still_goes(self) -> None:
        """An entry that only declares derived_from is removed when its source is invalidated."""
        cache = TieredCache([MemoryCache()], clock=_Clock())

        async def main() -> None:
            await cache.put("k", V, derived_from=["src"])
            assert await cache.invalidate("src") == {"k"}

        run_virtual(main())

    def test_invalidating_a_derived_tag_leaves_its_source(self) -> None:
        """Derivation runs one way: invalidating the derived tag keeps the source's entries."""
        cache = TieredCache([MemoryCache()], graph=TagGraph(), clock=_Clock())

        async def main() -> None:
            await cache.put("src", V, tags=["a"])
            await cache.put("out", V, tags=["b"], derived_from=["a"])
            assert await cache.invalidate("b") == {"out"}
            assert await cache.get("src") == V

        run_virtual(main())

    def test_tag_graph_persists_in_sqlite(self, tmp_path: Path) -> None:
        """Edges recorded by one cache are followed by a later cache on the same database."""
        path = tmp_path / "run.db"
        first = TieredCache([MemoryCache(), SqliteCache(path)], clock=_Clock())
        run_virtual(first.put("summary", V, tags=["task:summary"], derived_from=["task:research"]))
        first.derive("task:summary", "task:review")
        l3 = SqliteCache(path)
        l3.put("review", V, now=1000.0, tags=["task:review"])
        second = TieredCache([MemoryCache(), l3], clock=_Clock())
        assert run_virtual(second.invalidate("task:research")) == {"summary", "review"}

    def test_clear_empties_every_level(self) -> None:
        """clear() removes every entry from every level."""
        l1, l3 = MemoryCache(), SqliteCache(":memory:")
        cache = TieredCache([l1, l3], clock=_Clock())

        async def main() -> None:
            await cache.put("k", V)
            await cache.clear()
            assert await cache.get("k") is None

        run_virtual(main())
        assert len(l1) == 0 and l3.statistics().entries == 0

    def test_a_failing_level_is_skipped_and_counted(self) -> None:
        """A level raising CacheError is a miss for that level, never an error for the caller."""
        l3 = SqliteCache(":memory:")
        cache = TieredCache([MemoryCache(), _Broken(), l3], clock=_Clock())

        async def main() -> None:
            await cache.put("k", V, tags=["t"])
            assert await cache.get("k") == V
            await cache.clear()
            assert await cache.get("k") is None
            await cache.put("j", V, tags=["t"])
            assert await cache.invalidate("t") == {"j"}

        run_virtual(main())
        broken = cache.statistics().levels[1]
        assert (broken.name, broken.errors) == ("broken", 5)

    def test_memory_redis_sqlite_promote_through_redis(self, redis_namespace: str, tmp_path: Path) -> None:
        """With all three levels, an L3 hit is promoted into Redis and memory; invalidation reaches all."""
        async def main() -> None:
            l1, l3 = MemoryCache(), SqliteCache(tmp_path / "run.db")
            l2 = RedisCache(REDIS_URL, namespace=redis_namespace)
            try:
                now = time.time()
                l3.put("k", V, now=now, ttl=60.0, tags=["doc"])
                cache = TieredCache([l1, l2, l3])
                assert await cache.get("k") == V
                assert await l2.get("k", now) == V and "k" in l1
                assert [(s.hits, s.misses) for s in cache.statistics().levels] == [(0, 1), (0, 1), (1, 0)]
                assert await cache.invalidate("doc") == {"k"}
                assert await l2.get("k", now) is None and "k" not in l1 and l3.get("k", now) is None
            finally:
                await l2.aclose()
                l3.close()

        asyncio.run(main())
