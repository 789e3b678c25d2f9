"""Single flight: concurrent identical calls share one underlying call."""

from __future__ import annotations

import asyncio

import pytest

from agentfleet.cache import Coalescer, CoalescerStatistics
from agentfleet.testing import run_virtual


class TestCoalescer:
    def test_hundred_concurrent_callers_make_one_call(self) -> None:
        """100 concurrent run()s for one key run the factory exactly once and all get its result."""
        calls = 0

        async def factory() -> dict[str, str]:
            nonlocal calls
            calls += 1
            await asyncio.sleep(1.0)
            return {"text": "answer"}

        async def main() -> None:
            coalescer = Coalescer()
            loop = asyncio.get_running_loop()
            results = await asyncio.gather(*(coalescer.run("k", factory) for _ in range(100)))
            assert loop.time() == 1.0
            assert calls == 1
            assert all(r is results[0] for r in results)
            assert coalescer.statistics() == CoalescerStatistics(calls=100, runs=1, joined=99, in_flight=0)

        run_virtual(main())

    def test_every_caller_gets_the_exception(self) -> None:
        """When the shared call fails, each of the callers gets its exception."""
        calls = 0

        async def factory() -> str:
            nonlocal calls
            calls += 1
            await asyncio.sleep(1.0)
            raise RuntimeError("provider down")

        async def main() -> None:
            coalescer = Coalescer()
            results = await asyncio.gather(*(coalescer.run("k", factory) for _ in range(100)),
                                           return_exceptions=True)
            assert calls == 1
            assert all(isinstance(r, RuntimeError) and str(r) == "provider down" for r in results)

        run_virtual(main())

    def test_different_keys_run_separately(self) -> None:
        """Calls for different keys do not share."""
        async def main() -> None:
            coalescer = Coalescer()

            async def value(v: int) -> int:
                await asyncio.sleep(1.0)
                return v

            results = await asyncio.gather(coalescer.run("a", lambda: value(1)), coalescer.run("b", lambda: value(2)))
            assert list(results) == [1, 2]
            assert coalescer.statistics().runs == 2

        run_virtual(main())

    def test_a_later_call_runs_afresh(self) -> None:
        """Once a call finishes, the next run() for its key calls the factory again (no caching)."""
        calls = 0

        async def factory() -> int:
            nonlocal calls
            calls += 1
            return calls

        async def main() -> None:
            coalescer = Coalescer()
            assert await coalescer.run("k", factory) == 1
            assert await coalescer.run("k", factory) == 2
            assert not coalescer.in_flight("k")

        run_virtual(main())

    def test_cancelled_leader_leaves_the_call_for_the_others(self) -> None:
        """Cancelling the first caller does not cancel the shared call while others wait on it."""
        async def factory() -> str:
            await asyncio.sleep(1.0)
            return "done"

        async def main() -> None:
            coalescer = Coalescer()
            leader = asyncio.create_task(coalescer.run("k", factory))
            await asyncio.sleep(0)
            follower = asyncio.create_task(coalescer.run("k", factory))
            await asyncio.sleep(0.5)
            leader.cancel()
            assert await follower == "done"
            with pytest.raises(asyncio.CancelledError):
                await leader

        run_virtual(main())

    def test_call_is_cancelled_when_every_caller_leaves(self) -> None:
        """When the last waiting caller is cancelled, the shared call is cancelled too."""
        finished = False

        async def factory() -> str:
            nonlocal finished
            await asyncio.sleep(1.0)
            finished = True
            return "done"

        async def main() -> None:
            coalescer = Coalescer()
            only = asyncio.create_task(coalescer.run("k", factory))
            await asyncio.sleep(0.5)
            only.cancel()
            with pytest.raises(asyncio.CancelledError):
                await only
            await asyncio.sleep(2.0)
            assert not finished and not coalescer.in_flight("k")

        run_virtual(main())
