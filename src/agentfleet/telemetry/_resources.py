"""What a run costs the machine: CPU, memory, disk and network I/O of the process and its children.

# Design
# ``ProcessSampler.sample(t)`` reads psutil once per process (this one and every descendant:
# command agents, worker processes) and turns the counters into rates since the previous sample,
# so one sample is one point of a time series: CPU in percent of one core (200 = two cores
# busy), resident memory in MB, disk read/write in MB/s (bytes that reached the storage layer,
# ``io_counters``), and network in MB/s. psutil has no per-process network counters, so network
# figures are the machine's (``net_io_counters``), named ``net_*`` and documented as such.
# Children come and go: a child seen in the previous sample and gone now is dropped, so its
# last CPU seconds do not count twice, and one that appeared counts from its first sighting
# (psutil's ``cpu_percent(None)`` against the previous call on the same Process object).
# ``RunResources`` runs the sampler every ``interval`` seconds of the run's clock while a run
# goes and keeps the series (bounded: past ``max_samples`` every other sample is dropped and the
# interval doubles, so an 8-hour run keeps a fixed-size, evenly spaced series).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import Callable
from typing import Any

__all__ = ["ProcessSampler", "RunResources", "summarize_resources"]

_MB = 1024 * 1024


class ProcessSampler:
    """Samples process ``pid`` (default: this one) and its descendants."""

    def __init__(self, pid: int | None = None) -> None:
        import psutil

        self._psutil = psutil
        self._root = psutil.Process(pid or os.getpid())
        self._procs: dict[int, Any] = {}
        self._last_t: float | None = None
        self._last_io: tuple[int, int] | None = None
        self._last_net: tuple[int, int] | None = None
        self._sample_procs()  # primes cpu_percent on each process

    def _descendants(self) -> list[int]:
        """Pids of every descendant: from ``/proc/PID/task/TID/children`` where Linux has it (a few
        small reads), else psutil's scan of every process on the machine (milliseconds)."""
        root = self._root.pid
        if os.path.exists(f"/proc/{root}/task/{root}/children"):
            found: list[int] = []
            todo = [root]
            while todo:
                pid = todo.pop()
                try:
                    tids = os.listdir(f"/proc/{pid}/task")
                except OSError:
                    continue
                for tid in tids:
                    try:
                        with open(f"/proc/{pid}/task/{tid}/children") as f:
                            kids = [int(k) for k in f.read().split()]
                    except (OSError, ValueError):
                        continue
                    found.extend(kids)
                    todo.extend(kids)
            return found
        try:
            return [child.pid for child in self._root.children(recursive=True)]
        except self._psutil.Error:
            return []

    def _sample_procs(self) -> list[Any]:
        seen: dict[int, Any] = {self._root.pid: self._root}
        for pid in self._descendants():
            proc = self._procs.get(pid)
            if proc is None:
                try:
                    proc = self._psutil.Process(pid)
                except self._psutil.Error:
                    continue
            seen[pid] = proc
        self._procs = seen
        return list(seen.values())

    def sample(self, t: float) -> dict[str, float]:
        """One point at run time ``t``: cpu_percent, rss_mb, read_mb_s, write_mb_s, net_sent_mb_s,
        net_recv_mb_s, threads, processes. Rates are since the previous sample (0 on the first)."""
        psutil = self._psutil
        cpu = 0.0
        rss = 0
        read = write = 0
        threads = 0
        alive = 0
        for proc in self._sample_procs():
            try:
                with proc.oneshot():
                    cpu += proc.cpu_percent(None)
                    rss += proc.memory_info().rss
                    threads += proc.num_threads()
                    if hasattr(proc, "io_counters"):
                        io = proc.io_counters()
                        read += io.read_bytes
                        write += io.write_bytes
                alive += 1
            except (psutil.Error, OSError):
                continue
        try:
            net = psutil.net_io_counters()
            sent, recv = (net.bytes_sent, net.bytes_recv) if net is not None else (0, 0)
        except (psutil.Error, OSError):
            sent = recv = 0
        point = {"t": round(t, 4), "cpu_percent": round(cpu, 2), "rss_mb": round(rss / _MB, 2),
                 "read_mb_s": 0.0, "write_mb_s": 0.0, "net_sent_mb_s": 0.0, "net_recv_mb_s": 0.0,
                 "threads": float(threads), "processes": float(alive)}
        if self._last_t is not None and t > self._last_t:
            span = t - self._last_t
            last_read, last_write = self._last_io or (read, write)
            last_sent, last_recv = self._last_net or (sent, recv)
            # A child that exited takes its I/O counters with it: never a negative rate.
            point["read_mb_s"] = round(max(0, read - last_read) / _MB / span, 4)
            point["write_mb_s"] = round(max(0, write - last_write) / _MB / span, 4)
            point["net_sent_mb_s"] = round(max(0, sent - last_sent) / _MB / span, 4)
            point["net_recv_mb_s"] = round(max(0, recv - last_recv) / _MB / span, 4)
        self._last_t, self._last_io, self._last_net = t, (read, write), (sent, recv)
        return point


class RunResources:
    """Samples ``sampler`` every ``interval`` seconds of ``now``/``sleep`` while a run goes."""

    def __init__(self, sampler: Any, *, now: Callable[[], float], sleep: Callable[[float], Any],
                 interval: float = 0.5, max_samples: int = 2000,
                 on_sample: Callable[[dict[str, float]], None] | None = None) -> None:
        if interval <= 0:
            raise ValueError(f"interval must be > 0, got {interval!r}")
        if max_samples < 4:
            raise ValueError(f"max_samples must be >= 4, got {max_samples!r}")
        self.sampler = sampler
        self.now = now
        self.sleep = sleep
        self.interval = interval
        self.max_samples = max_samples
        self.on_sample = on_sample
        self.samples: list[dict[str, float]] = []
        self.errors = 0
        self._task: asyncio.Task[None] | None = None

    def take(self) -> None:
        try:
            point = self.sampler.sample(self.now())
        except Exception:  # noqa: BLE001 - a failed reading loses one point, never the run
            self.errors += 1
            return
        self.samples.append(point)
        if len(self.samples) > self.max_samples:
            self.samples = self.samples[::2]
            self.interval *= 2
        if self.on_sample is not None:
            self.on_sample(point)

    async def _loop(self) -> None:
        while True:
            await self.sleep(self.interval)
            self.take()

    def start(self) -> None:
        self.take()
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="agentfleet resource sampling")

    async def aclose(self) -> list[dict[str, float]]:
        """Stop sampling, take a last point, and return the series."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            self.take()
        return self.samples


def summarize_resources(samples: list[dict[str, float]]) -> dict[str, float]:
    """Peak and mean CPU, peak memory, and total disk I/O (MB) over a series; {} when empty."""
    if not samples:
        return {}
    cpus = [s.get("cpu_percent", 0.0) for s in samples]
    out = {"cpu_peak_percent": max(cpus), "cpu_mean_percent": round(sum(cpus) / len(cpus), 2),
           "rss_peak_mb": max(s.get("rss_mb", 0.0) for s in samples)}
    read = write = 0.0
    for before, after in itertools.pairwise(samples):
        span = after["t"] - before["t"]
        read += after.get("read_mb_s", 0.0) * span
        write += after.get("write_mb_s", 0.0) * span
    out["disk_read_mb"] = round(read, 3)
    out["disk_write_mb"] = round(write, 3)
    return out
