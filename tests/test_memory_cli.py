"""``agentfleet memory``: list, show, add and clear, their output, errors and exit codes.

The sub-app is mounted on a tiny typer app of its own, so these tests do not depend on how
cli.py registers it. Output is read with a wide console (COLUMNS) so rich does not wrap.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from typer.testing import CliRunner, Result

from agentfleet._memory_cli import memory_app
from agentfleet.errors import StoreError
from agentfleet.store import MemoryStore

app = typer.Typer()


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug")] = False) -> None:
    """Stands in for the main app, whose --debug the sub-app honours."""


app.add_typer(memory_app, name="memory")


def memory(*args: str, input: str | None = None) -> Result:
    """Run ``memory ARGS`` and capture stdout and stderr separately."""
    return CliRunner().invoke(app, ["memory", *args], input=input, env={"COLUMNS": "200", "NO_COLOR": "1"},
                              catch_exceptions=True)


@pytest.fixture
def db(tmp_path: Path) -> str:
    return str(tmp_path / "agentfleet.db")


def one_error_line(result: Result) -> str:
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def listed(db: str, *args: str) -> list[dict[str, Any]]:
    result = memory("list", "--db", db, "--json", *args)
    assert result.exit_code == 0, result.stderr
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


class TestAdd:
    def test_add_and_list(self, db: str) -> None:
        """add stores an agent entry (created with the database) and list --json shows it."""
        result = memory("add", "reviewer", "mistakes", "forgot the tests", "--db", db)
        assert result.exit_code == 0, result.stderr
        assert "added memory 1 for agent 'reviewer' in mistakes; never expires" in result.stdout
        (row,) = listed(db)
        assert {k: row[k] for k in ("id", "owner", "scope", "category", "content", "expires", "source", "uses")} == {
            "id": 1, "owner": "reviewer", "scope": "agent", "category": "mistakes", "content": "forgot the tests",
            "expires": None, "source": "cli", "uses": 0}

    def test_team_key_and_ttl(self, db: str) -> None:
        """--team scopes to a team, --ttl sets an expiry, --key makes a second add an update."""
        assert memory("add", "backend", "project_context", "py 3.11", "--team", "--key", "py", "--ttl", "30d",
                      "--db", db).exit_code == 0
        result = memory("add", "backend", "project_context", "py 3.12", "--team", "--key", "py", "--db", db)
        assert result.exit_code == 0
        assert "memory 1 for team 'backend'" in result.stdout
        (row,) = listed(db, "--team", "backend")
        assert (row["scope"], row["key"], row["content"], row["expires"]) == ("team", "py", "py 3.12", None)

    def test_text_from_stdin(self, db: str) -> None:
        """TEXT '-' reads the entry from standard input."""
        assert memory("add", "a", "patterns", "-", "--db", db, input="from stdin\n").exit_code == 0
        assert listed(db)[0]["content"] == "from stdin\n"

    def test_bad_ttl(self, db: str) -> None:
        """An unparseable --ttl is one error line naming the value, exit 2, and nothing is stored."""
        result = memory("add", "a", "patterns", "x", "--ttl", "soon", "--db", db)
        assert result.exit_code == 2
        assert "--ttl" in one_error_line(result) and "'soon'" in result.stderr
        assert not Path(db).exists()

    def test_empty_text(self, db: str) -> None:
        """Empty content is a user error (exit 2)."""
        result = memory("add", "a", "patterns", "  ", "--db", db)
        assert result.exit_code == 2
        assert "content is empty" in one_error_line(result)

    def test_unusable_database(self, tmp_path: Path) -> None:
        """A file that is not a database is one error line naming it, exit 2."""
        bad = tmp_path / "bad.db"
        bad.write_bytes(b"not sqlite" * 200)
        result = memory("add", "a", "patterns", "x", "--db", str(bad))
        assert result.exit_code == 2
        assert "bad.db" in one_error_line(result)


class TestList:
    def test_table(self, db: str) -> None:
        """The table shows id, owner, scope, category, key, content cut to 60 chars, age, expiry and uses."""
        memory("add", "dev", "patterns", "word " * 40, "--key", "k1", "--ttl", "2h", "--db", db)
        result = memory("list", "--db", db)
        assert result.exit_code == 0, result.stderr
        header = result.stdout.splitlines()[1]
        for col in ("id", "owner", "scope", "category", "key", "content", "age", "expires", "uses"):
            assert col in header
        assert ("word " * 12).strip()[:59] + "…" in result.stdout
        assert "in 1h" in result.stdout or "in 2h" in result.stdout

    def test_filters(self, db: str) -> None:
        """--agent, --team and --category narrow the listing."""
        memory("add", "dev", "patterns", "p", "--db", db)
        memory("add", "dev", "mistakes", "m", "--db", db)
        memory("add", "dev", "patterns", "t", "--team", "--db", db)
        assert sorted(r["content"] for r in listed(db)) == ["m", "p", "t"]
        assert sorted(r["content"] for r in listed(db, "--agent", "dev")) == ["m", "p"]
        assert [r["content"] for r in listed(db, "--agent", "dev", "--category", "mistakes")] == ["m"]
        assert [r["content"] for r in listed(db, "--team", "dev")] == ["t"]

    def test_agent_and_team_together(self, db: str) -> None:
        """--agent with --team is a user error."""
        result = memory("list", "--agent", "a", "--team", "t", "--db", db)
        assert result.exit_code == 2
        assert "not both" in one_error_line(result)

    def test_missing_database_lists_nothing(self, db: str) -> None:
        """With no database yet there is nothing remembered (like 'agentfleet runs'); none is created."""
        result = memory("list", "--db", db)
        assert result.exit_code == 0
        assert "no memory in" in result.stdout
        assert memory("list", "--db", db, "--json").stdout.strip() == "[]"
        assert not Path(db).exists()


class TestShow:
    def test_show(self, db: str) -> None:
        """show prints every field and the full content; --json the entry."""
        long_text = "line one [not markup]\n" + "x" * 300
        memory("add", "dev", "mistakes", long_text, "--key", "k", "--db", db)
        result = memory("show", "1", "--db", db)
        assert result.exit_code == 0, result.stderr
        assert long_text in result.stdout
        assert "dev (agent)" in result.stdout and "never" in result.stdout and "cli" in result.stdout
        data = json.loads(memory("show", "1", "--db", db, "--json").stdout)
        assert (data["id"], data["content"], data["key"]) == (1, long_text, "k")

    def test_unknown_id(self, db: str) -> None:
        """An unknown id is one error line, exit 2."""
        memory("add", "dev", "mistakes", "x", "--db", db)
        result = memory("show", "99", "--db", db)
        assert result.exit_code == 2
        assert "no memory entry 99" in one_error_line(result)

    def test_missing_database(self, db: str) -> None:
        """show on a missing database is one error line naming it, exit 2, and creates nothing."""
        result = memory("show", "1", "--db", db)
        assert result.exit_code == 2
        assert "no memory database" in one_error_line(result) and db in result.stderr
        assert not Path(db).exists()

    def test_debug_shows_the_exception(self, db: str) -> None:
        """With the main app's --debug the error propagates (for its traceback)."""
        result = CliRunner().invoke(app, ["--debug", "memory", "show", "1", "--db", db])
        assert isinstance(result.exception, StoreError)


