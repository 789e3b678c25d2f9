"""``command``: run a program per task (a CLI agent, a script), or keep one running as a worker.

# Design
# ``mode: per_task`` (the default): one subprocess per call, started with
# ``asyncio.create_subprocess_exec`` (no shell: a string command is shlex-split) in a new
# session, so the program and everything it spawns share one process group. On timeout or
# cancellation the whole group gets SIGTERM, then, after ``kill_grace`` seconds (or as
# soon as the program exits), SIGKILL; a grandchild that outlives its parent cannot keep
# the task, or our pipes, alive. The child sees AGENTFLEET_TASK_ID, AGENTFLEET_AGENT and
# AGENTFLEET_MODEL (and AGENTFLEET_SYSTEM, the system prompt, when it fits in an
# environment variable). Output is stdout (text, or JSON parsed into ``data``); a non-zero
# exit is a retryable ProviderError quoting the exit code and the last lines of stderr.
#
# ``mode: worker``: the provider instance owns ONE long-lived process (same argv, env and
# cwd rules, its own session; AGENTFLEET_AGENT and AGENTFLEET_WORKER=1 in its environment)
# that answers tasks as JSON lines (protocol in ``_worker.py`` and docs/command-workers.md).
# The process start is paid once, by ``warm()`` or lazily by the first call; every start
# round-trips a ping within ``startup_timeout`` before the worker gets a task. One request
# is in flight at a time (a lock): a pool makes one provider per member for parallelism.
# Anything that leaves the worker's stdout out of step with our requests ends it: a
# timeout (ProviderTimeout), a cancelled call, a crash or closed stdout (WorkerLost, with
# the exit status and stderr tail), a protocol violation (WorkerLost). Killing is the safe
# choice over draining by id: a cancelled task may run on for minutes, and the next
# request would queue behind it. The next call then starts a fresh worker, so a runtime
# retry of a WorkerLost lands on a fresh process. ``aclose()`` closes stdin, gives the
# worker ``kill_grace`` to exit, then stops its group; the provider is then closed.
"""

from __future__ import annotations

import asyncio
import errno
import json
import os
import shlex
import shutil
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._types import ProviderRequest, ProviderResponse
from ..errors import ProviderConfigError, ProviderError, ProviderTimeout, WorkerLost
from ._options import OptionReader
from ._stats import CallCounters, ProviderStatistics
from ._worker import (
    ErrorReply,
    WorkerProcess,
    exit_description,
    ping_message,
    read_task_reply,
    signal_group,
    task_message,
    token_usage,
)

if TYPE_CHECKING:
    from ..spec import AgentSpec

__all__ = ["CommandProvider", "CommandStatistics"]

INPUT_MODES = ("stdin", "argv")
OUTPUT_MODES = ("text", "json")
MODES = ("per_task", "worker")
_MAX_ENV_VALUE = 100_000  # Linux refuses a single environment string over 128 KiB
_STDERR_LINES = 5


def _label(argv: Sequence[str]) -> str:
    """A short name for a worker in messages: the program, and its script or first argument."""
    parts = [os.path.basename(argv[0])] + [os.path.basename(a) for a in argv[1:2]]
    label = " ".join(parts)
    return label if len(label) <= 60 else label[:57] + "..."


def _stderr_tail(stderr: bytes, lines: int = _STDERR_LINES) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    return "\n".join(text.splitlines()[-lines:])


@dataclass(frozen=True, slots=True)
class CommandStatistics(ProviderStatistics):
    """``ProviderStatistics`` plus, in worker mode, worker processes started and restarted.

    ``worker_restarts`` counts the starts that replaced an earlier worker (after a crash,
    a timeout, a cancelled call, a protocol violation or a failed health check).
    """

    worker_starts: int = 0
    worker_restarts: int = 0


