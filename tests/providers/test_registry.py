"""build_provider dispatch, aliases and the package's public surface."""

from __future__ import annotations

from typing import Any

import pytest

from agentfleet import providers
from agentfleet._types import Provider
from agentfleet.errors import ProviderConfigError
from agentfleet.providers import (
    AnthropicProvider,
    CommandProvider,
    OpenAIProvider,
    PythonProvider,
    SimProvider,
    build_provider,
)
from agentfleet.spec import AgentSpec


def _agent(provider: str, model: str = "some-model", **options: Any) -> AgentSpec:
    return AgentSpec(name="a1", provider=provider, model=model, options=options)


class TestBuildProvider:
    def test_dispatch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Each provider name builds its class, and each satisfies the Provider protocol."""
        monkeypatch.setenv("OPENAI_API_KEY", "k")
        monkeypatch.setenv("ANTHROPIC_API_KEY", "k")
        built = [
            build_provider(_agent("sim", "sim-fast")),
            build_provider(_agent("openai")),
            build_provider(_agent("anthropic")),
            build_provider(_agent("command", command="true")),
            build_provider(_agent("python", function="json:dumps")),
        ]
        assert [type(p) for p in built] == [
            SimProvider, OpenAIProvider, AnthropicProvider, CommandProvider, PythonProvider]
        assert [p.name for p in built] == ["sim", "openai", "anthropic", "command", "python"]
        assert all(isinstance(p, Provider) for p in built)

    @pytest.mark.parametrize("alias, url, label", [
        ("ollama", "http://127.0.0.1:11434/v1", "ollama"),
        ("vllm", "http://127.0.0.1:8000/v1", "vllm"),
        ("llamacpp", "http://127.0.0.1:8080/v1", "llamacpp"),
        ("litellm", "http://127.0.0.1:4000/v1", "litellm"),
        ("VLLM", "http://127.0.0.1:8000/v1", "vllm"),
    ])
    def test_local_aliases(self, alias: str, url: str, label: str,
                           monkeypatch: pytest.MonkeyPatch) -> None:
        """Local-server aliases need no key and default to their usual port."""
        monkeypatch.delenv("OPENAI_API_KEY", raising=False)
        provider = build_provider(_agent(alias, "llama3"))
        assert isinstance(provider, OpenAIProvider)
        assert provider.url == url + "/chat/completions"
        assert provider.name == label

    def test_openai_compatible_alias(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """openai-compatible is openai with a user-given base_url."""
        monkeypatch.setenv("OPENAI_API_KEY", "k")
        provider = build_provider(_agent("openai-compatible", base_url="https://proxy.test/v1/"))
        assert isinstance(provider, OpenAIProvider)
        assert (provider.name, provider.url) == ("openai", "https://proxy.test/v1/chat/completions")

    def test_unknown_provider(self) -> None:
        """An unknown provider is a config error listing the known ones."""
        with pytest.raises(ProviderConfigError) as info:
            build_provider(_agent("gemini"))
        message = str(info.value)
        assert "agent 'a1': unknown provider 'gemini'" in message
        assert "sim, openai, anthropic, command, python" in message
        assert info.value.exit_code == 2

    def test_sim_model_on_a_real_api(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Forgetting 'model:' on an API provider (the sim default) is caught at build."""
        monkeypatch.setenv("OPENAI_API_KEY", "k")
        with pytest.raises(ProviderConfigError, match="'sim-default' is a sim profile; set 'model:'"):
            build_provider(AgentSpec(name="a1", provider="openai"))

    def test_options_must_be_valid(self) -> None:
        """A wrongly typed option names the agent and the option."""
        with pytest.raises(ProviderConfigError, match="agent 'a1': option 'inline' must be true or false"):
            build_provider(_agent("python", function="json:dumps", inline="yes"))

    def test_clock_seed_and_scale_reach_the_sim(self) -> None:
        """The factory passes clock, seed and latency_scale to the sim."""
        class Frozen:
            def now(self) -> float:
                return 0.0

            async def sleep(self, seconds: float) -> None:
                return None

        clock = Frozen()
        sim = build_provider(_agent("sim", "sim-fast"), clock=clock, seed=9, latency_scale=0.5)
        assert isinstance(sim, SimProvider)
        assert (sim.clock, sim.seed, sim.latency_scale) == (clock, 9, 0.5)


class TestExports:
    def test_all_is_exact(self) -> None:
        """The package exports exactly its documented names, all importable."""
        assert sorted(providers.__all__) == sorted([
            "OPENAI_COMPATIBLE", "PROVIDER_NAMES", "SIM_PROFILES",
            "AnthropicProvider", "CommandProvider", "HTTPSettings", "OpenAIEmbeddingsProvider", "OpenAIProvider",
            "ProviderStatistics", "PythonProvider", "SimPlan", "SimProfile", "SimProvider",
            "build_provider",
        ])
        for name in providers.__all__:
            assert getattr(providers, name) is not None


class TestOptionTypos:
    def test_unknown_option_is_an_error_with_suggestion(self) -> None:
        """A misspelt option (timout) is a config error naming it and the likely intent."""
        import pytest

        from agentfleet.errors import ProviderConfigError
        from agentfleet.providers import build_provider
        from agentfleet.spec import AgentSpec

        agent = AgentSpec(name="c", provider="command", options={"command": "cat", "timout": 1})
        with pytest.raises(ProviderConfigError, match=r"option 'timout' is not an option .*did you mean 'timeout'"):
            build_provider(agent)
