"""Reading a provider's ``options:`` mapping with errors that name the agent and the option.

An agent's ``options`` is free-form YAML; every provider reads it through ``OptionReader``
so a wrong type or value is a ``ProviderConfigError`` saying which agent, which option and
what was expected, before anything runs.
"""

from __future__ import annotations

import contextlib
import contextvars
import difflib
import math
import os
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from ..errors import MissingCredentials, ProviderConfigError

__all__ = ["OptionReader", "is_local_url", "reading_options"]

# Options read by layers other than the providers (the scheduler, pools, the builder).
SHARED_OPTIONS = frozenset({"pool", "expected_latency"})

_readers: contextvars.ContextVar[list[OptionReader] | None] = contextvars.ContextVar("_readers", default=None)


@contextlib.contextmanager
def reading_options() -> Iterator[list[OptionReader]]:
    """Collect the OptionReaders created inside the block (to check for unread keys after)."""
    readers: list[OptionReader] = []
    token = _readers.set(readers)
    try:
        yield readers
    finally:
        _readers.reset(token)


class _Recording(dict[str, Any]):
    """A dict that remembers which keys were looked up."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        super().__init__(data)
        self.read: set[str] = set()

    def get(self, key: str, default: Any = None) -> Any:
        self.read.add(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> Any:
        self.read.add(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return super().__contains__(key)

_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "0.0.0.0"})


def is_local_url(url: str) -> bool:
    """Whether ``url`` points at this machine (a local server may run without an API key)."""
    host = (urlsplit(url).hostname or "").lower()
    return host in _LOCAL_HOSTS or host.endswith(".localhost") or host.startswith("127.")


class OptionReader:
    """Typed, validated access to one agent's ``options`` mapping."""

    __slots__ = ("agent", "options", "provider")

    def __init__(self, agent: str, provider: str, options: Mapping[str, Any] | None) -> None:
        self.agent = agent
        self.provider = provider
        if options is not None and not isinstance(options, Mapping):
            raise self.error("options", f"must be a mapping, got {type(options).__name__}")
        self.options: _Recording = _Recording(options or {})
        collecting = _readers.get()
        if collecting is not None:
            collecting.append(self)

    def reject_unread(self) -> None:
        """Raise for an option this provider never looked at: most likely a typo."""
        unread = sorted(set(self.options) - self.options.read - SHARED_OPTIONS)
        if unread:
            key = unread[0]
            close = difflib.get_close_matches(key, sorted(self.options.read), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else \
                f" (known: {', '.join(sorted(self.options.read))})"
            raise self.error(key, f"is not an option of the {self.provider} provider{hint}")

    def error(self, option: str, message: str) -> ProviderConfigError:
        """A config error naming the agent and the option."""
        return ProviderConfigError(
            f"agent {self.agent!r}: option {option!r} {message}", provider=self.provider
        )

    def has(self, key: str) -> bool:
        return self.options.get(key) is not None

    def raw(self, key: str, default: Any = None) -> Any:
        value = self.options.get(key)
        return default if value is None else value

    def string(self, key: str, default: str) -> str:
        value = self.options.get(key)
        if value is None:
            return default
        if not isinstance(value, str) or not value:
            raise self.error(key, f"must be a non-empty string, got {value!r}")
        return value

    def optional_string(self, key: str) -> str | None:
        if self.options.get(key) is None:
            return None
        return self.string(key, "")

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.string(key, default)
        if value not in choices:
            raise self.error(key, f"must be one of {', '.join(choices)}; got {value!r}")
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value = self.options.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.error(key, f"must be true or false, got {value!r}")
        return value

    def number(
        self,
        key: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        positive: bool = False,
    ) -> float:
        value = self.options.get(key)
        if value is None:
            return default
        return self.check_number(key, value, minimum=minimum, maximum=maximum, positive=positive)

    def optional_number(self, key: str, *, positive: bool = False) -> float | None:
        value = self.options.get(key)
        if value is None:
            return None
        return self.check_number(key, value, positive=positive)

    def check_number(
        self,
        key: str,
        value: Any,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        positive: bool = False,
    ) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.error(key, f"must be a number, got {value!r}")
        number = float(value)
        if math.isnan(number):
            raise self.error(key, "must be a number, got NaN")
        if positive and number <= 0:
            raise self.error(key, f"must be greater than 0, got {value!r}")
        if minimum is not None and number < minimum:
            raise self.error(key, f"must be at least {minimum:g}, got {value!r}")
        if maximum is not None and number > maximum:
            raise self.error(key, f"must be at most {maximum:g}, got {value!r}")
        return number

    def integer(self, key: str, default: int, *, minimum: int | None = None) -> int:
        value = self.options.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise self.error(key, f"must be at least {minimum}, got {value!r}")
        return value

    def mapping(self, key: str) -> dict[str, Any]:
        value = self.options.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self.error(key, f"must be a mapping, got {type(value).__name__}")
        return {str(k): v for k, v in value.items()}

    def string_mapping(self, key: str) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.mapping(key).items():
            if isinstance(value, bool) or not isinstance(value, (str, int, float)):
                raise self.error(key, f"value of {name!r} must be a string, got {value!r}")
            out[name] = str(value)
        return out

    def api_key(self, key: str, default_env: str, base_url: str) -> str | None:
        """The API key from the environment variable named by option ``key``.

        A missing variable is a config error naming it, unless ``base_url`` is a local
        server (Ollama, vLLM, llama.cpp), which usually needs no key.
        """
        env = self.string(key, default_env)
        value = os.environ.get(env)
        if value:
            return value
        if is_local_url(base_url):
            return None
        raise MissingCredentials(
            f"agent {self.agent!r}: environment variable {env} is not set "
            f"(the API key for {base_url}; set it or point option {key!r} at another variable)",
            provider=self.provider,
        )
