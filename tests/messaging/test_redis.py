"""RedisBus specifics: connection errors, JSON, several processes, and what stays in Redis."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest
import redis

from agentfleet.errors import BusError, BusOverflow
from agentfleet.messaging import RedisBus
from agentfleet.messaging._redis import redact
from tests.redis_kit import REDIS_URL

from .conftest import until


def _bus(namespace: str, **options: Any) -> RedisBus:
    options.setdefault("block_ms", 200)
    return RedisBus(REDIS_URL, namespace=namespace, **options)


def _keys(namespace: str) -> list[str]:
    client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
    try:
        return sorted(client.scan_iter(match=f"{namespace}:*"))
    finally:
        client.close()


class TestConnection:
    """Connecting is explicit or lazy, and failure is one clear error naming the URL."""

    def test_unreachable_redis(self) -> None:
        """An unreachable Redis gives one BusError naming the URL, with the password hidden."""

        async def main() -> None:
            bus = RedisBus("redis://:hunter2@127.0.0.1:1/0", connect_timeout=0.5)
            with pytest.raises(BusError, match=r"cannot use Redis at redis://:\*\*\*@127.0.0.1:1/0") as info:
                await bus.connect()
            assert "hunter2" not in str(info.value)
            with pytest.raises(BusError, match=r"127\.0\.0\.1:1"):
                await bus.publish("a", 1)  # lazy connect reports the same way
            await bus.aclose()

        asyncio.run(main())

    def test_redact(self) -> None:
        """Passwords are masked in URLs shown to people; other URLs are unchanged."""
        assert redact("redis://user:pw@host:6380/1") == "redis://user:***@host:6380/1"
        assert redact("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"

    def test_publish_nowait_needs_a_connection(self, redis_namespace: str) -> None:
        """``publish_nowait`` on a bus that never connected says how to connect; ``publish`` connects."""

        async def main() -> None:
            bus = _bus(redis_namespace)
            sub = bus.subscribe("a")  # subscribing before connecting is fine
            with pytest.raises(BusError, match=r"not connected: await bus.connect\(\)"):
                bus.publish_nowait("a", 1)
            assert await bus.publish("a", 1) == 1
            assert bus.connected
            assert (await asyncio.wait_for(sub.get(), 5)).data == 1
            await bus.aclose()

        asyncio.run(main())


class TestJSON:
    """Data crosses Redis as JSON."""

    def test_round_trip(self, redis_namespace: str) -> None:
        """JSON types round-trip; tuples arrive as lists; headers and ids survive."""

        async def main() -> None:
            async with _bus(redis_namespace) as bus:
                sub = bus.subscribe("j")
                payload = {"n": 1, "f": 1.5, "s": "é", "l": [1, None, True], "t": (1, 2)}
                await bus.publish("j", payload, headers={"trace": "t1"})
                await bus.publish("j", None)
                first = await asyncio.wait_for(sub.get(), 5)
                second = await asyncio.wait_for(sub.get(), 5)
                assert first.data == {**payload, "t": [1, 2]}
                assert first.headers == {"trace": "t1"}
                assert second.data is None
                entry, index = first.id.rsplit(":", 1)
                assert entry.count("-") == 1 and index.isdigit()
                assert first.id != second.id

        asyncio.run(main())

    def test_non_json_data_is_a_clear_error(self, redis_namespace: str) -> None:
        """Publishing data JSON cannot encode raises BusError naming the topic, before sending anything."""

        async def main() -> None:
            async with _bus(redis_namespace) as bus:
                with pytest.raises(BusError, match="topic 'x': data is not JSON-serialisable") as info:
                    bus.publish_nowait("x", {1, 2})
                assert info.value.topic == "x"
                with pytest.raises(BusError, match="not JSON-serialisable"):
                    await bus.request("x", object(), timeout=1)
                assert bus.statistics().published == 0

        asyncio.run(main())

    def test_non_json_reply_is_an_error_for_the_requester(self, redis_namespace: str) -> None:
        """A handler returning data JSON cannot encode fails the request with BusError, not a timeout."""

        async def main() -> None:
            async with _bus(redis_namespace) as bus:
                bus.serve("svc", lambda data: object())
                with pytest.raises(BusError, match="reply is not JSON-serialisable"):
                    await bus.request("svc", 1, timeout=5)

        asyncio.run(main())


class TestOverflowOnRedis:
    """Policies apply in the reader, since the publisher is in another process."""

    def test_error_policy_tells_the_subscriber(self, redis_namespace: str) -> None:
        """A full ``error`` subscription drops the message and raises BusOverflow to its reader, once."""

        async def main() -> None:
            async with _bus(redis_namespace) as bus:
                sub = bus.subscribe("alerts.>", maxsize=2, overflow="error")
                for i in range(3):
                    await bus.publish("alerts.cpu", i)
                await until(lambda: sub.statistics().dropped == 1, what="the overflow")
                with pytest.raises(BusOverflow, match=r"topic 'alerts.cpu': subscription 'alerts.>' is full"):
                    sub.get_nowait()
                assert [(await sub.get()).data for _ in range(2)] == [0, 1]
                stats = sub.statistics()
                assert (stats.dropped, stats.overflows) == (1, 1)

        asyncio.run(main())

    def test_write_backlog_limit(self, redis_namespace: str) -> None:
        """``publish_nowait`` raises BusOverflow when ``max_backlog`` writes are pending; ``publish`` waits."""

        async def main() -> None:
            async with _bus(redis_namespace, max_backlog=3) as bus:
                sub = bus.subscribe("b")
                for i in range(3):
                    bus.publish_nowait("b", i)
                with pytest.raises(BusOverflow, match="waiting to be written to Redis"):
                    bus.publish_nowait("b", 3)
                await bus.publish("b", 3)
                assert [(await asyncio.wait_for(sub.get(), 5)).data for _ in range(4)] == [0, 1, 2, 3]

        asyncio.run(main())


class TestSharing:
    """Buses on one namespace share messages; namespaces are separate; nothing is left behind."""

    def test_two_buses_one_namespace(self, redis_namespace: str) -> None:
        """A message published on one bus reaches the other; requests cross between them."""

        async def main() -> None:
            async with _bus(redis_namespace) as a, _bus(redis_namespace) as b:
                sub = b.subscribe("news.*")
                b.serve("b.echo", lambda data: {"echo": data})
                assert await a.publish("news.today", "hello") == 0  # no subscription on ``a`` itself
                assert (await asyncio.wait_for(sub.get(), 5)).data == "hello"
                await b.flush()
                assert await a.request("b.echo", [1], timeout=5) == {"echo": [1]}

        asyncio.run(main())

    def test_namespaces_are_separate(self, redis_namespace: str) -> None:
        """A bus on another namespace sees nothing."""

        async def main() -> None:
            other_namespace = f"{redis_namespace}-other"
            try:
                async with _bus(redis_namespace) as a, _bus(other_namespace) as b:
                    theirs = b.subscribe(">")
                    mine = a.subscribe(">")
                    await a.publish("x", 1)
                    assert (await asyncio.wait_for(mine.get(), 5)).data == 1
                    await asyncio.sleep(0.2)
                    assert theirs.get_nowait() is None
            finally:
                client = redis.Redis.from_url(REDIS_URL)
                client.delete(*client.keys(f"{other_namespace}:*") or ["-"])
                client.close()

        asyncio.run(main())

    def test_keys_left_in_redis(self, redis_namespace: str) -> None:
        """After close only the namespace's stream and responder counts remain (the reply stream is deleted)."""

        async def main() -> None:
            async with _bus(redis_namespace) as bus:
                bus.serve("svc", lambda data: data)
                assert await bus.request("svc", 1, timeout=5) == 1
                assert f"{redis_namespace}:inbox:{bus._id}" in _keys(redis_namespace)
            assert _keys(redis_namespace) == [f"{redis_namespace}:bus", f"{redis_namespace}:responders"]
            client = redis.Redis.from_url(REDIS_URL, decode_responses=True)
            try:
                assert client.hgetall(f"{redis_namespace}:responders") == {"svc": "0"}
            finally:
                client.close()

        asyncio.run(main())

    def test_stream_is_trimmed(self, redis_namespace: str) -> None:
        """The namespace's stream is capped near ``maxlen`` entries."""

        async def main() -> None:
            async with _bus(redis_namespace, maxlen=100) as bus:
                for i in range(3000):
                    await bus.publish("t", i)
                    if i % 10 == 0:
                        await bus.flush()  # one entry per few messages
            client = redis.Redis.from_url(REDIS_URL)
            try:
                assert client.xlen(f"{redis_namespace}:bus") < 400
            finally:
                client.close()

        asyncio.run(main())


