"""``agentfleet cache``: stats, clear and invalidate, their output, errors and exit codes.

The sub-app is mounted on a tiny typer app of its own (like the memory CLI tests), so most tests
do not depend on how cli.py registers it; a few run the real ``agentfleet`` to check that it
does. The cache is filled through the library (SqliteCache, TieredCache, RedisCache), the Redis
level on the real Redis at 127.0.0.1:6379 (skipped when it does not answer).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from typer.testing import CliRunner, Result

from agentfleet._cache_cli import cache_app
from agentfleet.cache import MemoryCache, RedisCache, SqliteCache, TieredCache
from agentfleet.errors import StoreError
from tests.redis_kit import REDIS_URL, fresh_namespace

app = typer.Typer()


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug")] = False) -> None:
    """Stands in for the main app, whose --debug the sub-app honours."""


app.add_typer(cache_app, name="cache")

RESPONSE = {"text": "an answer", "model": "gpt-test", "provider": "openai", "tokens_in": 10, "tokens_out": 20}
KEY_A = "a" * 64
KEY_B = "b" * 64
KEY_C = "c" * 64
UNREACHABLE = "redis://127.0.0.1:1/0"


def cache(*args: str, input: str | None = None) -> Result:
    """Run ``cache ARGS`` and capture stdout and stderr separately."""
    return CliRunner().invoke(app, ["cache", *args], input=input, env={"COLUMNS": "200", "NO_COLOR": "1"},
                              catch_exceptions=True)


def one_error_line(result: Result) -> str:
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def stats_json(*args: str) -> dict[str, Any]:
    result = cache("stats", "--json", *args)
    assert result.exit_code == 0, result.stderr
    data: dict[str, Any] = json.loads(result.stdout)
    return data


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "agentfleet.db")


@pytest.fixture
def namespace() -> Iterator[str]:
    """A fresh namespace on the test Redis (skips when Redis does not answer); deleted afterwards."""
    yield from fresh_namespace("aftest-cachecli")


def fill(db: str, namespace: str | None = None) -> None:
    """Three entries through a tiered cache (summary derived from doc, one entry hit twice, another once),
    and the counters two runs would record."""
    async def main() -> None:
        l3 = SqliteCache(db)
        l2 = None if namespace is None else RedisCache(REDIS_URL, namespace=namespace)
        levels: list[Any] = [MemoryCache(), *([l2] if l2 is not None else []), l3]
        try:
            writer = TieredCache(levels)
            await writer.put(KEY_A, RESPONSE, tags=["doc:1"])
            await writer.put(KEY_B, {"text": "a summary"}, tags=["summary:1"], derived_from=["doc:1"], ttl=3600)
            await writer.put(KEY_C, {"text": "unrelated"}, tags=["other"])
            for _ in range(2):  # two fresh processes' worth of L1: each reads A from SQLite once
                reader = TieredCache([MemoryCache(), l3])
                assert await reader.get(KEY_A) == RESPONSE
                assert await reader.get(KEY_A) == RESPONSE  # an L1 hit now
            assert await TieredCache([MemoryCache(), l3]).get(KEY_B) is not None
            l3.add_counters("memory", hits=30, misses=10, writes=10, evictions=2, saved_tokens=3000,
                            saved_seconds=90.0, lookup_seconds=40 * 2e-6)
            l3.add_counters("sqlite", hits=3, misses=7, writes=10, saved_tokens=90, saved_seconds=6.0,
                            lookup_seconds=10 * 50e-6)
            l3.add_counters("memory", hits=10, misses=10, saved_tokens=1000, saved_seconds=30.0)
        finally:
            if l2 is not None:
                await l2.aclose()
            l3.close()

    asyncio.run(main())


def redis_entries(namespace: str) -> int:
    async def count() -> int:
        redis = RedisCache(REDIS_URL, namespace=namespace)
        try:
            return (await redis.summary()).entries
        finally:
            await redis.aclose()

    return asyncio.run(count())


class TestStats:
    def test_missing_database_says_no_cache_yet(self, db: str) -> None:
        """No database yet: a friendly line, exit 0, and no file is created (also with --json)."""
        result = cache("stats", "--db", db)
        assert result.exit_code == 0, result.stderr
        assert "no cache in" in result.stdout and "yet" in result.stdout
        data = stats_json("--db", db)
        assert (data["exists"], data["sqlite"], data["redis"], data["top"]) == (False, None, None, [])
        assert data["levels"]["memory"]["hits"] == 0
        assert not Path(db).exists()

    def test_table_per_level_and_top_entries(self, db: str) -> None:
        """The table has a row per level with the recorded counters, then the sqlite summary and top entries."""
        fill(db)
        result = cache("stats", "--db", db)
        assert result.exit_code == 0, result.stderr
        out = result.stdout
        assert "counters from 2 runs" in out
        for col in ("level", "entries", "size", "hits", "misses", "hit rate", "mean lookup", "tokens saved",
                    "time saved"):
            assert col in out
        memory = next(line for line in out.splitlines() if "│ memory" in line)
        assert [c.strip() for c in memory.split("│")[1:-1]] == [
            "memory", "—", "—", "40", "20", "66.7%", "1 µs", "4,000", "2m 0s"]
        sqlite = next(line for line in out.splitlines() if "│ sqlite" in line)
        cells = [c.strip() for c in sqlite.split("│")[1:-1]]
        assert cells[:2] + cells[3:8] == ["sqlite", "3", "3", "7", "30.0%", "50 µs", "90"]
        assert cells[2].endswith(" B") and cells[8] == "6.0s"
        assert "saved 4,090 tokens and 2m 6s of provider time in total" in out
        assert "sqlite: 3 entries (0 expired)" in out and "3 tags, 1 derivation" in out
        assert "redis entries: pass --redis URL" in out
        top = [line for line in out.splitlines() if line.startswith("│ aaaaaaaaaaaa") or
               line.startswith("│ bbbbbbbbbbbb")]
        assert len(top) == 2 and top[0].startswith("│ aaaaaaaaaaaa")  # most hit first
        assert "gpt-test" in top[0] and "openai" in top[0] and "doc:1" in top[0]
        assert "in 59m" in top[1] and "summary:1, doc:1" in top[1]

    def test_json(self, db: str) -> None:
        """--json carries the levels' counters with rate and mean lookup, the summary and the top entries."""
        fill(db)
        data = stats_json("--db", db, "--top", "1")
        memory, sqlite = data["levels"]["memory"], data["levels"]["sqlite"]
        assert (memory["hits"], memory["misses"], memory["writes"], memory["evictions"], memory["saved_tokens"],
                memory["saved_seconds"], memory["reports"]) == (40, 20, 10, 2, 4000, 120.0, 2)
        assert memory["hit_rate"] == pytest.approx(40 / 60)
        assert memory["mean_lookup_seconds"] == pytest.approx(40 * 2e-6 / 60)
        assert (memory["entries"], memory["bytes"]) == (None, None)
        assert (sqlite["entries"], sqlite["hit_rate"]) == (3, 0.3)
        assert data["levels"]["redis"]["hit_rate"] is None
        assert data["sqlite"]["entries"] == 3 and data["sqlite"]["hits"] == 3 and data["sqlite"]["tag_edges"] == 1
        assert [(e["key"], e["hits"], e["model"], e["provider"]) for e in data["top"]] == [
            (KEY_A, 2, "gpt-test", "openai")]

    def test_counters_of_an_unknown_level_are_shown_too(self, db: str) -> None:
        """A level name other than the three (a custom level) gets its own row after them."""
        with SqliteCache(db) as c:
            c.add_counters("disk", hits=1)
        assert list(stats_json("--db", db)["levels"]) == ["memory", "redis", "sqlite", "disk"]

    def test_database_without_cache_entries(self, db: str) -> None:
        """An existing database with nothing cached shows zeros, not an error."""
        SqliteCache(db).close()
        result = cache("stats", "--db", db)
        assert result.exit_code == 0, result.stderr
        assert "no counters recorded yet" in result.stdout and "sqlite: 0 entries" in result.stdout

    def test_not_a_database(self, tmp_path: Path) -> None:
        """A file that is not SQLite is one error line naming it, exit 2."""
        bad = tmp_path / "bad.db"
        bad.write_bytes(b"not sqlite" * 200)
        result = cache("stats", "--db", str(bad))
        assert result.exit_code == 2
        assert "bad.db" in one_error_line(result)

    def test_debug_shows_the_exception(self, tmp_path: Path) -> None:
        """With the main app's --debug the error propagates (for its traceback)."""
        bad = tmp_path / "bad.db"
        bad.write_bytes(b"not sqlite" * 200)
        result = CliRunner().invoke(app, ["--debug", "cache", "stats", "--db", str(bad)])
        assert isinstance(result.exception, StoreError)

    def test_unreachable_redis(self, db: str) -> None:
        """A Redis that does not answer is one error line naming the URL, exit 2."""
        fill(db)
        result = cache("stats", "--db", db, "--redis", UNREACHABLE)
        assert result.exit_code == 2
        assert "127.0.0.1:1" in one_error_line(result)

    def test_bad_redis_url_and_password_is_hidden(self, db: str) -> None:
        """A URL Redis cannot parse is exit 2; a password in a URL is never printed."""
        result = cache("stats", "--db", db, "--redis", "http://nowhere")
        assert result.exit_code == 2
        assert "bad Redis URL" in one_error_line(result)
        result = cache("stats", "--db", db, "--redis", "redis://:hunter2@127.0.0.1:1/0")
        assert result.exit_code == 2
        assert "hunter2" not in one_error_line(result) and ":***@" in result.stderr

    def test_redis_entries(self, db: str, namespace: str) -> None:
        """With --redis the redis row shows the namespace's entry count and bytes (counted with SCAN)."""
        fill(db, namespace)
        data = stats_json("--db", db, "--redis", REDIS_URL, "--namespace", namespace)
        assert (data["redis"]["entries"], data["redis"]["tags"], data["redis"]["namespace"]) == (3, 3, namespace)
        assert data["levels"]["redis"]["entries"] == 3 and data["levels"]["redis"]["bytes"] > 0
        result = cache("stats", "--db", db, "--redis", REDIS_URL, "--namespace", namespace)
        assert result.exit_code == 0, result.stderr
        redis_row = next(line for line in result.stdout.splitlines() if "│ redis" in line)
        assert redis_row.split("│")[2].strip() == "3"
        assert f"namespace {namespace}: 3 entries" in result.stdout

    def test_redis_without_a_database(self, db: str, namespace: str) -> None:
        """--redis with no database yet still reports Redis (and creates no database)."""
        result = cache("stats", "--db", db, "--redis", REDIS_URL, "--namespace", namespace)
        assert result.exit_code == 0, result.stderr
        assert "no cache database in" in result.stdout and "0 entries" in result.stdout
        assert not Path(db).exists()

    def test_namespace_is_matched_literally(self, db: str, namespace: str) -> None:
        """A namespace with glob characters counts only its own keys, not a namespace the glob would match."""
        async def put() -> None:
            for ns in (f"{namespace}:a*", f"{namespace}:ab"):
                redis = RedisCache(REDIS_URL, namespace=ns)
                await redis.put("k", {"text": ns}, now=time.time())
                await redis.aclose()

        asyncio.run(put())
        data = stats_json("--db", db, "--redis", REDIS_URL, "--namespace", f"{namespace}:a*")
        assert data["redis"]["entries"] == 1
        assert cache("clear", "--db", db, "--redis", REDIS_URL, "--namespace", f"{namespace}:a*",
                     "--yes").exit_code == 0
        assert redis_entries(f"{namespace}:ab") == 1 and redis_entries(f"{namespace}:a*") == 0


