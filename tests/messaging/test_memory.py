"""InProcessBus specifics: the publisher sees backpressure and overflow, time is the injected clock."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest

from agentfleet.errors import BusClosed, BusError, BusOverflow, BusTimeout
from agentfleet.messaging import InProcessBus, Message
from agentfleet.messaging._bus import NO_HEADERS, make_message
from agentfleet.testing import run_virtual


class FakeClock:
    """A clock that only moves when told; ``sleep`` waits on the real loop for a tick."""

    def __init__(self) -> None:
        self.t = 100.0

    def now(self) -> float:
        return self.t

    async def sleep(self, seconds: float) -> None:
        deadline = self.t + seconds
        while self.t < deadline:
            await asyncio.sleep(0)


class TestBackpressure:
    """``block`` subscriptions hold the publisher back instead of losing messages."""

    def test_publish_nowait_on_full_block_subscription(self) -> None:
        """``publish_nowait`` raises BusOverflow naming topic and pattern, and delivers to nobody."""

        async def main() -> None:
            bus = InProcessBus()
            full = bus.subscribe("jobs.*", maxsize=1)
            other = bus.subscribe("jobs.>", maxsize=10)
            assert bus.publish_nowait("jobs.a", 1) == 2
            with pytest.raises(BusOverflow, match=r"topic 'jobs.a': subscription 'jobs.\*' is full") as info:
                bus.publish_nowait("jobs.a", 2)
            assert info.value.topic == "jobs.a"
            assert "await publish() waits for space" in str(info.value)
            assert other.statistics().queued == 1  # all-or-nothing: the other got nothing either
            assert full.statistics().overflows == 1
            assert bus.statistics().overflows == 1
            assert bus.statistics().published == 1

        run_virtual(main())

    def test_await_publish_waits_for_space(self) -> None:
        """``await publish`` parks while the queue is full and completes when the reader takes one."""

        async def main() -> None:
            bus = InProcessBus()
            sub = bus.subscribe("q", maxsize=2)
            await bus.publish("q", 0)
            await bus.publish("q", 1)
            third = asyncio.create_task(bus.publish("q", 2))
            await asyncio.sleep(1)
            assert not third.done()
            assert (await sub.get()).data == 0
            assert await third == 1
            assert [(await sub.get()).data for _ in range(2)] == [1, 2]

        run_virtual(main())

    def test_cancelled_waiting_publisher_passes_its_turn(self) -> None:
        """A publisher cancelled while waiting for space leaves no trace; the next one gets the slot."""

        async def main() -> None:
            bus = InProcessBus()
            sub = bus.subscribe("q", maxsize=1)
            bus.publish_nowait("q", 0)
            first = asyncio.create_task(bus.publish("q", "cancelled"))
            second = asyncio.create_task(bus.publish("q", "kept"))
            await asyncio.sleep(0)
            first.cancel()
            await sub.get()
            assert await asyncio.wait_for(second, 1) == 1
            assert (await sub.get()).data == "kept"
            with pytest.raises(asyncio.CancelledError):
                await first

        run_virtual(main())

    def test_closing_a_full_subscription_releases_publishers(self) -> None:
        """A publisher waiting on a subscription that gets closed goes on (the message reaches the others)."""

        async def main() -> None:
            bus = InProcessBus()
            sub = bus.subscribe("q", maxsize=1)
            bus.publish_nowait("q", 0)
            waiting = asyncio.create_task(bus.publish("q", 1))
            await asyncio.sleep(0)
            sub.close()
            assert await asyncio.wait_for(waiting, 1) == 0

        run_virtual(main())


class TestErrorPolicy:
    """``error`` subscriptions make the publisher fail loudly."""

    def test_error_policy_raises_to_publisher(self) -> None:
        """A full ``error`` subscription raises BusOverflow naming topic and pattern; it is counted."""

        async def main() -> None:
            bus = InProcessBus()
            sub = bus.subscribe("alerts.>", maxsize=2, overflow="error")
            bus.publish_nowait("alerts.cpu", 1)
            await bus.publish("alerts.cpu", 2)
            with pytest.raises(BusOverflow, match=r"topic 'alerts.cpu': subscription 'alerts.>' is full \(2 queued"):
                bus.publish_nowait("alerts.cpu", 3)
            with pytest.raises(BusOverflow):
                await bus.publish("alerts.cpu", 4)  # publish does not wait for ``error`` subscriptions
            assert sub.statistics().overflows == 2
            assert sub.statistics().dropped == 0
            assert [(await sub.get()).data for _ in range(2)] == [1, 2]

        run_virtual(main())

    def test_invalid_policy_and_size(self) -> None:
        """An unknown overflow policy or a non-positive maxsize is a ValueError."""

        async def main() -> None:
            bus = InProcessBus()
            with pytest.raises(ValueError, match="overflow must be one of"):
                bus.subscribe("a", overflow="explode")  # type: ignore[arg-type]
            with pytest.raises(ValueError, match="maxsize"):
                bus.subscribe("a", maxsize=0)

        run_virtual(main())


class TestMessages:
    """Messages are shared frozen objects stamped with the bus's clock."""

    def test_data_is_shared_not_copied(self) -> None:
        """Every subscriber gets the very object published (in-process, nothing is serialised)."""

        async def main() -> None:
            bus = InProcessBus()
            a, b = bus.subscribe("t"), bus.subscribe("t")
            payload = {"big": list(range(10))}
            bus.publish_nowait("t", payload)
            ma, mb = a.get_nowait(), b.get_nowait()
            assert ma is mb and ma is not None and ma.data is payload

        run_virtual(main())

    def test_injected_clock_stamps_messages(self) -> None:
        """``Message.time`` is the injected clock's reading at publish; ids count up from 1."""

        async def main() -> None:
            clock = FakeClock()
            bus = InProcessBus(clock=clock)
            sub = bus.subscribe("t")
            bus.publish_nowait("t", 1)
            clock.t = 101.5
            bus.publish_nowait("t", 2)
            first, second = sub.get_nowait(), sub.get_nowait()
            assert first is not None and second is not None
            assert (first.time, second.time) == (100.0, 101.5)
            assert (first.id, second.id) == ("1", "2")

        asyncio.run(main())

    def test_default_clock_is_the_loop(self) -> None:
        """Without a clock, messages carry the running loop's time (virtual here)."""

        async def main() -> None:
            bus = InProcessBus()
            sub = bus.subscribe("t")
            await asyncio.sleep(42)
            bus.publish_nowait("t", None)
            msg = sub.get_nowait()
            assert msg is not None and msg.time == 42.0

        run_virtual(main())

    def test_positional_constructor_builds_equal_messages(self) -> None:
        """``make_message`` builds a ``Message`` equal to one built by keyword."""
        msg = make_message("t", {"x": 1}, "7", 1.5, "_inbox.1", "9", NO_HEADERS)
        assert type(msg) is Message
        assert msg == Message(topic="t", data={"x": 1}, id="7", time=1.5, reply_to="_inbox.1", correlation="9")
        assert dataclasses.replace(msg, data=2).data == 2

    def test_headers_are_read_only(self) -> None:
        """Headers given to publish are copied into a read-only mapping."""

        async def main() -> None:
            bus = InProcessBus()
            sub = bus.subscribe("t")
            headers = {"trace": "abc"}
            bus.publish_nowait("t", None, headers=headers)
            headers["trace"] = "changed"
            msg = sub.get_nowait()
            assert msg is not None and msg.headers == {"trace": "abc"}
            with pytest.raises(TypeError):
                msg.headers["x"] = "y"  # type: ignore[index]

        run_virtual(main())


