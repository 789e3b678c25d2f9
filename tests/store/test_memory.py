"""Agent memory across runs: upserts, expiry on an injected clock, bounds, recall and rendering."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentfleet.errors import ArtifactNotFound, StoreError
from agentfleet.store import MemoryEntry, MemoryStore, RunStore, parse_ttl, render_memory


class FakeClock:
    """Wall-clock epoch seconds that move only when told to."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock: FakeClock) -> MemoryStore:
    return MemoryStore(":memory:", clock=clock)


class TestAdd:
    def test_add_returns_the_entry(self, store: MemoryStore, clock: FakeClock) -> None:
        """add stores an agent-scoped, permanent entry stamped with the injected clock."""
        entry = store.add("reviewer", "mistakes", "forgot to run the tests", source="run r1 task t2")
        assert entry == MemoryEntry(id=entry.id, owner="reviewer", scope="agent", category="mistakes", key=None,
                                    content="forgot to run the tests", created=clock.now, updated=clock.now,
                                    expires=None, source="run r1 task t2", uses=0)
        assert store.get(entry.id) == entry

    def test_without_key_every_add_is_new(self, store: MemoryStore) -> None:
        """Entries without a key accumulate."""
        store.add("a", "patterns", "one")
        store.add("a", "patterns", "one")
        assert len(store.entries("a")) == 2

    def test_key_upserts(self, store: MemoryStore, clock: FakeClock) -> None:
        """The same owner/scope/category/key replaces content and source, keeps id and created."""
        first = store.add("a", "project_context", "tests: pytest", key="test-cmd", source="s1")
        clock.advance(60)
        second = store.add("a", "project_context", "tests: pytest -q", key="test-cmd")
        assert second.id == first.id
        assert (second.content, second.created, second.updated, second.source) == (
            "tests: pytest -q", first.created, clock.now, None)
        assert [e.content for e in store.entries("a")] == ["tests: pytest -q"]
        stats = store.statistics()
        assert (stats.adds, stats.updates) == (1, 1)

    def test_key_is_per_scope_and_category(self, store: MemoryStore) -> None:
        """The same key under another scope or category is another slot."""
        store.add("x", "patterns", "agent one", key="k")
        store.add("x", "patterns", "team one", key="k", scope="team")
        store.add("x", "mistakes", "other category", key="k")
        assert store.count("x") == 3

    def test_bad_arguments(self, store: MemoryStore) -> None:
        """Empty owner, category or content and an unknown scope are ValueErrors."""
        with pytest.raises(ValueError, match="owner"):
            store.add(" ", "patterns", "x")
        with pytest.raises(ValueError, match="category"):
            store.add("a", "", "x")
        with pytest.raises(ValueError, match="content is empty"):
            store.add("a", "patterns", "  \n")
        with pytest.raises(ValueError, match="scope"):
            store.add("a", "patterns", "x", scope="crew")  # type: ignore[arg-type]

    def test_truncation_marker(self, clock: FakeClock) -> None:
        """Content over max_entry_chars is cut to fit, with a marker saying how long it was."""
        store = MemoryStore(":memory:", clock=clock, max_entry_chars=200)
        entry = store.add("a", "patterns", "x" * 1000)
        assert len(entry.content) <= 200
        assert entry.content.startswith("x" * 100)
        assert "[truncated: 1,000 chars" in entry.content
        assert store.statistics().truncations == 1
        assert store.add("a", "patterns", "y" * 200).content == "y" * 200


class TestExpiry:
    def test_ttl_expires_on_the_clock(self, store: MemoryStore, clock: FakeClock) -> None:
        """An entry with a ttl is visible until its expiry, then hidden everywhere."""
        entry = store.add("a", "patterns", "short-lived", ttl="1h")
        store.add("a", "patterns", "permanent")
        assert entry.expires == clock.now + 3600
        clock.advance(3599)
        assert len(store.entries("a")) == 2
        clock.advance(1)
        assert [e.content for e in store.entries("a")] == ["permanent"]
        assert [e.content for e in store.for_agent("a")] == ["permanent"]
        assert store.owners() == [("a", "agent", 1)]
        with pytest.raises(ArtifactNotFound, match="expired"):
            store.get(entry.id)
        assert store.statistics().expired == 1

    def test_upsert_resets_expiry(self, store: MemoryStore, clock: FakeClock) -> None:
        """Adding a keyed entry again restarts its ttl (or makes it permanent)."""
        store.add("a", "patterns", "v1", key="k", ttl=100)
        clock.advance(90)
        again = store.add("a", "patterns", "v2", key="k", ttl=100)
        assert again.expires == clock.now + 100
        clock.advance(50)
        assert [e.content for e in store.entries("a")] == ["v2"]
        assert store.add("a", "patterns", "v3", key="k").expires is None

    def test_purge_expired(self, store: MemoryStore, clock: FakeClock) -> None:
        """purge_expired removes only expired rows and says how many."""
        store.add("a", "patterns", "one", ttl=10)
        store.add("b", "mistakes", "two", ttl=10, scope="team")
        store.add("a", "patterns", "stays")
        assert store.purge_expired() == 0
        clock.advance(10)
        assert store.purge_expired() == 2
        assert store.count() == 1