class TestClear:
    def test_clear_keeps_counters(self, db: str) -> None:
        """clear --yes removes the entries and the tag graph, says how many, and keeps the counters."""
        fill(db)
        result = cache("clear", "--db", db, "--yes")
        assert result.exit_code == 0, result.stderr
        assert "removed 3 cache entries (3 from sqlite); tag graph cleared; counters kept" in result.stdout
        with SqliteCache(db) as c:
            assert c.summary().entries == 0 and c.summary().tag_edges == 0
            assert c.counters()["memory"]["hits"] == 40

    def test_clear_counters(self, db: str) -> None:
        """--counters resets the counters too; a second clear finds nothing to do."""
        fill(db)
        result = cache("clear", "--db", db, "--yes", "--counters")
        assert result.exit_code == 0, result.stderr
        assert "counters reset" in result.stdout
        assert stats_json("--db", db)["levels"]["memory"]["hits"] == 0
        again = cache("clear", "--db", db)
        assert again.exit_code == 0 and "nothing removed" in again.stdout

    def test_confirmation(self, db: str) -> None:
        """Without --yes it asks; 'n' removes nothing (exit 1), 'y' proceeds (like 'memory clear')."""
        fill(db)
        declined = cache("clear", "--db", db, input="n\n")
        assert declined.exit_code == 1
        assert "Remove 3 cache entries (sqlite 3) and the tag graph?" in declined.stdout
        assert "nothing removed" in declined.stdout
        assert stats_json("--db", db)["sqlite"]["entries"] == 3
        accepted = cache("clear", "--db", db, "--counters", input="y\n")
        assert accepted.exit_code == 0
        assert "and reset the counters?" in accepted.stdout
        assert stats_json("--db", db)["sqlite"]["entries"] == 0

    def test_missing_database(self, db: str) -> None:
        """clear with no database (and no --redis) is one error line, exit 2, and creates nothing."""
        result = cache("clear", "--db", db, "--yes")
        assert result.exit_code == 2
        assert "no cache database" in one_error_line(result)
        assert not Path(db).exists()

    def test_not_a_database(self, tmp_path: Path) -> None:
        """clear on a file that is not SQLite is one error line, exit 2, and leaves the file alone."""
        bad = tmp_path / "bad.db"
        bad.write_bytes(b"not sqlite" * 200)
        result = cache("clear", "--db", str(bad), "--yes")
        assert result.exit_code == 2
        one_error_line(result)
        assert bad.read_bytes() == b"not sqlite" * 200

    def test_unreachable_redis_changes_nothing(self, db: str) -> None:
        """With a Redis that does not answer: exit 2 before anything is removed from SQLite."""
        fill(db)
        result = cache("clear", "--db", db, "--redis", UNREACHABLE, "--yes")
        assert result.exit_code == 2
        one_error_line(result)
        assert stats_json("--db", db)["sqlite"]["entries"] == 3

    def test_clear_with_redis(self, db: str, namespace: str) -> None:
        """With --redis both levels are emptied, with a count for each."""
        fill(db, namespace)
        result = cache("clear", "--db", db, "--redis", REDIS_URL, "--namespace", namespace, "--yes")
        assert result.exit_code == 0, result.stderr
        assert "removed 6 cache entries (3 from sqlite, 3 from redis)" in result.stdout
        assert redis_entries(namespace) == 0

    def test_redis_only_when_there_is_no_database(self, db: str, namespace: str) -> None:
        """With --redis and no database, Redis is cleared and no database is created."""
        async def put() -> None:
            redis = RedisCache(REDIS_URL, namespace=namespace)
            await redis.put("k", {"text": "x"}, now=time.time(), tags=["t"])
            await redis.aclose()

        asyncio.run(put())
        result = cache("clear", "--db", db, "--redis", REDIS_URL, "--namespace", namespace, "--yes")
        assert result.exit_code == 0, result.stderr
        assert "removed 1 cache entry (1 from redis)" in result.stdout and "redis only" in result.stdout
        assert redis_entries(namespace) == 0 and not Path(db).exists()


