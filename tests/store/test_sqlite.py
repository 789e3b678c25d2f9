"""The run database: runs, results committed durably, resume data, prefixes."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentfleet._types import TaskRecord
from agentfleet.errors import RunNotFound, StoreError
from agentfleet.store import RunStore


class TestRunStore:
    def test_wal_mode_and_default_layout(self, tmp_path: Path) -> None:
        """The database is created with its folder, in WAL mode."""
        path = tmp_path / "deep" / "agentfleet.db"
        with RunStore(path) as store:
            mode = store._db.execute("PRAGMA journal_mode").fetchone()[0]
        assert mode == "wal"
        assert path.exists()

    def test_result_roundtrip_exact(self, tmp_path: Path) -> None:
        """A committed result is read back exactly, from a fresh connection."""
        path = tmp_path / "a.db"
        with RunStore(path) as store:
            run_id = store.create_run(name="w", spec_path="w.yaml", spec_text="x", overrides={"k": 1})
            rec = TaskRecord(task_id="t[0]", agent="a", state="done", output={"a": [1, 2.5, "x"]}, tokens_in=3,
                             tokens_out=4, attempts=2, started_at=0.5, ended_at=1.5, depends_on=("s",))
            store.commit_result(run_id, 1, rec)
        with RunStore(path) as store:
            (back,) = store.load_tasks(run_id)
            row = store.get_run(run_id[:4])
        assert back.output == {"a": [1, 2.5, "x"]}
        assert (back.tokens_in, back.tokens_out, back.attempts, back.depends_on) == (3, 4, 2, ("s",))
        assert row.overrides == {"k": 1}

    def test_done_without_result_is_redone(self, tmp_path: Path) -> None:
        """A task row marked done but without its result is treated as interrupted."""
        with RunStore(tmp_path / "a.db") as store:
            run_id = store.create_run(name="w", spec_path=None, spec_text=None)
            store.note_task(run_id, 1, TaskRecord(task_id="t", agent="a", state="done"))
            store.flush()
            assert store.load_tasks(run_id)[0].state == "interrupted"

    def test_unknown_and_ambiguous_ids(self, tmp_path: Path) -> None:
        """Unknown ids raise RunNotFound (a user error, exit 2)."""
        with RunStore(tmp_path / "a.db") as store:
            with pytest.raises(RunNotFound) as info:
                store.get_run("nope")
            assert info.value.exit_code == 2
            with pytest.raises(RunNotFound):
                store.resolve("latest")

    def test_corrupt_database_is_a_clear_error(self, tmp_path: Path) -> None:
        """A file that is not a database gives a StoreError naming it."""
        bad = tmp_path / "bad.db"
        bad.write_bytes(b"this is not sqlite" * 100)
        with pytest.raises(StoreError, match=r"bad\.db"):
            RunStore(bad)


def test_extras_and_metric_history_round_trip(tmp_path: Path) -> None:
    with RunStore(tmp_path / "runs.db") as store:
        ids = [store.create_run(name="wf", spec_path=None, spec_text=None) for _ in range(3)]
        other = store.create_run(name="other", spec_path=None, spec_text=None)
        for i, run_id in enumerate(ids):
            store.record_metrics(run_id, "wf", 100.0 + i, {"makespan_s": 1.0 + i, "tasks": 5})
        store.record_metrics(other, "other", 50.0, {"makespan_s": 9.0})
        store.record_metrics(ids[0], "wf", 100.0, {"makespan_s": 7.0})  # a resumed run replaces its figures
        store.put_extra(ids[0], "profile", '{"tree": "x"}')
        store.put_extra(ids[0], "profile", '{"tree": "y"}')
    with RunStore(tmp_path / "runs.db", create=False) as store:
        assert [(r, f) for r, _, f in store.metric_history("wf")] == [
            (ids[0], {"makespan_s": 7.0}), (ids[1], {"makespan_s": 2.0, "tasks": 5.0}),
            (ids[2], {"makespan_s": 3.0, "tasks": 5.0})]
        assert [r for r, _, _ in store.metric_history("wf", limit=2)] == ids[1:]
        assert store.workflows() == [("wf", 3), ("other", 1)]
        assert store.get_extra(ids[0][:6], "profile") == '{"tree": "y"}'
        assert store.get_extra(ids[1], "profile") is None
