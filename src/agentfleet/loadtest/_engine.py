"""The load generator's two loops: open (arrivals on a schedule) and closed (N virtual users).

# Design
# Open loop. Each request has an intended start, t0 + t, fixed by the schedule before the run.
# The loop sleeps until then and sends; if it is behind (its own CPU, a stalled event loop) it
# still sends, at once, and counts the lateness; its latency is measured from the *intended*
# start, so a target that stalls for a second costs every request scheduled during the stall
# up to a second, as it would cost real users arriving then. A closed loop instead waits for
# each answer before sending the next, so during a stall it simply stops sending: the stall
# shows up in a handful of samples (one per user) while the thousands of requests that real
# users would have made meanwhile are never made, and the percentiles look healthy. That is
# coordinated omission (Gil Tene, "How NOT to measure latency"); the closed loop is kept as
# the comparison, with latency measured from the actual send, which is what it can measure.
#
# Open-loop back-pressure is explicit: when ``max_outstanding`` requests are already in flight
# the next arrival is dropped and counted (and reported to ``on_result`` with
# ``error_kind="dropped"``), never silently delayed, which would turn the open loop back into
# a closed one.
#
# A generator that cannot keep up measures itself, not the target. Two signals say so: the
# lateness of sends (open loop: actual start minus intended start, taken inside the request's
# task, so a backed-up event loop counts; closed loop: the overshoot of a 5 ms probe timer)
# and the process's CPU time over the real wall time. ``LoopStats.saturated`` and
# ``.saturation`` carry the verdict for reports ("these figures are the generator's").
# Timer wake-ups on Linux are rounded up to the millisecond, so a send up to ~1 ms late is
# normal; ``late_after`` (5 ms by default) is where "late" starts.
#
# Time is a parameter: ``clock`` and ``sleep`` default to the running loop's, and tests pass a
# virtual-time loop's (``agentfleet.testing.run_virtual``). CPU and wall time for the
# saturation check are always real (``time.process_time`` / ``time.perf_counter``).
"""

from __future__ import annotations

import asyncio
import time
from array import array
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import partial

__all__ = [
    "CPU_SATURATED",
    "DROPPED",
    "LATENESS_SATURATED",
    "LoopStats",
    "OnResult",
    "Result",
    "Send",
    "call_target",
    "generator_saturation",
    "run_closed_loop",
    "run_open_loop",
]

#: ``Result.error_kind`` of an open-loop arrival dropped because ``max_outstanding`` were in flight
DROPPED = "dropped"
#: the generator is saturated above this share of one core (process CPU time / wall time)
CPU_SATURATED = 0.90
#: ... or when its p99 lateness is above this many seconds
LATENESS_SATURATED = 0.010
#: CPU share is only judged over at least this much real time (shorter runs are noise)
_MIN_WALL_FOR_CPU = 0.5
#: an open loop that is behind yields to the event loop after this many back-to-back sends
_BURST = 16
#: the closed loop's lag probe period
_PROBE = 0.005


@dataclass(slots=True)
class Result:
    """One request's outcome. ``latency`` and ``ttfb`` in seconds; ``itl`` the gaps between
    streamed tokens (None when not streamed); ``bytes`` the response body's size.

    The loops re-time it: ``latency`` becomes the loop's own measure (open loop: from the
    intended start; closed loop: from the actual send) and ``ttfb`` is shifted to the same
    origin. Not frozen: one is built per request (treat it as read-only once reported).
    """

    ok: bool
    status: int | None
    error_kind: str | None
    latency: float
    ttfb: float | None
    itl: list[float] | None
    bytes: int


#: what the loops call for each request
Send = Callable[[], Awaitable[Result]]
#: called with (the request's start offset from t0: intended in the open loop, actual in the closed, its Result)
OnResult = Callable[[float, Result], None]


