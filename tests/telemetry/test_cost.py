"""Pricing: the workflow's own prices over the built-in list prices, by the model that answered."""

from __future__ import annotations

import pytest

from agentfleet.telemetry import BUILTIN_PRICES, Price, Pricing


def test_builtin_prices_match_by_exact_name_and_dated_variant() -> None:
    pricing = Pricing()
    assert pricing.price("openai", "gpt-4o") == BUILTIN_PRICES["gpt-4o"]
    # a dated snapshot (or -latest) is priced as its model: mini, not gpt-4o
    assert pricing.price("openai", "gpt-4o-mini-2024-07-18") == BUILTIN_PRICES["gpt-4o-mini"]
    assert pricing.price("anthropic", "claude-sonnet-4-20250514") == BUILTIN_PRICES["claude-sonnet-4"]
    assert pricing.price("openrouter", "openai/gpt-4o") == BUILTIN_PRICES["gpt-4o"]
    assert pricing.price("anthropic", "claude-3-5-haiku-latest") == BUILTIN_PRICES["claude-3-5-haiku"]
    # 1M input + 1M output tokens of gpt-4o: $2.50 + $10
    assert pricing.cost("openai", "gpt-4o", 1_000_000, 1_000_000) == pytest.approx(12.5)


def test_unknown_models_are_unpriced_not_guessed() -> None:
    pricing = Pricing()
    # o1-pro and gpt-5-pro are other models at ten times the price of o1 and gpt-5, not snapshots
    for model in ("sim-default", "llama3", "gpt-4oo", "my-gpt-4o", "o1-pro", "gpt-5-pro", "gpt-4o-audio-preview"):
        assert pricing.price("x", model) is None
        assert pricing.cost("x", model, 100, 100) is None


def test_workflow_prices_override_by_provider_and_model_first() -> None:
    pricing = Pricing({"vllm/llama3": Price(0.1, 0.2), "llama3": Price(1.0, 2.0), "gpt-4o": Price(0.0, 0.0)})
    assert pricing.cost("vllm", "llama3", 1_000_000, 0) == pytest.approx(0.1)
    assert pricing.cost("ollama", "llama3", 1_000_000, 0) == pytest.approx(1.0)
    assert pricing.cost("openai", "gpt-4o", 1_000_000, 1_000_000) == 0.0  # a negotiated (free) rate
