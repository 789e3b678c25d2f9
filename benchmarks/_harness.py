"""Timing: warm up once, then repeat with a collected heap, and keep every sample.

# Design
# A *case* is one engine running one workload. ``prepare()`` builds it (a spec, a
# compiled graph, remote functions) and is timed apart as "setup"; the timed part is
# one call of ``case.run``, from just before it starts to just after it returns, with
# ``time.perf_counter``. The garbage collector is run (not disabled) before each run, so
# every run starts from the same heap and still pays for the garbage it makes itself.
# Async cases run on one fresh event loop per case (warm-up and repeats share it);
# sync ones (Ray) are called directly. Slow peers are bounded by a per-case time budget:
# after the warm-up, runs stop early once the next one would exceed it (never fewer than
# two, or one when the warm-up alone took over a third of the budget), and the number of
# runs actually made is recorded and shown.
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import statistics
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

__all__ = ["Case", "Sample", "measure", "skipped"]


@dataclass
class Case:
    """One engine ready to run one workload.

    ``run`` is a coroutine function or a plain function taking no arguments; ``check``
    receives what it returned and raises if the engine did not do the work it was given.
    ``info`` is stored with the sample (e.g. which provider path was used).
    """

    run: Callable[[], Any]
    check: Callable[[Any], None] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    close: Callable[[], None] | None = None


@dataclass
class Sample:
    """What was measured for one engine on one workload (times in seconds)."""

    engine: str
    times: list[float] = field(default_factory=list)
    gc_times: list[float] = field(default_factory=list)  # collector pauses within each run
    warmup: float | None = None
    setup: float | None = None
    error: str | None = None
    skipped: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.times) and self.error is None and self.skipped is None

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def gc_share(self) -> float:
        """The share of the timed runs' wall time spent in cyclic GC pauses."""
        total = sum(self.times)
        return sum(self.gc_times) / total if total and self.gc_times else 0.0

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "engine": self.engine,
            "times_s": self.times,
            "runs": len(self.times),
            "gc_pause_s": self.gc_times,
            "warmup_s": self.warmup,
            "setup_s": self.setup,
        }
        if self.times:
            out["median_s"] = self.median
            out["min_s"] = self.min
            out["gc_share"] = self.gc_share
        if self.error:
            out["error"] = self.error
        if self.skipped:
            out["skipped"] = self.skipped
        if self.info:
            out["info"] = self.info
        return out


def skipped(engine: str, reason: str) -> Sample:
    return Sample(engine=engine, skipped=reason)


async def _timed_async(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = await fn()
    return time.perf_counter() - t0, out


def _timed_sync(fn: Callable[[], Any]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


class _GCWatch:
    """Adds up the cyclic collector's pauses while installed (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.total = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.total += time.perf_counter() - self._start

    def __enter__(self) -> Self:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self)


def measure(engine: str, prepare: Callable[[], Case], *, repeat: int, budget: float,
            min_runs: int = 2, warmup: bool = True) -> Sample:
    """Prepare, warm up once and time up to ``repeat`` runs of one case."""
    sample = Sample(engine=engine)
    loop = asyncio.Runner()
    case: Case | None = None
    try:
        t0 = time.perf_counter()
        case = prepare()
        sample.setup = time.perf_counter() - t0
        sample.info.update(case.info)
        is_async = inspect.iscoroutinefunction(case.run)

        def once() -> tuple[float, float]:
            gc.collect()
            with _GCWatch() as watch:
                if is_async:
                    elapsed, out = loop.run(_timed_async(case.run))
                else:
                    elapsed, out = _timed_sync(case.run)
            if case.check is not None:
                case.check(out)
            return elapsed, watch.total

        start = time.perf_counter()
        if warmup:
            sample.warmup = once()[0]
            if sample.warmup > budget / 3:
                min_runs = 1  # a slow peer: one timed run, shown as n=1
        for n in range(repeat):
            if n >= min_runs:
                spent = time.perf_counter() - start
                last = sample.times[-1] if sample.times else 0.0
                if spent + last > budget:
                    break
            elapsed, paused = once()
            sample.times.append(elapsed)
            sample.gc_times.append(paused)
    except Exception as exc:  # noqa: BLE001 - a broken engine is a result, not a crash
        sample.error = f"{type(exc).__name__}: {exc}"
        sample.info["traceback"] = traceback.format_exc(limit=8)
    finally:
        if case is not None and case.close is not None:
            try:
                case.close()
            except Exception:  # noqa: BLE001 - closing is best effort after a result
                pass
        loop.close()
    return sample


def profile_case(prepare: Callable[[], Case], *, top: int = 15) -> str:
    """Run one case once (after a warm-up) under cProfile; the top functions by tottime."""
    import cProfile
    import io
    import pstats

    case = prepare()
    loop = asyncio.Runner()
    try:
        run = case.run
        is_async = inspect.iscoroutinefunction(run)
        if is_async:
            loop.run(run())
        else:
            run()
        gc.collect()
        profiler = cProfile.Profile()
        if is_async:
            async def profiled() -> Any:
                profiler.enable()
                try:
                    return await run()
                finally:
                    profiler.disable()

            loop.run(profiled())
        else:
            profiler.enable()
            try:
                run()
            finally:
                profiler.disable()
    finally:
        if case.close is not None:
            case.close()
        loop.close()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream)
    stats.sort_stats("tottime").print_stats(top)
    text = stream.getvalue()
    # Drop pstats' preamble up to the total line; keep the column header and rows.
    lines = [line.rstrip() for line in text.splitlines()]
    keep = [line for line in lines if line.strip() and not line.strip().startswith("Ordered by")]
    return "\n".join(keep)