@dataclass(frozen=True, slots=True)
class LoopStats:
    """What one run of a loop did, and whether its figures can be trusted.

    ``scheduled`` arrivals (open) or request starts (closed); ``sent``, of which ``completed``
    (``ok`` or ``errors``; an exception from ``send`` is an error); ``dropped`` at
    ``max_outstanding``; ``late`` sends more than ``late_after`` behind schedule and the lateness
    percentiles (closed loop: the probe timer's overshoot); ``max_in_flight``; ``duration`` on
    the loop's clock; real ``wall`` seconds and process ``cpu`` seconds; ``saturated`` with
    the reason in ``saturation`` when the generator, not the target, set the pace.
    """

    mode: str
    scheduled: int
    sent: int
    completed: int
    ok: int
    errors: int
    dropped: int
    late: int
    late_after: float
    lateness_p50: float
    lateness_p99: float
    lateness_max: float
    max_in_flight: int
    duration: float
    wall: float
    cpu: float
    saturated: bool
    saturation: str | None

    @property
    def cpu_fraction(self) -> float:
        """Process CPU time over real time: 1.0 is one core busy all the time."""
        return self.cpu / self.wall if self.wall > 0 else 0.0


def generator_saturation(*, cpu: float, wall: float, lateness_p99: float, sent: int,
                         cpu_limit: float = CPU_SATURATED, lateness_limit: float = LATENESS_SATURATED) -> str | None:
    """Why the generator's own figures cannot be trusted, or None: CPU share over ``cpu_limit``
    (judged over at least half a second) or p99 lateness over ``lateness_limit``."""
    reasons = []
    if wall >= _MIN_WALL_FOR_CPU and cpu / wall > cpu_limit:
        reasons.append(f"its process used {cpu / wall:.0%} of a core (limit {cpu_limit:.0%}; an in-process "
                       "target's work counts here too)")
    if sent and lateness_p99 > lateness_limit:
        reasons.append(f"its p99 lateness was {lateness_p99 * 1000:.1f} ms (limit {lateness_limit * 1000:.0f} ms)")
    if not reasons:
        return None
    return "the load generator was saturated: " + " and ".join(reasons) + \
        "; these figures are the generator's, not the target's"


def call_target(fn: Callable[[], Awaitable[object]]) -> Send:
    """Wrap an async callable (an in-process target) as a ``Send``: ok unless it raises, then
    ``error_kind`` is the exception's class name. A ``Result`` it returns is passed through."""

    async def send() -> Result:
        try:
            value = await fn()
        except Exception as exc:  # noqa: BLE001 - the target's failure is the measurement
            return Result(False, None, type(exc).__name__, 0.0, None, None, 0)
        if isinstance(value, Result):
            return value
        size = len(value) if isinstance(value, (bytes, str)) else 0
        return Result(True, None, None, 0.0, None, None, size)

    return send


def _failed(exc: BaseException) -> Result:
    return Result(False, None, f"exception:{type(exc).__name__}", 0.0, None, None, 0)


class _Lateness:
    """How late each send was, in bounded memory: values gather in a chunk (an append is all a send
    pays) and every ``CHUNK`` of them are folded into an HDR histogram, with the count above
    ``late_after`` and the maximum kept exact. An 8-hour soak holds one chunk and one histogram."""

    CHUNK = 65_536
    __slots__ = ("_chunk", "_hist", "_late", "_max", "late_after")

    def __init__(self, late_after: float) -> None:
        from ..telemetry import LatencyHistogram

        self.late_after = late_after
        self._chunk = array("d")
        self._hist = LatencyHistogram()
        self._late = 0
        self._max = 0.0

    def append(self, value: float) -> None:
        chunk = self._chunk
        chunk.append(value)
        if len(chunk) >= self.CHUNK:
            self._fold()

    def _fold(self) -> None:
        chunk, self._chunk = self._chunk, array("d")
        if not chunk:
            return
        limit = self.late_after
        self._late += sum(1 for v in chunk if v > limit)
        self._max = max(self._max, max(chunk))
        self._hist.record_many(chunk)

    def figures(self) -> tuple[int, float, float, float, int]:
        """(count, p50, p99, max, late) over every value appended."""
        self._fold()
        hist = self._hist
        if hist.count == 0:
            return 0, 0.0, 0.0, 0.0, 0
        return hist.count, hist.percentile(50) or 0.0, hist.percentile(99) or 0.0, self._max, self._late


