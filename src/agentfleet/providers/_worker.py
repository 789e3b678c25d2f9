"""Long-lived ``command`` workers: the JSON-lines protocol and one worker process.

# Design
# The protocol (docs/command-workers.md) is one JSON object per line each way. The
# provider writes ``{"type": "task", "id", "task_id", "agent", "model", "system",
# "prompt", "max_tokens", "temperature", "output_schema", "timeout", "options"}`` or
# ``{"type": "ping", "id"}`` to the worker's stdin; the worker answers on stdout with an
# object carrying the same ``id``: ``{"text"}`` and/or ``{"data"}`` (optionally with
# ``"usage"``), ``{"error", "retryable"}``, or ``{"type": "pong"}``. Blank lines are
# ignored; any other line -- not JSON, not an object, another id, or anything while no
# request is pending -- is a protocol violation and ends the worker, because after it
# we can no longer tell which reply answers which request. stderr is the worker's log:
# it is drained continuously (a chatty worker never blocks on a full pipe) and only
# its last lines are kept, for error messages.
#
# The pure half (``task_message``, ``encode_message``, ``read_task_reply``) does no I/O.
# ``WorkerProcess`` is the other half: one process in its own session (so a kill reaches
# everything it started) with three tasks -- a stdout reader matching replies to the
# single pending request, a stderr drain, and a monitor. The monitor waits for the end
# (stdout closed, the process exited, a protocol violation, or ``abort()`` from the
# provider on a timeout, a cancellation or a failed ping), stops the process group
# (SIGTERM, then SIGKILL after ``kill_grace``), reaps it, and fails the pending request
# with ``WorkerLost`` naming the agent, the exit status and the stderr tail. A worker
# never comes back from that: the provider starts a fresh one for its next call, so a
# late reply can never be matched to a later request.
#
# ``asyncio.subprocess.Process.wait()`` returns only once every pipe is closed, so a
# grandchild holding stdout would hide the worker's death from it; the protocol
# subclass below reports the exit itself (``exited``) as soon as the child watcher sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .._types import ProviderRequest
from ..errors import WorkerLost

__all__ = [
    "MAX_LINE",
    "ErrorReply",
    "TaskReply",
    "WorkerProcess",
    "encode_message",
    "exit_description",
    "ping_message",
    "read_task_reply",
    "signal_group",
    "task_message",
    "token_usage",
]

MAX_LINE = 32 * 1024 * 1024  # longest reply line read from a worker, in bytes
_SETTLE = 0.5  # stdout closed but no exit yet (or the reverse): how long until we stop waiting
_MAX_STDERR_LINE = 2000  # bytes kept of one stderr line
_PREVIEW = 120  # characters of an offending stdout line quoted in an error


# -- the protocol (pure) ------------------------------------------------------------------


def task_message(request: ProviderRequest, request_id: str, timeout: float | None) -> dict[str, Any]:
    """The ``task`` request for ``request``; ``timeout`` is the one the provider enforces."""
    return {
        "type": "task",
        "id": request_id,
        "task_id": request.task_id,
        "agent": request.agent,
        "model": request.model,
        "system": request.system,
        "prompt": request.prompt,
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "output_schema": request.output_schema,
        "timeout": timeout,
        "options": request.options,
    }


def ping_message(request_id: str) -> dict[str, Any]:
    return {"type": "ping", "id": request_id}


def encode_message(message: Mapping[str, Any]) -> bytes:
    """One protocol line: compact JSON (never containing a raw newline) plus ``\\n``."""
    text = json.dumps(message, ensure_ascii=False, separators=(",", ":"), default=str)
    try:
        return text.encode() + b"\n"
    except UnicodeEncodeError:  # a lone surrogate: escape everything rather than send bad UTF-8
        return json.dumps(message, separators=(",", ":"), default=str).encode() + b"\n"


@dataclass(frozen=True, slots=True)
class TaskReply:
    """A worker's answer to a task: the text, the JSON data if any, and token counts."""

    text: str
    data: Any = None
    tokens_in: int = 0
    tokens_out: int = 0


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """A worker reporting that the task failed; ``retryable`` says whether a retry may help."""

    message: str
    retryable: bool = True


