"""Cache keys for provider requests, and which requests may be cached at all.

# Design
# The key is the sha256 of a canonical JSON array of everything that decides the answer:
# a format version, the provider, model, system prompt, prompt, max_tokens, temperature and
# the output schema (objects with sorted keys, compact separators). Left out on purpose:
# task_id and agent (two tasks asking the same thing share the answer), timeout and stream
# (how the answer is fetched, not what it is) and options (per-attempt transport settings).
# Bump ``_VERSION`` whenever the normalisation changes, so old entries simply stop matching.
#
# Only deterministic requests are cached by default: temperature == 0. ``None`` means the
# provider's default, which is usually sampling, so it counts as non-deterministic; a task
# may opt in to caching anyway (a fixture run, a prompt whose variance it does not care about).
"""

from __future__ import annotations

import hashlib
import json

from .._types import ProviderRequest

__all__ = ["cache_key", "cacheable"]

_VERSION = 1


def cache_key(request: ProviderRequest, *, provider: str) -> str:
    """A stable hex sha256 of the request's normalised content for ``provider``."""
    temperature = None if request.temperature is None else float(request.temperature)
    parts = [
        _VERSION,
        provider,
        request.model,
        request.system,
        request.prompt,
        request.max_tokens,
        temperature,
        request.output_schema,
    ]
    try:
        text = json.dumps(parts, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"request for task {request.task_id!r} cannot be keyed: {exc}") from None
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cacheable(request: ProviderRequest, *, opt_in: bool) -> bool:
    """Whether the answer may be reused: a deterministic request (temperature 0), or the task opts in."""
    return opt_in or request.temperature == 0