class CommandProvider:
    """Runs ``command`` once per task, or as one long-lived worker, and returns its answer.

    Options (``agent.options``): ``command`` (string, shlex-split, or list; required),
    ``mode`` (per_task | worker; default per_task), ``input`` (stdin | argv) and
    ``output`` (text | json) for per_task mode, ``env`` (mapping added to the
    environment), ``cwd``, ``timeout`` (seconds, when the request has none),
    ``kill_grace`` (seconds between SIGTERM and SIGKILL, default 2), and
    ``startup_timeout`` (worker mode: seconds for a new worker to answer its first ping,
    default 10).
    """

    name = "command"

    def __init__(
        self,
        command: str | Sequence[str],
        *,
        mode: str = "per_task",
        input: str = "stdin",
        output: str = "text",
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        kill_grace: float = 2.0,
        startup_timeout: float = 10.0,
        agent: str = "",
        name: str | None = None,
    ) -> None:
        if name is not None:
            self.name = name
        argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        if not argv:
            raise ProviderConfigError(f"agent {agent!r}: empty command", provider=self.name)
        if mode not in MODES:
            raise ProviderConfigError(f"agent {agent!r}: mode must be per_task or worker",
                                      provider=self.name)
        if input not in INPUT_MODES:
            raise ProviderConfigError(f"agent {agent!r}: input must be stdin or argv",
                                      provider=self.name)
        if output not in OUTPUT_MODES:
            raise ProviderConfigError(f"agent {agent!r}: output must be text or json",
                                      provider=self.name)
        if mode == "worker" and (input, output) != ("stdin", "text"):
            raise ProviderConfigError(
                f"agent {agent!r}: input and output do not apply to mode worker "
                "(a worker reads JSON requests on stdin and answers with text or data)",
                provider=self.name,
            )
        self.argv = argv
        self.mode = mode
        self.input = input
        self.output = output
        self.env = dict(env or {})
        self.cwd = os.path.expanduser(cwd) if cwd else None
        self.timeout = timeout
        self.kill_grace = kill_grace
        self.startup_timeout = startup_timeout
        self.agent = agent
        self._label = _label(argv)
        #: Why the last worker start, warm(), health check or call lost its worker (worker mode).
        self.last_error: str | None = None
        self._counters = CallCounters()
        self._worker: WorkerProcess | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._requests = 0
        self._worker_starts = 0

    @classmethod
    def from_agent(cls, agent: AgentSpec, *, name: str = "command") -> CommandProvider:
        """Build from an agent spec; a program not on PATH is an error now, not mid-run."""
        opts = OptionReader(agent.name, name, agent.options)
        raw = opts.raw("command")
        if raw is None:
            raise opts.error("command", "is required (the program to run, e.g. 'python agent.py')")
        if isinstance(raw, str):
            try:
                argv = shlex.split(raw)
            except ValueError as exc:
                raise opts.error("command", f"cannot be split: {exc}") from None
        elif isinstance(raw, list) and all(isinstance(a, (str, int, float)) for a in raw):
            argv = [str(a) for a in raw]
        else:
            raise opts.error("command", f"must be a string or a list of strings, got {raw!r}")
        if not argv:
            raise opts.error("command", "is empty")
        env = opts.string_mapping("env")
        if os.sep not in argv[0]:
            path = env.get("PATH", os.environ.get("PATH"))
            if shutil.which(argv[0], path=path) is None:
                raise ProviderConfigError(
                    f"agent {agent.name!r}: command not found: {argv[0]!r} (not on PATH)",
                    provider=name,
                )
        mode = opts.choice("mode", MODES, "per_task")
        input_mode = opts.choice("input", INPUT_MODES, "stdin")
        output_mode = opts.choice("output", OUTPUT_MODES, "text")
        if mode == "worker" and input_mode != "stdin":
            raise opts.error("input", "does not apply to mode worker (a worker reads JSON requests on stdin)")
        if mode == "worker" and output_mode != "text":
            raise opts.error("output", "does not apply to mode worker (a worker answers with "
                                       "'text' or JSON 'data' in its reply)")
        timeout = opts.optional_number("timeout", positive=True)
        return cls(
            argv,
            mode=mode,
            input=input_mode,
            output=output_mode,
            env=env,
            cwd=opts.optional_string("cwd"),
            timeout=timeout if timeout is not None else agent.timeout,
            kill_grace=opts.number("kill_grace", 2.0, minimum=0.0),
            startup_timeout=opts.number("startup_timeout", 10.0, positive=True),
            agent=agent.name,
            name=name,
        )

    @property
    def worker_pid(self) -> int | None:
        """The pid of the running worker (worker mode), or None when none is running."""
        worker = self._worker
        return worker.pid if worker is not None and worker.alive else None

    def statistics(self) -> CommandStatistics:
        c = self._counters
        return CommandStatistics(
            calls=c.calls,
            succeeded=c.succeeded,
            errors=c.errors,
            rate_limited=c.rate_limited,
            timeouts=c.timeouts,
            worker_starts=self._worker_starts,
            worker_restarts=max(0, self._worker_starts - 1),
        )

    async def warm(self) -> bool:
        """Worker mode: start the worker and round-trip a ping within ``startup_timeout``.

        True when a worker is up. A worker that fails to start or to answer is stopped
        and False returned, with the reason in ``last_error``; a program that cannot be
        run at all (not found, not executable, bad cwd) raises ProviderConfigError.
        Per-task mode has nothing to keep open: True.
        """
        if self.mode == "per_task":
            return True
        try:
            async with self._lock:
                await self._ensure_worker()
        except ProviderConfigError:
            raise
        except ProviderError as exc:
            self.last_error = str(exc)
            return False
        return True

    async def healthy(self) -> bool:
        """Whether this provider can serve a call now.

        Per-task mode: always True. Worker mode: a worker is running and, when idle,
        answers a ping within ``startup_timeout`` (a worker that does not is stopped);
        a busy worker is only checked for being alive. False (with ``last_error`` set)
        when no worker is running: ``warm()`` starts one.
        """
        if self.mode == "per_task":
            return True
        worker = self._worker
        if worker is None or not worker.alive or worker.loop is not asyncio.get_running_loop():
            if worker is not None and worker.loss is not None:
                self.last_error = worker.loss
            elif self.last_error is None:
                self.last_error = "no worker is running" if worker is None else f"{worker!r} is shutting down"
            return False
        if self._lock.locked():
            return True  # busy with a task: being alive is all we can check without waiting
        async with self._lock:
            if self._worker is not worker or not worker.alive:
                return False
            try:
                await self._ping(worker, "a health-check ping")
            except WorkerLost as exc:
                self.last_error = str(exc)
                return False
        return True

    async def aclose(self) -> None:
        """Worker mode: close the worker's stdin, give it ``kill_grace`` to exit, then stop its
        process group; the provider cannot be used afterwards. Per-task mode: nothing to do."""
        if self.mode == "per_task":
            return
        self._closed = True
        worker, self._worker = self._worker, None
        if worker is None:
            return
        if worker.loop is not asyncio.get_running_loop():
            worker.kill_nowait()
            return
        await worker.close()

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        """Run the program (or ask the worker) for ``request``; raise Provider* errors on failure."""
        self._counters.calls += 1
        try:
            if self.mode == "worker":
                response = await self._ask_worker(request)
            else:
                response = await self._run(request)
        except ProviderError as exc:
            self._counters.failed(exc)
            raise
        self._counters.succeeded += 1
        return response

    # -- starting programs ---------------------------------------------------------------

    def _spawn_error(self, exc: OSError, program: str) -> ProviderError:
        """What a failure to start ``program`` means to the user."""
        if isinstance(exc, FileNotFoundError):
            if self.cwd is not None and not os.path.isdir(self.cwd):
                return ProviderConfigError(f"agent {self.agent!r}: cwd {self.cwd!r} does not exist",
                                           provider=self.name)
            return ProviderConfigError(f"agent {self.agent!r}: command not found: {program!r}",
                                       provider=self.name)
        if isinstance(exc, PermissionError):
            return ProviderConfigError(f"agent {self.agent!r}: command {program!r} is not executable",
                                       provider=self.name)
        if exc.errno == errno.E2BIG:
            return ProviderError("the prompt is too long to pass as an argument; use input: stdin",
                                 provider=self.name, retryable=False)
        return ProviderError(f"cannot start {program!r}: {exc}", provider=self.name)

    # -- worker mode ---------------------------------------------------------------------

    def _next_id(self) -> str:
        self._requests += 1
        return str(self._requests)

    def _worker_environment(self) -> dict[str, str]:
        env = os.environ.copy()
        env.update(self.env)
        env["AGENTFLEET_AGENT"] = self.agent
        env["AGENTFLEET_WORKER"] = "1"
        return env

    async def _ensure_worker(self) -> WorkerProcess:
        """The running worker, starting a fresh one if there is none (call with the lock held)."""
        if self._closed:
            raise ProviderError(f"agent {self.agent!r}: the command provider is closed",
                                provider=self.name, retryable=False)
        worker = self._worker
        if worker is not None:
            if worker.alive and worker.loop is asyncio.get_running_loop():
                return worker
            self._worker = None
            if worker.loop is not asyncio.get_running_loop():
                worker.kill_nowait()  # started on an event loop that is gone; nothing to await
            else:
                await worker.wait_closed()
                if worker.loss is not None:
                    self.last_error = worker.loss
        return await self._start_worker()

    async def _start_worker(self) -> WorkerProcess:
        try:
            worker = await WorkerProcess.start(
                self.argv,
                env=self._worker_environment(),
                cwd=self.cwd,
                agent=self.agent,
                program=self._label,
                provider=self.name,
                kill_grace=self.kill_grace,
                stderr_lines=_STDERR_LINES,
            )
        except OSError as exc:
            error = self._spawn_error(exc, self.argv[0])
            self.last_error = str(error)
            raise error from None
        self._worker_starts += 1
        self._worker = worker
        try:
            await self._ping(worker, "its first ping")
        except WorkerLost as exc:
            self.last_error = str(exc)
            if self._worker is worker:
                self._worker = None
            raise
        return worker

    async def _ping(self, worker: WorkerProcess, what: str) -> None:
        """Round-trip a ping within ``startup_timeout``; WorkerLost (the worker stopped) if not."""
        reply = await self._exchange(worker, ping_message(self._next_id()), self.startup_timeout, what)
        if reply is None:
            raise WorkerLost(worker.loss or f"agent {self.agent!r}: worker did not answer {what}",
                             provider=self.name)
        if reply.get("type") != "pong":
            await worker.stop(f"broke the protocol (answered a ping with {json.dumps(reply)[:120]})")
            raise WorkerLost(worker.loss or "", provider=self.name)

    async def _exchange(
        self, worker: WorkerProcess, message: dict[str, Any], timeout: float | None, what: str
    ) -> dict[str, Any] | None:
        """Send ``message`` and return the reply, or None after stopping a worker that missed ``timeout``.

        A cancelled exchange stops the worker too: its late reply must never be read as the
        answer to the next request.
        """
        try:
            async with asyncio.timeout(timeout):
                return await worker.request(message)
        except TimeoutError:
            assert timeout is not None
            await worker.stop(f"did not answer {what} within {timeout:g}s")
            return None
        except asyncio.CancelledError:
            await worker.stop(f"was stopped: the caller cancelled {what}")
            raise

    async def _ask_worker(self, request: ProviderRequest) -> ProviderResponse:
        timeout = request.timeout if request.timeout is not None else self.timeout
        async with self._lock:
            worker = await self._ensure_worker()
            request_id = self._next_id()
            message = task_message(request, request_id, timeout)
            loop = asyncio.get_running_loop()
            start = loop.time()
            try:
                reply = await self._exchange(worker, message, timeout, f"task {request.task_id!r}")
            except WorkerLost as exc:
                self.last_error = str(exc)
                raise
            latency = loop.time() - start
        if reply is None:
            assert timeout is not None
            self.last_error = worker.loss
            raise ProviderTimeout(
                f"agent {self.agent!r}: worker {self._label!r} (pid {worker.pid}) did not answer task "
                f"{request.task_id!r} within {timeout:g}s (its process group was killed; the next call "
                "starts a fresh worker)",
                provider=self.name,
            )
        return self._worker_response(reply, request, worker, request_id, latency)

    def _worker_response(
        self, reply: dict[str, Any], request: ProviderRequest, worker: WorkerProcess, request_id: str,
        latency: float,
    ) -> ProviderResponse:
        try:
            answer = read_task_reply(reply)
        except ValueError as exc:
            raise ProviderError(
                f"agent {self.agent!r}: worker {self._label!r} sent a malformed reply to task "
                f"{request.task_id!r}: {exc}",
                provider=self.name,
                retryable=False,
            ) from None
        if isinstance(answer, ErrorReply):
            raise ProviderError(
                f"agent {self.agent!r}: worker {self._label!r} failed task {request.task_id!r}: {answer.message}",
                provider=self.name,
                retryable=answer.retryable,
            )
        return ProviderResponse(
            text=answer.text,
            provider=self.name,
            model=request.model,
            tokens_in=answer.tokens_in,
            tokens_out=answer.tokens_out,
            data=answer.data,
            latency=latency,
            meta={"pid": worker.pid, "request_id": request_id},
        )

    # -- per-task mode -------------------------------------------------------------------

    def _environment(self, request: ProviderRequest) -> dict[str, str]:
        env = os.environ.copy()
        env.update(self.env)
        env["AGENTFLEET_TASK_ID"] = request.task_id
        env["AGENTFLEET_AGENT"] = request.agent or self.agent
        env["AGENTFLEET_MODEL"] = request.model
        if request.system and len(request.system.encode()) <= _MAX_ENV_VALUE:
            env["AGENTFLEET_SYSTEM"] = request.system
        return env

    async def _start(self, request: ProviderRequest) -> asyncio.subprocess.Process:
        argv = self.argv + [request.prompt] if self.input == "argv" else self.argv
        try:
            return await asyncio.create_subprocess_exec(
                *argv,
                stdin=asyncio.subprocess.PIPE if self.input == "stdin" else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=self._environment(request),
                cwd=self.cwd,
                start_new_session=True,
            )
        except OSError as exc:
            raise self._spawn_error(exc, argv[0]) from None

    async def _run(self, request: ProviderRequest) -> ProviderResponse:
        loop = asyncio.get_running_loop()
        start = loop.time()
        proc = await self._start(request)
        stdin = request.prompt.encode() if self.input == "stdin" else None
        timeout = request.timeout if request.timeout is not None else self.timeout
        try:
            async with asyncio.timeout(timeout):
                stdout, stderr = await proc.communicate(stdin)
        except TimeoutError:
            await self._terminate(proc)
            raise ProviderTimeout(
                f"command {self.argv[0]!r} did not finish within {timeout:g}s "
                "(its process group was killed)",
                provider=self.name,
            ) from None
        except BaseException:  # cancelled: never leave the program running
            await self._terminate(proc)
            raise
        latency = loop.time() - start
        code = proc.returncode
        if code != 0:
            tail = _stderr_tail(stderr)
            raise ProviderError(
                f"command {self.argv[0]!r} {exit_description(code)}" + (f": {tail}" if tail else " (no stderr)"),
                provider=self.name,
            )
        text = stdout.decode("utf-8", "replace").rstrip("\r\n")
        meta: dict[str, Any] = {"returncode": code, "pid": proc.pid}
        if stderr:
            meta["stderr"] = _stderr_tail(stderr)
        data: Any = None
        tokens_in = tokens_out = 0
        if self.output == "json":
            try:
                data = json.loads(text)
            except ValueError as exc:
                raise ProviderError(
                    f"command {self.argv[0]!r} printed invalid JSON ({exc}): {text[:200]!r}",
                    provider=self.name,
                    retryable=False,
                ) from None
            tokens_in, tokens_out = token_usage(data)
        return ProviderResponse(
            text=text,
            provider=self.name,
            model=request.model,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            data=data,
            latency=latency,
            meta=meta,
        )

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM the process group; once the program exits or the grace period ends,
        SIGKILL whatever is left of the group; then reap.

        The program's own exit ends the grace period: it had its chance to stop its
        children, and waiting on the rest of the group would mean polling for processes
        that may linger as zombies until init reaps them.
        """
        pgid = proc.pid
        try:
            if signal_group(pgid, signal.SIGTERM) and proc.returncode is None:
                try:
                    async with asyncio.timeout(self.kill_grace):
                        await proc.wait()
                except TimeoutError:
                    pass
        finally:
            signal_group(pgid, signal.SIGKILL)
        await self._drain(proc)

    async def _drain(self, proc: asyncio.subprocess.Process) -> None:
        """Read the pipes to their end and reap, so the subprocess transport closes."""
        if proc.stdin is not None:
            proc.stdin.close()
        readers = [s.read() for s in (proc.stdout, proc.stderr) if s is not None]
        try:
            async with asyncio.timeout(max(1.0, self.kill_grace)):
                await asyncio.gather(*readers)
                await proc.wait()
        except TimeoutError:
            # A process that left the group (setsid) still holds our pipes: close them.
            transport = getattr(proc, "_transport", None)
            if transport is not None:
                transport.close()

    def __repr__(self) -> str:
        if self.mode == "worker":
            return f"CommandProvider({shlex.join(self.argv)!r}, mode='worker')"
        return f"CommandProvider({shlex.join(self.argv)!r}, input={self.input!r}, output={self.output!r})"
