"""``python``: a Python callable as an agent, sync or async, by reference or ``module:function``.

# Design
# The callable receives the ``ProviderRequest`` and returns a str (the text), a dict or
# list (``data``, with its JSON as text), a ``ProviderResponse`` (used as is) or None.
# A ``"module:function"`` path is imported once, on first use (or ``warm()``), so
# building a provider never imports user code; a bad path is a ProviderConfigError
# naming it. Sync callables run in a worker thread (``asyncio.to_thread``) so they cannot
# stall the event loop, unless ``inline: true`` asks to call them on the loop (for
# trivial functions and the per-task overhead benchmark).
# This is the runtime's cheapest provider and the overhead benchmark's baseline, so
# ``complete()`` does nothing per call beyond calling the function and building the
# response: the sync/async decision is made once, at resolution.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .._types import ProviderRequest, ProviderResponse
from ..errors import ProviderConfigError, ProviderError
from ._options import OptionReader
from ._stats import CallCounters, ProviderStatistics

if TYPE_CHECKING:
    from ..spec import AgentSpec

__all__ = ["PythonProvider", "resolve_callable"]

AgentFunction = Callable[[ProviderRequest], Any]


def resolve_callable(path: str, *, agent: str = "", provider: str = "python") -> AgentFunction:
    """Import ``"package.module:attr.attr"`` and return the callable it names."""
    module_name, sep, qualname = path.partition(":")
    if not sep or not module_name or not qualname:
        raise ProviderConfigError(
            f"agent {agent!r}: function {path!r} must look like 'package.module:function'",
            provider=provider,
        )
    try:
        target: Any = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProviderConfigError(
            f"agent {agent!r}: cannot import module {module_name!r} for function {path!r}: {exc}",
            provider=provider,
        ) from None
    for part in qualname.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ProviderConfigError(
                f"agent {agent!r}: module {module_name!r} has no attribute {qualname!r} "
                f"(function {path!r})",
                provider=provider,
            ) from None
    if not callable(target):
        raise ProviderConfigError(f"agent {agent!r}: {path!r} is not callable", provider=provider)
    return target  # type: ignore[no-any-return]


def _is_async(function: Any) -> bool:
    """Whether calling ``function`` returns a coroutine (async def, or an async __call__)."""
    if inspect.iscoroutinefunction(function):
        return True
    if inspect.isroutine(function):
        return False
    return inspect.iscoroutinefunction(type(function).__call__)


class PythonProvider:
    """Calls a Python function per task.

    Options (``agent.options``): ``function`` ("module:function" or, from the Python
    builder, the callable itself; required), ``inline`` (call a sync function on the
    event loop instead of a worker thread; default false).
    """

    name = "python"

    def __init__(
        self,
        function: AgentFunction | str,
        *,
        inline: bool = False,
        agent: str = "",
        name: str | None = None,
    ) -> None:
        if name is not None:
            self.name = name
        self.agent = agent
        self.inline = inline
        self._path = function if isinstance(function, str) else None
        self._function: AgentFunction | None = None
        self._async = False
        if isinstance(function, str):
            module, sep, attr = function.partition(":")
            if not sep or not module or not attr:
                raise ProviderConfigError(
                    f"agent {agent!r}: function {function!r} must look like "
                    "'package.module:function'",
                    provider=self.name,
                )
        elif callable(function):
            self._bind(function)
        else:
            raise ProviderConfigError(
                f"agent {agent!r}: function must be a callable or 'module:function', "
                f"got {function!r}",
                provider=self.name,
            )
        self._counters = CallCounters()

    @classmethod
    def from_agent(cls, agent: AgentSpec, *, name: str = "python") -> PythonProvider:
        """Build from an agent spec, validating ``agent.options``."""
        opts = OptionReader(agent.name, name, agent.options)
        function = opts.raw("function")
        if function is None:
            raise opts.error("function", "is required ('package.module:function' or a callable)")
        if not isinstance(function, str) and not callable(function):
            raise opts.error("function", f"must be 'package.module:function' or a callable, "
                                         f"got {function!r}")
        if isinstance(function, str) and not function.strip():
            raise opts.error("function", "is empty")
        provider = cls(function, inline=opts.boolean("inline", False), agent=agent.name, name=name)
        if provider._function is None:
            provider._resolve()  # a bad module path is a config error before the run, not per task
        return provider

    def _bind(self, function: AgentFunction) -> AgentFunction:
        self._async = _is_async(function)
        self._function = function
        return function

    def _resolve(self) -> AgentFunction:
        assert self._path is not None
        return self._bind(resolve_callable(self._path, agent=self.agent, provider=self.name))

    async def warm(self) -> bool:
        """Import the function now (pool pre-warming) rather than on the first task."""
        if self._function is None:
            self._resolve()
        return True

    def statistics(self) -> ProviderStatistics:
        return self._counters.snapshot()

    async def aclose(self) -> None:
        return None

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        """Call the function with ``request`` and wrap what it returns."""
        function = self._function
        if function is None:
            function = self._resolve()
        counters = self._counters
        counters.calls += 1
        try:
            if self._async:
                result = await function(request)
            elif self.inline:
                result = function(request)
            else:
                result = await asyncio.to_thread(function, request)
            if inspect.isawaitable(result):
                result = await result
        except ProviderError as exc:
            counters.failed(exc)
            raise
        except Exception as exc:
            counters.errors += 1
            raise ProviderError(
                f"{self._label(function)} raised {type(exc).__name__}: {exc}",
                provider=self.name,
                retryable=True,
            ) from exc
        counters.succeeded += 1
        if type(result) is str:
            return ProviderResponse(result, self.name, request.model)
        return self._wrap(result, request)

    def _wrap(self, result: Any, request: ProviderRequest) -> ProviderResponse:
        if isinstance(result, ProviderResponse):
            return result
        if isinstance(result, str):
            return ProviderResponse(result, self.name, request.model)
        if result is None:
            return ProviderResponse("", self.name, request.model)
        if isinstance(result, bytes):
            return ProviderResponse(result.decode("utf-8", "replace"), self.name, request.model)
        try:
            text = json.dumps(result, default=str)
        except (TypeError, ValueError):  # e.g. a circular structure
            text = repr(result)
        return ProviderResponse(text, self.name, request.model, data=result)

    def _label(self, function: AgentFunction) -> str:
        if self._path is not None:
            return self._path
        return getattr(function, "__qualname__", None) or repr(function)

    def __repr__(self) -> str:
        target = self._path or (self._label(self._function) if self._function else "?")
        return f"PythonProvider({target!r}, inline={self.inline})"
