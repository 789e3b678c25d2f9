"""Providers: what runs a task's prompt. One module each, all behind ``agentfleet.Provider``.

    sim         a simulated LLM (seeded latency/token model, fault injection) for demos
                and benchmarks of the runtime itself
    openai      OpenAI-compatible chat completions (OpenAI, vLLM, Ollama, llama.cpp, LiteLLM)
    anthropic   the Anthropic messages API
    command     a program per task, prompt on stdin or argv
    python      a Python callable, sync or async

The runtime calls ``build_provider(agent, clock=..., latency_scale=..., seed=...)``.
"""

from __future__ import annotations

from ._anthropic import AnthropicProvider
from ._command import CommandProvider
from ._http import HTTPSettings
from ._openai import OpenAIEmbeddingsProvider, OpenAIProvider
from ._python import PythonProvider
from ._registry import OPENAI_COMPATIBLE, PROVIDER_NAMES, build_provider
from ._sim import SIM_PROFILES, SimPlan, SimProfile, SimProvider
from ._stats import ProviderStatistics

__all__ = [
    "OPENAI_COMPATIBLE",
    "PROVIDER_NAMES",
    "SIM_PROFILES",
    "AnthropicProvider",
    "CommandProvider",
    "HTTPSettings",
    "OpenAIEmbeddingsProvider",
    "OpenAIProvider",
    "ProviderStatistics",
    "PythonProvider",
    "SimPlan",
    "SimProfile",
    "SimProvider",
    "build_provider",
]
