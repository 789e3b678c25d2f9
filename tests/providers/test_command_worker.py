"""The command provider's worker mode: one long-lived process answering JSON-lines requests."""

from __future__ import annotations

import asyncio
import gc
import io
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest

from agentfleet._types import ProviderRequest
from agentfleet.errors import ProviderConfigError, ProviderError, ProviderTimeout, WorkerLost
from agentfleet.providers import CommandProvider, build_provider
from agentfleet.providers._command import CommandStatistics
from agentfleet.providers._worker import (
    ErrorReply,
    TaskReply,
    encode_message,
    read_task_reply,
    task_message,
)
from agentfleet.spec import AgentSpec
from agentfleet.worker import Reply, TaskError, serve

from .test_command import _all_gone, _wait_for

PY = sys.executable
WORKERS = Path(__file__).resolve().parent.parent / "fixtures" / "workers"
ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


def _provider(*flags: str, script: str = "protocol_worker.py", **options: Any) -> CommandProvider:
    options.setdefault("kill_grace", 0.5)
    agent = AgentSpec(name="tool", provider="command", model="script",
                      options={"command": [PY, str(WORKERS / script), *flags], "mode": "worker", **options})
    provider = build_provider(agent)
    assert isinstance(provider, CommandProvider)
    return provider


def _request(prompt: str = "hello", **overrides: Any) -> ProviderRequest:
    return ProviderRequest(task_id="build-1", agent="tool", model="script", system="be brief",
                           prompt=prompt, **overrides)


def _with(provider: CommandProvider, body: Callable[[CommandProvider], Awaitable[T]]) -> T:
    """Run ``body(provider)`` on a fresh event loop, always closing the provider afterwards."""
    async def main() -> T:
        try:
            return await body(provider)
        finally:
            await provider.aclose()
    return asyncio.run(main())


async def _pid(provider: CommandProvider) -> int:
    return int((await provider.complete(_request("pid"))).text)


class TestWorkerAnswers:
    def test_text(self) -> None:
        """A text reply is the response text; meta names the worker's pid and the request id."""
        response = _with(_provider(), lambda p: p.complete(_request("hello")))
        assert response.text == "HELLO"
        assert response.data is None
        assert response.provider == "command" and response.model == "script"
        assert set(response.meta) == {"pid", "request_id"}
        assert response.latency > 0

    def test_data(self) -> None:
        """A data reply is parsed data, with its JSON as the text."""
        response = _with(_provider(), lambda p: p.complete(_request("data")))
        assert response.data["answer"] == 42
        assert json.loads(response.text) == response.data

    def test_usage(self) -> None:
        """Token usage is read as input/output or prompt/completion tokens."""
        async def body(p: CommandProvider) -> list[tuple[int, int]]:
            return [((r := await p.complete(_request(prompt))).tokens_in, r.tokens_out)
                    for prompt in ("usage", "openai-usage")]
        assert _with(_provider(), body) == [(7, 9), (3, 4)]

    def test_request_fields(self) -> None:
        """The worker receives the whole request, including the effective timeout."""
        request = _request("request", max_tokens=64, temperature=0.5, output_schema={"type": "object"},
                           options={"k": "v"})
        data = _with(_provider(timeout=30), lambda p: p.complete(request)).data
        assert data["type"] == "task"
        assert {k: data[k] for k in ("task_id", "agent", "model", "system", "prompt")} == {
            "task_id": "build-1", "agent": "tool", "model": "script", "system": "be brief", "prompt": "request"}
        assert (data["max_tokens"], data["temperature"], data["timeout"]) == (64, 0.5, 30)
        assert data["output_schema"] == {"type": "object"} and data["options"] == {"k": "v"}

    def test_env_and_cwd(self, tmp_path: Path) -> None:
        """The worker gets options.env, AGENTFLEET_AGENT, AGENTFLEET_WORKER=1 and options.cwd."""
        response = _with(_provider(env={"STAGE": "qa"}, cwd=str(tmp_path)), lambda p: p.complete(_request("env")))
        assert response.text == f"tool 1 qa {tmp_path.resolve()}"

    def test_one_process_for_many_tasks(self) -> None:
        """Sequential tasks reuse one worker process."""
        async def body(p: CommandProvider) -> set[int]:
            return {await _pid(p) for _ in range(50)}
        provider = _provider()
        pids = _with(provider, body)
        assert len(pids) == 1
        stats = provider.statistics()
        assert isinstance(stats, CommandStatistics)
        assert (stats.calls, stats.succeeded, stats.worker_starts, stats.worker_restarts) == (50, 50, 1, 0)

    def test_blank_lines_and_chatty_stderr(self) -> None:
        """Blank stdout lines are ignored, and heavy stderr logging never blocks the worker."""
        async def body(p: CommandProvider) -> list[str]:
            return [(await p.complete(_request(prompt))).text for prompt in ("blank-lines", "chatty", "x")]
        assert _with(_provider(), body) == ["after blanks", "chatted", "X"]


