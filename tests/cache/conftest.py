"""Fixtures for the cache tests: a namespace of its own on the test Redis, deleted afterwards.

The Redis is the one on 127.0.0.1:6379 (``AGENTFLEET_TEST_REDIS`` overrides the URL); when it
does not answer, the tests that need it are skipped with the reason.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import redis
from redis.exceptions import RedisError

REDIS_URL = os.environ.get("AGENTFLEET_TEST_REDIS", "redis://127.0.0.1:6379/0")
_redis_problem: list[str | None] = []


def redis_problem() -> str | None:
    """Why Redis cannot be used for tests (None when it answers); checked once per session."""
    if not _redis_problem:
        try:
            client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=0.5, socket_timeout=1)
            try:
                client.ping()
            finally:
                client.close()
            _redis_problem.append(None)
        except (RedisError, OSError) as exc:
            _redis_problem.append(f"Redis does not answer on {REDIS_URL} ({exc}); scripts/test starts one")
    return _redis_problem[0]


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    """A fresh namespace on the test Redis (skips when Redis does not answer); its keys are deleted after."""
    problem = redis_problem()
    if problem is not None:
        pytest.skip(problem)
    namespace = f"aftest-cache-{uuid.uuid4().hex[:10]}"
    try:
        yield namespace
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        try:
            keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()