class TestEviction:
    def test_least_recently_updated_is_evicted(self, clock: FakeClock) -> None:
        """Past max_entries in one owner/scope/category, the least recently updated go first."""
        store = MemoryStore(":memory:", clock=clock, max_entries=3)
        ids = []
        for i in range(3):
            ids.append(store.add("a", "patterns", f"p{i}", key=f"k{i}").id)
            clock.advance(1)
        store.add("a", "patterns", "p0 refreshed", key="k0")  # now the most recent
        clock.advance(1)
        store.add("a", "patterns", "p3")
        assert [e.content for e in store.entries("a")] == ["p3", "p0 refreshed", "p2"]
        assert store.statistics().evictions == 1

    def test_limit_is_per_owner_scope_and_category(self, clock: FakeClock) -> None:
        """Other categories, scopes and owners do not count against one another."""
        store = MemoryStore(":memory:", clock=clock, max_entries=1)
        store.add("a", "patterns", "1")
        store.add("a", "mistakes", "2")
        store.add("a", "patterns", "3", scope="team")
        store.add("b", "patterns", "4")
        assert store.count() == 4
        store.add("a", "patterns", "5")
        assert [e.content for e in store.entries("a", categories=["patterns"])] == ["5"]

    def test_expired_entries_go_before_live_ones(self, clock: FakeClock) -> None:
        """When a category is full, expired entries are removed first and no live one is evicted."""
        store = MemoryStore(":memory:", clock=clock, max_entries=2)
        store.add("a", "patterns", "old live")
        store.add("a", "patterns", "expiring", ttl=5)
        clock.advance(5)
        store.add("a", "patterns", "new")
        assert [e.content for e in store.entries("a")] == ["new", "old live"]
        assert store.statistics().evictions == 0

    def test_limits_are_validated(self) -> None:
        """Nonsensical limits are refused when the store is made."""
        with pytest.raises(ValueError, match="max_entries"):
            MemoryStore(":memory:", max_entries=0)
        with pytest.raises(ValueError, match="max_entry_chars"):
            MemoryStore(":memory:", max_entry_chars=10)


class TestQueries:
    def test_entries_newest_first_with_filters(self, store: MemoryStore, clock: FakeClock) -> None:
        """entries is newest first, filtered by owner, scope and categories, and limited."""
        for category in ("patterns", "mistakes", "best_practices"):
            store.add("a", category, category)
            clock.advance(1)
        store.add("a", "patterns", "team", scope="team")
        assert [e.content for e in store.entries("a")] == ["best_practices", "mistakes", "patterns"]
        assert [e.content for e in store.entries("a", categories=["patterns", "mistakes"])] == ["mistakes",
                                                                                               "patterns"]
        assert [e.content for e in store.entries("a", limit=1)] == ["best_practices"]
        assert [e.content for e in store.entries("a", scope="team")] == ["team"]
        assert len(store.entries(None, scope=None)) == 4

    def test_get_unknown_id(self, store: MemoryStore) -> None:
        """An unknown id raises ArtifactNotFound (exit code 2) naming it."""
        with pytest.raises(ArtifactNotFound, match="no memory entry 42") as info:
            store.get(42)
        assert info.value.exit_code == 2

    def test_delete(self, store: MemoryStore) -> None:
        """delete removes one entry and says whether there was one."""
        entry = store.add("a", "patterns", "x")
        assert store.delete(entry.id) is True
        assert store.delete(entry.id) is False

    def test_owners(self, store: MemoryStore) -> None:
        """owners lists (owner, scope, count), sorted."""
        store.add("b", "patterns", "1")
        store.add("a", "patterns", "2", scope="team")
        store.add("a", "mistakes", "3")
        store.add("a", "patterns", "4")
        assert store.owners() == [("a", "agent", 2), ("a", "team", 1), ("b", "agent", 1)]
        stats = store.statistics()
        assert (stats.entries, stats.owners, stats.chars) == (4, 3, 4)