class TestWorkerLifecycle:
    def test_warm_starts_the_worker(self) -> None:
        """warm() starts the worker and pings it; the first task then runs on that process."""
        async def body(p: CommandProvider) -> tuple[bool, int | None, int]:
            assert p.worker_pid is None and not await p.healthy()
            warmed = await p.warm()
            return warmed, p.worker_pid, await _pid(p)
        provider = _provider()
        warmed, warm_pid, task_pid = _with(provider, body)
        assert warmed and warm_pid == task_pid
        assert provider.statistics().worker_starts == 1

    def test_healthy_pings_an_idle_worker(self) -> None:
        """healthy() is True for a worker that answers its ping."""
        async def body(p: CommandProvider) -> tuple[bool, bool]:
            await p.warm()
            return await p.healthy(), await p.healthy()
        assert _with(_provider(), body) == (True, True)

    def test_healthy_while_busy(self) -> None:
        """A busy worker is reported healthy without waiting for its task."""
        async def body(p: CommandProvider) -> bool:
            task = asyncio.create_task(p.complete(_request("sleep:0.5")))
            await asyncio.sleep(0.2)
            healthy = await asyncio.wait_for(p.healthy(), 0.1)
            await task
            return healthy
        assert _with(_provider(), body)

    def test_unanswered_health_ping(self) -> None:
        """A worker that stops answering pings is unhealthy, stopped, and replaced by the next call."""
        async def body(p: CommandProvider) -> tuple[bool, int, str]:
            await p.warm()
            first = p.worker_pid
            assert first is not None
            healthy = await p.healthy()
            assert _all_gone(first)
            return healthy, first, (await p.complete(_request("x"))).text
        provider = _provider("--pong-once", startup_timeout=0.3, kill_grace=0.2)
        healthy, _, text = _with(provider, body)
        assert not healthy and text == "X"
        assert "did not answer a health-check ping within 0.3s" in (provider.last_error or "")
        assert provider.statistics().worker_restarts == 1

    def test_warm_failure_is_recorded(self) -> None:
        """A worker that dies while starting makes warm() False, with the exit code and stderr recorded."""
        provider = _provider("--crash-at-start")
        assert _with(provider, lambda p: p.warm()) is False
        assert "exited with code 7" in (provider.last_error or "")
        assert "no module named 'model'" in (provider.last_error or "")

    def test_no_pong_at_start(self) -> None:
        """A worker that does not answer its first ping within startup_timeout is stopped; warm() is False."""
        async def body(p: CommandProvider) -> tuple[bool, bool]:
            return await p.warm(), await p.healthy()
        provider = _provider("--no-pong", startup_timeout=0.3, kill_grace=0.2)
        assert _with(provider, body) == (False, False)
        assert "did not answer its first ping within 0.3s" in (provider.last_error or "")

    def test_program_missing_at_warm(self, tmp_path: Path) -> None:
        """A program that cannot be run is a config error from warm(), not a quiet False."""
        agent = AgentSpec(name="tool", provider="command",
                          options={"command": [str(tmp_path / "missing")], "mode": "worker"})
        provider = build_provider(agent)
        assert isinstance(provider, CommandProvider)
        with pytest.raises(ProviderConfigError, match="command not found"):
            _with(provider, lambda p: p.warm())

    def test_aclose_leaves_no_process(self, tmp_path: Path) -> None:
        """aclose() ends the worker and everything it started; the provider is then closed."""
        pids = tmp_path / "pids"

        async def body(p: CommandProvider) -> tuple[int, int]:
            task = asyncio.create_task(p.complete(_request(f"spawn:{pids}")))
            found = await _wait_for(pids)
            await p.aclose()
            with pytest.raises(WorkerLost):
                await task
            with pytest.raises(ProviderError, match="closed"):
                await p.complete(_request())
            return found

        child, grandchild = _with(_provider(kill_grace=0.2), body)
        assert _all_gone(child, grandchild)

    def test_aclose_clean_exit(self) -> None:
        """An idle worker exits on its own when its stdin closes."""
        async def body(p: CommandProvider) -> tuple[int, float]:
            pid = await _pid(p)
            loop = asyncio.get_running_loop()
            start = loop.time()
            await p.aclose()
            return pid, loop.time() - start
        pid, elapsed = _with(_provider(kill_grace=5.0), body)
        assert elapsed < 2.0 and _all_gone(pid)

    @pytest.mark.parametrize("flags", [("--linger",), ("--linger", "--stubborn")])
    def test_aclose_terminates_a_lingering_worker(self, flags: tuple[str, ...]) -> None:
        """A worker that ignores stdin closing (and SIGTERM) is terminated (then killed)."""
        async def body(p: CommandProvider) -> int:
            pid = await _pid(p)
            await p.aclose()
            return pid
        assert _all_gone(_with(_provider(*flags, kill_grace=0.2), body))


    def test_event_loop_ending_under_a_worker(self) -> None:
        """A worker left open when its event loop ends is killed and reaped; a new loop gets a new worker."""
        provider = _provider()

        async def warm() -> int | None:
            await provider.warm()
            return provider.worker_pid

        first = asyncio.run(warm())
        gc.collect()
        assert first is not None and _all_gone(first)
        assert provider.worker_pid is None
        second = _with(provider, _pid)
        assert second != first and _all_gone(second)


