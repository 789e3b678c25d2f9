"""Lifecycle hooks: Python and command hooks get the payload; every failure is reported, not raised."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from agentfleet.errors import HookError, SpecError
from agentfleet.runtime._hooks import EVENTS, HookFailure, HookRunner, HookStatistics
from agentfleet.spec import HooksSpec, parse_workflow
from agentfleet.testing import run_virtual
from tests.fixtures import hooks as fixture_hooks

PAYLOAD: dict[str, Any] = {
    "run_id": "run-1",
    "task_id": "implement[2]",
    "agent": "developer",
    "attempt": 1,
}


def _runner(run_id: str | None = None, **events: Any) -> HookRunner:
    return HookRunner(HooksSpec.model_validate(events), run_id=run_id)


def _fire(
    runner: HookRunner, event: str, payload: dict[str, Any] | None = None
) -> list[HookFailure]:
    return asyncio.run(runner.fire(event, PAYLOAD if payload is None else payload))


@pytest.fixture(autouse=True)
def _clear_calls() -> None:
    fixture_hooks.CALLS.clear()


class TestFastPath:
    """Events without hooks cost nothing."""

    def test_no_hooks(self) -> None:
        """With no hooks configured, ``has`` is false and ``fire`` returns an empty list."""
        runner = HookRunner(None)
        for event in EVENTS:
            assert not runner.has(event)
            assert _fire(runner, event) == []
        assert runner.statistics() == HookStatistics(fired=0, failed=0)

    def test_has_only_configured_events(self) -> None:
        """``has`` is true exactly for the events that have hooks."""
        runner = _runner(after_task="tests.fixtures.hooks:record_sync")
        assert runner.has("after_task")
        assert not runner.has("before_task")

    def test_empty_event_creates_no_task(self) -> None:
        """Firing an event without hooks completes without scheduling anything on the loop."""
        runner = _runner(after_task="tests.fixtures.hooks:record_sync")
        coro = runner.fire("before_task", PAYLOAD)
        with pytest.raises(StopIteration) as info:
            coro.send(None)
        assert info.value.value == []

    def test_unknown_event(self) -> None:
        """An event name that is not a lifecycle event is a programming error."""
        with pytest.raises(ValueError, match="before_task"):
            _fire(HookRunner(None), "on_start")


class TestPythonHooks:
    """``module:function`` hooks, sync or async, are called with (event, payload)."""

    def test_sync_hook_gets_event_and_payload(self) -> None:
        """A sync hook is called once with the event name and the payload."""
        runner = _runner(before_task="tests.fixtures.hooks:record_sync")
        assert _fire(runner, "before_task") == []
        assert fixture_hooks.CALLS == [("sync", "before_task", PAYLOAD)]
        assert runner.statistics() == HookStatistics(fired=1, failed=0)

    def test_async_hook_is_awaited(self) -> None:
        """An async hook is awaited before ``fire`` returns."""
        runner = _runner(on_run_end="tests.fixtures.hooks:record_async")
        assert _fire(runner, "on_run_end", {"run_id": "r", "state": "done"}) == []
        assert fixture_hooks.CALLS == [("async", "on_run_end", {"run_id": "r", "state": "done"})]

    def test_hooks_run_in_declared_order(self) -> None:
        """Several hooks on one event run one after another, in order."""
        runner = _runner(
            after_task=[
                "tests.fixtures.hooks:record_async",
                "tests.fixtures.hooks:record_sync",
                "tests.fixtures.hooks:Namespace.nested",
            ]
        )
        assert _fire(runner, "after_task") == []
        assert [kind for kind, _, _ in fixture_hooks.CALLS] == ["async", "sync", "nested"]

    def test_works_on_a_virtual_time_loop(self) -> None:
        """Hooks run unchanged on the virtual-time loop the scheduler tests use."""
        runner = _runner(after_task="tests.fixtures.hooks:record_async")
        assert run_virtual(runner.fire("after_task", PAYLOAD)) == []
        assert len(fixture_hooks.CALLS) == 1

    def test_raising_hook_is_reported(self) -> None:
        """An exception in a hook becomes a HookFailure naming the hook, event and error."""
        runner = _runner(
            on_failure=[
                "tests.fixtures.hooks:explode",
                "tests.fixtures.hooks:explode_async",
                "tests.fixtures.hooks:record_sync",
            ]
        )
        failures = _fire(runner, "on_failure")
        assert [f.hook for f in failures] == [
            "tests.fixtures.hooks:explode",
            "tests.fixtures.hooks:explode_async",
        ]
        assert failures[0].event == "on_failure"
        assert failures[0].task_id == "implement[2]"
        assert "RuntimeError: boom on on_failure" in failures[0].message
        assert "ValueError: async boom" in failures[1].message
        assert len(fixture_hooks.CALLS) == 1, "the hooks after a failing one still run"
        assert runner.statistics() == HookStatistics(fired=3, failed=2)

    def test_async_hook_timeout(self) -> None:
        """An async hook that outlives its timeout is cancelled and reported."""
        runner = _runner(after_task={"python": "tests.fixtures.hooks:hang", "timeout": 0.05})
        started = time.monotonic()
        failures = _fire(runner, "after_task")
        assert time.monotonic() - started < 5
        assert len(failures) == 1
        assert "timed out after 0.05 s" in failures[0].message

    def test_cancelling_fire_cancels_the_hook(self) -> None:
        """Cancelling the caller propagates: it is not swallowed as a hook failure."""
        runner = _runner(after_task={"python": "tests.fixtures.hooks:hang", "timeout": 30})

        async def main() -> None:
            task = asyncio.ensure_future(runner.fire("after_task", PAYLOAD))
            await asyncio.sleep(0.01)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

        asyncio.run(main())

    @pytest.mark.parametrize(
        ("path", "expected"),
        [
            (
                "tests.fixtures.no_such_module:hook",
                "cannot import module 'tests.fixtures.no_such_module'",
            ),
            ("tests.fixtures.hooks:missing", "has no attribute 'missing'"),
            ("tests.fixtures.hooks:not_callable", "is not callable"),
            (
                "tests.fixtures.broken_hooks:hook",
                "raised RuntimeError: this module is broken on purpose",
            ),
        ],
    )
    def test_bad_path_is_reported(self, path: str, expected: str) -> None:
        """A hook that cannot be imported is a failure with a clear message, not an exception."""
        runner = _runner(before_task=path)
        failures = _fire(runner, "before_task")
        assert len(failures) == 1
        assert failures[0].hook == path
        assert expected in failures[0].message

    def test_bad_path_is_imported_once(self) -> None:
        """A failed import is remembered, not retried on every task."""
        runner = _runner(before_task="tests.fixtures.no_such_module:hook")
        _fire(runner, "before_task")
        _fire(runner, "before_task")
        assert runner._resolved["tests.fixtures.no_such_module:hook"].error is not None
        assert runner.statistics() == HookStatistics(fired=2, failed=2)

    def test_validate_raises_spec_error_naming_the_hook(self) -> None:
        """``validate`` turns a bad path into a SpecError naming the hook and its field."""
        runner = HookRunner(
            HooksSpec.model_validate(
                {"after_task": ["tests.fixtures.hooks:record_sync", "tests.fixtures.hooks:nope"]}
            ),
            file="flow.yaml",
        )
        with pytest.raises(SpecError) as info:
            runner.validate()
        assert "tests.fixtures.hooks:nope" in str(info.value)
        assert info.value.field == "hooks.after_task[1].python"
        assert info.value.file == "flow.yaml"

    def test_validate_accepts_good_hooks(self) -> None:
        """Valid Python hooks and command hooks pass validation."""
        _runner(before_task="tests.fixtures.hooks:record_sync", on_run_end="echo done").validate()

    def test_malformed_path(self) -> None:
        """A python hook without ':' is reported as needing module:function."""
        runner = _runner(before_task={"python": "tests.fixtures.hooks"})
        with pytest.raises(SpecError, match="module:function"):
            runner.validate()


class TestCommandHooks:
    """Shell hooks get the payload as JSON on stdin and the event in their environment."""

    def test_payload_on_stdin_and_env(self, tmp_path: Path) -> None:
        """The command reads the JSON payload from stdin and sees the AGENTFLEET_* variables."""
        out = tmp_path / "payload.json"
        env = tmp_path / "env.txt"
        command = (
            f'cat > "{out}"; '
            f'printf "%s\\n%s\\n%s\\n" "$AGENTFLEET_EVENT" "$AGENTFLEET_TASK_ID" "$AGENTFLEET_RUN_ID" > "{env}"'
        )
        runner = _runner(run_id="run-42", after_task=command)
        assert _fire(runner, "after_task") == []
        assert json.loads(out.read_text()) == PAYLOAD
        assert env.read_text().splitlines() == ["after_task", "implement[2]", "run-42"]

    def test_run_id_from_payload_and_no_task_id(self, tmp_path: Path) -> None:
        """Without a runner run id the payload's is used; no task id means no AGENTFLEET_TASK_ID."""
        env = tmp_path / "env.txt"
        command = (f'printf "%s|%s|%s" "$AGENTFLEET_EVENT" "${{AGENTFLEET_TASK_ID-unset}}" '
                   f'"$AGENTFLEET_RUN_ID" > "{env}"')
        runner = _runner(on_run_end=command)
        assert _fire(runner, "on_run_end", {"run_id": "r9", "state": "done"}) == []
        assert env.read_text() == "on_run_end|unset|r9"

    def test_non_json_values_are_stringified(self, tmp_path: Path) -> None:
        """Payload values JSON cannot encode (paths, sets) are sent as strings."""
        out = tmp_path / "payload.json"
        runner = _runner(after_task=f'cat > "{out}"')
        assert _fire(runner, "after_task", {"path": Path("/x/y")}) == []
        assert json.loads(out.read_text()) == {"path": "/x/y"}

    def test_command_ignoring_stdin(self) -> None:
        """A command that never reads stdin still succeeds."""
        assert _fire(_runner(after_task="true"), "after_task", {"big": "x" * 1_000_000}) == []

    def test_failing_command_reports_code_and_stderr(self) -> None:
        """A non-zero exit is a failure with the exit code and the last stderr line."""
        runner = _runner(on_failure="echo first >&2; echo 'webhook returned 503' >&2; exit 3")
        failures = _fire(runner, "on_failure")
        assert len(failures) == 1
        failure = failures[0]
        assert failure.event == "on_failure"
        assert failure.hook.startswith("echo first")
        assert "exited with code 3" in failure.message
        assert failure.message.endswith("webhook returned 503")
        assert runner.statistics() == HookStatistics(fired=1, failed=1)

    def test_timeout_kills_the_process_group(self, tmp_path: Path) -> None:
        """A command past its timeout is reported, and its children are killed with it."""
        pid_file = tmp_path / "child.pid"
        command = f'sleep 30 & echo $! > "{pid_file}"; wait'
        runner = _runner(after_task={"command": command, "timeout": 0.3})
        started = time.monotonic()
        failures = _fire(runner, "after_task")
        assert time.monotonic() - started < 10
        assert len(failures) == 1
        assert "timed out after 0.3 s" in failures[0].message
        child = int(pid_file.read_text())
        deadline = time.monotonic() + 5
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not _alive(child)

    def test_timeout_is_wall_clock_on_a_virtual_loop(self) -> None:
        """On a virtual-time loop a quick command is not timed out by the loop skipping ahead."""

        async def main() -> list[HookFailure]:
            runner = _runner(after_task={"command": "sleep 0.1", "timeout": 5})
            ticker = asyncio.ensure_future(asyncio.sleep(1000))  # lets virtual time race ahead
            try:
                return await runner.fire("after_task", PAYLOAD)
            finally:
                ticker.cancel()

        assert run_virtual(main()) == []

    def test_failure_as_error(self) -> None:
        """A HookFailure converts to a HookError carrying the hook and event."""
        failure = HookFailure(hook="notify.sh", event="on_failure", message="exited with code 1")
        error = failure.as_error()
        assert isinstance(error, HookError)
        assert (error.hook, error.event) == ("notify.sh", "on_failure")
        assert "exited with code 1" in str(error)


class TestFromWorkflow:
    """Hooks declared in a workflow file reach the runner."""

    def test_workflow_hooks(self, tmp_path: Path) -> None:
        """A YAML ``hooks:`` section drives a HookRunner end to end."""
        out = tmp_path / "events.jsonl"
        spec = parse_workflow(
            "agents: {a: {}}\n"
            "tasks: [{id: t, agent: a}]\n"
            "hooks:\n"
            "  before_task: tests.fixtures.hooks:record_sync\n"
            f"  after_task: 'cat >> \"{out}\"'\n"
        )
        runner = HookRunner(spec.hooks, run_id="r1")
        runner.validate()
        assert _fire(runner, "before_task") == []
        assert _fire(runner, "after_task") == []
        assert fixture_hooks.CALLS[0][1] == "before_task"
        assert json.loads(out.read_text()) == PAYLOAD


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")
