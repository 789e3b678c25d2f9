"""Lifecycle hooks: run the user's Python callables and shell commands on run events.

# Design
# The scheduler calls ``fire`` for every task, so an event with no hooks must cost next to
# nothing: ``fire`` returns before doing any work and ``has(event)`` lets a caller skip even
# the coroutine. Hooks of one event run one after another in the order declared, so a hook
# can rely on the ones before it (and a sync hook is never called from two places at once).
#
# A hook never breaks a run by raising: every problem (bad import path, exception, non-zero
# exit, timeout) becomes a ``HookFailure`` the caller records and may act on. ``validate()``
# is the exception: it imports every Python hook up front so a typo in a path is a
# ``SpecError`` before the run starts instead of a failure per task.
#
# Hooks talk to the outside world, so their timeouts are wall-clock, measured by a
# ``threading.Timer`` rather than the event loop: a run on a virtual-time loop (tests,
# simulations) would otherwise see every hook "time out" the instant the loop skips ahead.
# A timed-out command is killed with its whole process group (it runs in its own session),
# so a hook that spawned children leaves nothing behind. Sync Python hooks run inline on the
# loop and cannot be interrupted; hooks that do I/O should be async or commands.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import json
import os
import signal
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import HookError, SpecError
from ..spec._models import HookSpec, HooksSpec

__all__ = ["EVENTS", "HookFailure", "HookRunner", "HookStatistics"]

EVENTS: tuple[str, ...] = ("before_task", "after_task", "on_failure", "on_run_end")

_STDERR_TAIL = 300  # characters of the last stderr line kept in a failure message


@dataclass(frozen=True, slots=True)
class HookFailure:
    """One hook that failed on one event; ``message`` says why in a line."""

    hook: str
    event: str
    message: str
    task_id: str | None = None

    def as_error(self) -> HookError:
        """The failure as an exception, for callers whose policy is to stop on hook failures."""
        return HookError(self.message, hook=self.hook, event=self.event)


@dataclass(frozen=True, slots=True)
class HookStatistics:
    """Counts since the runner was built: hook calls made, and how many of them failed."""

    fired: int
    failed: int


class _Resolved:
    """A Python hook's import result, computed once: the callable or why there is none."""

    __slots__ = ("error", "func")

    def __init__(self, func: Callable[..., Any] | None, error: str | None) -> None:
        self.func = func
        self.error = error


