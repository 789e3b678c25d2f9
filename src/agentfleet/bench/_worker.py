"""One benchmark worker process: ``python -m agentfleet.bench._worker`` reads a job (JSON on stdin),
times it and prints ``{"samples": [...], "loops": n, "warmups": [...]}`` (or ``{"error": "..."}``
with exit code 1) as one JSON line on stdout.

# Design
# A callable is calibrated first (pyperf's way): loops doubles from 1 until one sample of
# ``loops`` calls lasts at least ``min_time``, so timer resolution and call overhead stay small
# next to what is measured; a sample is then the mean seconds per call. A workflow sample is one
# whole run (``loops`` 1: a run is long enough to time on its own). Warm-up samples are taken and
# reported but not measured. The garbage collector is left on: it is part of what a run costs.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["main", "sample_callable", "sample_workflow"]


def _load(target: str) -> Callable[..., Any]:
    module, _, name = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in name.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"{target} is not callable")
    return obj  # type: ignore[no-any-return]


def _timer(fn: Callable[..., Any], params: dict[str, Any]) -> Callable[[int], float]:
    """A function timing ``loops`` calls of ``fn(**params)``; a coroutine function runs on one loop."""
    if inspect.iscoroutinefunction(fn):
        loop = asyncio.new_event_loop()

        async def many(loops: int) -> float:
            t0 = time.perf_counter()
            for _ in range(loops):
                await fn(**params)
            return time.perf_counter() - t0

        return lambda loops: loop.run_until_complete(many(loops))

    def timed(loops: int) -> float:
        t0 = time.perf_counter()
        for _ in range(loops):
            fn(**params)
        return time.perf_counter() - t0

    return timed


def sample_callable(target: str, params: dict[str, Any], *, warmups: int, runs: int, min_time: float,
                    cooldown: float = 0.0) -> dict[str, Any]:
    timed = _timer(_load(target), params)
    loops = 1
    while True:  # calibrate: the first sample long enough decides the loop count
        elapsed = timed(loops)
        if elapsed >= min_time or loops >= 1 << 30:
            break
        loops *= 2 if elapsed <= 0 else max(2, min(10, int(min_time / elapsed * 1.2) + 1))
    warm = [timed(loops) / loops for _ in range(warmups)]
    samples = []
    for _ in range(runs):
        if cooldown:
            time.sleep(cooldown)
        samples.append(timed(loops) / loops)
    return {"samples": samples, "loops": loops, "warmups": warm}


def sample_workflow(path: str, *, overrides: dict[str, Any], scale: float | None, max_parallel: int | None,
                    warmups: int, runs: int, cooldown: float = 0.0) -> dict[str, Any]:
    from ..runtime import Runner
    from ..spec import load_workflow

    spec = load_workflow(path, overrides=overrides)

    def once() -> float:
        runner = Runner(spec, latency_scale=scale, max_parallel=max_parallel, cache=False)
        t0 = time.perf_counter()
        result = asyncio.run(runner.run())
        elapsed = time.perf_counter() - t0
        if not result.ok:
            raise RuntimeError(f"the workflow run {result.status}: {result.failure}")
        return elapsed

    warm = [once() for _ in range(warmups)]
    samples = []
    for _ in range(runs):
        if cooldown:
            time.sleep(cooldown)
        samples.append(once())
    return {"samples": samples, "loops": 1, "warmups": warm}


def main() -> int:
    try:
        job = json.loads(sys.stdin.read())
        if job["kind"] == "callable":
            out = sample_callable(job["target"], job.get("params", {}), warmups=job["warmups"], runs=job["runs"],
                                  min_time=job["min_time"], cooldown=job.get("cooldown", 0.0))
        else:
            out = sample_workflow(job["target"], overrides=job.get("set", {}), scale=job.get("scale"),
                                  max_parallel=job.get("max_parallel"), warmups=job["warmups"], runs=job["runs"],
                                  cooldown=job.get("cooldown", 0.0))
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line, which names the benchmark
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
        return 1
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