class TestClear:
    def _fill(self, db: str) -> None:
        memory("add", "dev", "patterns", "1", "--db", db)
        memory("add", "dev", "mistakes", "2", "--db", db)
        memory("add", "qa", "patterns", "3", "--db", db)
        memory("add", "dev", "patterns", "4", "--team", "--db", db)

    def test_refuses_everything_without_all(self, db: str) -> None:
        """With no filter and no --all nothing is removed: one error line, exit 2."""
        self._fill(db)
        result = memory("clear", "--yes", "--db", db)
        assert result.exit_code == 2
        assert "--all" in one_error_line(result)
        assert len(listed(db)) == 4

    def test_all_with_filters_is_contradictory(self, db: str) -> None:
        """--all with --agent is refused."""
        result = memory("clear", "--all", "--agent", "dev", "--yes", "--db", db)
        assert result.exit_code == 2
        one_error_line(result)

    def test_clear_agent(self, db: str) -> None:
        """--agent clears that agent's entries only (not a team of the same name) and says how many."""
        self._fill(db)
        result = memory("clear", "--agent", "dev", "--yes", "--db", db)
        assert result.exit_code == 0, result.stderr
        assert "removed 2 memory entries" in result.stdout
        assert sorted(r["content"] for r in listed(db)) == ["3", "4"]

    def test_clear_category_and_team(self, db: str) -> None:
        """--category alone clears it for every owner; --team clears a team."""
        self._fill(db)
        assert "removed 3 memory entries" in memory("clear", "--category", "patterns", "--yes", "--db", db).stdout
        assert [r["content"] for r in listed(db)] == ["2"]
        self._fill(db)
        assert "removed 1 memory entry " in memory("clear", "--team", "dev", "--yes", "--db", db).stdout

    def test_all(self, db: str) -> None:
        """--all --yes clears everything."""
        self._fill(db)
        result = memory("clear", "--all", "--yes", "--db", db)
        assert result.exit_code == 0
        assert "removed 4 memory entries" in result.stdout
        assert listed(db) == []

    def test_confirmation(self, db: str) -> None:
        """Without --yes it asks; 'n' removes nothing (exit 1), 'y' proceeds."""
        self._fill(db)
        declined = memory("clear", "--agent", "qa", "--db", db, input="n\n")
        assert declined.exit_code == 1
        assert "Remove 1 memory entry" in declined.stdout and "nothing removed" in declined.stdout
        assert len(listed(db)) == 4
        accepted = memory("clear", "--agent", "qa", "--db", db, input="y\n")
        assert accepted.exit_code == 0
        assert len(listed(db)) == 3

    def test_nothing_matches(self, db: str) -> None:
        """When nothing matches, it says so without asking."""
        self._fill(db)
        result = memory("clear", "--agent", "nobody", "--db", db)
        assert result.exit_code == 0
        assert "nothing removed" in result.stdout

    def test_missing_database(self, db: str) -> None:
        """clear on a missing database is one error line, exit 2, and creates nothing."""
        result = memory("clear", "--all", "--yes", "--db", db)
        assert result.exit_code == 2
        assert "no memory database" in one_error_line(result)
        assert not Path(db).exists()

    def test_store_sees_cli_writes(self, db: str) -> None:
        """What the CLI adds is what the library reads (same database, same tables)."""
        memory("add", "dev", "patterns", "shared", "--db", db)
        with MemoryStore(db, create=False) as store:
            assert [e.content for e in store.for_agent("dev")] == ["shared"]
