"""The SQLite level: persistence across connections and processes, TTLs, size limits, tags, the tag graph."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from agentfleet.cache import SqliteCache
from agentfleet.testing import run_virtual

V = {"text": "hello", "tokens_in": 1}


class TestSqliteCache:
    def test_get_returns_what_was_put(self) -> None:
        """A put value reads back equal; a missing key is None."""
        with SqliteCache(":memory:") as cache:
            cache.put("a", V, now=0.0, tags=["t"])
            assert cache.get("a", 1.0) == V
            assert cache.get("b", 1.0) is None
            stats = cache.statistics()
            assert (stats.entries, stats.hits, stats.misses, stats.puts) == (1, 1, 1, 1)

    def test_ttl_expires_exactly_and_deletes_the_row(self) -> None:
        """An entry with ttl 10 put at 100 is there at 109.999 and gone (deleted) at 110."""
        with SqliteCache(":memory:") as cache:
            cache.put("a", V, now=100.0, ttl=10.0)
            assert cache.get("a", 109.999) == V
            assert cache.get("a", 110.0) is None
            stats = cache.statistics()
            assert (stats.entries, stats.expirations) == (0, 1)

    def test_entries_survive_a_new_connection(self, tmp_path: Path) -> None:
        """What one connection put, a second connection to the same file reads."""
        path = tmp_path / "run.db"
        with SqliteCache(path) as first:
            first.put("a", V, now=0.0, ttl=60.0, tags=["doc"])
        with SqliteCache(path) as second:
            hit = second.get_entry("a", 1.0)
            assert hit is not None and (hit.value, hit.expires, hit.tags) == (V, 60.0, ("doc",))

    def test_entries_survive_the_process(self, tmp_path: Path) -> None:
        """An entry written by another process is read here, and one written here is read there."""
        path = tmp_path / "run.db"
        script = (
            "import sys\n"
            "from agentfleet.cache import SqliteCache\n"
            "c = SqliteCache(sys.argv[1])\n"
            "c.put('child', {'text': 'from child'}, now=0.0)\n"
            "print(c.get('parent', 0.0))\n"
        )
        with SqliteCache(path) as cache:
            cache.put("parent", {"text": "from parent"}, now=0.0)
            out = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True,
                                 check=True, timeout=60).stdout
            assert out.strip() == "{'text': 'from parent'}"
            assert cache.get("child", 0.0) == {"text": "from child"}

    def test_shares_an_open_connection_without_closing_it(self) -> None:
        """Given a connection, the cache uses it and close() leaves it open."""
        db = sqlite3.connect(":memory:", isolation_level=None)
        cache = SqliteCache(db)
        cache.put("a", V, now=0.0)
        cache.close()
        assert db.execute("SELECT COUNT(*) FROM cache_entries").fetchone() == (1,)
        db.close()

    def test_entry_limit_evicts_least_recently_accessed(self) -> None:
        """Over max_entries, the entry accessed longest ago goes first."""
        with SqliteCache(":memory:", max_entries=2, touch_interval=0.0) as cache:
            cache.put("a", V, now=1.0)
            cache.put("b", V, now=2.0)
            assert cache.get("a", 3.0) == V  # a accessed at 3, b at 2
            cache.put("c", V, now=4.0)
            assert cache.get("b", 5.0) is None
            assert cache.get("a", 5.0) == V and cache.get("c", 5.0) == V
            assert cache.statistics().evictions == 1

    def test_access_is_refreshed_only_after_touch_interval(self) -> None:
        """A hit within touch_interval of the last access does not count as a newer access."""
        with SqliteCache(":memory:", max_entries=2, touch_interval=10.0) as cache:
            cache.put("a", V, now=1.0)
            cache.put("b", V, now=2.0)
            assert cache.get("a", 3.0) == V  # within 10 s: a stays accessed at 1
            cache.put("c", V, now=4.0)
            assert cache.get("a", 5.0) is None and cache.get("b", 5.0) == V

    def test_byte_limit_drops_expired_entries_first(self) -> None:
        """Over max_bytes, expired entries go before live ones, then the least recently accessed."""
        size = len('{"text":"hello","tokens_in":1}')
        with SqliteCache(":memory:", max_bytes=2 * size) as cache:
            cache.put("live", V, now=0.0)
            cache.put("old", V, now=1.0, ttl=1.0)
            cache.put("new", V, now=5.0)
            assert cache.get("live", 5.0) == V and cache.get("new", 5.0) == V
            stats = cache.statistics()
            assert (stats.entries, stats.bytes, stats.expirations, stats.evictions) == (2, 2 * size, 1, 0)

    def test_value_larger_than_the_limit_is_rejected(self) -> None:
        """A value over max_bytes is not stored."""
        with SqliteCache(":memory:", max_bytes=10) as cache:
            assert cache.put("a", {"text": "far too long for ten bytes"}, now=0.0) is False
            assert cache.statistics().entries == 0

    def test_invalidate_tags_removes_carriers_and_their_tag_rows(self) -> None:
        """Entries carrying any given tag go, with their cache_tags rows; others stay."""
        with SqliteCache(":memory:") as cache:
            cache.put("a", V, now=0.0, tags=["x", "y"])
            cache.put("b", V, now=0.0, tags=["y"])
            cache.put("c", V, now=0.0, tags=["z"])
            assert cache.invalidate_tags(["x", "y"]) == {"a", "b"}
            assert cache.get("c", 0.0) == V
            assert cache.invalidate_tags(["x"]) == set()
            assert cache.statistics().invalidations == 2

    def test_replacing_a_key_replaces_its_tags(self) -> None:
        """A second put under a key drops the first put's tags."""
        with SqliteCache(":memory:") as cache:
            cache.put("a", V, now=0.0, tags=["t1"])
            cache.put("a", V, now=0.0, tags=["t2"])
            assert cache.invalidate_tags(["t1"]) == set()
            assert cache.invalidate_tags(["t2"]) == {"a"}

    def test_clear_keeps_the_tag_graph(self) -> None:
        """clear() removes every entry but not the derivation edges."""
        with SqliteCache(":memory:") as cache:
            cache.add_edges([("src", "out")])
            cache.put("a", V, now=0.0, tags=["out"])
            cache.clear()
            assert cache.statistics().entries == 0
            assert cache.closure(["src"]) == {"src", "out"}

    def test_closure_follows_edges_transitively_and_survives_cycles(self, tmp_path: Path) -> None:
        """The closure of a tag is everything derived from it, through cycles, in any connection."""
        path = tmp_path / "run.db"
        with SqliteCache(path) as cache:
            cache.add_edges([("a", "b"), ("b", "c"), ("c", "a"), ("x", "y"), ("d", "d")])
        with SqliteCache(path) as cache:
            assert cache.closure(["a"]) == {"a", "b", "c"}
            assert cache.closure(["x", "d"]) == {"x", "y", "d"}
            assert cache.closure(["unknown"]) == {"unknown"}

    def test_level_protocol_wraps_the_sync_api(self) -> None:
        """lookup/store/discard_tags/discard_all behave like the synchronous methods."""
        cache = SqliteCache(":memory:")

        async def main() -> None:
            await cache.store("a", V, now=0.0, expires=5.0, tags=("t",), size=0)
            hit = await cache.lookup("a", 1.0)
            assert hit is not None and (hit.value, hit.expires, hit.tags) == (V, 5.0, ("t",))
            assert await cache.discard_tags({"t"}) == {"a"}
            await cache.store("b", V, now=0.0, expires=None, tags=(), size=0)
            await cache.discard_all()
            assert await cache.lookup("b", 1.0) is None

        run_virtual(main())
        cache.close()
