"""The Ray executor against local, and against plain Ray actor calls (issue 8's figures).

    python -m benchmarks.ray_executor            # needs ray (pip install 'agentfleet[ray]')

1. Makespan of the 4 x 50 layered workflow (50 sim tasks per layer, each depending on its twin in the
   layer before; 50 ms sim latency): local executor vs ``executor: ray`` on a local Ray
   (``ray.init(num_cpus=2)``), actors warmed before the clock starts. The floor is the critical
   path, 4 x 50 ms.
2. Per-task cost: 2,000 independent sim tasks of ~0.1 ms, 64 in flight, through agentfleet on Ray,
   next to 2,000 plain ``actor.call.remote()`` calls on two async actors with the same concurrency
   (the floor for anything on Ray), and agentfleet locally.
Each figure is the median of ``REPEAT`` runs.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from agentfleet.runtime import Runner
from agentfleet.spec import parse_workflow

REPEAT = 5
N = 2000


def layered(width: int = 50, depth: int = 4, latency: float = 0.05) -> str:
    tasks = []
    for layer in range(depth):
        for i in range(width):
            dep = f", depends_on: [l{layer - 1}_{i}]" if layer else ""
            tasks.append(f"  - {{id: l{layer}_{i}, agent: w, prompt: 'step {layer} {i}'{dep}}}")
    return (f"name: layers\nsettings: {{max_parallel: {width}, cache: false}}\nagents:\n"
            f"  w: {{provider: sim, pool: {{size: 4}}, options: {{latency: {{median: {latency}, sigma: 0.0001}}}}}}\n"
            "tasks:\n" + "\n".join(tasks) + "\n")


def flat() -> str:
    return (f"name: flat\nsettings: {{max_parallel: 64, cache: false}}\nagents:\n"
            "  w: {provider: sim, pool: {size: 2}, options: {latency: {median: 0.0001, sigma: 0.0001}}}\n"
            f"tasks:\n  - {{id: t, agent: w, map: {list(range(N))}, prompt: x}}\n")


def run(text: str, executor: str) -> Any:
    result = asyncio.run(Runner(parse_workflow(text), executor=executor).run())
    assert result.ok, result.failure
    return result


async def plain_ray(ray: Any) -> float:
    @ray.remote
    class Echo:
        async def call(self, x: int) -> int:
            return x

    actors = [Echo.options(max_concurrency=32).remote() for _ in range(2)]
    await asyncio.gather(*[a.call.remote(0) for a in actors])
    gate = asyncio.Semaphore(64)

    async def one(i: int) -> int:
        async with gate:
            return int(await actors[i % 2].call.remote(i))

    t0 = time.perf_counter()
    await asyncio.gather(*[one(i) for i in range(N)])
    return time.perf_counter() - t0


def main() -> None:
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        text = layered()
        local = statistics.median(_makespan(text, "local") for _ in range(REPEAT))
        remote = statistics.median(_makespan(text, "ray") for _ in range(REPEAT))
        print(f"4 x 50 layered, 50 ms sim: makespan local {local * 1e3:.0f} ms · ray {remote * 1e3:.0f} ms "
              f"({remote / local:.2f}x local; critical path 200 ms)")
        text = flat()
        ours = statistics.median(run(text, "ray").elapsed for _ in range(REPEAT)) / N
        home = statistics.median(run(text, "local").elapsed for _ in range(REPEAT)) / N
        floor = statistics.median(asyncio.run(plain_ray(ray)) for _ in range(REPEAT)) / N
        print(f"per task, {N} tasks, 64 in flight: agentfleet on ray {ours * 1e6:.0f} µs · plain ray actor calls "
              f"{floor * 1e6:.0f} µs ({ours / floor:.2f}x plain ray) · agentfleet local {home * 1e6:.0f} µs")
    finally:
        ray.shutdown()


def _makespan(text: str, executor: str) -> float:
    from agentfleet.analysis import analyze

    result = run(text, executor)
    return float(analyze(result.records).makespan)


if __name__ == "__main__":
    main()
