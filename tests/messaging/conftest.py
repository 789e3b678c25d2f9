"""Fixtures for the bus tests: one ``Kit`` per implementation, so behaviour tests run on both.

The in-process kit runs on virtual time (``run_virtual``): timeouts cost nothing. The Redis kit
runs on a real loop against the Redis on 127.0.0.1:6379 (``AGENTFLEET_TEST_REDIS`` overrides the
URL) with a namespace of its own, whose keys are deleted afterwards; when Redis does not answer,
its tests are skipped with the reason.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest

from agentfleet.messaging import Bus, InProcessBus, RedisBus
from agentfleet.testing import run_virtual
from tests.redis_kit import REDIS_URL, fresh_namespace

T = TypeVar("T")


@dataclass
class Kit:
    """How to make and drive one bus implementation in a test."""

    name: str
    make: Callable[[], Bus]  # call inside the running loop
    run_loop: Callable[[Coroutine[Any, Any, Any]], Any]
    namespace: str = ""

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        result: T = self.run_loop(coro)
        return result

    @property
    def redis(self) -> bool:
        return self.name == "redis"


def _asyncio_run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@pytest.fixture
def redis_namespace() -> Iterator[str]:
    """A fresh namespace on the test Redis (skips when Redis does not answer); its keys are deleted after."""
    yield from fresh_namespace("aftest")


@pytest.fixture(params=["memory", "redis"])
def kit(request: pytest.FixtureRequest) -> Iterator[Kit]:
    """Each bus implementation in turn: the in-process bus on virtual time, then RedisBus."""
    if request.param == "memory":
        yield Kit("memory", InProcessBus, run_virtual)
        return
    namespace = request.getfixturevalue("redis_namespace")
    yield Kit("redis", lambda: RedisBus(REDIS_URL, namespace=namespace, block_ms=200), _asyncio_run, namespace)


async def until(condition: Callable[[], bool], *, timeout: float = 5.0, what: str = "condition") -> None:
    """Wait (polling) until ``condition()`` holds; fails the test after ``timeout`` s of loop time."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


async def flushed(bus: Bus) -> None:
    """Wait until a RedisBus has written everything (no-op in-process)."""
    if isinstance(bus, RedisBus):
        await bus.flush()
