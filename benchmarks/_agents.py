"""Trivial agent functions for the runtime suite's ``python`` provider (``benchmarks._agents:echo``)."""

from __future__ import annotations

from typing import Any

__all__ = ["echo"]


def echo(request: Any) -> str:
    """Answer with the prompt: the least work a ``python`` agent can do."""
    return str(request.prompt)
