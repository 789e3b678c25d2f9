"""Fixtures for the provider tests: the local wire-protocol server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .wire_server import WireServer


@pytest.fixture
def wire() -> Iterator[WireServer]:
    """A running OpenAI/Anthropic wire-protocol server on 127.0.0.1 (stopped afterwards)."""
    server = WireServer().start()
    try:
        yield server
    finally:
        server.stop()