class TestForAgent:
    def test_agent_and_team_entries_newest_first(self, store: MemoryStore, clock: FakeClock) -> None:
        """for_agent merges the agent's and its team's entries, newest first, and no one else's."""
        store.add("dev", "patterns", "mine, old")
        clock.advance(1)
        store.add("backend", "best_practices", "team's", scope="team")
        clock.advance(1)
        store.add("dev", "mistakes", "mine, new")
        store.add("other", "mistakes", "not mine")
        store.add("dev", "mistakes", "team-named like me", scope="team")
        assert [e.content for e in store.for_agent("dev", team="backend")] == ["mine, new", "team's", "mine, old"]
        assert [e.content for e in store.for_agent("dev")] == ["mine, new", "mine, old"]
        assert [e.content for e in store.for_agent("dev", team="backend", categories=["best_practices"])] == [
            "team's"]

    def test_max_chars_cut(self, store: MemoryStore, clock: FakeClock) -> None:
        """Entries are taken newest first while they fit; one too big is skipped, older small ones still fit."""
        store.add("a", "patterns", "x" * 10)
        clock.advance(1)
        store.add("a", "patterns", "y" * 50)
        clock.advance(1)
        store.add("a", "patterns", "z" * 30)
        assert [len(e.content) for e in store.for_agent("a", max_chars=45)] == [30, 10]
        assert [len(e.content) for e in store.for_agent("a", max_chars=89)] == [30, 50]
        assert store.for_agent("a", max_chars=5) == []
        with pytest.raises(ValueError, match="max_chars"):
            store.for_agent("a", max_chars=-1)

    def test_uses_counter(self, store: MemoryStore, clock: FakeClock) -> None:
        """Each entry for_agent returns has its uses incremented, in the result and in the database."""
        kept = store.add("a", "patterns", "short")
        clock.advance(1)
        skipped = store.add("a", "patterns", "far too long for the budget")
        (first,) = store.for_agent("a", max_chars=10)
        assert first.id == kept.id and first.uses == 1
        store.for_agent("a")
        assert store.get(kept.id).uses == 2
        assert store.get(skipped.id).uses == 1
        assert store.statistics().recalls == 3


class TestClear:
    def test_clear_scopes(self, store: MemoryStore) -> None:
        """clear removes what matches owner, scope and category, and returns how many."""
        store.add("a", "patterns", "1")
        store.add("a", "mistakes", "2")
        store.add("a", "patterns", "3", scope="team")
        store.add("b", "patterns", "4")
        assert store.count("a", scope="agent", category="patterns") == 1
        assert store.clear("a", scope="agent", category="patterns") == 1
        assert store.clear(category="patterns") == 2
        assert store.clear("a") == 1
        assert store.clear() == 0
        store.add("c", "patterns", "5")
        assert store.clear() == 1

    def test_clear_counts_expired_rows(self, store: MemoryStore, clock: FakeClock) -> None:
        """Expired but unpurged rows are removed (and counted) too."""
        store.add("a", "patterns", "1", ttl=1)
        clock.advance(2)
        assert store.count("a") == 1
        assert store.clear("a") == 1


class TestPersistence:
    def test_memory_outlives_the_process(self, tmp_path: Path) -> None:
        """Entries are in the run database file and a new store reads them back."""
        path = tmp_path / "agentfleet.db"
        with RunStore(path) as runs:
            runs.create_run(name="w", spec_path=None, spec_text=None)
        with MemoryStore(path) as store:
            entry = store.add("a", "patterns", "remember me")
        with MemoryStore(path, create=False) as store:
            assert store.get(entry.id).content == "remember me"
        with RunStore(path, create=False) as runs:
            assert len(runs.list_runs()) == 1

    def test_missing_database_without_create(self, tmp_path: Path) -> None:
        """create=False refuses a missing database with a StoreError (exit code 2) and creates nothing."""
        with pytest.raises(StoreError, match="no memory database") as info:
            MemoryStore(tmp_path / "none.db", create=False)
        assert info.value.exit_code == 2
        assert not (tmp_path / "none.db").exists()


class TestParseTtl:
    @pytest.mark.parametrize(("value", "seconds"), [
        ("30d", 30 * 86400.0), ("12h", 43200.0), ("15m", 900.0), ("45s", 45.0), ("2w", 14 * 86400.0),
        ("1.5h", 5400.0), (" 10 M ", 600.0), ("90", 90.0), (90, 90.0), (0.5, 0.5),
        (None, None), ("permanent", None), ("never", None),
    ])
    def test_values(self, value: str | float | None, seconds: float | None) -> None:
        """Durations with a unit, plain seconds and 'permanent' parse."""
        assert parse_ttl(value) == seconds

    @pytest.mark.parametrize("value", ["", "soon", "10x", "-5m", "1d2h", "0s", 0, -1, float("inf"), True])
    def test_errors_name_the_value(self, value: str | float) -> None:
        """Anything else is a ValueError that repeats the bad value."""
        with pytest.raises(ValueError, match="invalid ttl") as info:
            parse_ttl(value)
        assert repr(value) in str(info.value)


class TestRender:
    def test_grouped_by_category(self, store: MemoryStore, clock: FakeClock) -> None:
        """Conventional categories come first in a fixed order, others after, entries keep their order."""
        store.add("a", "custom", "a custom note")
        store.add("a", "mistakes", "second line\nand a continuation")
        clock.advance(1)
        store.add("a", "mistakes", "newest mistake")
        store.add("a", "project_context", "python 3.11", key="runtime")
        assert render_memory(store.for_agent("a")) == "\n".join([
            "## Memory",
            "### project_context",
            "- runtime: python 3.11",
            "### mistakes",
            "- newest mistake",
            "- second line",
            "  and a continuation",
            "### custom",
            "- a custom note",
        ])

    def test_nothing_renders_empty(self) -> None:
        """No entries render as the empty string (nothing to inject)."""
        assert render_memory([]) == ""
