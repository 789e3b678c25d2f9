"""CallBatcher: concurrent submits become one call per batch, flushed by size or age, each caller
answered by position; failures, cancellation and closing (on virtual time, exact)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from agentfleet.errors import BusClosed
from agentfleet.messaging import CallBatcher, CallBatcherStatistics
from agentfleet.testing import run_virtual


class StepClock:
    """A non-loop clock (exercises the timer task path): reads the loop, sleeps on it."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Recorder:
    """A batch call that records (time, items) and answers each item ``x`` with ``x * 10``."""

    def __init__(self, latency: float = 0.0, fail: BaseException | None = None) -> None:
        self.calls: list[tuple[float, list[int]]] = []
        self.latency = latency
        self.fail = fail
        self.short = False

    async def __call__(self, items: list[int]) -> list[int]:
        self.calls.append((asyncio.get_running_loop().time(), list(items)))
        if self.latency:
            await asyncio.sleep(self.latency)
        if self.fail is not None:
            raise self.fail
        results = [x * 10 for x in items]
        return results[:-1] if self.short else results


async def _at(delay: float, batcher: CallBatcher[int, int], item: int) -> tuple[float, int]:
    """Submit ``item`` after ``delay``; (the time its result arrived, the result)."""
    await asyncio.sleep(delay)
    result = await batcher.submit(item)
    return asyncio.get_running_loop().time(), result


class TestFlushing:
    """A batch is sent when full or ``max_wait`` after its first item."""

    def test_by_size_then_by_time(self) -> None:
        """10 submits with max_size 4: two full batches at once, the last 2 after max_wait."""

        async def main() -> None:
            call = Recorder()
            batcher: CallBatcher[int, int] = CallBatcher(call, max_size=4, max_wait=1.0)
            results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
            assert results == [i * 10 for i in range(10)]
            assert call.calls == [(0.0, [0, 1, 2, 3]), (0.0, [4, 5, 6, 7]), (1.0, [8, 9])]
            assert batcher.statistics() == CallBatcherStatistics(
                batches=3, items=10, by_size=2, by_time=1, by_close=0, errors=0, cancelled=0,
                pending=0, in_flight=0)

        run_virtual(main())

    @pytest.mark.parametrize("clock", [None, StepClock()], ids=["loop-clock", "other-clock"])
    def test_by_time_from_first_item(self, clock: Any) -> None:
        """A partial batch is sent exactly max_wait after its first item; later items ride along."""

        async def main() -> None:
            call = Recorder(latency=0.25)
            batcher: CallBatcher[int, int] = CallBatcher(call, max_size=10, max_wait=0.5, clock=clock)
            answers = await asyncio.gather(_at(0.0, batcher, 1), _at(0.2, batcher, 2), _at(0.6, batcher, 3))
            assert call.calls == [(0.5, [1, 2]), (1.1, [3])]
            assert answers == [(0.75, 10), (0.75, 20), (1.35, 30)]
            assert batcher.statistics().by_time == 2

        run_virtual(main())

    def test_zero_wait_batches_one_tick(self) -> None:
        """With max_wait 0 the submits of one loop iteration go together."""

        async def main() -> None:
            call = Recorder()
            batcher: CallBatcher[int, int] = CallBatcher(call, max_size=100, max_wait=0)
            assert await asyncio.gather(*(batcher.submit(i) for i in range(5))) == [0, 10, 20, 30, 40]
            assert [items for _, items in call.calls] == [[0, 1, 2, 3, 4]]

        run_virtual(main())

    def test_batches_overlap(self) -> None:
        """A slow call does not hold back the next batch: both are in flight."""

        async def main() -> None:
            call = Recorder(latency=1.0)
            batcher: CallBatcher[int, int] = CallBatcher(call, max_size=2, max_wait=5.0)
            tasks = [asyncio.ensure_future(batcher.submit(i)) for i in range(4)]
            await asyncio.sleep(0.5)
            assert batcher.statistics().in_flight == 2
            assert await asyncio.gather(*tasks) == [0, 10, 20, 30]
            assert asyncio.get_running_loop().time() == 1.0

        run_virtual(main())


class TestFailures:
    """A failed call fails its own batch only."""

    def test_exception_fails_every_caller_of_the_batch(self) -> None:
        """Every submitter of the failing batch gets the call's exception; the next batch is fine."""

        async def main() -> None:
            boom = RuntimeError("backend down")
            call = Recorder(fail=boom)
            batcher: CallBatcher[int, int] = CallBatcher(call, max_size=3, max_wait=1.0)
            results = await asyncio.gather(*(batcher.submit(i) for i in range(3)), return_exceptions=True)
            assert results == [boom, boom, boom]
            call.fail = None
            assert await batcher.submit(7) == 70
            stats = batcher.statistics()
            assert (stats.batches, stats.errors) == (2, 1)

        run_virtual(main())

    def test_wrong_result_count_is_an_error_for_all(self) -> None:
        """A result list of the wrong length answers nobody by guess: all get ValueError."""

        async def main() -> None:
            call = Recorder()
            call.short = True
            batcher: CallBatcher[int, int] = CallBatcher(call, max_size=2, max_wait=1.0)
            results = await asyncio.gather(batcher.submit(1), batcher.submit(2), return_exceptions=True)
            assert all(isinstance(r, ValueError) for r in results)
            assert "returned 1 results for 2 items" in str(results[0])
            assert batcher.statistics().errors == 1

        run_virtual(main())