_PUBLISHER = textwrap.dedent(
    """
    import asyncio, sys
    from agentfleet.messaging import RedisBus

    async def main():
        async with RedisBus(sys.argv[1], namespace=sys.argv[2], block_ms=200) as bus:
            bus.serve("child.pid", lambda data: {"pid": __import__("os").getpid(), "got": data})
            await bus.flush()
            print("ready", flush=True)
            for i in range(int(sys.argv[3])):
                await bus.publish(f"child.{i % 3}.progress", {"i": i})
            await bus.flush()
            await asyncio.to_thread(sys.stdin.readline)  # keep serving until the test is done

    asyncio.run(main())
    """
)


class TestTwoProcesses:
    """A subprocess publishing through RedisBus reaches a subscriber in the test process."""

    def test_subprocess_publishes_and_serves(self, redis_namespace: str) -> None:
        """Every message a child process publishes arrives in order; a request to the child is answered."""

        async def main() -> None:
            async with _bus(redis_namespace) as bus:
                sub = bus.subscribe("child.*.progress", maxsize=10_000)
                child = subprocess.Popen(
                    [sys.executable, "-c", _PUBLISHER, REDIS_URL, redis_namespace, "500"],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
                try:
                    assert child.stdout is not None and child.stdin is not None
                    line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), 30)
                    assert line.strip() == "ready"
                    msgs = [await asyncio.wait_for(sub.get(), 30) for _ in range(500)]
                    assert [m.data["i"] for m in msgs] == list(range(500))
                    assert {m.topic for m in msgs} == {"child.0.progress", "child.1.progress", "child.2.progress"}
                    reply = await bus.request("child.pid", "hi", timeout=10)
                    assert reply == {"pid": child.pid, "got": "hi"}
                finally:
                    if child.stdin is not None:
                        child.stdin.close()
                    started = time.monotonic()
                    while child.poll() is None and time.monotonic() - started < 10:
                        await asyncio.sleep(0.05)
                    if child.poll() is None:
                        child.kill()
                    child.wait()
                    if child.stdout is not None:
                        child.stdout.close()
                assert child.returncode == 0

        asyncio.run(main())
