"""The python provider: sync, async, module paths, return shapes and errors."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentfleet._types import ProviderRequest, ProviderResponse
from agentfleet.errors import ProviderConfigError, ProviderError, RateLimited
from agentfleet.providers import PythonProvider, build_provider
from agentfleet.spec import AgentSpec

REQUEST = ProviderRequest(task_id="t1", agent="fn", model="local", system="", prompt="ping")


def _provider(function: Any, **options: Any) -> PythonProvider:
    agent = AgentSpec(name="fn", provider="python", model="local",
                      options={"function": function, **options})
    provider = build_provider(agent)
    assert isinstance(provider, PythonProvider)
    return provider


def _complete(provider: PythonProvider, request: ProviderRequest = REQUEST) -> ProviderResponse:
    return asyncio.run(provider.complete(request))


@pytest.fixture
def module_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An importable module ``af_agents_<id>`` with a sync and an async function."""
    name = f"af_agents_{id(tmp_path)}"
    (tmp_path / f"{name}.py").write_text(
        "calls = 0\n"
        "def shout(request):\n"
        "    global calls\n"
        "    calls += 1\n"
        "    return request.prompt.upper()\n"
        "class Team:\n"
        "    @staticmethod\n"
        "    async def plan(request):\n"
        "        return {'task': request.task_id}\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


class TestPythonCalls:
    def test_sync_runs_in_a_thread(self) -> None:
        """A sync function runs off the event loop and its str is the text."""
        seen: list[str] = []

        def agent(request: ProviderRequest) -> str:
            seen.append(threading.current_thread().name)
            return f"pong from {request.task_id}"

        response = _complete(_provider(agent))
        assert response.text == "pong from t1"
        assert (response.provider, response.model) == ("python", "local")
        assert seen != ["MainThread"]

    def test_inline_runs_on_the_loop(self) -> None:
        """inline: true calls a sync function directly on the loop thread."""
        seen: list[str] = []
        _complete(_provider(lambda r: seen.append(threading.current_thread().name) or "x", inline=True))
        assert seen == ["MainThread"]

    def test_async(self) -> None:
        """An async function is awaited; a dict return becomes data plus JSON text."""
        async def agent(request: ProviderRequest) -> dict[str, Any]:
            await asyncio.sleep(0)
            return {"echo": request.prompt, "n": [1, 2]}

        response = _complete(_provider(agent))
        assert response.data == {"echo": "ping", "n": [1, 2]}
        assert response.text == '{"echo": "ping", "n": [1, 2]}'

    def test_async_callable_object(self) -> None:
        """An object with an async __call__ is awaited too."""
        class Agent:
            async def __call__(self, request: ProviderRequest) -> str:
                return "called"

        assert _complete(_provider(Agent())).text == "called"

    def test_return_shapes(self) -> None:
        """A list is data; None is empty text; a ProviderResponse is returned as is."""
        assert _complete(_provider(lambda r: [1, 2])).data == [1, 2]
        assert _complete(_provider(lambda r: None)).text == ""
        custom = ProviderResponse(text="own", provider="mine", model="m", tokens_out=3)
        assert _complete(_provider(lambda r: custom)) is custom

    def test_module_path(self, module_on_path: str) -> None:
        """'module:function' is imported once, when the provider is built (so a bad path fails
        before the run), and called."""
        provider = _provider(f"{module_on_path}:shout")
        assert module_on_path in sys.modules

        async def main() -> list[str]:
            return [(await provider.complete(REQUEST)).text for _ in range(3)]

        assert asyncio.run(main()) == ["PING"] * 3
        assert sys.modules[module_on_path].calls == 3

    def test_module_path_nested_async(self, module_on_path: str) -> None:
        """A dotted attribute path reaches an async staticmethod."""
        assert _complete(_provider(f"{module_on_path}:Team.plan")).data == {"task": "t1"}

    def test_warm_imports(self, module_on_path: str) -> None:
        """warm() imports the module ahead of the first call."""
        asyncio.run(_provider(f"{module_on_path}:shout").warm())
        assert module_on_path in sys.modules


class TestPythonErrors:
    def test_exception_is_retryable_provider_error(self) -> None:
        """An exception becomes a retryable ProviderError naming its type and message."""
        def agent(request: ProviderRequest) -> str:
            raise KeyError("missing input")

        provider = _provider(agent)
        with pytest.raises(ProviderError) as info:
            _complete(provider)
        assert info.value.retryable
        assert "KeyError" in str(info.value) and "missing input" in str(info.value)
        assert provider.statistics().errors == 1

    def test_provider_errors_pass_through(self) -> None:
        """A ProviderError raised by the function keeps its class and attributes."""
        def agent(request: ProviderRequest) -> str:
            raise RateLimited("slow down", retry_after=3)

        with pytest.raises(RateLimited) as info:
            _complete(_provider(agent))
        assert info.value.retry_after == 3

    @pytest.mark.parametrize("path, message", [
        ("no_such_module_xyz:run", "cannot import module 'no_such_module_xyz'"),
        ("json:no_such_function", "has no attribute 'no_such_function'"),
        ("json:__doc__", "is not callable"),
    ])
    def test_bad_module_path(self, path: str, message: str) -> None:
        """A bad module path is a config error naming it, at first use."""
        with pytest.raises(ProviderConfigError) as info:
            _complete(_provider(path))
        assert message in str(info.value) and "agent 'fn'" in str(info.value)

    @pytest.mark.parametrize("function, message", [
        (None, "'function' is required"),
        ("just_a_name", "must look like 'package.module:function'"),
        (42, "must be 'package.module:function' or a callable"),
        ("  ", "'function' is empty"),
    ])
    def test_bad_function_option(self, function: Any, message: str) -> None:
        """A malformed function option is a config error at build time."""
        with pytest.raises(ProviderConfigError) as info:
            _provider(function)
        assert message in str(info.value)
