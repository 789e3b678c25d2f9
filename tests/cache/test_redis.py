"""The Redis level, against the real Redis (skipped with the reason when it does not answer)."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis

from agentfleet.cache import CacheError, RedisCache
from tests.redis_kit import REDIS_URL

V = {"text": "hello", "data": {"a": 1}}


def _run(coro: object) -> None:
    asyncio.run(coro)  # type: ignore[arg-type]


class TestRedisCache:
    def test_get_returns_what_was_put(self, redis_namespace: str) -> None:
        """A put value reads back equal, with its tags and expiry; a missing key is None."""
        async def main() -> None:
            cache = RedisCache(REDIS_URL, namespace=redis_namespace)
            try:
                now = time.time()
                await cache.put("a", V, now, ttl=60.0, tags=["t"])
                hit = await cache.get_entry("a", now)
                assert hit is not None and (hit.value, hit.expires, hit.tags) == (V, now + 60.0, ("t",))
                assert await cache.get("b", now) is None
                stats = cache.statistics()
                assert (stats.hits, stats.misses, stats.puts, stats.errors) == (1, 1, 1, 0)
            finally:
                await cache.aclose()

        _run(main())

    def test_ttl_is_set_with_px_on_the_entry_and_its_tag_set(self, redis_namespace: str) -> None:
        """The entry carries a PX TTL; its tag set lives as long as its longest-lived entry."""
        async def main() -> None:
            cache = RedisCache(REDIS_URL, namespace=redis_namespace)
            try:
                await cache.put("a", V, 0.0, ttl=30.0, tags=["t"])
                await cache.put("b", V, 0.0, ttl=60.0, tags=["t"])
                await cache.put("c", V, 0.0, ttl=10.0, tags=["t"])
            finally:
                await cache.aclose()

        _run(main())
        client = redis.Redis.from_url(REDIS_URL)
        try:
            assert 29_000 < client.pttl(f"{redis_namespace}:e:a") <= 30_000
            assert 59_000 < client.pttl(f"{redis_namespace}:t:t") <= 60_000
        finally:
            client.close()

    def test_entry_without_ttl_makes_its_tag_set_persistent(self, redis_namespace: str) -> None:
        """A put with no TTL keeps the tag set for good, and a later TTL put does not shorten it."""
        async def main() -> None:
            cache = RedisCache(REDIS_URL, namespace=redis_namespace)
            try:
                await cache.put("a", V, 0.0, ttl=None, tags=["t"])
                await cache.put("b", V, 0.0, ttl=5.0, tags=["t"])
            finally:
                await cache.aclose()

        _run(main())
        client = redis.Redis.from_url(REDIS_URL)
        try:
            assert client.pttl(f"{redis_namespace}:e:a") == -1
            assert client.pttl(f"{redis_namespace}:t:t") == -1
        finally:
            client.close()

    def test_expired_by_its_own_record_is_a_miss(self, redis_namespace: str) -> None:
        """An entry read at or after its recorded expiry is a miss even before Redis drops it."""
        async def main() -> None:
            cache = RedisCache(REDIS_URL, namespace=redis_namespace)
            try:
                await cache.put("a", V, 100.0, ttl=10.0)
                assert await cache.get("a", 110.0) is None
                assert await cache.put("b", V, 100.0, ttl=0.0) is False
            finally:
                await cache.aclose()

        _run(main())

    def test_invalidate_tags_removes_carriers(self, redis_namespace: str) -> None:
        """Entries carrying any given tag go, with the tag sets; others stay."""
        async def main() -> None:
            cache = RedisCache(REDIS_URL, namespace=redis_namespace)
            try:
                await cache.put("a", V, 0.0, tags=["x", "y"])
                await cache.put("b", V, 0.0, tags=["y"])
                await cache.put("c", V, 0.0, tags=["z"])
                assert await cache.invalidate_tags(["x", "y"]) == {"a", "b"}
                assert await cache.get("a", 0.0) is None and await cache.get("c", 0.0) == V
                assert await cache.invalidate_tags(["x"]) == set()
                assert cache.statistics().invalidations == 2
            finally:
                await cache.aclose()

        _run(main())

    def test_clear_deletes_only_its_namespace(self, redis_namespace: str) -> None:
        """clear() removes this namespace's keys and leaves another namespace alone."""
        async def main() -> None:
            mine = RedisCache(REDIS_URL, namespace=f"{redis_namespace}:mine")
            other = RedisCache(REDIS_URL, namespace=f"{redis_namespace}:other")
            try:
                await mine.put("a", V, 0.0, tags=["t"])
                await other.put("a", V, 0.0)
                await mine.clear()
                assert await mine.get("a", 0.0) is None
                assert await other.get("a", 0.0) == V
            finally:
                await mine.aclose()
                await other.aclose()

        _run(main())

    def test_unreachable_redis_raises_cache_error(self) -> None:
        """A Redis that does not answer is a CacheError naming the level, counted as an error."""
        async def main() -> None:
            cache = RedisCache("redis://127.0.0.1:1/0", socket_timeout=0.5)
            try:
                with pytest.raises(CacheError, match="cache level redis"):
                    await cache.get("a", 0.0)
                assert cache.statistics().errors == 1
            finally:
                await cache.aclose()

        _run(main())
