"""``agentfleet gc`` and ``agentfleet info``: what they remove, print and exit with.

The commands are registered on a tiny typer app of this module's own, so these tests do not depend
on cli.py. Runs are aged against the wall clock here, since the commands read it: old ones ended
40 days ago, new ones a day ago, far from any 30-day boundary.
"""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
from typer.testing import CliRunner, Result

from agentfleet._gc_cli import register
from agentfleet.bench._store import BenchStore
from agentfleet.store import RUN_TABLES, MemoryStore, RunStore
from tests.store.test_retention import dump, make_run, rows_of

app = typer.Typer()


@app.callback()
def _root(debug: Annotated[bool, typer.Option("--debug")] = False) -> None:
    """Stands in for the main app, whose --debug the commands honour."""


register(app)


def cli(*args: str) -> Result:
    """Run the command line and capture stdout and stderr separately."""
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250", "NO_COLOR": "1"}, catch_exceptions=True)


def one_error_line(result: Result) -> str:
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "agentfleet.db"


@pytest.fixture
def fleet(db: Path) -> dict[str, list[str]]:
    """Two old ended runs, one new, one ancient queued and one ancient running run."""
    now = time.time()
    with RunStore(db) as store:
        old = [make_run(store, ended_days_ago=40, now=now),
               make_run(store, status="failed", ended_days_ago=60, now=now, tasks=3)]
        new = [make_run(store, ended_days_ago=1, now=now),
               make_run(store, status="queued", created_days_ago=90, now=now),
               make_run(store, status="running", created_days_ago=90, now=now)]
    return {"old": old, "new": new}


def archives(directory: Path) -> list[Path]:
    return sorted(directory.glob("runs-*.jsonl.gz")) if directory.exists() else []