class _Tally:
    """Counters shared by a loop's request tasks."""

    __slots__ = ("completed", "errors", "in_flight", "lateness", "max_in_flight", "ok")

    def __init__(self, late_after: float) -> None:
        self.completed = self.ok = self.errors = self.in_flight = self.max_in_flight = 0
        self.lateness = _Lateness(late_after)

    def record(self, result: Result) -> None:
        self.completed += 1
        if result.ok:
            self.ok += 1
        else:
            self.errors += 1


def _stats(mode: str, tally: _Tally, *, scheduled: int, sent: int, dropped: int, late_after: float, duration: float,
           wall: float, cpu: float) -> LoopStats:
    _, p50, p99, worst, late = tally.lateness.figures()
    reason = generator_saturation(cpu=cpu, wall=wall, lateness_p99=p99, sent=sent)
    return LoopStats(
        mode=mode, scheduled=scheduled, sent=sent, completed=tally.completed, ok=tally.ok, errors=tally.errors,
        dropped=dropped, late=late, late_after=late_after, lateness_p50=p50,
        lateness_p99=p99, lateness_max=worst, max_in_flight=tally.max_in_flight,
        duration=duration, wall=wall, cpu=cpu, saturated=reason is not None, saturation=reason)


def _ignore(t: float, result: Result) -> None:
    pass


async def run_open_loop(
    arrivals: Iterable[float],
    send: Send,
    *,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], Awaitable[object]] | None = None,
    on_result: OnResult | None = None,
    max_outstanding: int = 10_000,
    late_after: float = 0.005,
    should_stop: Callable[[], bool] | None = None,
) -> LoopStats:
    """Send one request at each intended time t0 + t (``arrivals``: offsets in seconds from the
    start, non-decreasing; a generator is fine) and wait for the last answer.

    Behind schedule, it sends at once and counts the lateness; latency (and ttfb) are measured
    from the intended start. With ``max_outstanding`` in flight an arrival is dropped, counted,
    and reported with ``error_kind=DROPPED``. ``on_result(t, result)`` is called once per arrival
    (an exception from it is re-raised when the run ends). ``should_stop()``, asked before and
    after each wait for the next arrival, ends the schedule early (an aborting threshold); the
    requests in flight are still waited for.
    """
    if max_outstanding < 1:
        raise ValueError(f"max_outstanding must be >= 1, got {max_outstanding!r}")
    loop = asyncio.get_running_loop()
    now_fn = clock or loop.time
    wait = sleep or asyncio.sleep
    report = on_result or _ignore
    tally = _Tally(late_after)
    lateness = tally.lateness
    tasks: set[asyncio.Task[None]] = set()
    done_all: asyncio.Future[None] | None = None
    raised: list[Exception] = []  # from on_result: re-raised once the run is over

    def complete(t: float, due: float, shift: float, result: Result) -> None:
        result.latency = now_fn() - due
        if result.ttfb is not None:
            result.ttfb += shift
        tally.record(result)
        try:
            report(t, result)
        except Exception as exc:  # noqa: BLE001 - kept and re-raised when the run ends
            raised.append(exc)
        tally.in_flight -= 1
        if tally.in_flight == 0 and done_all is not None and not done_all.done():
            done_all.set_result(None)

    def settled(t: float, due: float, shift: float, future: asyncio.Future[Result]) -> None:
        if future.cancelled():
            result = Result(False, None, "cancelled", 0.0, None, None, 0)
        elif (exc := future.exception()) is not None:
            result = _failed(exc)
        else:
            result = future.result()
        complete(t, due, shift, result)

    async def one(t: float, due: float, pending: Awaitable[Result]) -> None:
        start = now_fn()  # the request really starts when its task first runs
        shift = start - due
        lateness.append(shift if shift > 0.0 else 0.0)
        try:
            result = await pending
        except Exception as exc:  # noqa: BLE001 - a failing send is a failed request
            result = _failed(exc)
        except asyncio.CancelledError:
            complete(t, due, shift, Result(False, None, "cancelled", 0.0, None, None, 0))
            raise
        complete(t, due, shift, result)

    wall0, cpu0 = time.perf_counter(), time.process_time()
    t0 = now_fn()
    scheduled = sent = dropped = burst = 0
    for t in arrivals:
        if should_stop is not None and should_stop():
            break
        due = t0 + t
        now = now_fn()
        if due > now:
            await wait(due - now)
            if should_stop is not None and should_stop():
                break
            now = now_fn()
            burst = 0
        else:
            burst += 1
            if burst >= _BURST:  # behind: let the requests already started make progress
                burst = 0
                await wait(0)
                now = now_fn()
        scheduled += 1
        if tally.in_flight >= max_outstanding:
            dropped += 1
            try:
                report(t, Result(False, None, DROPPED, 0.0, None, None, 0))
            except Exception as exc:  # noqa: BLE001 - kept and re-raised when the run ends
                raised.append(exc)
            continue
        sent += 1
        tally.in_flight += 1
        if tally.in_flight > tally.max_in_flight:
            tally.max_in_flight = tally.in_flight
        try:
            pending = send()
        except Exception as exc:  # noqa: BLE001 - a failing send is a failed request
            lateness.append(max(0.0, now - due))
            complete(t, due, now - due, _failed(exc))
            continue
        if asyncio.isfuture(pending):
            # a future (our HTTP client's fast path): the request was written just now, no task needed
            shift = now - due
            lateness.append(shift if shift > 0.0 else 0.0)
            pending.add_done_callback(partial(settled, t, due, shift))
        else:
            task = loop.create_task(one(t, due, pending))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    if tally.in_flight:
        done_all = loop.create_future()
        try:
            await done_all
        except asyncio.CancelledError:
            for task in list(tasks):
                task.cancel()
            raise
    if raised:
        raise raised[0]
    duration = now_fn() - t0
    return _stats("open", tally, scheduled=scheduled, sent=sent, dropped=dropped, late_after=late_after,
                  duration=duration, wall=time.perf_counter() - wall0, cpu=time.process_time() - cpu0)


