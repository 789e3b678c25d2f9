"""The SQLite level: persistence across connections and processes, TTLs, size limits, tags, the tag graph."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from agentfleet.cache import SqliteCache
from agentfleet.errors import StoreError
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


class TestHitsAndCounters:
    """Per-entry hits, the cumulative per-level counters, the summary and migrating an older file."""

    def test_a_hit_counts_on_the_entry_and_stamps_it(self) -> None:
        """Each hit adds one to the entry's hits and sets last_hit_at; misses and expired reads do not."""
        with SqliteCache(":memory:") as cache:
            cache.put("a", V, now=0.0, ttl=100.0)
            assert cache.get("a", 5.0) == V
            assert cache.get("a", 7.0) == V
            assert cache.get("nope", 8.0) is None
            (entry,) = cache.summary(now=8.0).top
            assert (entry.key, entry.hits, entry.last_hit_at) == ("a", 2, 7.0)
            assert cache.get("a", 100.0) is None  # expired: deleted, not counted
            assert cache.summary(now=100.0).top == ()

    def test_counting_a_hit_keeps_the_touch_interval(self) -> None:
        """Hits within touch_interval still leave ``accessed`` (the eviction order) alone."""
        with SqliteCache(":memory:", max_entries=2, touch_interval=10.0) as cache:
            cache.put("a", V, now=1.0)
            cache.put("b", V, now=2.0)
            assert cache.get("a", 3.0) == V and cache.get("a", 4.0) == V
            cache.put("c", V, now=5.0)
            assert cache.get("a", 6.0) is None and cache.get("b", 6.0) == V

    def test_a_new_put_starts_the_entry_count_again(self) -> None:
        """Replacing a key replaces its hit count (it is a different answer)."""
        with SqliteCache(":memory:") as cache:
            cache.put("a", V, now=0.0)
            cache.get("a", 1.0)
            cache.put("a", V, now=2.0)
            assert cache.summary(now=2.0).hits == 0

    def test_add_counters_accumulates_per_level(self) -> None:
        """add_counters adds to the stored totals per level; counters() reads them with the report count."""
        with SqliteCache(":memory:") as cache:
            assert cache.counters() == {}
            cache.add_counters("memory", hits=3, misses=1, lookup_seconds=0.5)
            cache.add_counters("memory", hits=2, writes=4, evictions=1, saved_tokens=100, saved_seconds=1.5)
            cache.add_counters("sqlite", misses=7)
            assert cache.counters() == {
                "memory": {"hits": 5, "misses": 1, "writes": 4, "evictions": 1, "saved_tokens": 100,
                           "saved_seconds": 1.5, "lookup_seconds": 0.5, "reports": 2},
                "sqlite": {"hits": 0, "misses": 7, "writes": 0, "evictions": 0, "saved_tokens": 0,
                           "saved_seconds": 0.0, "lookup_seconds": 0.0, "reports": 1},
            }

    def test_add_counters_rejects_bad_input(self) -> None:
        """An empty level name, a negative or non-finite amount is a ValueError and records nothing."""
        with SqliteCache(":memory:") as cache:
            for level, amounts in (("", {}), ("memory", {"hits": -1}), ("memory", {"saved_seconds": float("nan")}),
                                   ("memory", {"lookup_seconds": float("inf")})):
                with pytest.raises(ValueError):
                    cache.add_counters(level, **amounts)
            assert cache.counters() == {}

    def test_counters_add_up_across_instances_on_one_file(self, tmp_path: Path) -> None:
        """Two caches on the same file (two processes' worth) add to the same totals, interleaved."""
        path = tmp_path / "run.db"
        with SqliteCache(path) as first, SqliteCache(path) as second:
            first.add_counters("memory", hits=1, saved_tokens=10)
            second.add_counters("memory", hits=2, saved_tokens=20)
            first.add_counters("redis", misses=3)
            assert first.counters() == second.counters()
        with SqliteCache(path) as third:
            counters = third.counters()
        assert (counters["memory"]["hits"], counters["memory"]["saved_tokens"], counters["memory"]["reports"]) == (
            3, 30, 2)
        assert counters["redis"]["misses"] == 3

    def test_counters_add_up_across_processes(self, tmp_path: Path) -> None:
        """Counters and entry hits recorded by another process are added to, not replaced."""
        path = tmp_path / "run.db"
        script = (
            "import sys\n"
            "from agentfleet.cache import SqliteCache\n"
            "with SqliteCache(sys.argv[1]) as c:\n"
            "    c.add_counters('sqlite', hits=1, saved_seconds=2.5)\n"
            "    assert c.get('k', 1.0) is not None\n"
        )
        with SqliteCache(path) as cache:
            cache.put("k", V, now=0.0)
            cache.add_counters("sqlite", hits=1, saved_seconds=0.5)
            for _ in range(2):
                subprocess.run([sys.executable, "-c", script, str(path)], check=True, timeout=60)
            sqlite = cache.counters()["sqlite"]
            assert (sqlite["hits"], sqlite["saved_seconds"], sqlite["reports"]) == (3, 5.5, 3)
            assert cache.summary(now=1.0).top[0].hits == 2

    def test_summary(self) -> None:
        """Entries, bytes, expired, distinct tags, edges, age range and the most hit entries with model/provider."""
        response = {"text": "hi", "model": "gpt-x", "provider": "openai"}
        with SqliteCache(":memory:") as cache:
            empty = cache.summary(now=0.0)
            assert (empty.entries, empty.bytes, empty.oldest, empty.newest, empty.top) == (0, 0, None, None, ())
            cache.put("r", response, now=1.0, tags=["doc", "sum"])
            cache.put("v", V, now=2.0, ttl=5.0, tags=["doc"])
            cache.put("old", V, now=3.0, ttl=1.0)
            cache.add_edges([("doc", "sum")])
            for t in (4.0, 5.0, 6.0):
                cache.get("r", t)
            cache.get("v", 4.5)
            s = cache.summary(now=6.0, top=5)
            size_r = len('{"text":"hi","model":"gpt-x","provider":"openai"}')
            size_v = len('{"text":"hello","tokens_in":1}')
            assert (s.entries, s.bytes, s.expired, s.tags, s.tag_edges, s.hits, s.oldest, s.newest) == (
                3, size_r + 2 * size_v, 1, 2, 1, 4, 1.0, 3.0)
            first, second = s.top
            assert (first.key, first.hits, first.last_hit_at, first.model, first.provider, first.tags, first.size,
                    first.expires) == ("r", 3, 6.0, "gpt-x", "openai", ("doc", "sum"), size_r, None)
            assert (second.key, second.hits, second.model, second.provider, second.expires) == (
                "v", 1, None, None, 7.0)
            assert len(cache.summary(now=6.0, top=1).top) == 1 and cache.summary(now=6.0, top=0).top == ()

    def test_clear_keeps_counters_unless_asked(self) -> None:
        """clear() keeps the counters and the tag graph; with the flags it resets them too."""
        with SqliteCache(":memory:") as cache:
            cache.put("a", V, now=0.0, tags=["t"])
            cache.put("b", V, now=0.0)
            cache.add_edges([("s", "t")])
            cache.add_counters("memory", hits=1)
            assert cache.clear() == 2
            assert cache.counters() and cache.closure(["s"]) == {"s", "t"}
            cache.put("c", V, now=0.0)
            assert cache.clear(tag_graph=True, counters=True) == 1
            assert cache.counters() == {} and cache.closure(["s"]) == {"s"}
            assert cache.summary(now=0.0).entries == 0

    def test_opens_a_file_made_with_the_old_schema(self, tmp_path: Path) -> None:
        """A cache_entries table without hits/last_hit_at (and no counters table) is migrated, entries kept."""
        path = tmp_path / "old.db"
        db = sqlite3.connect(path)
        db.execute("CREATE TABLE cache_entries (key TEXT PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL,"
                   " expires REAL, accessed REAL NOT NULL, size INTEGER NOT NULL, tags TEXT NOT NULL)")
        db.execute("CREATE INDEX cache_entries_accessed ON cache_entries(accessed)")
        db.execute("CREATE TABLE cache_tags (tag TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (tag, key))")
        db.execute("CREATE TABLE cache_tag_edges (source TEXT NOT NULL, derived TEXT NOT NULL,"
                   " PRIMARY KEY (source, derived))")
        db.execute("INSERT INTO cache_entries VALUES ('k', '{\"text\":\"old\"}', 1.0, NULL, 1.0, 14, '[\"t\"]')")
        db.execute("INSERT INTO cache_tags VALUES ('t', 'k')")
        db.commit()
        db.close()
        with SqliteCache(path) as cache:
            assert cache.get("k", 2.0) == {"text": "old"}
            (entry,) = cache.summary(now=2.0).top
            assert (entry.hits, entry.last_hit_at, entry.tags) == (1, 2.0, ("t",))
            cache.add_counters("sqlite", hits=1)
            assert cache.counters()["sqlite"]["hits"] == 1
        with SqliteCache(path) as again:  # opening a migrated file again changes nothing
            assert again.summary(now=3.0).hits == 1
        columns = [row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(cache_entries)")]
        assert columns[-2:] == ["hits", "last_hit_at"]

    def test_create_false_needs_the_file(self, tmp_path: Path) -> None:
        """create=False on a missing path is a user error (exit 2) and creates nothing."""
        path = tmp_path / "missing.db"
        with pytest.raises(StoreError) as info:
            SqliteCache(path, create=False)
        assert info.value.exit_code == 2 and not path.exists()

    def test_a_file_that_is_not_sqlite_is_a_user_error(self, tmp_path: Path) -> None:
        """Opening something that is not a SQLite database is a StoreError with exit code 2."""
        path = tmp_path / "bad.db"
        path.write_bytes(b"definitely not a database" * 100)
        with pytest.raises(StoreError) as info:
            SqliteCache(path)
        assert info.value.exit_code == 2 and "bad.db" in str(info.value)