def token_usage(data: Any) -> tuple[int, int]:
    """Token counts from ``{"usage": {...}}`` (input/output or prompt/completion tokens), if any."""
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return 0, 0
    tokens_in = usage.get("input_tokens", usage.get("prompt_tokens", 0))
    tokens_out = usage.get("output_tokens", usage.get("completion_tokens", 0))
    return (tokens_in if isinstance(tokens_in, int) else 0,
            tokens_out if isinstance(tokens_out, int) else 0)


def read_task_reply(reply: Mapping[str, Any]) -> TaskReply | ErrorReply:
    """Interpret a reply (already matched by id) to a task; ValueError says what is malformed."""
    error = reply.get("error")
    if error is not None:
        retryable = reply.get("retryable", True)
        if not isinstance(retryable, bool):
            raise ValueError(f"'retryable' must be true or false, got {retryable!r}")
        return ErrorReply(error if isinstance(error, str) else json.dumps(error, default=str), retryable)
    text = reply.get("text")
    if text is not None and not isinstance(text, str):
        raise ValueError(f"'text' must be a string, got {type(text).__name__}")
    if "data" in reply:
        data = reply["data"]
        if text is None:
            text = json.dumps(data, ensure_ascii=False, default=str)
    elif text is None:
        raise ValueError("the reply has none of 'text', 'data' or 'error'")
    else:
        data = None
    tokens_in, tokens_out = token_usage(reply)
    if not (tokens_in or tokens_out):
        tokens_in, tokens_out = token_usage(data)
    return TaskReply(text, data, tokens_in, tokens_out)


def exit_description(code: int | None) -> str:
    """``exited with code 3`` or ``was killed by SIGKILL`` for a return code."""
    if code is None:
        return "is in an unknown state"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        return f"was killed by {name}"
    return f"exited with code {code}"


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _preview(line: bytes) -> str:
    text = line.decode("utf-8", "replace").rstrip("\r\n")
    return repr(text[:_PREVIEW] + ("..." if len(text) > _PREVIEW else ""))


# -- one worker process -------------------------------------------------------------------