class TestWorkerFailures:
    def test_timeout_kills_and_restarts(self, tmp_path: Path) -> None:
        """A task over its timeout kills the worker's group; the next call runs on a fresh worker."""
        pids = tmp_path / "pids"

        async def body(p: CommandProvider) -> tuple[int, int, int, int]:
            before = await _pid(p)
            task = asyncio.create_task(p.complete(_request(f"spawn:{pids}", timeout=1.0)))
            child, grandchild = await _wait_for(pids)
            with pytest.raises(ProviderTimeout, match="did not answer task 'build-1' within 1s"):
                await task
            return before, child, grandchild, await _pid(p)

        provider = _provider(kill_grace=0.2)
        before, child, grandchild, after = _with(provider, body)
        assert before == child and after != before
        assert _all_gone(child, grandchild)
        stats = provider.statistics()
        assert (stats.timeouts, stats.worker_starts, stats.worker_restarts) == (1, 2, 1)

    def test_crash_mid_task(self) -> None:
        """A worker exiting mid-task is WorkerLost with the agent, exit code and stderr tail; then a fresh one."""
        async def body(p: CommandProvider) -> tuple[int, WorkerLost, int]:
            before = await _pid(p)
            with pytest.raises(WorkerLost) as info:
                await p.complete(_request("crash"))
            return before, info.value, await _pid(p)
        provider = _provider()
        before, error, after = _with(provider, body)
        message = str(error)
        assert error.retryable
        assert "agent 'tool'" in message and "exited with code 3" in message and "task 'build-1'" in message
        assert "dying 7" in message and "dying 3" in message and "dying 2" not in message
        assert after != before
        assert provider.last_error == message.removeprefix("command: ")
        assert provider.statistics().errors == 1

    @pytest.mark.parametrize("prompt, detail", [
        ("garbage", "stdout line is not JSON: 'this is not json'"),
        ("wrong-id", "answered id 'nope'"),
        ("close-stdout", "closed its stdout"),
    ])
    def test_protocol_violation(self, prompt: str, detail: str) -> None:
        """Output out of step with the request is WorkerLost; the worker is killed and replaced."""
        async def body(p: CommandProvider) -> tuple[int, str, int]:
            before = await _pid(p)
            with pytest.raises(WorkerLost) as info:
                await p.complete(_request(prompt, timeout=5.0))
            return before, str(info.value), await _pid(p)
        before, message, after = _with(_provider(kill_grace=0.2), body)
        assert detail in message
        assert _all_gone(before) and after != before

    def test_unsolicited_output_while_idle(self) -> None:
        """A line written with no request pending ends the worker; the next call starts a fresh one."""
        async def body(p: CommandProvider) -> tuple[int, bool, int]:
            before = await _pid(p)
            await asyncio.sleep(0.3)
            return before, await p.healthy(), await _pid(p)
        provider = _provider("--idle-garbage", kill_grace=0.2)
        before, healthy, after = _with(provider, body)
        assert not healthy and after != before
        assert "broke the protocol" in (provider.last_error or "") and "unsolicited" in (provider.last_error or "")

    @pytest.mark.parametrize("prompt, retryable", [("error", True), ("fatal", False)])
    def test_error_reply(self, prompt: str, retryable: bool) -> None:
        """An error reply is a ProviderError with the worker's message; the worker lives on."""
        async def body(p: CommandProvider) -> tuple[ProviderError, int, int]:
            before = await _pid(p)
            with pytest.raises(ProviderError) as info:
                await p.complete(_request(prompt))
            return info.value, before, await _pid(p)
        error, before, after = _with(_provider(), body)
        assert not isinstance(error, WorkerLost)
        assert error.retryable is retryable
        assert ("model overloaded" if retryable else "bad input") in str(error)
        assert before == after

    def test_malformed_reply(self) -> None:
        """A reply with the right id but no usable answer is a non-retryable error; the worker lives on."""
        async def body(p: CommandProvider) -> tuple[ProviderError, int, int]:
            before = await _pid(p)
            with pytest.raises(ProviderError) as info:
                await p.complete(_request("malformed"))
            return info.value, before, await _pid(p)
        error, before, after = _with(_provider(), body)
        assert not error.retryable and "'text' must be a string" in str(error)
        assert before == after

    def test_cancellation_replaces_the_worker(self) -> None:
        """A cancelled call kills the worker, so its late reply cannot answer the next request."""
        async def body(p: CommandProvider) -> tuple[int, str, int]:
            before = await _pid(p)
            task = asyncio.create_task(p.complete(_request("sleep:0.3")))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            text = (await p.complete(_request("next"))).text
            return before, text, await _pid(p)
        before, text, after = _with(_provider(kill_grace=0.2), body)
        assert text == "NEXT"
        assert after != before and _all_gone(before)

    def test_concurrent_calls_take_turns(self) -> None:
        """Concurrent calls on one provider run one at a time on the one worker."""
        async def body(p: CommandProvider) -> list[str]:
            responses = await asyncio.gather(*(p.complete(_request(f"t{i}")) for i in range(10)))
            return [r.text for r in responses]
        provider = _provider()
        assert _with(provider, body) == [f"T{i}" for i in range(10)]
        assert provider.statistics().worker_starts == 1


