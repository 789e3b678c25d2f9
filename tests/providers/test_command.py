"""The command provider: a program per task, stdin/argv, JSON output, timeouts killing the group."""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agentfleet._types import ProviderRequest, ProviderResponse
from agentfleet.errors import ProviderConfigError, ProviderError, ProviderTimeout
from agentfleet.providers import CommandProvider, build_provider
from agentfleet.spec import AgentSpec

PY = sys.executable

# A child that starts a grandchild running argv[2], records both pids in argv[1], and sleeps
# (ignoring SIGTERM itself when argv[3] says "stubborn").
SPAWNER = """
import os, signal, subprocess, sys, time
if sys.argv[3:] == ["stubborn"]:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
grandchild = subprocess.Popen([sys.executable, "-c", sys.argv[2]])
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(f"{os.getpid()} {grandchild.pid}")
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
time.sleep(60)
"""
SLEEPER = "import time; time.sleep(60)"
STUBBORN = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"


def _provider(command: str | list[str], **options: Any) -> CommandProvider:
    agent = AgentSpec(name="tool", provider="command", model="script",
                      options={"command": command, **options})
    provider = build_provider(agent)
    assert isinstance(provider, CommandProvider)
    return provider


def _request(prompt: str = "hello world", **overrides: Any) -> ProviderRequest:
    return ProviderRequest(task_id="build-1", agent="tool", model="script", system="",
                           prompt=prompt, **overrides)


def _complete(provider: CommandProvider, request: ProviderRequest | None = None) -> ProviderResponse:
    return asyncio.run(provider.complete(request or _request()))