class TestReaders:
    """Several readers of one subscription share its messages; each message goes to one."""

    def test_two_readers_split_the_stream(self) -> None:
        """Two tasks reading one subscription receive every message exactly once between them."""

        async def main() -> None:
            bus = InProcessBus()
            sub = bus.subscribe("t", maxsize=4)
            seen: list[int] = []

            async def read() -> None:
                async for msg in sub:
                    seen.append(msg.data)
                    await asyncio.sleep(0.001)

            readers = [asyncio.create_task(read()) for _ in range(2)]
            for i in range(50):
                await bus.publish("t", i)
            while sub.statistics().queued:
                await asyncio.sleep(0.01)
            sub.close()
            await asyncio.gather(*readers)
            assert sorted(seen) == list(range(50))

        run_virtual(main())

    def test_cancelled_reader_passes_the_message_on(self) -> None:
        """A reader cancelled right after being woken does not swallow the message."""

        async def main() -> None:
            bus = InProcessBus()
            sub = bus.subscribe("t")
            first = asyncio.create_task(sub.get())
            second = asyncio.create_task(sub.get())
            await asyncio.sleep(0)
            bus.publish_nowait("t", "only")
            first.cancel()
            assert (await asyncio.wait_for(second, 1)).data == "only"

        run_virtual(main())


