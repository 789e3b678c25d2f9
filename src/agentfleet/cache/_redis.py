"""L2: a cache level in Redis, shared by every worker of a fleet.

# Design
# Under a namespace prefix ``ns``:
#   ns:e:<key>   the entry: JSON {"v": value, "x": expires or null, "t": [tags]}, TTL via PX
#   ns:t:<tag>   a set of the keys carrying the tag (for invalidation)
# A put is one Lua script (SET PX + SADD per tag), atomic and one round trip, so an entry is
# never visible without its tag memberships. A tag set lives as long as its longest-lived
# entry: a new set takes the entry's TTL, a put with a longer TTL extends it, and a put with
# no TTL makes it persistent (the script reads PTTL first; PEXPIRE GT alone cannot tell a
# new set from a persistent one). Members whose entries expired go stale; invalidation
# deletes whatever keys a set lists, so they cost nothing but a DEL.
#
# The client is created lazily inside the running loop (redis.asyncio clients belong to the
# loop that first uses them); ``aclose()`` closes it when this object made it. Every Redis
# failure (a bad URL included) is raised as ``CacheError``, which the tiered cache counts and
# treats as a miss; messages show the URL without its password.
#
# ``summary`` and ``clear`` walk the namespace with SCAN (never KEYS, which blocks the server),
# the namespace escaped for the MATCH pattern.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aredis
from redis.commands.core import AsyncScript
from redis.exceptions import RedisError

from .._redact import redact
from ..errors import CacheError
from ._values import CacheHit, CacheValue, encode_value

__all__ = ["RedisCache", "RedisCacheStatistics", "RedisCacheSummary"]

# KEYS: the entry, then one tag set per tag. ARGV: envelope, PX in ms (0 = no TTL), the cache key.
_PUT_SCRIPT = """
local px = tonumber(ARGV[2])
if px > 0 then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', px)
else
  redis.call('SET', KEYS[1], ARGV[1])
end
for i = 2, #KEYS do
  local ttl = redis.call('PTTL', KEYS[i])
  redis.call('SADD', KEYS[i], ARGV[3])
  if px == 0 then
    if ttl >= 0 then redis.call('PERSIST', KEYS[i]) end
  elseif ttl == -2 or (ttl >= 0 and ttl < px) then
    redis.call('PEXPIRE', KEYS[i], px)
  end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class RedisCacheStatistics:
    """What this object has asked Redis and how it went."""

    hits: int
    misses: int
    puts: int
    invalidations: int
    errors: int


@dataclass(frozen=True, slots=True)
class RedisCacheSummary:
    """What the namespace holds now: entries, their stored bytes (the JSON envelopes) and tag sets."""

    entries: int
    bytes: int
    tags: int


