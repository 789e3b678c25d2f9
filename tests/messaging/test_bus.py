"""Behaviour every bus shares: the same tests run on InProcessBus (virtual time) and RedisBus."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentfleet.errors import BusClosed, BusError, BusTimeout
from agentfleet.messaging import Batcher, Bus, BusStatistics, Message, Subscription

from .conftest import Kit, flushed, until


async def _take(sub: Subscription, n: int, timeout: float = 5.0) -> list[Message]:
    async def take() -> list[Message]:
        return [await sub.get() for _ in range(n)]

    return await asyncio.wait_for(take(), timeout)


class TestPublishSubscribe:
    """Messages reach every matching subscription, in order, with their metadata."""

    def test_fan_out_to_matching_subscriptions(self, kit: Kit) -> None:
        """Exact, ``*`` and ``>`` subscriptions all receive a message; the count says how many."""

        async def main() -> None:
            async with kit.make() as bus:
                subs = [bus.subscribe("run.1.done"), bus.subscribe("run.*.done"), bus.subscribe("run.>")]
                other = bus.subscribe("run.*")
                assert await bus.publish("run.1.done", {"task": "a"}) == 3
                for sub in subs:
                    (msg,) = await _take(sub, 1)
                    assert (msg.topic, msg.data) == ("run.1.done", {"task": "a"})
                await bus.publish("run.2", "marker")
                (msg,) = await _take(other, 1)
                assert msg.data == "marker"  # run.1.done never reached ``run.*``

        kit.run(main())

    def test_order_ids_and_metadata(self, kit: Kit) -> None:
        """Messages arrive in publish order with increasing ids, the publisher's time and headers."""

        async def main() -> None:
            async with kit.make() as bus:
                sub = bus.subscribe("events")
                for i in range(20):
                    await bus.publish("events", i, headers={"n": str(i)} if i == 3 else None)
                msgs = await _take(sub, 20)
                assert [m.data for m in msgs] == list(range(20))
                assert msgs[3].headers == {"n": "3"}
                assert dict(msgs[0].headers) == {}
                assert all(m.reply_to is None and m.correlation is None for m in msgs)
                times = [m.time for m in msgs]
                assert times == sorted(times)
                assert len({m.id for m in msgs}) == 20

        kit.run(main())

    def test_get_nowait_returns_none_when_empty(self, kit: Kit) -> None:
        """``get_nowait()`` returns None on an empty queue, then the message once it arrives."""

        async def main() -> None:
            async with kit.make() as bus:
                sub = bus.subscribe("a")
                assert sub.get_nowait() is None
                await bus.publish("a", 1)
                await until(lambda: sub.statistics().queued == 1)
                msg = sub.get_nowait()
                assert msg is not None and msg.data == 1

        kit.run(main())

    def test_subscribe_after_publish_sees_only_later_messages(self, kit: Kit) -> None:
        """A subscription made after a topic was published to receives the later messages (cache invalidated)."""

        async def main() -> None:
            async with kit.make() as bus:
                first = bus.subscribe("t.x")
                await bus.publish("t.x", 1)
                await _take(first, 1)
                late = bus.subscribe("t.*")
                assert await bus.publish("t.x", 2) == 2
                (msg,) = await _take(late, 1)
                assert msg.data == 2

        kit.run(main())

    def test_bad_topics_and_patterns(self, kit: Kit) -> None:
        """Wildcards in a published topic, empty segments and a non-final ``>`` are rejected."""

        async def main() -> None:
            async with kit.make() as bus:
                with pytest.raises(ValueError, match="wildcard"):
                    await bus.publish("a.*", 1)
                with pytest.raises(ValueError, match="empty segment"):
                    bus.subscribe("a..b")
                with pytest.raises(ValueError, match="last segment"):
                    bus.subscribe("a.>.b")

        kit.run(main())


class TestOverflow:
    """Full queues follow their subscription's policy; nothing is lost silently."""

    def test_block_loses_nothing(self, kit: Kit) -> None:
        """A ``block`` subscription smaller than the burst still receives every message, in order."""

        async def main() -> None:
            async with kit.make() as bus:
                sub = bus.subscribe("work", maxsize=2, overflow="block")

                async def produce() -> None:
                    for i in range(10):
                        await bus.publish("work", i)

                producer = asyncio.create_task(produce())
                msgs = await _take(sub, 10)
                await producer
                assert [m.data for m in msgs] == list(range(10))
                stats = sub.statistics()
                assert (stats.delivered, stats.dropped, stats.max_queued) == (10, 0, 2)

        kit.run(main())

    def test_drop_oldest_keeps_newest(self, kit: Kit) -> None:
        """``drop_oldest`` keeps the newest ``maxsize`` messages and counts the others as dropped."""

        async def main() -> None:
            async with kit.make() as bus:
                sub = bus.subscribe("progress", maxsize=3, overflow="drop_oldest")
                for i in range(10):
                    bus.publish_nowait("progress", i)
                await until(lambda: sub.statistics().dropped + sub.statistics().queued == 10, what="delivery")
                assert [m.data for m in await _take(sub, 3)] == [7, 8, 9]
                stats = sub.statistics()
                assert (stats.dropped, stats.delivered, stats.queued, stats.overflow) == (7, 3, 0, "drop_oldest")
                assert bus.statistics().dropped == 7

        kit.run(main())