class _WorkerProtocol(asyncio.subprocess.SubprocessStreamProtocol):
    """The stream protocol, plus ``exited``: resolved when the process exits, pipes or not."""

    def __init__(self, limit: int, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(limit, loop)
        self.exited: asyncio.Future[None] = loop.create_future()

    def process_exited(self) -> None:
        super().process_exited()
        if not self.exited.done():
            self.exited.set_result(None)


class _Pending:
    """The one request in flight: its id, its task (None for a ping) and the reply's future."""

    __slots__ = ("future", "id", "task_id")

    def __init__(self, request_id: Any, task_id: str | None, future: asyncio.Future[dict[str, Any]]) -> None:
        self.id = request_id
        self.task_id = task_id
        self.future = future


class WorkerProcess:
    """One running worker: sends a request, matches the reply by id, notices when it is gone.

    Not reusable after it ends; ``loss`` then says why (for error messages and ``last_error``).
    Belongs to the event loop that started it.
    """

    def __init__(
        self,
        process: asyncio.subprocess.Process,
        protocol: _WorkerProtocol,
        *,
        agent: str,
        program: str,
        provider: str,
        kill_grace: float,
        stderr_lines: int,
    ) -> None:
        self.loop = asyncio.get_running_loop()
        self.pid = process.pid
        self.agent = agent
        self.program = program
        self.provider = provider
        self.kill_grace = kill_grace
        self.loss: str | None = None
        self._process = process
        self._protocol = protocol
        self._pending: _Pending | None = None
        self._closing = False
        self._stderr: deque[bytes] = deque(maxlen=stderr_lines)
        self._stderr_partial = b""
        self._abort: asyncio.Future[str] = self.loop.create_future()
        self._reader = self.loop.create_task(self._read_replies())
        self._stderr_reader = self.loop.create_task(self._read_stderr())
        self._monitor = self.loop.create_task(self._run())

    @classmethod
    async def start(
        cls,
        argv: Sequence[str],
        *,
        env: Mapping[str, str],
        cwd: str | None,
        agent: str,
        program: str,
        provider: str,
        kill_grace: float,
        stderr_lines: int = 5,
    ) -> WorkerProcess:
        """Start ``argv`` in a new session with pipes on all three streams (OSError if it cannot)."""
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.subprocess_exec(
            lambda: _WorkerProtocol(MAX_LINE, loop),
            argv[0],
            *argv[1:],
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
        process = asyncio.subprocess.Process(transport, protocol, loop)
        return cls(process, protocol, agent=agent, program=program, provider=provider,
                   kill_grace=kill_grace, stderr_lines=stderr_lines)

    @property
    def alive(self) -> bool:
        """Running, speaking the protocol, and not being stopped or closed."""
        return not (self._closing or self._abort.done() or self._reader.done() or self._protocol.exited.done())

    @property
    def busy(self) -> bool:
        return self._pending is not None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode

    def stderr_tail(self) -> str:
        """The last lines the worker wrote on stderr."""
        lines = [*self._stderr, self._stderr_partial]
        texts = [line.decode("utf-8", "replace").rstrip() for line in lines if line.strip()]
        return "\n".join(texts[-(self._stderr.maxlen or 1):])

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send ``message`` and return the reply carrying its id.

        Unbounded: the caller applies the timeout, and on timeout or cancellation must
        ``stop()`` the worker (its late reply would otherwise be unmatched). Raises
        ``WorkerLost`` if the worker ends first.
        """
        if self._pending is not None:
            raise RuntimeError("a worker takes one request at a time")
        if not self.alive:
            await self.wait_closed()
            raise WorkerLost(self.loss or self._describe("was closed", None), provider=self.provider)
        future: asyncio.Future[dict[str, Any]] = self.loop.create_future()
        pending = self._pending = _Pending(message["id"], message.get("task_id"), future)
        try:
            stdin = self._process.stdin
            assert stdin is not None
            try:
                stdin.write(encode_message(message))
                await stdin.drain()
            except ConnectionError:
                # It stopped reading: usually it just died, and the monitor is about to
                # report that with its exit status. If it lives on, stop it.
                await asyncio.wait({future}, timeout=_SETTLE)
                self.abort("stopped reading its stdin")
            return await future
        finally:
            if self._pending is pending:
                self._pending = None
            if not future.done():
                future.cancel()

    def abort(self, reason: str) -> None:
        """End the worker (in the background): its group is stopped and ``loss`` set to ``reason``."""
        if not self._abort.done():
            self._abort.set_result(reason)

    async def stop(self, reason: str) -> None:
        """``abort(reason)`` and wait until the process is gone and reaped."""
        self.abort(reason)
        await self.wait_closed()

    async def close(self) -> None:
        """Close stdin (the worker should exit), wait ``kill_grace``, then stop the group."""
        if not self._monitor.done() and not self._closing:
            self._closing = True
            stdin = self._process.stdin
            if stdin is not None:
                stdin.close()
            done, _ = await asyncio.wait({self._monitor}, timeout=self.kill_grace)
            if not done:
                self.abort(f"did not exit within {self.kill_grace:g}s of its stdin closing")
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the worker has ended and been reaped (the wait itself may be cancelled)."""
        await asyncio.shield(self._monitor)

    def kill_nowait(self) -> None:
        """SIGKILL the group now, without waiting (for a worker whose event loop is gone)."""
        signal_group(self.pid, signal.SIGKILL)

    # -- the three tasks -------------------------------------------------------------------

    async def _read_replies(self) -> str | None:
        """Hand each reply to the pending request; None at EOF, or why the protocol broke."""
        stdout = self._process.stdout
        assert stdout is not None
        while True:
            try:
                line = await stdout.readline()
            except ValueError:  # the line is over the stream's limit
                return f"broke the protocol (a stdout line is longer than {MAX_LINE} bytes)"
            except OSError as exc:
                return f"broke the protocol (reading stdout failed: {exc})"
            if not line:
                return None
            if not line.strip():
                continue
            problem = self._dispatch(line)
            if problem is not None:
                return f"broke the protocol ({problem})"

    def _dispatch(self, line: bytes) -> str | None:
        try:
            reply = json.loads(line)
        except ValueError:
            return f"stdout line is not JSON: {_preview(line)}"
        if not isinstance(reply, dict):
            return f"stdout line is not a JSON object: {_preview(line)}"
        pending = self._pending
        if pending is None:
            return f"wrote {_preview(line)} with no request pending"
        if reply.get("id") != pending.id:
            return f"answered id {reply.get('id')!r} while {pending.id!r} was pending: {_preview(line)}"
        self._pending = None
        if not pending.future.done():
            pending.future.set_result(reply)
        return None

    async def _read_stderr(self) -> None:
        """Drain stderr for the worker's life, keeping only its last lines."""
        stderr = self._process.stderr
        assert stderr is not None
        with contextlib.suppress(OSError):
            while chunk := await stderr.read(65536):
                *lines, rest = (self._stderr_partial + chunk).split(b"\n")
                for line in lines[-(self._stderr.maxlen or 1):]:
                    if line.strip():
                        self._stderr.append(line[:_MAX_STDERR_LINE])
                self._stderr_partial = rest[-_MAX_STDERR_LINE:]

    async def _run(self) -> None:
        """The monitor: wait for the end, stop and reap the group, report the loss."""
        try:
            reason = await self._watch()
            await self._stop_group()
            await self._reap()
        except asyncio.CancelledError:
            # The event loop is shutting down under a live worker (no aclose()). asyncio.run()
            # still runs the loop while cancelled tasks finish: kill the group and reap it,
            # so neither a process nor its pipes outlive the loop.
            signal_group(self.pid, signal.SIGKILL)
            await self._reap_after_kill()
            raise
        pending = self._pending
        self.loss = self._describe(reason, pending)
        if pending is not None and not pending.future.done():
            pending.future.set_exception(WorkerLost(self.loss, provider=self.provider))

    async def _watch(self) -> str | None:
        """Return once the worker is finished: why, or None when it closed stdout and exited itself."""
        reader, exited, abort = self._reader, self._protocol.exited, self._abort
        settle_by: float | None = None
        while True:
            waiting = {f for f in (reader, exited, abort) if not f.done()}
            timeout = None if settle_by is None else max(0.0, settle_by - self.loop.time())
            done, _ = await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if abort.done():
                return abort.result()
            violation = reader.result() if reader.done() else None
            if violation is not None:
                return violation
            if reader.done() and exited.done():
                return None
            if not done:  # one happened, the other did not follow within _SETTLE
                return None if exited.done() else "closed its stdout"
            if settle_by is None:
                settle_by = self.loop.time() + _SETTLE

    async def _stop_group(self) -> None:
        """SIGTERM the group; once the worker exits or ``kill_grace`` passes, SIGKILL what is left."""
        exited = self._protocol.exited
        try:
            if signal_group(self.pid, signal.SIGTERM) and not exited.done():
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.kill_grace):
                        await asyncio.shield(exited)
        finally:
            signal_group(self.pid, signal.SIGKILL)

    async def _reap(self) -> None:
        """Close stdin, let the readers reach the end of the pipes, and reap the process."""
        process = self._process
        if process.stdin is not None:
            process.stdin.close()
        try:
            async with asyncio.timeout(max(1.0, self.kill_grace)):
                await asyncio.gather(asyncio.shield(self._reader), asyncio.shield(self._stderr_reader),
                                     process.wait())
        except TimeoutError:
            # Something that left the group (setsid) still holds our pipes: close them.
            transport = getattr(process, "_transport", None)
            if transport is not None:
                transport.close()
        await asyncio.gather(self._reader, self._stderr_reader, return_exceptions=True)

    async def _reap_after_kill(self) -> None:
        process = self._process
        if process.stdin is not None:
            process.stdin.close()
        try:
            async with asyncio.timeout(1.0):
                await process.wait()
        except (TimeoutError, asyncio.CancelledError):
            transport = getattr(process, "_transport", None)
            if transport is not None:
                transport.close()

    def _describe(self, reason: str | None, pending: _Pending | None) -> str:
        status = exit_description(self._process.returncode)
        message = f"agent {self.agent!r}: worker {self.program!r} (pid {self.pid}) {reason or status}"
        if pending is not None:
            message += f" during task {pending.task_id!r}" if pending.task_id is not None else " during a ping"
        if reason is not None:
            message += f"; it {status}"
        tail = self.stderr_tail()
        return message + (f"; last stderr:\n{tail}" if tail else " (no stderr)")

    def __repr__(self) -> str:
        return f"WorkerProcess(pid={self.pid}, program={self.program!r}, alive={self.alive})"