class TestGc:
    def test_archives_and_removes(self, db: Path, fleet: dict[str, list[str]]) -> None:
        """Old ended runs are archived beside the database and removed with all their rows; a one-line summary
        gives runs, rows per table, bytes archived and the size before and after."""
        kept = {run_id: rows_of(db, run_id) for run_id in fleet["new"]}
        old = {run_id: rows_of(db, run_id) for run_id in fleet["old"]}
        result = cli("gc", "--older-than", "30d", "--db", str(db))
        assert result.exit_code == 0, result.stderr
        (line,) = result.stdout.strip().splitlines()
        (archive,) = archives(db.parent / "archive")
        assert line.startswith("removed 2 runs that ended before ")
        assert ("tasks 5, attempts 5, results 5, events 7, run_extras 2, metric_history 4 rows; archived "
                f"{archive.stat().st_size} B to {archive}; database ") in line
        for run_id in fleet["old"]:
            assert all(not rows for rows in rows_of(db, run_id).values())
        for run_id, rows in kept.items():
            assert rows_of(db, run_id) == rows
        records = [json.loads(x) for x in gzip.decompress(archive.read_bytes()).splitlines()]
        assert sorted(r["run"]["id"] for r in records) == sorted(old)
        for record in records:
            assert {t: len(record[t]) for t in RUN_TABLES} == {t: len(old[record["run"]["id"]][t])
                                                                 for t in RUN_TABLES}

    def test_json(self, db: Path, fleet: dict[str, list[str]], tmp_path: Path) -> None:
        """--json reports the same figures; --archive DIR chooses the folder; the WAL is checkpointed."""
        result = cli("gc", "--older-than", "30d", "--archive", str(tmp_path / "keep"), "--db", str(db), "--json")
        assert result.exit_code == 0, result.stderr
        report: dict[str, Any] = json.loads(result.stdout)
        (archive,) = archives(tmp_path / "keep")
        assert (report["runs"], report["archive"], report["bytes_archived"]) == (2, str(archive),
                                                                                 archive.stat().st_size)
        assert report["rows"]["runs"] == 2 and report["rows"]["events"] == 7
        assert report["checkpoint"]["busy"] is False
        assert report["size_before"] > 0 and report["size_after"] > 0 and not report["dry_run"]

    def test_delete(self, db: Path, fleet: dict[str, list[str]]) -> None:
        """--delete removes the same runs and writes no archive."""
        result = cli("gc", "--older-than", "30d", "--delete", "--db", str(db))
        assert result.exit_code == 0, result.stderr
        assert "not archived (--delete)" in result.stdout
        assert not (db.parent / "archive").exists()
        assert {r[0] for r in dump(db)["runs"]} == set(fleet["new"])

    def test_keep_failed(self, db: Path, fleet: dict[str, list[str]]) -> None:
        """--keep-failed leaves failed runs, however old."""
        assert cli("gc", "--older-than", "30d", "--keep-failed", "--db", str(db)).exit_code == 0
        assert {r[0] for r in dump(db)["runs"]} == {*fleet["new"], fleet["old"][1]}

    def test_dry_run_changes_nothing(self, db: Path, fleet: dict[str, list[str]]) -> None:
        """--dry-run says what would go and leaves the database and archive folder as they were."""
        before = dump(db)
        result = cli("gc", "--older-than", "30d", "--dry-run", "--db", str(db))
        assert result.exit_code == 0, result.stderr
        assert result.stdout.startswith("dry run: would remove 2 runs (failed 1, succeeded 1) that ended between")
        assert "tasks 5, attempts 5" in result.stdout and "nothing changed" in result.stdout
        assert dump(db) == before
        assert not (db.parent / "archive").exists()
        report = json.loads(cli("gc", "--older-than", "30d", "--dry-run", "--json", "--db", str(db)).stdout)
        assert (report["dry_run"], report["runs"], report["by_status"]) == (True, 2, {"failed": 1, "succeeded": 1})

    def test_nothing_to_remove(self, db: Path, fleet: dict[str, list[str]]) -> None:
        """With nothing old enough gc says so, changes no row and writes no archive."""
        before = dump(db)
        result = cli("gc", "--older-than", "100d", "--db", str(db))
        assert result.exit_code == 0, result.stderr
        assert result.stdout.startswith("nothing to remove: no run ended before ")
        assert "(100d ago); database " in result.stdout
        assert dump(db) == before
        assert not archives(db.parent / "archive")

    def test_vacuum(self, db: Path) -> None:
        """--vacuum gives the freed pages back: the file shrinks."""
        now = time.time()
        with RunStore(db) as store:
            for _ in range(30):
                make_run(store, ended_days_ago=40, now=now, tasks=20)
        result = cli("gc", "--older-than", "30d", "--delete", "--vacuum", "--db", str(db), "--json")
        assert result.exit_code == 0, result.stderr
        report = json.loads(result.stdout)
        assert report["vacuumed"] and report["free_bytes"] == 0
        assert report["size_after"] < report["size_before"]

    def test_baselines_untouched(self, db: Path, fleet: dict[str, list[str]]) -> None:
        """Bench results and baselines, and agent memory, keep every row."""
        with BenchStore(db) as bench:
            bench.save_baseline("main", bench.save("suite", [], {"python": "3.11"}))
        with MemoryStore(db) as memory:
            memory.add("dev", "patterns", "kept")
        others = {t: rows for t, rows in dump(db).items() if t.startswith(("bench_", "memory"))}
        assert cli("gc", "--older-than", "30d", "--db", str(db)).exit_code == 0
        assert {t: rows for t, rows in dump(db).items() if t.startswith(("bench_", "memory"))} == others


class TestRestore:
    def test_round_trip(self, db: Path, fleet: dict[str, list[str]]) -> None:
        """--restore brings archived runs back identical; a second restore skips them."""
        before = dump(db)
        assert cli("gc", "--older-than", "30d", "--db", str(db)).exit_code == 0
        (archive,) = archives(db.parent / "archive")
        result = cli("gc", "--restore", str(archive), "--db", str(db))
        assert result.exit_code == 0, result.stderr
        assert result.stdout.startswith(f"restored 2 runs from {archive}: tasks 5, attempts 5")
        assert dump(db) == before
        again = cli("gc", "--restore", str(archive), "--db", str(db), "--json")
        assert json.loads(again.stdout)["skipped"] == 2
        assert dump(db) == before

    def test_missing_file(self, db: Path, tmp_path: Path) -> None:
        """A restore file that does not exist is one error line, exit 2, and no database is created."""
        result = cli("gc", "--restore", str(tmp_path / "nope.jsonl.gz"), "--db", str(db))
        assert result.exit_code == 2
        assert "nope.jsonl.gz" in one_error_line(result)
        assert not db.exists()

    def test_not_an_archive(self, db: Path, tmp_path: Path) -> None:
        """A file that is not an archive is one error line, exit 2."""
        bad = tmp_path / "bad.jsonl.gz"
        bad.write_text("hello")
        result = cli("gc", "--restore", str(bad), "--db", str(db))
        assert result.exit_code == 2
        assert "bad.jsonl.gz" in one_error_line(result)