class TestWorkerOptions:
    @pytest.mark.parametrize("options, message", [
        ({"mode": "pool"}, "'mode' must be one of per_task, worker"),
        ({"mode": "worker", "input": "argv"}, "'input' does not apply to mode worker"),
        ({"mode": "worker", "output": "json"}, "'output' does not apply to mode worker"),
        ({"mode": "worker", "startup_timeout": 0}, "'startup_timeout' must be greater than 0"),
        ({"mode": "worker", "startup_timout": 5}, "did you mean 'startup_timeout'"),
        ({"modee": "worker"}, "did you mean 'mode'"),
    ])
    def test_bad_options(self, options: dict[str, Any], message: str) -> None:
        """Bad or unknown worker options are config errors naming the agent and the option."""
        agent = AgentSpec(name="tool", provider="command", options={"command": [PY], **options})
        with pytest.raises(ProviderConfigError, match="agent 'tool'") as info:
            build_provider(agent)
        assert message in str(info.value)

    def test_defaults(self) -> None:
        """Worker mode is opt-in; startup_timeout defaults to 10 s."""
        agent = AgentSpec(name="tool", provider="command", options={"command": [PY]})
        provider = build_provider(agent)
        assert isinstance(provider, CommandProvider)
        assert (provider.mode, provider.startup_timeout) == ("per_task", 10.0)
        assert _provider().mode == "worker"


