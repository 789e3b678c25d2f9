"""``command``: run a program per task (a CLI agent, a script), prompt on stdin or argv.

# Design
# One subprocess per call, started with ``asyncio.create_subprocess_exec`` (no shell:
# a string command is shlex-split) in a new session, so the program and everything it
# spawns share one process group. On timeout or cancellation the whole group gets
# SIGTERM, then, after ``kill_grace`` seconds (or as soon as the program exits), SIGKILL;
# a grandchild that outlives its parent cannot keep the task, or our pipes, alive.
# The child sees AGENTFLEET_TASK_ID, AGENTFLEET_AGENT and AGENTFLEET_MODEL (and
# AGENTFLEET_SYSTEM, the system prompt, when it fits in an environment variable).
# Output is stdout (text, or JSON parsed into ``data``); a non-zero exit is a retryable
# ProviderError quoting the exit code and the last lines of stderr.
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
from typing import TYPE_CHECKING, Any

from .._types import ProviderRequest, ProviderResponse
from ..errors import ProviderConfigError, ProviderError, ProviderTimeout
from ._options import OptionReader
from ._stats import CallCounters, ProviderStatistics

if TYPE_CHECKING:
    from ..spec import AgentSpec

__all__ = ["CommandProvider"]

INPUT_MODES = ("stdin", "argv")
OUTPUT_MODES = ("text", "json")
_MAX_ENV_VALUE = 100_000  # Linux refuses a single environment string over 128 KiB
_STDERR_LINES = 5


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to a process group; False when the group no longer exists."""
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _stderr_tail(stderr: bytes, lines: int = _STDERR_LINES) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    return "\n".join(text.splitlines()[-lines:])


def _usage(data: Any) -> tuple[int, int]:
    """Token counts a CLI agent reported in its JSON output ({"usage": {...}}), if any."""
    usage = data.get("usage") if isinstance(data, dict) else None
    if not isinstance(usage, dict):
        return 0, 0
    tokens_in = usage.get("input_tokens", usage.get("prompt_tokens", 0))
    tokens_out = usage.get("output_tokens", usage.get("completion_tokens", 0))
    return (tokens_in if isinstance(tokens_in, int) else 0,
            tokens_out if isinstance(tokens_out, int) else 0)


class CommandProvider:
    """Runs ``command`` once per task and returns what it printed.

    Options (``agent.options``): ``command`` (string, shlex-split, or list; required),
    ``input`` (stdin | argv), ``output`` (text | json), ``env`` (mapping added to the
    environment), ``cwd``, ``timeout`` (seconds, when the request has none),
    ``kill_grace`` (seconds between SIGTERM and SIGKILL, default 2).
    """

    name = "command"

    def __init__(
        self,
        command: str | Sequence[str],
        *,
        input: str = "stdin",
        output: str = "text",
        env: Mapping[str, str] | None = None,
        cwd: str | None = None,
        timeout: float | None = None,
        kill_grace: float = 2.0,
        agent: str = "",
        name: str | None = None,
    ) -> None:
        if name is not None:
            self.name = name
        argv = shlex.split(command) if isinstance(command, str) else [str(a) for a in command]
        if not argv:
            raise ProviderConfigError(f"agent {agent!r}: empty command", provider=self.name)
        if input not in INPUT_MODES:
            raise ProviderConfigError(f"agent {agent!r}: input must be stdin or argv",
                                      provider=self.name)
        if output not in OUTPUT_MODES:
            raise ProviderConfigError(f"agent {agent!r}: output must be text or json",
                                      provider=self.name)
        self.argv = argv
        self.input = input
        self.output = output
        self.env = dict(env or {})
        self.cwd = os.path.expanduser(cwd) if cwd else None
        self.timeout = timeout
        self.kill_grace = kill_grace
        self.agent = agent
        self._counters = CallCounters()

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
        timeout = opts.optional_number("timeout", positive=True)
        return cls(
            argv,
            input=opts.choice("input", INPUT_MODES, "stdin"),
            output=opts.choice("output", OUTPUT_MODES, "text"),
            env=env,
            cwd=opts.optional_string("cwd"),
            timeout=timeout if timeout is not None else agent.timeout,
            kill_grace=opts.number("kill_grace", 2.0, minimum=0.0),
            agent=agent.name,
            name=name,
        )

    def statistics(self) -> ProviderStatistics:
        return self._counters.snapshot()

    async def warm(self) -> bool:
        """Nothing to keep open between calls."""
        return True

    async def aclose(self) -> None:
        return None

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        """Run the program for ``request``; raise Provider* errors on failure."""
        self._counters.calls += 1
        try:
            response = await self._run(request)
        except ProviderError as exc:
            self._counters.failed(exc)
            raise
        self._counters.succeeded += 1
        return response

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
        except FileNotFoundError:
            if self.cwd is not None and not os.path.isdir(self.cwd):
                raise ProviderConfigError(f"agent {self.agent!r}: cwd {self.cwd!r} does not exist",
                                          provider=self.name) from None
            raise ProviderConfigError(f"agent {self.agent!r}: command not found: {argv[0]!r}",
                                      provider=self.name) from None
        except PermissionError:
            raise ProviderConfigError(f"agent {self.agent!r}: command {argv[0]!r} is not executable",
                                      provider=self.name) from None
        except OSError as exc:
            if exc.errno == errno.E2BIG:
                raise ProviderError("the prompt is too long to pass as an argument; "
                                    "use input: stdin", provider=self.name, retryable=False) from None
            raise ProviderError(f"cannot start {argv[0]!r}: {exc}", provider=self.name) from None

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
            how = (f"was killed by {signal.Signals(-code).name}" if code is not None and code < 0
                   else f"exited with code {code}")
            tail = _stderr_tail(stderr)
            raise ProviderError(
                f"command {self.argv[0]!r} {how}" + (f": {tail}" if tail else " (no stderr)"),
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
            tokens_in, tokens_out = _usage(data)
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
            if _signal_group(pgid, signal.SIGTERM) and proc.returncode is None:
                try:
                    async with asyncio.timeout(self.kill_grace):
                        await proc.wait()
                except TimeoutError:
                    pass
        finally:
            _signal_group(pgid, signal.SIGKILL)
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
        return f"CommandProvider({shlex.join(self.argv)!r}, input={self.input!r}, output={self.output!r})"