async def run_closed_loop(
    users: int,
    duration: float,
    send: Send,
    *,
    clock: Callable[[], float] | None = None,
    sleep: Callable[[float], Awaitable[object]] | None = None,
    think_time: float = 0.0,
    on_result: OnResult | None = None,
    late_after: float = 0.005,
    should_stop: Callable[[], bool] | None = None,
) -> LoopStats:
    """``users`` virtual users, each sending, waiting for the answer, thinking ``think_time``
    seconds and sending again, until ``duration`` seconds have passed (requests in flight then
    are waited for). Latency is from the actual send: a closed loop cannot know when a request
    would have been sent had the previous one not been slow (the module comment says why this
    hides stalls). Lateness is a probe timer's overshoot, the loop's own lag. ``should_stop()``,
    asked before each send, ends the run early."""
    if users < 1:
        raise ValueError(f"users must be >= 1, got {users!r}")
    loop = asyncio.get_running_loop()
    now_fn = clock or loop.time
    wait = sleep or asyncio.sleep
    report = on_result or _ignore
    tally = _Tally(late_after)
    started = 0
    t0 = now_fn()
    end = t0 + duration

    async def user() -> None:
        nonlocal started
        while True:
            start = now_fn()
            if start >= end or (should_stop is not None and should_stop()):
                return
            started += 1
            tally.in_flight += 1
            if tally.in_flight > tally.max_in_flight:
                tally.max_in_flight = tally.in_flight
            try:
                result = await send()
            except Exception as exc:  # noqa: BLE001 - a failing send is a failed request
                result = _failed(exc)
            finally:
                tally.in_flight -= 1
            result.latency = now_fn() - start
            tally.record(result)
            report(start - t0, result)
            if think_time > 0:
                await wait(think_time)

    async def probe() -> None:
        lateness = tally.lateness
        while True:
            before = now_fn()
            if before >= end:
                return
            await wait(_PROBE)
            over = now_fn() - before - _PROBE
            lateness.append(over if over > 0.0 else 0.0)

    wall0, cpu0 = time.perf_counter(), time.process_time()
    probe_task = loop.create_task(probe())
    try:
        await asyncio.gather(*(user() for _ in range(users)))
    finally:
        probe_task.cancel()
        await asyncio.gather(probe_task, return_exceptions=True)
    elapsed = now_fn() - t0
    return _stats("closed", tally, scheduled=started, sent=started, dropped=0, late_after=late_after,
                  duration=elapsed, wall=time.perf_counter() - wall0, cpu=time.process_time() - cpu0)