class TestRequestReply:
    """``request`` gets the responder's answer, its error, or a timeout; never a silent hang."""

    def test_reply(self, kit: Kit) -> None:
        """A sync and an async handler each answer; the requester gets the reply's data."""

        async def main() -> None:
            async with kit.make() as bus:
                bus.serve("math.double", lambda x: x * 2)

                async def shout(text: str) -> str:
                    await asyncio.sleep(0)
                    return text.upper()

                responder = bus.serve("text.shout", shout)
                assert await bus.request("math.double", 21, timeout=5) == 42
                assert await bus.request("text.shout", "hi", timeout=5) == "HI"
                assert responder.statistics().handled == 1

        kit.run(main())

    def test_concurrent_requests(self, kit: Kit) -> None:
        """Many requests in flight at once each get their own reply."""

        async def main() -> None:
            async with kit.make() as bus:
                bus.serve("sq", lambda x: x * x)
                results = await asyncio.gather(*(bus.request("sq", i, timeout=5) for i in range(50)))
                assert results == [i * i for i in range(50)]

        kit.run(main())

    def test_handler_error_is_reraised(self, kit: Kit) -> None:
        """A handler's exception reaches the requester as BusError with its message, not as a timeout."""

        async def main() -> None:
            async with kit.make() as bus:

                def fail(data: Any) -> None:
                    raise ValueError(f"cannot handle {data}")

                responder = bus.serve("svc.fail", fail)
                with pytest.raises(BusError, match="ValueError: cannot handle 7") as info:
                    await bus.request("svc.fail", 7, timeout=5)
                assert not isinstance(info.value, BusTimeout)
                assert info.value.topic == "svc.fail"
                assert responder.statistics().failed == 1

        kit.run(main())

    def test_timeout(self, kit: Kit) -> None:
        """No reply within the timeout raises BusTimeout naming the topic and the timeout."""

        async def main() -> None:
            async with kit.make() as bus:

                async def slow(data: Any) -> Any:
                    await asyncio.sleep(10)
                    return data

                bus.serve("svc.slow", slow)
                with pytest.raises(BusTimeout, match=r"topic 'svc.slow': no reply within 0.2 s"):
                    await bus.request("svc.slow", 1, timeout=0.2)
                assert bus.statistics().timeouts == 1

        kit.run(main())

    def test_no_responder(self, kit: Kit) -> None:
        """A request to a topic nobody serves fails at once with BusError('no responder')."""

        async def main() -> None:
            async with kit.make() as bus:
                bus.subscribe("svc.none")  # a plain subscriber does not answer
                loop = asyncio.get_running_loop()
                start = loop.time()
                with pytest.raises(BusError, match=r"topic 'svc\.none': no responder"):
                    await bus.request("svc.none", 1, timeout=30)
                assert loop.time() - start < 1

        kit.run(main())

    def test_closed_responder_stops_answering(self, kit: Kit) -> None:
        """After ``Responder.close()`` the topic has no responder again."""

        async def main() -> None:
            async with kit.make() as bus:
                responder = bus.serve("svc.once", lambda x: x)
                assert await bus.request("svc.once", 1, timeout=5) == 1
                responder.close()
                responder.close()
                await flushed(bus)
                with pytest.raises(BusError, match="no responder"):
                    await bus.request("svc.once", 1, timeout=5)
                assert responder.statistics().closed

        kit.run(main())

    def test_wildcard_responder(self, kit: Kit) -> None:
        """A responder may serve a pattern; each request is answered once."""

        async def main() -> None:
            async with kit.make() as bus:
                bus.serve("agent.*.ask", lambda q: f"answer to {q}")
                assert await bus.request("agent.coder.ask", "q1", timeout=5) == "answer to q1"

        kit.run(main())