class TestBadInput:
    @pytest.mark.parametrize("age", ["30x", "30", "permanent", "-3d", "0d", "soon"])
    def test_bad_age(self, db: Path, fleet: dict[str, list[str]], age: str) -> None:
        """An age that is not a number with a unit is one error line, exit 2, and nothing changes."""
        before = dump(db)
        result = cli("gc", "--older-than", age, "--db", str(db))
        assert result.exit_code == 2, result.stdout
        assert f"--older-than: invalid age {age!r}" in one_error_line(result)
        assert dump(db) == before

    def test_missing_database(self, tmp_path: Path) -> None:
        """A database that does not exist is one error line, exit 2, for gc and info, and is not created."""
        for args in (("gc", "--older-than", "30d"), ("info",)):
            result = cli(*args, "--db", str(tmp_path / "none.db"))
            assert result.exit_code == 2
            assert "none.db" in one_error_line(result)
        assert not (tmp_path / "none.db").exists()

    @pytest.mark.parametrize(("args", "message"), [
        ((), "give --older-than AGE"),
        (("--older-than", "30d", "--delete", "--archive", "x"), "--archive DIR or --delete, not both"),
        (("--restore", "x.jsonl.gz", "--older-than", "30d"), "--restore takes only --db"),
    ])
    def test_conflicting_flags(self, db: Path, args: tuple[str, ...], message: str) -> None:
        """Missing or conflicting options are one error line, exit 2."""
        result = cli("gc", *args, "--db", str(db))
        assert result.exit_code == 2
        assert message in one_error_line(result)

    def test_interrupted(self, db: Path, fleet: dict[str, list[str]], monkeypatch: pytest.MonkeyPatch) -> None:
        """Ctrl-C during gc says committed batches are removed, exits 130, and shows no traceback."""
        import agentfleet._gc_cli as gc_cli

        def interrupted(*args: Any, **kwargs: Any) -> Any:
            raise KeyboardInterrupt

        monkeypatch.setattr(gc_cli, "gc_runs", interrupted)
        result = cli("gc", "--older-than", "30d", "--db", str(db))
        assert result.exit_code == 130
        assert result.stdout.startswith("interrupted: the batches already committed are removed; run gc again")
        assert "Traceback" not in result.stdout + result.stderr

    def test_debug_shows_the_exception(self, db: Path) -> None:
        """With --debug the error is raised instead of printed."""
        result = cli("--debug", "gc", "--older-than", "30x", "--db", str(db))
        assert result.exit_code != 0
        assert result.exception is not None and "invalid age" in str(result.exception)


class TestInfo:
    def test_json_counts_match(self, db: Path, fleet: dict[str, list[str]]) -> None:
        """info --json gives rows per table, runs by status, sizes and pages that match the database."""
        with MemoryStore(db) as memory:
            memory.add("dev", "patterns", "p")
        result = cli("info", "--db", str(db), "--json")
        assert result.exit_code == 0, result.stderr
        found = json.loads(result.stdout)
        rows = dump(db)
        for table in ("runs", *RUN_TABLES, "memory"):
            assert found["tables"][table] == len(rows[table])
        assert found["runs_by_status"] == {"failed": 1, "queued": 1, "running": 1, "succeeded": 2}
        assert found["total_bytes"] == sum(found["files"].values()) > 0
        assert found["free_bytes"] == found["freelist_pages"] * found["page_size"]
        assert found["oldest_run"] < found["newest_run"]

    def test_table(self, db: Path, fleet: dict[str, list[str]]) -> None:
        """The table names the database, its size, pages, each table's rows and the oldest and newest run."""
        result = cli("info", "--db", str(db))
        assert result.exit_code == 0, result.stderr
        for text in ("size on disk", "free pages", "metric_history", "failed 1, queued 1, running 1, succeeded 2",
                     "oldest run", "90d ago", "newest run", str(db)):
            assert text in result.stdout