class TestProtocolMessages:
    def test_task_message_is_one_line(self) -> None:
        """A request is one line of JSON however many newlines the prompt holds."""
        line = encode_message(task_message(_request("a\nb\u2028c\udcff"), "7", None))
        assert line.endswith(b"\n") and line.count(b"\n") == 1
        message = json.loads(line)
        assert (message["type"], message["id"], message["prompt"]) == ("task", "7", "a\nb\u2028c\udcff")

    @pytest.mark.parametrize("reply, expected", [
        ({"text": "hi"}, TaskReply("hi")),
        ({"data": [1, 2]}, TaskReply("[1, 2]", [1, 2])),
        ({"text": "t", "data": {"a": 1}}, TaskReply("t", {"a": 1})),
        ({"text": "t", "usage": {"input_tokens": 1, "output_tokens": 2}}, TaskReply("t", None, 1, 2)),
        ({"data": {"usage": {"prompt_tokens": 3, "completion_tokens": 4}}},
         TaskReply('{"usage": {"prompt_tokens": 3, "completion_tokens": 4}}',
                   {"usage": {"prompt_tokens": 3, "completion_tokens": 4}}, 3, 4)),
        ({"error": "nope"}, ErrorReply("nope", True)),
        ({"error": "nope", "retryable": False}, ErrorReply("nope", False)),
    ])
    def test_read_task_reply(self, reply: dict[str, Any], expected: TaskReply | ErrorReply) -> None:
        """Replies map to text, data, usage or an error (retryable unless it says otherwise)."""
        assert read_task_reply({"id": "1", **reply}) == expected

    @pytest.mark.parametrize("reply", [{}, {"text": 3}, {"error": "x", "retryable": "no"}])
    def test_malformed_replies(self, reply: dict[str, Any]) -> None:
        """A reply without a usable answer is a ValueError saying what is wrong."""
        with pytest.raises(ValueError):
            read_task_reply({"id": "1", **reply})


def _serve_lines(handler: Callable[[dict[str, Any]], Any], *messages: dict[str, Any] | str) -> list[dict[str, Any]]:
    lines = [m if isinstance(m, str) else json.dumps(m) for m in messages]
    stdout = io.BytesIO()
    serve(handler, stdin=io.BytesIO(("\n".join(lines) + "\n").encode()), stdout=stdout)
    return [json.loads(line) for line in stdout.getvalue().splitlines()]


def _task(prompt: str, request_id: str = "1") -> dict[str, Any]:
    return {"type": "task", "id": request_id, "prompt": prompt}


