"""The runtime suite's measurements: each returns plain numbers (a dict) and checks its own work.

Every measurement runs beside its floor in the same process and the same moment, so a
ratio to the floor is what a loaded or slow machine changes least:

* activation: ``AgentPool`` acquire/release against an ``asyncio.Queue`` used as a free
  list (fast path), and against a bare future hand-over between two coroutines (the
  waiter path);
* cold spawn: one pool member per provider kind; the stdlib-only protocol worker is the
  floor of a Python worker process (interpreter start plus a ping);
* memory: tracemalloc's count of Python allocations for 1,000 idle members;
* context: the sprint example on virtual time, tokens sent against the naive baseline;
* scaling: N fixed-latency sim tasks against ``asyncio.gather`` of N ``asyncio.sleep``.
"""

from __future__ import annotations

import asyncio
import gc
import math
import statistics
import sys
import time
import tracemalloc
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import agentfleet
from agentfleet import Runner, Workflow
from agentfleet._types import Provider, ProviderRequest
from agentfleet.providers import build_provider
from agentfleet.runtime._pool import AgentPool, WouldBlock
from agentfleet.spec import AgentSpec, load_workflow
from agentfleet.testing import run_virtual

__all__ = [
    "SPAWN_KINDS",
    "activation",
    "context",
    "handover",
    "memory",
    "percentile",
    "scaling",
    "spawn_kind",
    "sprint_path",
]

ROOT = Path(__file__).resolve().parent.parent
ECHO_WORKER = ROOT / "examples" / "workers" / "echo_worker.py"
PROTOCOL_WORKER = Path(__file__).resolve().parent / "_runtime_worker.py"
_PER_TASK_ECHO = "import sys; sys.stdout.write(sys.stdin.read())"


