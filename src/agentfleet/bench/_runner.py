"""Running a suite: worker processes per benchmark, samples collected, environment recorded.

# Design
# Each benchmark is sampled in ``processes`` fresh worker processes, one after another
# (``python -m agentfleet.bench._worker``, the job as JSON on stdin), so the samples of one
# benchmark come from several interpreters (pyperf's answer to per-process luck: hash seeds,
# memory layout, allocator state). Benchmarks run one at a time, never side by side: they would
# share the CPUs they are measuring. ``budget`` stops adding processes once spent (at least one
# process always runs). A/B (``run_ab``) alternates the two configurations process by process
# (ABAB...), so slow drift of the machine (thermal, neighbours) falls on both alike.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import AgentFleetError
from ._suite import BenchSettings, BenchSpec, SuiteSpec

__all__ = ["BenchError", "BenchResult", "environment", "run_ab", "run_benchmark", "run_suite"]


class BenchError(AgentFleetError):
    """A benchmark could not be sampled (its worker failed): names the benchmark and why. Exit code 2
    when the suite names something that is not there (a module, a function, a workflow var)."""


_USER_ERRORS = ("ModuleNotFoundError", "ImportError", "AttributeError", "SpecError", "TypeError: ")


@dataclass
class BenchResult:
    name: str
    kind: str  # workflow | callable
    target: str
    samples: list[float]  # seconds per call (callable) or per run (workflow), every process's
    loops: int
    processes: int
    per_process: list[list[float]] = field(default_factory=list)
    elapsed: float = 0.0  # wall seconds spent sampling it


Progress = Callable[[str, int, int], None]  # (benchmark, processes done, processes planned)


def _job(suite: SuiteSpec, bench: BenchSpec, settings: BenchSettings) -> dict[str, Any]:
    job: dict[str, Any] = {"warmups": settings.warmups, "runs": settings.runs, "min_time": settings.min_time,
                           "cooldown": settings.cooldown}
    if bench.callable is not None:
        job.update(kind="callable", target=bench.callable, params=bench.params)
    else:
        job.update(kind="workflow", target=suite.workflow_path(bench), set=bench.set, scale=bench.scale,
                   max_parallel=bench.max_parallel)
    return job


def _work(job: dict[str, Any], name: str, timeout: float | None) -> dict[str, Any]:
    """One worker process; its result, or a BenchError naming the benchmark."""
    env = dict(os.environ)
    # a callable's module is found from where agentfleet bench was started, as it would be there
    env["PYTHONPATH"] = os.pathsep.join(p for p in (os.getcwd(), env.get("PYTHONPATH", "")) if p)
    try:
        done = subprocess.run([sys.executable, "-m", "agentfleet.bench._worker"], input=json.dumps(job), env=env,
                              capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise BenchError(f"benchmark {name!r}: a worker ran past {timeout:g}s") from None
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    try:
        out = json.loads(lines[-1]) if lines else {}
    except json.JSONDecodeError:
        out = {}
    if "error" in out or done.returncode != 0 or "samples" not in out:
        reason = out.get("error") or (done.stderr.strip().splitlines() or ["no output"])[-1]
        problem = BenchError(f"benchmark {name!r} failed: {reason}")
        if reason.startswith(_USER_ERRORS):
            problem.exit_code = 2  # the suite names something that is not there: not a regression (exit 1)
        raise problem
    return out


def run_benchmark(suite: SuiteSpec, bench: BenchSpec, *, progress: Progress | None = None,
                  timeout: float | None = 3600) -> BenchResult:
    settings = bench.settings(suite.settings)
    job = _job(suite, bench, settings)
    started = time.perf_counter()
    per_process: list[list[float]] = []
    loops = 1
    for i in range(settings.processes):
        if i and settings.budget is not None and time.perf_counter() - started >= settings.budget:
            break
        out = _work(job, bench.name, timeout)
        per_process.append([float(x) for x in out["samples"]])
        loops = int(out.get("loops", 1))
        if progress is not None:
            progress(bench.name, i + 1, settings.processes)
    return BenchResult(name=bench.name, kind=job["kind"], target=job["target"],
                       samples=[x for chunk in per_process for x in chunk], loops=loops,
                       processes=len(per_process), per_process=per_process,
                       elapsed=time.perf_counter() - started)


def run_suite(suite: SuiteSpec, *, only: Sequence[str] | None = None,
              progress: Progress | None = None) -> list[BenchResult]:
    """Every benchmark of ``suite`` (or the ``only`` ones), one after another."""
    names = {b.name for b in suite.benchmarks}
    for name in only or ():
        if name not in names:
            raise BenchError(f"no benchmark {name!r} in suite {suite.name!r} (it has: {', '.join(sorted(names))})")
    chosen = [b for b in suite.benchmarks if not only or b.name in only]
    return [run_benchmark(suite, b, progress=progress) for b in chosen]


def run_ab(suite: SuiteSpec, a: BenchSpec, b: BenchSpec, *, rounds: int,
           progress: Progress | None = None) -> tuple[BenchResult, BenchResult]:
    """``a`` and ``b`` sampled alternately, one worker process each per round (ABAB...)."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds!r}")
    jobs = [(a, _job(suite, a, a.settings(suite.settings))), (b, _job(suite, b, b.settings(suite.settings)))]
    chunks: list[list[list[float]]] = [[], []]
    loops = [1, 1]
    started = time.perf_counter()
    for r in range(rounds):
        for side, (bench, job) in enumerate(jobs):
            out = _work(job, bench.name, 3600)
            chunks[side].append([float(x) for x in out["samples"]])
            loops[side] = int(out.get("loops", 1))
        if progress is not None:
            progress("A/B", r + 1, rounds)
    elapsed = time.perf_counter() - started
    return tuple(  # type: ignore[return-value]
        BenchResult(name=bench.name, kind=job["kind"], target=job["target"],
                    samples=[x for chunk in chunks[side] for x in chunk], loops=loops[side], processes=rounds,
                    per_process=chunks[side], elapsed=elapsed)
        for side, (bench, job) in enumerate(jobs))


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _git_commit() -> str | None:
    try:
        done = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def environment() -> dict[str, Any]:
    """Where the numbers came from: interpreter, CPU, cores, load, commit, package version."""
    from .. import __version__

    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    try:
        load: list[float] | None = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"python": sys.version.split()[0], "implementation": platform.python_implementation(),
            "platform": platform.platform(), "cpu_model": _cpu_model(), "cpu_count": os.cpu_count(),
            "cpu_usable": usable, "load_average": load, "git_commit": _git_commit(),
            "agentfleet": __version__, "hostname": platform.node()}
