"""``build_provider``: the one place the runtime turns an ``AgentSpec`` into a ``Provider``.

Dispatches on ``agent.provider``: ``sim``, ``openai``, ``anthropic``, ``command``,
``python``, plus aliases for OpenAI-compatible servers (``vllm``, ``ollama``,
``llamacpp``, ``litellm``, ``openai-compatible``) that only change the default base URL
and the label written in reports.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import TYPE_CHECKING

from .._types import Clock, Provider
from ..errors import ProviderConfigError
from ._anthropic import AnthropicProvider
from ._command import CommandProvider
from ._openai import DEFAULT_BASE_URL as OPENAI_BASE_URL
from ._openai import OpenAIProvider
from ._options import reading_options
from ._python import PythonProvider
from ._sim import SimProvider

if TYPE_CHECKING:
    from ..spec import AgentSpec

__all__ = ["OPENAI_COMPATIBLE", "PROVIDER_NAMES", "build_provider"]

PROVIDER_NAMES: tuple[str, ...] = ("sim", "openai", "anthropic", "command", "python")

#: OpenAI-compatible servers by name, with the base URL each listens on by default.
OPENAI_COMPATIBLE: MappingProxyType[str, str] = MappingProxyType(
    {
        "openai": OPENAI_BASE_URL,
        "openai-compatible": OPENAI_BASE_URL,
        "vllm": "http://127.0.0.1:8000/v1",
        "ollama": "http://127.0.0.1:11434/v1",
        "llamacpp": "http://127.0.0.1:8080/v1",
        "llama.cpp": "http://127.0.0.1:8080/v1",
        "litellm": "http://127.0.0.1:4000/v1",
    }
)


def build_provider(
    agent: AgentSpec,
    *,
    clock: Clock | None = None,
    latency_scale: float = 1.0,
    seed: int = 0,
) -> Provider:
    """The provider for ``agent``, configured from its model, limits and ``options``.

    ``clock``, ``latency_scale`` and ``seed`` drive the sim (and the HTTP providers'
    timing). Raises ProviderConfigError for an unknown provider or a bad option.
    """
    with reading_options() as readers:
        provider = _build(agent, clock=clock, latency_scale=latency_scale, seed=seed)
    for reader in readers:
        reader.reject_unread()  # a typo in options (``timout:``) is an error, not ignored
    return provider


def _build(agent: AgentSpec, *, clock: Clock | None, latency_scale: float, seed: int) -> Provider:
    kind = agent.provider.strip().lower()
    if kind == "sim":
        return SimProvider.from_agent(agent, clock=clock, latency_scale=latency_scale, seed=seed)
    if kind in OPENAI_COMPATIBLE:
        label = "openai" if kind == "openai-compatible" else kind
        return OpenAIProvider.from_agent(
            agent, name=label, default_base_url=OPENAI_COMPATIBLE[kind], clock=clock
        )
    if kind == "anthropic":
        return AnthropicProvider.from_agent(agent, clock=clock)
    if kind == "command":
        return CommandProvider.from_agent(agent)
    if kind == "python":
        return PythonProvider.from_agent(agent)
    aliases = ", ".join(k for k in OPENAI_COMPATIBLE if k != "openai")
    raise ProviderConfigError(
        f"agent {agent.name!r}: unknown provider {agent.provider!r}; "
        f"known providers: {', '.join(PROVIDER_NAMES)} (OpenAI-compatible aliases: {aliases})"
    )