class TestClose:
    """A closed subscription or bus says so; queued messages are not thrown away."""

    def test_subscription_close_drains_then_ends(self, kit: Kit) -> None:
        """After ``close()``, queued messages are still read, then iteration ends and get() raises BusClosed."""

        async def main() -> None:
            async with kit.make() as bus:
                sub = bus.subscribe("a")
                for i in range(3):
                    await bus.publish("a", i)
                await until(lambda: sub.statistics().queued == 3)
                sub.close()
                sub.close()  # idempotent
                assert [m.data async for m in sub] == [0, 1, 2]
                with pytest.raises(BusClosed):
                    await sub.get()
                with pytest.raises(BusClosed):
                    sub.get_nowait()
                assert await bus.publish("a", 3) == 0  # no longer subscribed
                assert sub.statistics().closed

        kit.run(main())

    def test_close_wakes_a_waiting_reader(self, kit: Kit) -> None:
        """A reader parked in ``async for`` finishes when its subscription is closed."""

        async def main() -> None:
            async with kit.make() as bus:
                sub = bus.subscribe("a")

                async def read() -> list[Any]:
                    return [m.data async for m in sub]

                reader = asyncio.create_task(read())
                await asyncio.sleep(0.01)
                sub.close()
                assert await asyncio.wait_for(reader, 5) == []

        kit.run(main())

    def test_closed_bus_refuses_everything(self, kit: Kit) -> None:
        """After ``aclose()`` every operation raises BusClosed, and subscriptions end."""

        async def main() -> None:
            bus = kit.make()
            await bus.connect()
            sub = bus.subscribe("a")
            await bus.aclose()
            await bus.aclose()  # idempotent
            assert bus.closed and sub.closed
            with pytest.raises(BusClosed):
                bus.publish_nowait("a", 1)
            with pytest.raises(BusClosed):
                await bus.publish("a", 1)
            with pytest.raises(BusClosed):
                bus.subscribe("a")
            with pytest.raises(BusClosed):
                bus.serve("a", lambda x: x)
            with pytest.raises(BusClosed):
                await bus.request("a", 1, timeout=1)
            with pytest.raises(BusClosed):
                await bus.connect()
            assert [m async for m in sub] == []

        kit.run(main())

    def test_close_fails_pending_request(self, kit: Kit) -> None:
        """A request waiting for its reply fails with BusClosed when the bus closes."""

        async def main() -> None:
            bus = kit.make()
            await bus.connect()

            async def never(data: Any) -> None:
                await asyncio.Event().wait()

            bus.serve("svc.never", never)
            pending = asyncio.create_task(bus.request("svc.never", 1, timeout=60))
            await asyncio.sleep(0.05)
            await bus.aclose()
            with pytest.raises(BusClosed):
                await pending

        kit.run(main())


class TestStatistics:
    """``statistics()`` snapshots agree with what happened."""

    def test_bus_counters(self, kit: Kit) -> None:
        """Published, delivered, subscriptions, responders and requests are counted."""

        async def main() -> None:
            async with kit.make() as bus:
                assert bus.statistics() == BusStatistics()
                a = bus.subscribe("s.a")
                bus.subscribe("s.*")
                bus.serve("svc", lambda x: x)
                await bus.publish("s.a", 1)
                await bus.publish("s.b", 2)
                await _take(a, 1)
                await bus.request("svc", 0, timeout=5)
                stats = bus.statistics()
                assert (stats.published, stats.subscriptions, stats.responders, stats.requests) == (3, 2, 1, 1)
                assert stats.delivered == 2  # a's message and the request taken by the responder
                a.close()
                assert bus.statistics().subscriptions == 1
                assert bus.statistics().delivered == 2  # a closed subscription still counts

        kit.run(main())

    def test_subscription_statistics(self, kit: Kit) -> None:
        """A subscription reports its pattern, policy, size and counters."""

        async def main() -> None:
            async with kit.make() as bus:
                sub = bus.subscribe("x.>", maxsize=8, overflow="error")
                for i in range(3):
                    await bus.publish("x.y", i)
                await until(lambda: sub.statistics().queued == 3)
                await _take(sub, 1)
                stats = sub.statistics()
                assert (stats.pattern, stats.overflow, stats.maxsize) == ("x.>", "error", 8)
                assert (stats.delivered, stats.queued, stats.max_queued, stats.dropped, stats.overflows) == (
                    1, 2, 3, 0, 0,
                )

        kit.run(main())


class TestBatching:
    """The Batcher works on either bus's subscriptions."""

    def test_final_partial_batch_on_close(self, kit: Kit) -> None:
        """A background Batcher delivers every message, the final partial batch included, on aclose()."""

        async def main() -> None:
            async with kit.make() as bus:
                batches: list[list[Any]] = []
                batcher = Batcher(bus.subscribe("p.>"), size=8, max_wait=60)
                batcher.start(lambda batch: batches.append([m.data for m in batch]))
                for i in range(20):
                    await bus.publish("p.x", i)
                await until(lambda: sum(map(len, batches)) >= 16, what="two full batches")
                await until(lambda: batcher.statistics().pending == 4, what="the tail to arrive")
                await batcher.aclose()
                assert [len(b) for b in batches] == [8, 8, 4]
                assert [x for b in batches for x in b] == list(range(20))

        kit.run(main())


def test_both_buses_satisfy_the_protocol(kit: Kit) -> None:
    """Both implementations are ``Bus`` instances (runtime-checkable Protocol)."""

    async def main() -> None:
        bus = kit.make()
        assert isinstance(bus, Bus)
        await bus.aclose()

    kit.run(main())
