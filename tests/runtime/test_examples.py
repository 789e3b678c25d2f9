"""Every shipped example runs to success on the sim provider (virtual time), twice over one store."""

from __future__ import annotations

from pathlib import Path

import pytest

import agentfleet
from agentfleet.runtime import Runner
from agentfleet.spec import load_workflow
from agentfleet.store import MemoryStore, RunStore
from agentfleet.testing import run_virtual

EXAMPLES = sorted((Path(agentfleet.__file__).parent / "examples").glob("*.yaml"))


class TestExamples:
    @pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
    def test_example_succeeds(self, path: Path, tmp_path: Path) -> None:
        """The example's tasks all finish, it reports a context reduction, and a second run works too."""
        store = RunStore(tmp_path / "runs.db")
        try:
            for _ in range(2):  # the second run sees what the first remembered
                result = run_virtual(Runner(load_workflow(path), store=store).run())
                assert result.ok, result.failure
                assert result.context_reduction is not None and result.context_reduction > 0
        finally:
            store.close()

    def test_code_review_remembers_for_the_team(self, tmp_path: Path) -> None:
        """code_review.yaml stores the lead's summary for the team and injects it into reviewers next run."""
        path = Path(agentfleet.__file__).parent / "examples" / "code_review.yaml"
        store = RunStore(tmp_path / "runs.db")
        try:
            for _ in range(2):
                result = run_virtual(Runner(load_workflow(path), store=store).run())
                assert result.ok, result.failure
        finally:
            store.close()
        memory = MemoryStore(tmp_path / "runs.db")
        try:
            entries = memory.entries("billing", scope="team")
            assert len(entries) == 1  # the key makes the second run replace, not add
            assert entries[0].uses == 6  # the six reviewers of the second run got it
        finally:
            memory.close()