def _gone(pid: int) -> bool:
    """The process no longer exists (or is a zombie nobody has reaped yet)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def _all_gone(*pids: int, within: float = 3.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(_gone(p) for p in pids):
            return True
        time.sleep(0.02)
    return False


async def _wait_for(path: Path) -> tuple[int, int]:
    for _ in range(500):
        if path.exists():
            child, grandchild = path.read_text().split()
            return int(child), int(grandchild)
        await asyncio.sleep(0.01)
    raise AssertionError("the spawner never wrote its pids")


class TestCommandRuns:
    def test_prompt_on_stdin(self) -> None:
        """The prompt arrives on stdin; task id and agent are in the environment."""
        script = ("import os, sys; d = sys.stdin.read(); "
                  "print(os.environ['AGENTFLEET_TASK_ID'], os.environ['AGENTFLEET_AGENT'], d.upper())")
        response = _complete(_provider([PY, "-c", script]))
        assert response.text == "build-1 tool HELLO WORLD"
        assert response.provider == "command"
        assert response.meta["returncode"] == 0
        assert response.latency > 0

    def test_prompt_as_last_argument(self) -> None:
        """input: argv appends the prompt as the last argument (string commands are shlex-split)."""
        command = f"{shlex.quote(PY)} -c 'import sys; print(sys.argv[1:])' --flag"
        response = _complete(_provider(command, input="argv"), _request("two words"))
        assert response.text == "['--flag', 'two words']"

    def test_json_output(self) -> None:
        """output: json parses stdout into data and reads token usage when reported."""
        payload = {"result": [1, 2], "usage": {"input_tokens": 3, "output_tokens": 4}}
        response = _complete(_provider([PY, "-c", f"print({json.dumps(json.dumps(payload))})"],
                                       output="json"))
        assert response.data == payload
        assert (response.tokens_in, response.tokens_out) == (3, 4)

    def test_env_and_cwd(self, tmp_path: Path) -> None:
        """options.env is added to the environment and options.cwd is the working directory."""
        script = "import os; print(os.environ['STAGE'], os.getcwd())"
        response = _complete(_provider([PY, "-c", script], env={"STAGE": "qa"}, cwd=str(tmp_path)))
        assert response.text == f"qa {tmp_path.resolve()}"

    def test_statistics(self) -> None:
        """statistics() counts calls and failures."""
        provider = _provider([PY, "-c", "import sys; sys.exit(int(sys.stdin.read()))"])
        asyncio.run(provider.complete(_request("0")))
        with pytest.raises(ProviderError):
            asyncio.run(provider.complete(_request("1")))
        stats = provider.statistics()
        assert (stats.calls, stats.succeeded, stats.errors) == (2, 1, 1)
        assert (stats.worker_starts, stats.worker_restarts) == (0, 0)

    def test_always_healthy(self) -> None:
        """Per-task mode keeps nothing running: warm() and healthy() are True, aclose() a no-op."""
        provider = _provider([PY, "-c", "print('hi')"])

        async def main() -> tuple[bool, bool, str]:
            warmed, healthy = await provider.warm(), await provider.healthy()
            await provider.aclose()
            return warmed, healthy, (await provider.complete(_request())).text

        assert asyncio.run(main()) == (True, True, "hi")
        assert provider.mode == "per_task"


class TestCommandFailures:
    def test_non_zero_exit(self) -> None:
        """A non-zero exit is a ProviderError with the code and the last stderr lines."""
        script = "import sys; sys.stderr.write('\\n'.join(f'line {i}' for i in range(9))); sys.exit(3)"
        with pytest.raises(ProviderError) as info:
            _complete(_provider([PY, "-c", script]))
        message = str(info.value)
        assert "exited with code 3" in message
        assert "line 8" in message and "line 4" in message and "line 3" not in message
        assert info.value.retryable

    def test_killed_by_signal(self) -> None:
        """Death by a signal is reported by name."""
        with pytest.raises(ProviderError, match="killed by SIGKILL"):
            _complete(_provider([PY, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"]))

    def test_invalid_json(self) -> None:
        """Output that is not JSON under output: json is a non-retryable error quoting it."""
        with pytest.raises(ProviderError) as info:
            _complete(_provider([PY, "-c", "print('not json ' * 100)"], output="json"))
        assert not info.value.retryable
        assert "invalid JSON" in str(info.value) and "not json" in str(info.value)
        assert len(str(info.value)) < 400

    def test_not_found_at_build(self) -> None:
        """A program not on PATH is a config error when the provider is built."""
        with pytest.raises(ProviderConfigError, match="command not found: 'no-such-agent-cli'"):
            _provider("no-such-agent-cli --fast")

    def test_not_found_at_run(self, tmp_path: Path) -> None:
        """A missing program given by path is a config error when run."""
        with pytest.raises(ProviderConfigError, match="command not found"):
            _complete(_provider([str(tmp_path / "missing-tool")]))

    def test_not_executable(self, tmp_path: Path) -> None:
        """A file without the execute bit is a config error."""
        tool = tmp_path / "tool.sh"
        tool.write_text("#!/bin/sh\necho hi\n")
        with pytest.raises(ProviderConfigError, match="not executable"):
            _complete(_provider([str(tool)]))

    @pytest.mark.parametrize("options, message", [
        ({"command": None}, "'command' is required"),
        ({"command": ""}, "'command' is empty"),
        ({"command": "a 'b"}, "cannot be split"),
        ({"command": {"a": 1}}, "must be a string or a list"),
        ({"command": "true", "input": "file"}, "'input' must be one of stdin, argv"),
        ({"command": "true", "output": "yaml"}, "'output' must be one of text, json"),
        ({"command": "true", "timeout": -1}, "'timeout' must be greater than 0"),
    ])
    def test_bad_options(self, options: dict[str, Any], message: str) -> None:
        """Bad options are config errors naming the agent and the option."""
        agent = AgentSpec(name="tool", provider="command", options=options)
        with pytest.raises(ProviderConfigError, match="agent 'tool'") as info:
            build_provider(agent)
        assert message in str(info.value)


class TestCommandTimeouts:
    def test_timeout_kills_the_process_group(self, tmp_path: Path) -> None:
        """On timeout the child and its grandchild are both killed and ProviderTimeout raised."""
        pids = tmp_path / "pids"
        provider = _provider([PY, "-c", SPAWNER, str(pids), SLEEPER])

        async def main() -> tuple[int, int]:
            task = asyncio.create_task(provider.complete(_request(timeout=1.0)))
            found = await _wait_for(pids)
            with pytest.raises(ProviderTimeout, match="did not finish within 1s"):
                await task
            return found

        start = time.monotonic()
        child, grandchild = asyncio.run(main())
        assert time.monotonic() - start < 3.0
        assert _all_gone(child, grandchild)
        assert provider.statistics().timeouts == 1

    def test_sigkill_after_grace(self, tmp_path: Path) -> None:
        """A program and grandchild that ignore SIGTERM are SIGKILLed after kill_grace."""
        pids = tmp_path / "pids"
        provider = _provider([PY, "-c", SPAWNER, str(pids), STUBBORN, "stubborn"],
                             timeout=1.0, kill_grace=0.5)

        async def main() -> tuple[int, int, float]:
            loop = asyncio.get_running_loop()
            start = loop.time()
            task = asyncio.create_task(provider.complete(_request()))
            child, grandchild = await _wait_for(pids)
            with pytest.raises(ProviderTimeout):
                await task
            return child, grandchild, loop.time() - start

        child, grandchild, elapsed = asyncio.run(main())
        assert 1.5 <= elapsed < 2.5
        assert _all_gone(child, grandchild)

    def test_cancellation_kills_the_process_group(self, tmp_path: Path) -> None:
        """Cancelling the call kills the whole group and re-raises CancelledError."""
        pids = tmp_path / "pids"
        provider = _provider([PY, "-c", SPAWNER, str(pids), SLEEPER])

        async def main() -> tuple[int, int]:
            task = asyncio.create_task(provider.complete(_request()))
            found = await _wait_for(pids)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return found

        child, grandchild = asyncio.run(main())
        assert _all_gone(child, grandchild)
