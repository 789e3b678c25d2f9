"""The tests' one way to reach the real Redis on 127.0.0.1:6379 (``AGENTFLEET_TEST_REDIS``
overrides the URL): is it there, a namespace of one's own, and cleaning it up afterwards.

When Redis does not answer, the tests that need it are skipped with the reason (scripts/test
starts one first, so that only happens where Redis truly cannot run).
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


def delete_namespace(namespace: str) -> None:
    """Delete every key under ``namespace:``."""
    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{namespace}:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def fresh_namespace(prefix: str) -> Iterator[str]:
    """A new namespace (skipping the test when Redis does not answer), deleted after the test."""
    problem = redis_problem()
    if problem is not None:
        pytest.skip(problem)
    namespace = f"{prefix}-{uuid.uuid4().hex[:10]}"
    try:
        yield namespace
    finally:
        delete_namespace(namespace)
