"""Fixtures for the cache tests: a namespace of its own on the test Redis, deleted afterwards.

The Redis is the one on 127.0.0.1:6379 (``AGENTFLEET_TEST_REDIS`` overrides the URL); when it
does not answer, the tests that need it are skipped with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.redis_kit import fresh_namespace


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    """A fresh namespace on the test Redis (skips when Redis does not answer); its keys are deleted after."""
    yield from fresh_namespace("aftest-cache")
