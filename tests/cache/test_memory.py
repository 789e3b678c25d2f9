"""The memory level: LRU order, TTLs, entry and byte limits, tags."""

from __future__ import annotations

from agentfleet.cache import MemoryCache, MemoryCacheStatistics
from agentfleet.testing import run_virtual

V = {"text": "x"}


class TestMemoryCache:
    def test_get_returns_what_was_put(self) -> None:
        """A put value is returned by get, and a missing key is None."""
        cache = MemoryCache()
        cache.put("a", V, now=0.0)
        assert cache.get("a", 1.0) is V
        assert cache.get("b", 1.0) is None
        stats = cache.statistics()
        assert (stats.hits, stats.misses, stats.puts, stats.entries) == (1, 1, 1, 1)

    def test_ttl_expires_exactly(self) -> None:
        """An entry with ttl 10 put at 100 is there at 109.999 and gone at 110."""
        cache = MemoryCache()
        cache.put("a", V, now=100.0, ttl=10.0)
        assert cache.get("a", 109.999) is V
        assert cache.get("a", 110.0) is None
        assert "a" not in cache
        assert cache.statistics().expirations == 1

    def test_entry_limit_evicts_least_recently_used(self) -> None:
        """Over max_entries, the entry read least recently goes first."""
        cache = MemoryCache(max_entries=2)
        cache.put("a", V, 0.0)
        cache.put("b", V, 0.0)
        assert cache.get("a", 0.0) is V  # b is now the oldest
        cache.put("c", V, 0.0)
        assert "b" not in cache and "a" in cache and "c" in cache
        assert cache.statistics().evictions == 1

    def test_byte_limit_evicts_until_it_fits(self) -> None:
        """Over max_bytes, oldest entries go until the total fits."""
        cache = MemoryCache(max_bytes=100)
        cache.put("a", V, 0.0, size=40)
        cache.put("b", V, 0.0, size=40)
        cache.put("c", V, 0.0, size=70)
        assert len(cache) == 1 and "c" in cache
        stats = cache.statistics()
        assert (stats.bytes, stats.evictions) == (70, 2)

    def test_value_larger_than_the_limit_is_rejected(self) -> None:
        """A single value over max_bytes is not stored and evicts nothing."""
        cache = MemoryCache(max_bytes=100)
        cache.put("a", V, 0.0, size=10)
        assert cache.put("big", V, 0.0, size=101) is False
        assert "a" in cache and "big" not in cache
        assert cache.statistics().rejected == 1

    def test_default_size_is_compact_json_length(self) -> None:
        """Without a size, an entry counts the bytes of its compact JSON."""
        cache = MemoryCache()
        cache.put("a", {"text": "é"}, 0.0)
        assert cache.statistics().bytes == len('{"text":"é"}'.encode())

    def test_replacing_a_key_replaces_its_size_and_tags(self) -> None:
        """A second put under a key replaces the first, bytes and tags included."""
        cache = MemoryCache()
        cache.put("a", V, 0.0, tags=["t1"], size=10)
        cache.put("a", V, 0.0, tags=["t2"], size=20)
        assert cache.statistics().bytes == 20
        assert cache.invalidate_tags(["t1"]) == set()
        assert cache.invalidate_tags(["t2"]) == {"a"}

    def test_invalidate_tags_removes_carriers_only(self) -> None:
        """Entries carrying any given tag go; others stay."""
        cache = MemoryCache()
        cache.put("a", V, 0.0, tags=["x", "y"])
        cache.put("b", V, 0.0, tags=["y"])
        cache.put("c", V, 0.0, tags=["z"])
        assert cache.invalidate_tags(["x", "y"]) == {"a", "b"}
        assert len(cache) == 1 and "c" in cache
        assert cache.statistics().invalidations == 2

    def test_delete_and_clear(self) -> None:
        """delete removes one key; clear removes all and resets bytes."""
        cache = MemoryCache()
        cache.put("a", V, 0.0)
        cache.put("b", V, 0.0)
        assert cache.delete("a") and not cache.delete("a")
        cache.clear()
        assert len(cache) == 0 and cache.statistics().bytes == 0

    def test_statistics_is_a_frozen_snapshot(self) -> None:
        """statistics() returns a MemoryCacheStatistics with the limits."""
        stats = MemoryCache(max_entries=5, max_bytes=50).statistics()
        assert stats == MemoryCacheStatistics(entries=0, bytes=0, max_entries=5, max_bytes=50, hits=0, misses=0,
                                              puts=0, evictions=0, expirations=0, invalidations=0, rejected=0)

    def test_level_protocol_wraps_the_sync_api(self) -> None:
        """lookup/store/discard_tags/discard_all behave like get_entry/put_until/invalidate_tags/clear."""
        cache = MemoryCache()

        async def main() -> None:
            await cache.store("a", V, now=0.0, expires=5.0, tags=("t",), size=7)
            hit = await cache.lookup("a", 1.0)
            assert hit is not None and (hit.value, hit.expires, hit.tags, hit.size) == (V, 5.0, ("t",), 7)
            assert await cache.lookup("a", 5.0) is None
            await cache.store("b", V, now=0.0, expires=None, tags=("t",), size=7)
            assert await cache.discard_tags({"t"}) == {"b"}
            await cache.store("c", V, now=0.0, expires=None, tags=(), size=7)
            await cache.discard_all()
            assert len(cache) == 0

        run_virtual(main())