class TestRequests:
    """Request timeouts follow the bus's clock, which is virtual in tests."""

    def test_timeout_in_virtual_time(self) -> None:
        """A 30 s request timeout expires at exactly t=30 on virtual time, costing no wall time."""

        async def main() -> None:
            bus = InProcessBus()

            async def never(data: Any) -> None:
                await asyncio.sleep(3600)

            bus.serve("slow", never)
            loop = asyncio.get_running_loop()
            with pytest.raises(BusTimeout, match="no reply within 30 s"):
                await bus.request("slow", 1, timeout=30)
            assert loop.time() == 30
            await bus.aclose()

        run_virtual(main())

    def test_timeout_counts_time_waiting_for_queue_space(self) -> None:
        """A request blocked on a full responder queue also times out."""

        async def main() -> None:
            bus = InProcessBus()
            gate = asyncio.Event()

            async def stuck(data: Any) -> None:
                await gate.wait()

            bus.serve("busy", stuck, maxsize=1)
            first = asyncio.create_task(bus.request("busy", 1, timeout=100))
            second = asyncio.create_task(bus.request("busy", 2, timeout=100))
            await asyncio.sleep(0)
            with pytest.raises(BusTimeout):
                await bus.request("busy", 3, timeout=5)
            for task in (first, second):
                task.cancel()
            await asyncio.gather(first, second, return_exceptions=True)
            await bus.aclose()

        run_virtual(main())

    def test_outside_cancellation_is_not_a_timeout(self) -> None:
        """Cancelling a requester raises CancelledError, not BusTimeout, and counts no timeout."""

        async def main() -> None:
            bus = InProcessBus()

            async def never(data: Any) -> None:
                await asyncio.sleep(3600)

            bus.serve("slow", never)
            task = asyncio.create_task(bus.request("slow", 1, timeout=30))
            await asyncio.sleep(1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert bus.statistics().timeouts == 0
            await bus.aclose()

        run_virtual(main())

    def test_several_responders_first_reply_wins(self) -> None:
        """With two responders on one topic, both answer and the requester takes the first reply."""

        async def main() -> None:
            bus = InProcessBus()

            async def slow(data: Any) -> str:
                await asyncio.sleep(1)
                return "slow"

            bus.serve("svc", slow)
            bus.serve("svc", lambda data: "fast")
            assert await bus.request("svc", None, timeout=5) == "fast"
            await asyncio.sleep(2)  # the late reply is ignored
            await bus.aclose()

        run_virtual(main())

    def test_plain_messages_are_ignored_by_responders(self) -> None:
        """A published message without reply_to is counted as ignored, not answered."""

        async def main() -> None:
            bus = InProcessBus()
            responder = bus.serve("svc", lambda data: data)
            bus.publish_nowait("svc", "not a request")
            await asyncio.sleep(0.1)
            assert responder.statistics().ignored == 1
            await responder.aclose()
            with pytest.raises(BusError, match="no responder"):
                await bus.request("svc", 1, timeout=1)
            await bus.aclose()
            with pytest.raises(BusClosed):
                await bus.request("svc", 1, timeout=1)

        run_virtual(main())
