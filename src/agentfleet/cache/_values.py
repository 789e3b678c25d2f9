"""What a cache stores: a JSON-able dict per entry, and the record a level returns on a hit."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .._types import ProviderResponse

__all__ = ["CacheHit", "CacheValue", "encode_value", "response_from_json", "response_to_json"]

CacheValue = dict[str, Any]
"""A cached value: a JSON-serialisable dict (treat it as read-only once stored)."""

_RESPONSE_FIELDS = ("text", "data", "tokens_in", "tokens_out", "model", "provider")


@dataclass(frozen=True, slots=True)
class CacheHit:
    """A level's answer: the value, when it expires (wall-clock seconds, None = never), its tags and size."""

    value: CacheValue
    expires: float | None
    tags: tuple[str, ...]
    size: int


def encode_value(value: CacheValue) -> str:
    """Compact JSON text of a value (what the SQLite and Redis levels store; its length is the size)."""
    try:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cache values must be JSON-serialisable dicts: {exc}") from None


def response_to_json(response: ProviderResponse) -> CacheValue:
    """The cacheable part of a response: text, data, token counts, model and provider.

    Latency and ``meta`` describe one call, not the answer, so they are not kept.
    """
    return {
        "text": response.text,
        "data": response.data,
        "tokens_in": response.tokens_in,
        "tokens_out": response.tokens_out,
        "model": response.model,
        "provider": response.provider,
    }


def response_from_json(value: CacheValue) -> ProviderResponse:
    """Rebuild a ``ProviderResponse`` from ``response_to_json``'s dict (latency 0, empty meta)."""
    missing = [name for name in ("text", "model", "provider") if name not in value]
    if missing:
        raise ValueError(f"cached response lacks {', '.join(missing)}")
    return ProviderResponse(
        text=str(value["text"]),
        provider=str(value["provider"]),
        model=str(value["model"]),
        tokens_in=int(value.get("tokens_in", 0)),
        tokens_out=int(value.get("tokens_out", 0)),
        data=value.get("data"),
    )