def percentile(sorted_values: list[int] | list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (q in 0-1)."""
    n = len(sorted_values)
    if n == 0:
        return math.nan
    return float(sorted_values[min(n - 1, max(0, math.ceil(q * n) - 1))])


def _summary_ns(samples: list[int]) -> dict[str, Any]:
    s = sorted(samples)
    return {"n": len(s), "p50_ns": percentile(s, 0.50), "p90_ns": percentile(s, 0.90),
            "p99_ns": percentile(s, 0.99), "p999_ns": percentile(s, 0.999), "max_ns": float(s[-1]),
            "mean_ns": statistics.fmean(s)}


def _sim_agent(name: str, **options: Any) -> AgentSpec:
    return AgentSpec(name=name, provider="sim", options=options or {"latency": {"fixed": 0.0}})


def _shared_pool(name: str, provider: Provider, size: int, **kw: Any) -> AgentPool:
    """Members over one shared, already-warm provider (an HTTP agent's pool, minus the network)."""
    return AgentPool(name, lambda: provider, shared=True, provider=provider, warm_each=False,
                     close_shared=False, size=size, **kw)


def _timer_floor(n: int) -> dict[str, Any]:
    """Two back-to-back ``perf_counter_ns`` calls: the part of each sample that is the timer."""
    ns = time.perf_counter_ns
    samples = [0] * n
    for i in range(n):
        t0 = ns()
        samples[i] = ns() - t0
    return _summary_ns(samples)


# -- 1. activation ------------------------------------------------------------------------

async def activation(pairs: int, members: int = 16) -> dict[str, Any]:
    """acquire (nowait, else await) -> member, timed per call; release untimed; then the floor."""
    provider = build_provider(_sim_agent("activation"))
    pool = _shared_pool("activation", provider, members)
    await pool.start()
    if pool.statistics().members != members:
        raise RuntimeError(f"pool did not start {members} members: {pool.statistics()}")
    ns = time.perf_counter_ns
    acquire_nowait, acquire, release = pool.acquire_nowait, pool.acquire, pool.release

    async def ours(n: int) -> tuple[list[int], int]:
        samples = [0] * n
        slow = 0
        for i in range(n):
            t0 = ns()
            try:
                member = acquire_nowait()
            except WouldBlock:
                member = await acquire()
                slow += 1
            samples[i] = ns() - t0
            release(member)
        return samples, slow

    queue: asyncio.Queue[int] = asyncio.Queue()
    for token in range(members):
        queue.put_nowait(token)
    get_nowait, get, put_nowait = queue.get_nowait, queue.get, queue.put_nowait

    async def floor(n: int) -> list[int]:
        samples = [0] * n
        for i in range(n):
            t0 = ns()
            try:
                token = get_nowait()
            except asyncio.QueueEmpty:
                token = await get()
            samples[i] = ns() - t0
            put_nowait(token)
        return samples

    await ours(min(pairs, 2_000))  # warm-up
    await floor(min(pairs, 2_000))
    gc.collect()
    samples, slow = await ours(pairs)
    gc.collect()
    floor_samples = await floor(pairs)
    stats = pool.statistics()
    await pool.aclose()
    return {"pairs": pairs, "members": members, "slow_path": slow, "activations": stats.activations,
            "ours": _summary_ns(samples), "floor": _summary_ns(floor_samples), "timer": _timer_floor(pairs)}


async def handover(n: int) -> dict[str, Any]:
    """A pool of one member passed between two coroutines: release -> the waiter resumes."""
    provider = build_provider(_sim_agent("handover"))
    pool = _shared_pool("handover", provider, 1, max=1)
    await pool.start()
    ns = time.perf_counter_ns

    async def ours() -> list[int]:
        samples: list[int] = []
        stamp = 0

        async def player() -> None:
            nonlocal stamp
            while len(samples) < n:
                try:
                    member = pool.acquire_nowait()
                    handed = False
                except WouldBlock:
                    member = await pool.acquire()
                    handed = True
                if handed:
                    samples.append(ns() - stamp)
                await asyncio.sleep(0)  # the other player queues for the member meanwhile
                stamp = ns()
                pool.release(member)

        await asyncio.gather(player(), player())
        return samples[:n]

    async def floor() -> list[int]:
        # The least a hand-over can be: a free token or a deque of waiters' futures, the token
        # given straight to the first waiter (an asyncio.Queue would let the releaser take it
        # back before the woken getter runs, so it never hands over).
        free: list[int] = [0]
        waiters: deque[asyncio.Future[int]] = deque()
        loop = asyncio.get_running_loop()
        samples: list[int] = []
        stamp = 0

        async def player() -> None:
            nonlocal stamp
            while len(samples) < n:
                if free:
                    token = free.pop()
                    handed = False
                else:
                    fut: asyncio.Future[int] = loop.create_future()
                    waiters.append(fut)
                    token = await fut
                    handed = True
                if handed:
                    samples.append(ns() - stamp)
                await asyncio.sleep(0)
                stamp = ns()
                if waiters:
                    waiters.popleft().set_result(token)
                else:
                    free.append(token)

        await asyncio.gather(player(), player())
        return samples[:n]

    gc.collect()
    samples = await ours()
    gc.collect()
    floor_samples = await floor()
    stats = pool.statistics()
    await pool.aclose()
    if stats.members != 1:
        raise RuntimeError(f"hand-over pool grew to {stats.members} members")
    return {"handovers": n, "ours": _summary_ns(samples), "floor": _summary_ns(floor_samples)}


# -- 2. cold spawn ------------------------------------------------------------------------

#: label -> (agent spec, what a spawn does)
SPAWN_KINDS: dict[str, tuple[AgentSpec, str]] = {
    "sim": (_sim_agent("cold_sim"), "build the SimProvider"),
    "python": (AgentSpec(name="cold_python", provider="python",
                         options={"function": "benchmarks._agents:echo", "inline": True}),
               "build the PythonProvider, import and bind benchmarks._agents:echo"),
    "command worker (echo_worker.py)": (
        AgentSpec(name="cold_worker", provider="command",
                  options={"command": [sys.executable, str(ECHO_WORKER)], "mode": "worker"}),
        "start examples/workers/echo_worker.py (imports agentfleet.worker), ping, health ping"),
    "command worker (stdlib protocol)": (
        AgentSpec(name="cold_protocol", provider="command",
                  options={"command": [sys.executable, str(PROTOCOL_WORKER)], "mode": "worker"}),
        "start benchmarks/_runtime_worker.py (no agentfleet import), ping, health ping"),
    "command per-task": (
        AgentSpec(name="cold_per_task", provider="command",
                  options={"command": [sys.executable, "-c", _PER_TASK_ECHO]}),
        "build the CommandProvider (a process per task comes later, per call)"),
}


def _request(agent: str, i: int) -> ProviderRequest:
    return ProviderRequest(task_id=f"t{i}", agent=agent, model="bench", system="", prompt=f"hello {i}")


def _proc_memory(pid: int) -> dict[str, int]:
    """A process's RSS, PSS and private memory in bytes, from /proc (Linux)."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1]) * 1024
        private = 0
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key == "Pss":
                out["pss"] = int(rest.split()[0]) * 1024
            elif key in ("Private_Clean", "Private_Dirty"):
                private += int(rest.split()[0]) * 1024
        out["private"] = private
    except (OSError, ValueError, IndexError):
        pass
    return out


async def spawn_kind(label: str, n: int, budget: float, calls: int) -> dict[str, Any]:
    """``AgentPool(size=1).start()`` timed ``n`` times (fewer past ``budget`` seconds, never
    under 3), then ``calls`` warm calls on the last member (and a worker's memory)."""
    spec, what = SPAWN_KINDS[label]
    times: list[float] = []
    spawn_seconds: list[float] = []
    out: dict[str, Any] = {"what": what}
    started = time.perf_counter()
    for i in range(n):
        pool = AgentPool(spec.name, lambda: build_provider(spec), size=1)
        t0 = time.perf_counter()
        await pool.start()
        times.append(time.perf_counter() - t0)
        stats = pool.statistics()
        if stats.members != 1:
            await pool.aclose()
            raise RuntimeError(f"{label}: no member started ({pool._last_spawn_error})")
        spawn_seconds.append(stats.spawn_seconds)
        last = i == n - 1 or (i >= 2 and time.perf_counter() - started > budget)
        if last:
            member = pool.members[0]
            pid = getattr(member.provider, "worker_pid", None)
            if pid is not None:
                out["worker_memory"] = _proc_memory(pid)
            call_times: list[float] = []
            for c in range(calls):
                c0 = time.perf_counter()
                response = await pool.complete(_request(spec.name, c))
                call_times.append(time.perf_counter() - c0)
                if f"hello {c}" not in response.text and not (label == "sim" and response.text):
                    raise RuntimeError(f"{label}: unexpected answer {response.text[:80]!r}")
            out["call_p50_s"] = statistics.median(call_times) if call_times else None
            out["calls"] = len(call_times)
        await pool.aclose()
        if last:
            break
    out.update(spawns=len(times), times_s=times, p50_s=statistics.median(times), min_s=min(times),
               max_s=max(times), pool_spawn_seconds_p50=statistics.median(spawn_seconds))
    return out


# -- 3. memory ----------------------------------------------------------------------------

async def _traced(build: Callable[[], Any]) -> tuple[int, Any]:
    """Bytes of Python allocations still alive after ``await build()`` (and a full collection)."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = await build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    return after - before, kept


async def memory(n: int) -> dict[str, Any]:
    """Idle members: n members over one shared sim provider (as an HTTP agent's pool is built),
    and n members with a sim provider each (non-shared, as a worker pool is built)."""
    spec = _sim_agent("memory")
    shared_provider = build_provider(spec)

    async def shared() -> AgentPool:
        pool = _shared_pool("memory", shared_provider, n)
        await pool.start()
        return pool

    async def own() -> AgentPool:
        pool = AgentPool("memory_own", lambda: build_provider(spec), size=n)
        await pool.start()
        return pool

    shared_bytes, pool_a = await _traced(shared)
    own_bytes, pool_b = await _traced(own)
    counts = (pool_a.statistics().members, pool_b.statistics().members)
    await pool_a.aclose()
    await pool_b.aclose()
    if counts != (n, n):
        raise RuntimeError(f"pools started {counts} members, wanted {n} each")
    return {"members": n, "shared_bytes": shared_bytes, "shared_per_member": shared_bytes / n,
            "own_bytes": own_bytes, "own_per_member": own_bytes / n}


# -- 4. context ---------------------------------------------------------------------------

def sprint_path() -> Path:
    return Path(agentfleet.__file__).resolve().parent / "examples" / "parallel_sprint.yaml"


def context() -> dict[str, Any]:
    """The sprint example on virtual time: tokens sent against the whole-history baseline."""
    path = sprint_path()
    t0 = time.perf_counter()
    result = run_virtual(Runner(load_workflow(path), store=None).run())
    wall = time.perf_counter() - t0
    tasks = {r.task_id: {"state": str(r.state), "context_tokens": r.context_tokens,
                         "naive_tokens": r.naive_tokens, "tokens_out": r.tokens_out,
                         "by_reference": "artifact" in r.meta} for r in result.records}
    done = sum(1 for r in result.records if r.state == "done")
    return {"path": str(path), "status": result.status, "failure": result.failure, "tasks": len(result.records),
            "done": done, "sent": result.context_tokens, "naive": result.naive_tokens,
            "reduction": result.context_reduction, "virtual_makespan_s": max(
                (r.ended_at or 0.0 for r in result.records), default=0.0), "wall_s": wall, "per_task": tasks}


# -- 5. scaling ---------------------------------------------------------------------------

def _scaling_spec(n: int, latency: float) -> agentfleet.WorkflowSpec:
    wf = Workflow(f"scale-{n}", max_parallel=n)
    wf.agent("worker", provider="sim", latency={"fixed": latency}, max_concurrency=n)
    for i in range(n):
        wf.task(f"t{i}", agent="worker", prompt=f"task {i}")
    return wf.build()


async def scaling(sizes: tuple[int, ...], latency: float, repeat: int) -> dict[str, Any]:
    """Makespan of N independent sim tasks of fixed latency (real time) and of the floor,
    interleaved run by run; efficiency = latency / makespan (medians)."""
    await agentfleet.run_async(_scaling_spec(8, 0.001), store=None)  # warm-up: imports, templates
    out: dict[str, Any] = {"latency_s": latency, "repeat": repeat, "sizes": {}}
    for n in sizes:
        spec = _scaling_spec(n, latency)
        ours: list[float] = []
        scheduled: list[float] = []
        floor: list[float] = []
        pool: dict[str, Any] = {}
        for _ in range(repeat):
            gc.collect()
            t0 = time.perf_counter()
            result = await agentfleet.run_async(spec, store=None)
            ours.append(time.perf_counter() - t0)
            if not result.ok or result.counts().get("done") != n:
                raise RuntimeError(f"scaling N={n}: run {result.status}: {result.failure}")
            scheduled.append(result.elapsed)
            stats = result.pools["worker"]
            pool = {"members": stats.members, "peak_members": stats.peak_members,
                    "cold_waits": stats.cold_waits, "spawned": stats.spawned}
            gc.collect()
            t0 = time.perf_counter()
            await asyncio.gather(*(asyncio.sleep(latency) for _ in range(n)))
            floor.append(time.perf_counter() - t0)
        ours_m, floor_m = statistics.median(ours), statistics.median(floor)
        out["sizes"][str(n)] = {
            "n": n, "ours_s": ours, "ours_median_s": ours_m, "scheduler_elapsed_s": scheduled,
            "floor_s": floor, "floor_median_s": floor_m,
            "efficiency": latency / ours_m, "floor_efficiency": latency / floor_m,
            "scheduler_efficiency": latency / statistics.median(scheduled),
            "overhead_per_task_s": (ours_m - latency) / n, "floor_overhead_per_task_s": (floor_m - latency) / n,
            "pool": pool,
        }
    return out
