"""Batcher: lists flushed by size or by age of their first item, and nothing lost on close."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from agentfleet.errors import BusError, BusOverflow
from agentfleet.messaging import Batcher, BatcherStatistics, InProcessBus, Message
from agentfleet.testing import run_virtual


def _data(batch: list[Message]) -> list[Any]:
    return [m.data for m in batch]


class StepClock:
    """A non-loop clock (exercises the batcher's clock-agnostic wait): reads the loop, sleeps on it."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class TestFlushing:
    """A batch is flushed when full or ``max_wait`` after its first item."""

    def test_by_size(self) -> None:
        """130 queued messages with size 64 come out as 64, 64 and (after max_wait) 2."""

        async def main() -> None:
            bus = InProcessBus()
            sub = bus.subscribe("p", maxsize=200)
            for i in range(130):
                bus.publish_nowait("p", i)
            batcher = Batcher(sub, size=64, max_wait=0.5)
            loop = asyncio.get_running_loop()
            batches = [await anext(batcher) for _ in range(3)]
            assert [len(b) for b in batches] == [64, 64, 2]
            assert [x for b in batches for x in _data(b)] == list(range(130))
            assert loop.time() == 0.5  # the last one waited max_wait
            stats = batcher.statistics()
            assert (stats.batches, stats.items, stats.by_size, stats.by_time) == (3, 130, 2, 1)

        run_virtual(main())

    @pytest.mark.parametrize("clock", [None, StepClock()], ids=["loop-clock", "other-clock"])
    def test_by_max_wait_from_first_message(self, clock: Any) -> None:
        """A partial batch is flushed exactly ``max_wait`` after its first message arrived."""

        async def main() -> None:
            bus = InProcessBus()
            sub = bus.subscribe("p")
            batcher = Batcher(sub, size=10, max_wait=0.1, clock=clock)
            loop = asyncio.get_running_loop()

            async def produce() -> None:
                await asyncio.sleep(1.0)
                bus.publish_nowait("p", "a")
                await asyncio.sleep(0.05)
                bus.publish_nowait("p", "b")
                await asyncio.sleep(0.2)
                bus.publish_nowait("p", "c")

            producer = asyncio.create_task(produce())
            first = await anext(batcher)
            assert (_data(first), round(loop.time(), 9)) == (["a", "b"], 1.1)
            second = await anext(batcher)
            assert (_data(second), round(loop.time(), 9)) == (["c"], 1.35)
            await producer

        run_virtual(main())

    def test_zero_max_wait_flushes_what_is_there(self) -> None:
        """With ``max_wait=0`` a batch holds whatever is queued when it is read."""

        async def main() -> None:
            bus = InProcessBus()
            sub = bus.subscribe("p")
            for i in range(3):
                bus.publish_nowait("p", i)
            assert _data(await anext(Batcher(sub, size=10, max_wait=0))) == [0, 1, 2]

        run_virtual(main())

    def test_iteration_ends_with_the_subscription(self) -> None:
        """``async for`` over a batcher yields the partial tail, then stops when its subscription closes."""

        async def main() -> None:
            bus = InProcessBus()
            sub = bus.subscribe("p")
            for i in range(5):
                bus.publish_nowait("p", i)
            sub.close()
            assert [_data(b) async for b in Batcher(sub, size=2, max_wait=60)] == [[0, 1], [2, 3], [4]]

        run_virtual(main())

    def test_bad_arguments(self) -> None:
        """A non-positive size or negative max_wait is a ValueError."""

        async def main() -> None:
            sub = InProcessBus().subscribe("p")
            with pytest.raises(ValueError, match="size"):
                Batcher(sub, size=0)
            with pytest.raises(ValueError, match="max_wait"):
                Batcher(sub, max_wait=-1)

        run_virtual(main())


class TestBackground:
    """``start(callback)`` runs a consumer per batch; ``aclose()`` flushes the rest."""

    def test_final_partial_batch_is_delivered(self) -> None:
        """Closing a running batcher delivers the partial batch and what was still queued."""

        async def main() -> None:
            bus = InProcessBus()
            got: list[list[Any]] = []

            async def consume(batch: list[Message]) -> None:
                await asyncio.sleep(0.5)  # a slow consumer: messages pile up in the subscription
                got.append(_data(batch))

            batcher = Batcher(bus.subscribe("p", maxsize=1000), size=4, max_wait=60)
            batcher.start(consume)
            for i in range(10):
                bus.publish_nowait("p", i)
            await asyncio.sleep(0)
            await batcher.aclose()
            assert [x for b in got for x in b] == list(range(10))
            assert got[-1] == [8, 9]
            stats = batcher.statistics()
            assert (stats.by_close, stats.pending, stats.running) == (1, 0, False)

        run_virtual(main())

    def test_sync_callback(self) -> None:
        """A plain function works as the callback."""

        async def main() -> None:
            bus = InProcessBus()
            got: list[int] = []
            batcher = Batcher(bus.subscribe("p"), size=3, max_wait=1)
            batcher.start(lambda batch: got.extend(m.data for m in batch))
            for i in range(7):
                await bus.publish("p", i)
            await asyncio.sleep(2)
            assert got == list(range(7))
            await batcher.aclose()
            assert batcher.statistics() == BatcherStatistics(
                batches=3, items=7, by_size=2, by_time=1, by_close=0, pending=0, errors=0, running=False
            )

        run_virtual(main())

    def test_callback_errors_do_not_stop_the_pump(self) -> None:
        """A failing callback is counted, later batches still arrive, and aclose() reports it."""

        async def main() -> None:
            bus = InProcessBus()
            got: list[list[int]] = []

            def consume(batch: list[Message]) -> None:
                if batch[0].data == 0:
                    raise RuntimeError("disk full")
                got.append(_data(batch))

            batcher = Batcher(bus.subscribe("p"), size=2, max_wait=1)
            batcher.start(consume)
            for i in range(4):
                bus.publish_nowait("p", i)
            await asyncio.sleep(0.1)
            assert got == [[2, 3]]
            assert batcher.statistics().errors == 1
            with pytest.raises(BusError, match=r"batcher had 1 error\(s\); first: RuntimeError\('disk full'\)"):
                await batcher.aclose()

        run_virtual(main())

    def test_overflow_alert_is_counted_and_the_pump_goes_on(self) -> None:
        """A BusOverflow from the subscription (Redis ``error`` policy) is counted; later batches still flow."""

        async def main() -> None:
            bus = InProcessBus()
            sub = bus.subscribe("p", overflow="error")
            got: list[list[int]] = []
            batcher = Batcher(sub, size=2, max_wait=1)
            batcher.start(lambda batch: got.append(_data(batch)))
            sub._lose("p")  # what RedisBus's reader does when an ``error`` queue is full
            for i in range(2):
                bus.publish_nowait("p", i)
            await asyncio.sleep(0.1)
            assert got == [[0, 1]]
            with pytest.raises(BusError, match="batcher had 1 error") as info:
                await batcher.aclose()
            assert isinstance(info.value.__cause__, BusOverflow)

        run_virtual(main())

    def test_start_twice(self) -> None:
        """A batcher has one consumer; starting it again is an error."""

        async def main() -> None:
            batcher = Batcher(InProcessBus().subscribe("p"))
            batcher.start(lambda batch: None)
            with pytest.raises(RuntimeError, match="already started"):
                batcher.start(lambda batch: None)
            await batcher.aclose()

        run_virtual(main())


class TestOtherSources:
    """Any async iterable can be batched, not only a subscription."""

    def test_async_generator_by_size_and_time(self) -> None:
        """Items from an async generator are batched by size, by age, and the tail when it ends."""

        async def source() -> AsyncIterator[int]:
            for i in range(5):
                yield i
            await asyncio.sleep(1)
            yield 5
            await asyncio.sleep(0.01)
            yield 6

        async def main() -> None:
            loop = asyncio.get_running_loop()
            batches = []
            async for batch in Batcher(source(), size=3, max_wait=0.5):
                batches.append((batch, round(loop.time(), 6)))
            assert batches == [([0, 1, 2], 0), ([3, 4], 0.5), ([5, 6], 1.01)]

        run_virtual(main())

    def test_close_flushes_partial_batch_of_endless_source(self) -> None:
        """Closing a batcher over a source that never ends still delivers the items it received."""

        async def endless() -> AsyncIterator[int]:
            i = 0
            while True:
                yield i
                i += 1
                await asyncio.sleep(1 if i < 3 else 3600)

        async def main() -> None:
            got: list[list[int]] = []
            batcher = Batcher(endless(), size=100, max_wait=600)
            batcher.start(got.append)
            await asyncio.sleep(10)
            await batcher.aclose()
            assert got == [[0, 1, 2]]
            assert batcher.statistics().by_close == 1

        run_virtual(main())