class TestInvalidate:
    def test_follows_derivations(self, db: str) -> None:
        """Invalidating doc:1 removes its entry and the summary derived from it; other entries stay."""
        fill(db)
        result = cache("invalidate", "doc:1", "--db", db)
        assert result.exit_code == 0, result.stderr
        assert "invalidated doc:1 and derived summary:1: removed 2 entries (2 from sqlite)" in result.stdout
        with SqliteCache(db) as c:
            now = time.time()
            assert c.get(KEY_C, now) is not None and c.get(KEY_A, now) is None and c.get(KEY_B, now) is None
            assert c.closure(["doc:1"]) == {"doc:1", "summary:1"}  # the graph stays

    def test_several_tags_and_json(self, db: str) -> None:
        """Several tags at once; --json lists the tags, the derived ones and the count per level."""
        fill(db)
        result = cache("invalidate", "summary:1", "other", "--db", db, "--json")
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout) == {"tags": ["summary:1", "other"], "derived": [], "removed": {"sqlite": 2}}

    def test_unknown_tag_removes_nothing(self, db: str) -> None:
        """A tag nothing carries removes nothing, exit 0."""
        fill(db)
        result = cache("invalidate", "nobody", "--db", db)
        assert result.exit_code == 0
        assert "removed 0 entries (0 from sqlite)" in result.stdout

    def test_needs_a_tag(self, db: str) -> None:
        """No TAG is a usage error (exit 2)."""
        fill(db)
        assert cache("invalidate", "--db", db).exit_code == 2

    def test_missing_database(self, db: str) -> None:
        """invalidate with no database (and no --redis) is one error line, exit 2, and creates nothing."""
        result = cache("invalidate", "doc:1", "--db", db)
        assert result.exit_code == 2
        assert "no cache database" in one_error_line(result)
        assert not Path(db).exists()

    def test_unreachable_redis_changes_nothing(self, db: str) -> None:
        """With a Redis that does not answer: exit 2, SQLite untouched."""
        fill(db)
        result = cache("invalidate", "doc:1", "--db", db, "--redis", UNREACHABLE)
        assert result.exit_code == 2
        one_error_line(result)
        assert stats_json("--db", db)["sqlite"]["entries"] == 3

    def test_with_redis(self, db: str, namespace: str) -> None:
        """With --redis the closure (from the SQLite graph) is removed from both levels, counted per level."""
        fill(db, namespace)
        result = cache("invalidate", "doc:1", "--db", db, "--redis", REDIS_URL, "--namespace", namespace)
        assert result.exit_code == 0, result.stderr
        assert "removed 4 entries (2 from sqlite, 2 from redis)" in result.stdout
        assert redis_entries(namespace) == 1


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTFLEET_")}
    env.update(COLUMNS="200", NO_COLOR="1", PYTHONIOENCODING="utf-8")
    return env