class TestCancellation:
    """Cancelled callers leave the batch if it was not sent yet."""

    def test_cancelled_before_send_is_dropped(self) -> None:
        """A caller cancelled while its batch waits is not sent; the others are, on time."""

        async def main() -> None:
            call = Recorder()
            batcher: CallBatcher[int, int] = CallBatcher(call, max_size=3, max_wait=1.0)
            first = asyncio.ensure_future(batcher.submit(1))
            second = asyncio.ensure_future(batcher.submit(2))
            await asyncio.sleep(0.5)
            first.cancel()
            third = asyncio.ensure_future(batcher.submit(3))
            assert await asyncio.gather(second, third) == [20, 30]
            assert call.calls == [(1.0, [2, 3])]  # not full (a place was freed): sent by age
            assert first.cancelled()
            assert batcher.statistics().cancelled == 1

        run_virtual(main())

    def test_all_cancelled_sends_nothing(self) -> None:
        """When every pending caller is cancelled, no call is made and the timer is dropped."""

        async def main() -> None:
            call = Recorder()
            batcher: CallBatcher[int, int] = CallBatcher(call, max_size=3, max_wait=1.0)
            tasks = [asyncio.ensure_future(batcher.submit(i)) for i in range(2)]
            await asyncio.sleep(0.1)
            for task in tasks:
                task.cancel()
            await asyncio.sleep(2.0)
            assert call.calls == []
            stats = batcher.statistics()
            assert (stats.batches, stats.cancelled, stats.pending) == (0, 2, 0)

        run_virtual(main())

    def test_cancelled_future_of_submit_nowait(self) -> None:
        """A future from submit_nowait cancelled before the send is left out of the batch."""

        async def main() -> None:
            call = Recorder()
            batcher: CallBatcher[int, int] = CallBatcher(call, max_size=3, max_wait=1.0)
            dropped = batcher.submit_nowait(1)
            kept = batcher.submit_nowait(2)
            dropped.cancel()
            assert await kept == 20
            assert call.calls == [(1.0, [2])]
            assert batcher.statistics().cancelled == 1

        run_virtual(main())

    def test_cancelled_after_send_does_not_stop_the_call(self) -> None:
        """Once sent, a cancelled caller just gets no answer; the others get theirs."""

        async def main() -> None:
            call = Recorder(latency=1.0)
            batcher: CallBatcher[int, int] = CallBatcher(call, max_size=2, max_wait=5.0)
            first = asyncio.ensure_future(batcher.submit(1))
            second = asyncio.ensure_future(batcher.submit(2))
            await asyncio.sleep(0.5)
            first.cancel()
            assert await second == 20
            assert first.cancelled()
            assert call.calls == [(0.0, [1, 2])]
            assert batcher.statistics().cancelled == 0

        run_virtual(main())


class TestClosing:
    """aclose() sends what is pending and waits for the calls in flight."""

    def test_aclose_flushes_and_waits(self) -> None:
        """A partial batch is sent at close, not max_wait later; aclose returns when it is answered."""

        async def main() -> None:
            call = Recorder(latency=0.5)
            batcher: CallBatcher[int, int] = CallBatcher(call, max_size=10, max_wait=60.0)
            tasks = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
            await asyncio.sleep(0.1)
            await batcher.aclose()
            assert asyncio.get_running_loop().time() == pytest.approx(0.6)
            assert [t.result() for t in tasks] == [0, 10, 20]
            assert batcher.statistics().by_close == 1
            with pytest.raises(BusClosed):
                await batcher.submit(4)
            await batcher.aclose()  # idempotent

        run_virtual(main())

    def test_aclose_with_other_clock_stops_the_timer(self) -> None:
        """With a non-loop clock the timer task is cancelled and awaited at close."""

        async def main() -> None:
            call = Recorder()
            batcher: CallBatcher[int, int] = CallBatcher(call, max_size=10, max_wait=60.0, clock=StepClock())
            task = asyncio.ensure_future(batcher.submit(1))
            await asyncio.sleep(0)
            await batcher.aclose()
            assert await task == 10
            assert call.calls == [(0.0, [1])]

        run_virtual(main())

    @pytest.mark.parametrize(("size", "wait"), [(0, 1.0), (True, 1.0), (2, -1.0), (2, float("inf"))])
    def test_bad_arguments(self, size: Any, wait: Any) -> None:
        """max_size must be a positive int and max_wait a finite number >= 0."""
        with pytest.raises(ValueError):
            CallBatcher(Recorder(), max_size=size, max_wait=wait)