class HookRunner:
    """Runs the hooks of a workflow's ``hooks:`` section; one runner per run."""

    def __init__(
        self, hooks: HooksSpec | None = None, *, run_id: str | None = None, file: str | None = None
    ) -> None:
        spec = hooks or HooksSpec()
        # Only events that have hooks get an entry, so the lookup in ``fire`` is the fast path.
        self._hooks: dict[str, tuple[HookSpec, ...]] = {
            event: tuple(getattr(spec, event)) for event in EVENTS if getattr(spec, event)
        }
        self._run_id = run_id
        self._file = file
        self._resolved: dict[str, _Resolved] = {}
        self._fired = 0
        self._failed = 0

    def has(self, event: str) -> bool:
        """Whether any hook is configured for ``event``."""
        return event in self._hooks

    def statistics(self) -> HookStatistics:
        """Hook calls made so far and how many failed."""
        return HookStatistics(fired=self._fired, failed=self._failed)

    def validate(self) -> None:
        """Import every Python hook now; raise SpecError naming the first one that cannot be used."""
        for event, hooks in self._hooks.items():
            for i, hook in enumerate(hooks):
                if hook.python is None:
                    continue
                resolved = self._resolve(hook.python)
                if resolved.error is not None:
                    raise SpecError(
                        f"hook {hook.python!r}: {resolved.error}",
                        file=self._file,
                        field=f"hooks.{event}[{i}].python",
                    )

    async def fire(self, event: str, payload: Mapping[str, Any]) -> list[HookFailure]:
        """Run the hooks of ``event`` in order with ``payload``; return the ones that failed.

        Never raises for a hook's fault (cancellation still propagates). ``payload`` is
        passed to Python hooks as is and to commands as JSON on stdin.
        """
        hooks = self._hooks.get(event)
        if hooks is None:
            if event not in EVENTS:
                raise ValueError(f"unknown hook event {event!r} (known: {', '.join(EVENTS)})")
            return []
        failures: list[HookFailure] = []
        for hook in hooks:
            self._fired += 1
            if hook.python is not None:
                message = await self._call_python(hook.python, hook.timeout, event, payload)
            else:
                assert hook.command is not None
                message = await self._run_command(hook.command, hook.timeout, event, payload)
            if message is not None:
                self._failed += 1
                task_id = payload.get("task_id")
                failures.append(
                    HookFailure(
                        hook=hook.label,
                        event=event,
                        message=message,
                        task_id=str(task_id) if task_id is not None else None,
                    )
                )
        return failures

    # -- python hooks ---------------------------------------------------------------------

    def _resolve(self, path: str) -> _Resolved:
        resolved = self._resolved.get(path)
        if resolved is None:
            resolved = self._resolved[path] = _import(path)
        return resolved

    async def _call_python(
        self, path: str, timeout: float, event: str, payload: Mapping[str, Any]
    ) -> str | None:
        resolved = self._resolve(path)
        if resolved.func is None:
            return resolved.error
        try:
            result = resolved.func(event, payload)
        except Exception as exc:  # noqa: BLE001 - a hook's bug is reported, never raised
            return f"raised {_describe(exc)}"
        if not inspect.isawaitable(result):
            return None
        return await _await_with_wall_timeout(result, timeout)

    # -- command hooks --------------------------------------------------------------------

    async def _run_command(
        self, command: str, timeout: float, event: str, payload: Mapping[str, Any]
    ) -> str | None:
        try:
            data = json.dumps(payload, default=str).encode("utf-8") + b"\n"
        except (TypeError, ValueError) as exc:
            return f"payload is not JSON-serialisable: {exc}"
        env = dict(os.environ)
        env["AGENTFLEET_EVENT"] = event
        task_id = payload.get("task_id")
        if task_id is not None:
            env["AGENTFLEET_TASK_ID"] = str(task_id)
        run_id = self._run_id if self._run_id is not None else payload.get("run_id")
        if run_id is not None:
            env["AGENTFLEET_RUN_ID"] = str(run_id)
        try:
            proc = await asyncio.create_subprocess_exec(
                "/bin/sh",
                "-c",
                command,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            return f"could not start /bin/sh: {exc.strerror or exc}"

        timed_out = threading.Event()

        def kill_group() -> None:
            if proc.returncode is None:
                timed_out.set()
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill_group)
        timer.daemon = True
        timer.start()
        try:
            _, stderr = await proc.communicate(data)
        except BaseException:
            # Cancelled (or worse): do not leave the hook running behind us.
            timer.cancel()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
        finally:
            timer.cancel()
        if timed_out.is_set():
            return f"timed out after {timeout:g} s; its process group was killed"
        code = proc.returncode
        if code == 0:
            return None
        tail = _last_line(stderr)
        what = (
            f"killed by signal {-code}"
            if code is not None and code < 0
            else f"exited with code {code}"
        )
        return f"{what}: {tail}" if tail else what


def _import(path: str) -> _Resolved:
    module_name, sep, attr_path = path.partition(":")
    if not sep or not module_name or not attr_path:
        return _Resolved(None, f"expected 'module:function', got {path!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        return _Resolved(None, f"cannot import module {module_name!r}: {exc}")
    except Exception as exc:  # noqa: BLE001 - any import-time error makes the hook unusable
        return _Resolved(None, f"importing module {module_name!r} raised {_describe(exc)}")
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            return _Resolved(None, f"module {module_name!r} has no attribute {attr_path!r}")
    if not callable(obj):
        return _Resolved(None, f"{path!r} is not callable")
    return _Resolved(obj, None)


async def _await_with_wall_timeout(awaitable: Any, timeout: float) -> str | None:
    """Await a hook's coroutine, cancelling it after ``timeout`` wall-clock seconds."""
    loop = asyncio.get_running_loop()
    task = asyncio.ensure_future(awaitable)
    expired = threading.Event()

    def expire() -> None:
        expired.set()
        loop.call_soon_threadsafe(task.cancel)

    timer = threading.Timer(timeout, expire)
    timer.daemon = True
    timer.start()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise  # we are being cancelled: the hook was cancelled with us
        if expired.is_set():
            return f"timed out after {timeout:g} s"
        return "was cancelled"
    except Exception as exc:  # noqa: BLE001 - a hook's bug is reported, never raised
        return f"raised {_describe(exc)}"
    finally:
        timer.cancel()
    return None


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _last_line(stderr: bytes | None) -> str:
    if not stderr:
        return ""
    for line in reversed(stderr.decode("utf-8", errors="replace").splitlines()):
        line = line.strip()
        if line:
            return line if len(line) <= _STDERR_TAIL else line[: _STDERR_TAIL - 3] + "..."
    return ""