class TestRegisteredInTheMainApp:
    def test_cache_command_in_the_real_cli(self, tmp_path: Path) -> None:
        """`agentfleet cache stats` runs as a real process: the default database, then a bad one (exit 2)."""
        run = [sys.executable, "-m", "agentfleet.cli", "cache", "stats"]
        result = subprocess.run(run, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60,
                                check=False)
        assert result.returncode == 0, result.stderr
        assert f"no cache in {os.path.join('.agentfleet', 'agentfleet.db')} yet" in result.stdout
        assert not (tmp_path / ".agentfleet").exists()
        (tmp_path / "bad.db").write_bytes(b"not sqlite" * 200)
        result = subprocess.run([*run, "--db", "bad.db"], cwd=tmp_path, env=_env(), capture_output=True,
                                text=True, timeout=60, check=False)
        assert result.returncode == 2
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1

    def test_db_from_the_environment(self, tmp_path: Path) -> None:
        """AGENTFLEET_DB picks the database, like the other commands."""
        from agentfleet.cli import app as main_app

        db = str(tmp_path / "env.db")
        fill(db)
        result = CliRunner().invoke(main_app, ["cache", "stats", "--json"],
                                    env={"AGENTFLEET_DB": db, "COLUMNS": "200", "NO_COLOR": "1"})
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["sqlite"]["entries"] == 3
