"""What a run's tokens cost: prices per model, in US dollars per million tokens.

# Design
# A price is looked up by the model a call was answered by (``ProviderResponse.model``), so a
# fallback to a cheaper model is priced as that model. Lookup order: the workflow's own
# ``settings.prices`` by ``provider/model``, then by ``model``, then the built-in table below by
# its name or a dated snapshot of it (``gpt-4o-mini-2024-07-18`` is priced as ``gpt-4o-mini``,
# ``claude-3-5-haiku-latest`` as ``claude-3-5-haiku``; ``o1-pro`` is not ``o1``). A model found
# nowhere costs nothing and is reported as unpriced, never guessed. The built-in figures
# are list prices as published by the vendors (2025); declare your own in ``settings.prices``
# when you have negotiated rates or newer models. A sim agent that names a real model (``model:
# gpt-4o``) is priced as that model: the figure is what the run would have cost for real.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = ["BUILTIN_PRICES", "Price", "Pricing"]


@dataclass(frozen=True, slots=True)
class Price:
    """US dollars per million input (prompt) and output (completion) tokens."""

    input: float
    output: float

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input + tokens_out * self.output) / 1_000_000


#: List prices in USD per million tokens (input, output), as published in 2025.
BUILTIN_PRICES: Mapping[str, Price] = {
    "gpt-5": Price(1.25, 10.0),
    "gpt-5-mini": Price(0.25, 2.0),
    "gpt-5-nano": Price(0.05, 0.40),
    "gpt-4.1": Price(2.0, 8.0),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-4o": Price(2.50, 10.0),
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4-turbo": Price(10.0, 30.0),
    "gpt-3.5-turbo": Price(0.50, 1.50),
    "o1": Price(15.0, 60.0),
    "o1-mini": Price(1.10, 4.40),
    "o3": Price(2.0, 8.0),
    "o3-mini": Price(1.10, 4.40),
    "o4-mini": Price(1.10, 4.40),
    "text-embedding-3-small": Price(0.02, 0.0),
    "text-embedding-3-large": Price(0.13, 0.0),
    "claude-opus-4": Price(15.0, 75.0),
    "claude-opus-4-1": Price(15.0, 75.0),
    "claude-opus-4-5": Price(5.0, 25.0),
    "claude-sonnet-4": Price(3.0, 15.0),
    "claude-sonnet-4-5": Price(3.0, 15.0),
    "claude-haiku-4-5": Price(1.0, 5.0),
    "claude-3-7-sonnet": Price(3.0, 15.0),
    "claude-3-5-sonnet": Price(3.0, 15.0),
    "claude-3-5-haiku": Price(0.80, 4.0),
    "claude-3-opus": Price(15.0, 75.0),
    "claude-3-haiku": Price(0.25, 1.25),
}


#: a built-in name, optionally with a snapshot suffix: a date (-2024-07-18, -20250514, -0613) or -latest.
#: Anything else (o1-pro, gpt-5-pro) is another model with another price: unpriced, not guessed.
_ALIAS = re.compile(r"^(.+?)(?:-(?:latest|\d{4}-\d{2}-\d{2}|\d{8}|\d{4}))?$")


class Pricing:
    """Prices for one run: the workflow's ``settings.prices`` over the built-in table."""

    __slots__ = ("_cache", "_overrides")

    def __init__(self, overrides: Mapping[str, Price] | None = None) -> None:
        self._overrides = dict(overrides or {})
        self._cache: dict[tuple[str, str], Price | None] = {}

    def price(self, provider: str, model: str) -> Price | None:
        """The price of ``model`` served by ``provider``, or None when it is priced nowhere."""
        key = (provider, model)
        try:
            return self._cache[key]
        except KeyError:
            pass
        found = self._overrides.get(f"{provider}/{model}") or self._overrides.get(model)
        if found is None:
            match = _ALIAS.match(model.rsplit("/", 1)[-1].lower())
            found = BUILTIN_PRICES.get(match.group(1)) if match else None
        self._cache[key] = found
        return found

    def cost(self, provider: str, model: str, tokens_in: int, tokens_out: int) -> float | None:
        """US dollars for these tokens, or None when the model has no price."""
        price = self.price(provider, model)
        return None if price is None else price.cost(tokens_in, tokens_out)