def _glob_escape(text: str) -> str:
    """``text`` as a literal in a SCAN MATCH pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


class RedisCache:
    """An async cache level in Redis; ``now`` is wall-clock seconds, TTLs are enforced by Redis."""

    name = "redis"

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, namespace: str = "agentfleet:cache",
                 client: aredis.Redis | None = None, socket_timeout: float = 2.0) -> None:
        self._url = url
        self._namespace = namespace
        self._client = client
        self._owned = client is None
        self._put_script: AsyncScript | None = None
        self._socket_timeout = socket_timeout
        self._hits = 0
        self._misses = 0
        self._puts = 0
        self._invalidations = 0
        self._errors = 0

    @property
    def namespace(self) -> str:
        return self._namespace

    @property
    def url(self) -> str:
        """The Redis URL, without its password."""
        return redact(self._url)

    def _redis(self) -> aredis.Redis:
        if self._client is None:
            try:
                self._client = aredis.Redis.from_url(self._url, socket_connect_timeout=self._socket_timeout,
                                                     socket_timeout=self._socket_timeout)
            except ValueError as exc:
                self._errors += 1
                raise CacheError(f"bad Redis URL {self.url!r}: {exc}", level=self.name) from None
        if self._put_script is None:
            self._put_script = self._client.register_script(_PUT_SCRIPT)
        return self._client

    def _entry_key(self, key: str) -> str:
        return f"{self._namespace}:e:{key}"

    def _tag_key(self, tag: str) -> str:
        return f"{self._namespace}:t:{tag}"

    def _failed(self, what: str, exc: Exception) -> CacheError:
        self._errors += 1
        return CacheError(f"cannot {what} ({self.url}, namespace {self._namespace}): {exc}", level=self.name)

    async def aclose(self) -> None:
        """Close the client if this object made it."""
        client, self._client = self._client, None
        self._put_script = None
        if client is not None and self._owned:
            await client.aclose()

    # -- entries -------------------------------------------------------------------------

    async def get(self, key: str, now: float) -> CacheValue | None:
        """The value under ``key``, or None."""
        hit = await self.get_entry(key, now)
        return None if hit is None else hit.value

    async def get_entry(self, key: str, now: float) -> CacheHit | None:
        """The entry under ``key`` with its expiry, tags and size, or None."""
        try:
            raw = await self._redis().get(self._entry_key(key))
        except RedisError as exc:
            raise self._failed("read the cache", exc) from None
        if raw is None:
            self._misses += 1
            return None
        try:
            envelope: dict[str, Any] = json.loads(raw)
            value: CacheValue = envelope["v"]
            expires = envelope["x"]
            tags = tuple(str(t) for t in envelope["t"])
        except (ValueError, KeyError, TypeError) as exc:
            self._errors += 1
            raise CacheError(f"entry {key[:12]} is damaged: {exc}", level=self.name) from None
        if expires is not None and now >= expires:  # Redis has not dropped it yet (clock skew)
            self._misses += 1
            return None
        self._hits += 1
        return CacheHit(value, None if expires is None else float(expires), tags,
                        len(encode_value(value).encode("utf-8")))

    async def put(self, key: str, value: CacheValue, now: float, ttl: float | None = None,
                  tags: Iterable[str] = ()) -> bool:
        """Store ``value`` for ``ttl`` seconds (None = no TTL); False when the TTL has already run out."""
        return await self.put_until(key, value, now, None if ttl is None else now + ttl, tags)

    async def put_until(self, key: str, value: CacheValue, now: float, expires: float | None,
                        tags: Iterable[str] = ()) -> bool:
        """Store ``value`` until the absolute time ``expires``."""
        tag_list = list(dict.fromkeys(tags))
        envelope = json.dumps({"v": value, "x": expires, "t": tag_list}, separators=(",", ":"),
                              ensure_ascii=False, allow_nan=False)
        px = None if expires is None else math.ceil((expires - now) * 1000)
        if px is not None and px <= 0:
            return False
        keys = [self._entry_key(key), *(self._tag_key(tag) for tag in tag_list)]
        try:
            client = self._redis()
            assert self._put_script is not None  # registered with the client
            await self._put_script(keys=keys, args=[envelope, px or 0, key], client=client)
        except RedisError as exc:
            raise self._failed("write to the cache", exc) from None
        self._puts += 1
        return True

    async def delete(self, key: str) -> bool:
        """Remove ``key``; whether it was there (its tag memberships go stale, which is harmless)."""
        try:
            removed = await self._redis().delete(self._entry_key(key))
        except RedisError as exc:
            raise self._failed("delete from the cache", exc) from None
        return bool(removed)

    async def invalidate_tags(self, tags: Collection[str]) -> set[str]:
        """Remove every entry carrying any of ``tags``, and the tags' sets; the keys removed."""
        if not tags:
            return set()
        tag_keys = [self._tag_key(tag) for tag in tags]
        client = self._redis()
        try:
            async with client.pipeline(transaction=True) as pipe:
                for tag_key in tag_keys:
                    pipe.smembers(tag_key)
                members: list[set[bytes]] = await pipe.execute()
            keys = sorted({m.decode("utf-8") for group in members for m in group})
            if not keys:
                await client.delete(*tag_keys)
                return set()
            async with client.pipeline(transaction=True) as pipe:
                for key in keys:
                    pipe.delete(self._entry_key(key))
                pipe.delete(*tag_keys)
                results: list[int] = await pipe.execute()
        except RedisError as exc:
            raise self._failed("invalidate cache tags", exc) from None
        removed = {key for key, deleted in zip(keys, results, strict=False) if deleted}
        self._invalidations += len(removed)
        return removed

    async def clear(self) -> int:
        """Delete every key in this namespace (entries and tag sets); the number of entries deleted."""
        client = self._redis()
        entry_prefix = f"{self._namespace}:e:".encode()
        removed = 0

        async def delete(names: list[bytes]) -> None:
            nonlocal removed
            entries = [n for n in names if n.startswith(entry_prefix)]
            others = [n for n in names if not n.startswith(entry_prefix)]
            if entries:
                removed += int(await client.delete(*entries))
            if others:
                await client.delete(*others)

        try:
            batch: list[bytes] = []
            async for name in client.scan_iter(match=f"{_glob_escape(self._namespace)}:*", count=1000):
                batch.append(name)
                if len(batch) >= 1000:
                    await delete(batch)
                    batch = []
            if batch:
                await delete(batch)
        except RedisError as exc:
            raise self._failed("clear the cache", exc) from None
        return removed

    async def summary(self) -> RedisCacheSummary:
        """Count this namespace's entries, their bytes and its tag sets (SCAN, one STRLEN per entry, pipelined)."""
        client = self._redis()
        pattern = _glob_escape(self._namespace)
        entries = 0
        total = 0

        async def measure(names: list[bytes]) -> None:
            nonlocal entries, total
            async with client.pipeline(transaction=False) as pipe:
                for name in names:
                    pipe.strlen(name)
                lengths: list[int] = await pipe.execute()
            for length in lengths:
                if length:  # 0: expired or deleted since the SCAN returned it
                    entries += 1
                    total += int(length)

        try:
            batch: list[bytes] = []
            async for name in client.scan_iter(match=f"{pattern}:e:*", count=1000):
                batch.append(name)
                if len(batch) >= 1000:
                    await measure(batch)
                    batch = []
            if batch:
                await measure(batch)
            tags = 0
            async for _ in client.scan_iter(match=f"{pattern}:t:*", count=1000):
                tags += 1
        except RedisError as exc:
            raise self._failed("count the cache entries", exc) from None
        return RedisCacheSummary(entries=entries, bytes=total, tags=tags)

    def statistics(self) -> RedisCacheStatistics:
        """Hits, misses, puts, invalidated entries and Redis errors seen by this object."""
        return RedisCacheStatistics(hits=self._hits, misses=self._misses, puts=self._puts,
                                    invalidations=self._invalidations, errors=self._errors)

    # -- the CacheLevel protocol ---------------------------------------------------------

    async def lookup(self, key: str, now: float) -> CacheHit | None:
        return await self.get_entry(key, now)

    async def store(self, key: str, value: CacheValue, *, now: float, expires: float | None,
                    tags: tuple[str, ...], size: int) -> None:
        await self.put_until(key, value, now, expires, tags)

    async def discard_tags(self, tags: Collection[str]) -> set[str]:
        return await self.invalidate_tags(tags)

    async def discard_all(self) -> None:
        await self.clear()
