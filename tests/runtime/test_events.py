"""The progress outbox: batches by size and by age, never loses the last batch, waits when full."""

from __future__ import annotations

import asyncio

from agentfleet.messaging import InProcessBus
from agentfleet.runtime._events import ProgressOutbox
from agentfleet.testing import run_virtual


class TestProgressOutbox:
    def test_a_full_batch_is_published_at_once(self) -> None:
        """``size`` events make one message immediately."""

        async def main() -> list[int]:
            bus = InProcessBus()
            sub = bus.subscribe("p")
            box = ProgressOutbox(bus, "p", size=3, max_wait=10)
            for i in range(7):
                box.add("done", f"t{i}", "a", float(i))
            sizes = []
            while (message := sub.get_nowait()) is not None:
                sizes.append(len(message.data))
            box.flush()
            return sizes

        assert run_virtual(main()) == [3, 3]

    def test_a_partial_batch_goes_out_after_max_wait(self) -> None:
        """Fewer than ``size`` events are published ``max_wait`` seconds after the first one."""

        async def main() -> tuple[float, list[tuple[str, str, str, float]]]:
            loop = asyncio.get_running_loop()
            bus = InProcessBus()
            sub = bus.subscribe("p")
            box = ProgressOutbox(bus, "p", size=100, max_wait=0.05)
            start = loop.time()
            box.add("started", "t0", "a", 0.0)
            box.add("done", "t0", "a", 1.0)
            message = await sub.get()
            return loop.time() - start, message.data

        waited, data = run_virtual(main())
        assert abs(waited - 0.05) < 1e-9
        assert data == [("started", "t0", "a", 0.0), ("done", "t0", "a", 1.0)]

    def test_aclose_delivers_the_rest_and_waits_for_room(self) -> None:
        """A batch that meets a full 'block' subscriber waits for room; aclose returns once it is in."""

        async def main() -> list[int]:
            bus = InProcessBus()
            sub = bus.subscribe("p", maxsize=1, overflow="block")
            box = ProgressOutbox(bus, "p", size=2, max_wait=10)
            for i in range(4):  # two batches: the second finds the queue full
                box.add("done", f"t{i}", "a", 0.0)
            box.add("done", "last", "a", 0.0)
            first = await sub.get()

            async def drain() -> list[int]:
                got = [len(first.data)]
                while len(got) < 3:
                    got.append(len((await sub.get()).data))
                return got

            reader = asyncio.ensure_future(drain())
            await box.aclose()
            return await reader

        assert run_virtual(main()) == [2, 2, 1]