class TestServe:
    def test_results(self) -> None:
        """str, Reply, None and JSON values become text, text/data/usage, empty text and data."""
        results: dict[str, Any] = {"s": "text", "r": Reply(text="t", input_tokens=1, output_tokens=2),
                                   "n": None, "d": {"k": [1]}, "rd": Reply(data=[1])}
        replies = _serve_lines(lambda task: results[task["prompt"]], *(_task(k, k) for k in results))
        assert replies == [
            {"id": "s", "text": "text"},
            {"id": "r", "text": "t", "usage": {"input_tokens": 1, "output_tokens": 2}},
            {"id": "n", "text": ""},
            {"id": "d", "data": {"k": [1]}},
            {"id": "rd", "data": [1]},
        ]

    def test_ping_errors_and_junk(self) -> None:
        """Pings get pongs, TaskError and exceptions become error replies, junk lines are skipped."""
        def handler(task: dict[str, Any]) -> str:
            if task["prompt"] == "te":
                raise TaskError("no", retryable=True)
            raise KeyError("k")
        replies = _serve_lines(handler, {"type": "ping", "id": "p"}, "not json", "", "[1]",
                               _task("te", "a"), _task("x", "b"), {"type": "shutdown", "id": "c"})
        assert replies == [
            {"id": "p", "type": "pong"},
            {"id": "a", "error": "no", "retryable": True},
            {"id": "b", "error": "KeyError: 'k'", "retryable": True},
            {"id": "c", "error": "unknown request type 'shutdown'", "retryable": False},
        ]

    def test_async_handler(self) -> None:
        """An async handler runs on one event loop kept across tasks."""
        loops: set[int] = set()

        async def handler(task: dict[str, Any]) -> str:
            loops.add(id(asyncio.get_running_loop()))
            await asyncio.sleep(0)
            return str(task["prompt"]).upper()
        replies = _serve_lines(handler, _task("a", "1"), _task("b", "2"))
        assert [r["text"] for r in replies] == ["A", "B"] and len(loops) == 1

    def test_serve_worker_end_to_end(self) -> None:
        """A worker built on serve() works with the provider; print() cannot corrupt the protocol."""
        async def body(p: CommandProvider) -> list[Any]:
            assert await p.warm()
            out: list[Any] = [await _pid(p), await _pid(p)]
            out.append((await p.complete(_request("data"))).data)
            usage = await p.complete(_request("usage"))
            out.append((usage.text, usage.tokens_in, usage.tokens_out))
            out.append((await p.complete(_request("print"))).text)
            for prompt in ("fatal", "boom"):
                with pytest.raises(ProviderError) as info:
                    await p.complete(_request(prompt))
                out.append((str(info.value).rsplit(": ", 1)[-1], info.value.retryable))
            out.append((await p.complete(_request("abc"))).text)
            out.append(await _pid(p))
            return out
        provider = _provider(script="serve_worker.py", startup_timeout=30)
        pid1, pid2, data, usage, printed, fatal, boom, reversed_, pid3 = _with(provider, body)
        assert pid1 == pid2 == pid3
        assert data == {"answer": 42, "model": "script"}
        assert usage == ("counted", 5, 6)
        assert printed == "printed"
        assert fatal == ("cannot do that", False) and boom == ("handler bug", True)
        assert reversed_ == "cba"

    def test_example_echo_worker(self) -> None:
        """examples/workers/echo_worker.py answers tasks with the prompt and word counts."""
        agent = AgentSpec(name="echo", provider="command", options={
            "command": [PY, str(ROOT / "examples" / "workers" / "echo_worker.py")], "mode": "worker",
            "startup_timeout": 30})
        provider = build_provider(agent)
        assert isinstance(provider, CommandProvider)
        response = _with(provider, lambda p: p.complete(_request("three small words")))
        assert (response.text, response.tokens_in, response.tokens_out) == ("three small words", 3, 3)
