"""The command line: ``python -m benchmarks [--suite engine|runtime|resilience|telemetry|all] [--quick] ...``.

Five suites. ``engine`` (``_ours.py`` and the peers): every workload on bare asyncio,
agentfleet and LangGraph first, then Ray (its daemons stay resident once started, so
starting it last keeps them off the other engines' CPUs), then the optional profiles,
then its table. ``runtime`` (``_runtime.py``): the product targets' figures (activation,
cold spawn, memory, context, scaling, bus) and their table. ``resilience``
(``_resilience.py``): goodput, cache, coalescing, hedging against a local fault server.
``telemetry`` (``_telemetry.py``): what metrics, events, resource sampling and spans cost.
``loadgen`` (``_loadgen.py``): the load generator against Locust, and open vs closed loop on a stall.
``all`` (the default) runs them in that order; one JSON holds them all (each later suite's
numbers under its name).
"""

from __future__ import annotations

import argparse
import functools
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from . import _floor, _langgraph, _loadgen, _ours, _ray, _resilience, _runtime, _service, _telemetry
from ._harness import Case, Sample, measure, profile_case, skipped
from ._report import RESULTS_DIR, environment, installed, render, write_json
from ._sizes import FULL, QUICK, Sizes
from ._workloads import WORKLOADS, resolve_keys

__all__ = ["main"]

_NOT_INSTALLED = "({name} not installed: pip install '.[peers]')"
_PEER_NA = {
    ("ray", "a_steps"): "= (a): Ray has no step/map distinction, the same tasks",
    ("langgraph", "e"): "n/a: ours only",
    ("ray", "e"): "n/a: ours only",
    ("langgraph", "c_sim"): "n/a: ours only",
    ("ray", "c_sim"): "n/a: ours only",
}
_PROFILED = ("a", "a_steps", "b")


#: the suites after the engine's: each prints its table and returns its JSON entry
_SUITES: dict[str, Callable[..., dict[str, Any]]] = {
    "runtime": _runtime.run_runtime_suite,
    "resilience": _resilience.run_resilience_suite,
    "telemetry": _telemetry.run_telemetry_suite,
    "loadgen": _loadgen.run_loadgen_suite,
    "service": _service.run_service_suite,
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="agentfleet's benchmark suites: the engine vs bare asyncio, LangGraph and Ray; "
                    "the runtime's pool, memory, context, scaling and bus figures against their targets.",
    )
    p.add_argument("--suite", choices=("engine", *_SUITES, "all"), default="all",
                   help="engine: workloads vs asyncio/LangGraph/Ray; runtime: activation, spawn, memory, context, "
                        "scaling, bus; resilience: goodput under 429s and 5xx, cache, coalescing, hedging "
                        "(against a local fault server); telemetry: what metrics, events, resource sampling "
                        "and spans cost a 10,000-task run; loadgen: the load generator's capacity next to "
                        "Locust and the stall test (open vs closed loop); all (default): every suite")
    p.add_argument("--only", metavar="a,b",
                   help="run only these engine workloads (a, a_steps, b, c, c_sim, d, e)")
    p.add_argument("--quick", action="store_true", help="smaller sizes and 3 repeats: a smoke run")
    p.add_argument("--json", metavar="OUT.json", type=Path, help="also write the results here")
    p.add_argument("--repeat", type=int, metavar="N", help="timed runs per case (default 5, 3 with --quick)")
    p.add_argument("--no-peers", action="store_true", help="skip LangGraph and Ray")
    p.add_argument("--profile", action="store_true",
                   help="cProfile ours once on (a) and (b); print the top 15 functions by tottime")
    p.add_argument("--budget", type=float, metavar="S",
                   help="seconds per case after which repeats stop early (default 12, 4 with --quick)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    sizes: Sizes = QUICK if args.quick else FULL
    repeat = args.repeat or (3 if args.quick else 5)
    budget = args.budget or (4.0 if args.quick else 12.0)
    keys = resolve_keys(args.only)
    console = Console()
    if not console.is_terminal:
        console = Console(width=170)  # a file or a pipe: keep the table's rows on one line each
    log = Console(stderr=True, highlight=False)
    if not log.is_terminal:
        log = Console(stderr=True, highlight=False, width=170)
    started = time.perf_counter()
    env = environment()
    results: dict[str, dict[str, Sample]] = {}
    verdicts: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    if args.suite in ("engine", "all"):
        results, verdicts, extra = _engine_suite(args, sizes, repeat, budget, keys, console, log, env, started)
    else:
        if args.only:
            log.print("[yellow]--only selects engine workloads; ignored with --suite runtime[/]")
        keys = []
    for name, run_suite in _SUITES.items():  # after the engine suite, in this order
        if args.suite in (name, "all"):
            if args.suite == "all":
                console.print()
            extra[name] = run_suite(console, log, quick=args.quick, env=env)
    extra["suite_wall_s"] = time.perf_counter() - started

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    suffix = ("" if args.suite == "all" else f"-{args.suite}") + ("-quick" if args.quick else "")
    out = RESULTS_DIR / f"{stamp}{suffix}.json"
    options = {"suite": args.suite, "quick": args.quick, "repeat": repeat, "budget_s": budget, "only": keys,
               "no_peers": args.no_peers, "profile": args.profile}
    write_json(out, env=env, sizes=sizes, options=options, results=results, verdicts=verdicts, extra=extra)
    console.print(f"[dim]results: {out}[/]")
    if args.json is not None:
        write_json(args.json, env=env, sizes=sizes, options=options, results=results, verdicts=verdicts,
                   extra=extra)
        console.print(f"[dim]results: {args.json}[/]")
    return 0


def _engine_suite(args: argparse.Namespace, sizes: Sizes, repeat: int, budget: float, keys: list[str],
                  console: Console, log: Console, env: dict[str, Any],
                  started: float) -> tuple[dict[str, dict[str, Sample]], dict[str, Any], dict[str, Any]]:
    """The engine suite: every workload on each engine, its table; returns results, verdicts, extra."""
    log.print(f"[bold]agentfleet benchmarks[/] ({'quick' if args.quick else 'full'}): "
              f"{', '.join(keys)}; up to {repeat} timed runs per case after one warm-up; "
              f"python {env['python']}, {env['cpu_usable']} usable CPUs")
    provider = _ours.provider_path()
    if provider != "library":
        log.print(f"[yellow]agentfleet providers unavailable, using the benchmark's stand-in:[/] {provider}")

    def run_case(key: str, engine: str, prepare: Callable[[], Case]) -> Sample:
        sample = measure(engine, prepare, repeat=repeat, budget=budget)
        if sample.ok:
            w = WORKLOADS[key]
            n = w.units(sizes) if w.kind == "overhead" else 1
            per = "/task" if w.kind == "overhead" else ""
            log.print(f"  {key:<8} {engine:<10} median {sample.median / n * 1e6:>10.1f} µs{per}"
                      f"  min {sample.min / n * 1e6:>10.1f}  ({len(sample.times)} runs, "
                      f"GC {sample.gc_share:.0%})")
        else:
            log.print(f"  {key:<8} {engine:<10} [red]{sample.error or sample.skipped}[/]")
        return sample

    results: dict[str, dict[str, Sample]] = {k: {} for k in keys}
    peers_state = {
        "langgraph": "skipped: --no-peers" if args.no_peers else (
            None if installed("langgraph") else _NOT_INSTALLED.format(name="langgraph")),
        "ray": "skipped: --no-peers" if args.no_peers else (
            None if installed("ray") else _NOT_INSTALLED.format(name="ray")),
    }

    def peer(engine: str, key: str, cases: Mapping[str, Callable[[Sizes], Case]]) -> Sample | None:
        reason = peers_state[engine]
        if reason is not None:
            return skipped(engine, reason if reason.startswith("(") else f"({reason})")
        na = _PEER_NA.get((engine, key))
        if na is not None:
            return skipped(engine, na)
        if key not in cases:
            return skipped(engine, "n/a")
        return None

    # Phase 1: the floor, ours and LangGraph, workload by workload.
    for key in keys:
        log.print(f"[bold]{WORKLOADS[key].title(sizes)}[/]")
        bucket = results[key]
        if key == "e":
            bucket["ours_cp"] = run_case(key, "ours_cp", functools.partial(_ours.CASES["e_cp"], sizes))
            bucket["ours_fifo"] = run_case(key, "ours_fifo", functools.partial(_ours.CASES["e_fifo"], sizes))
        elif key == "c_sim":
            bucket["floor"] = skipped("floor", "see (c)")
            bucket["ours"] = run_case(key, "ours", functools.partial(_ours.CASES["c_sim"], sizes))
        else:
            bucket["floor"] = run_case(key, "floor", functools.partial(_floor.CASES[key], sizes))
            bucket["ours"] = run_case(key, "ours", functools.partial(_ours.CASES[key], sizes))
        lg = peer("langgraph", key, _langgraph.CASES)
        bucket["langgraph"] = lg if lg is not None else run_case(
            key, "langgraph", functools.partial(_langgraph.CASES[key], sizes))

    # Phase 2: Ray, started only now.
    ray_info: dict[str, Any] = {}
    ray_keys = [k for k in keys if peer("ray", k, _ray.CASES) is None]
    for key in keys:
        reason = peer("ray", key, _ray.CASES)
        if reason is not None:
            results[key]["ray"] = reason
    if ray_keys:
        log.print("[bold]Ray[/] (starting local Ray)")
        try:
            ray_info["init_s"] = _ray.ensure()
        except Exception as exc:  # noqa: BLE001
            for key in ray_keys:
                results[key]["ray"] = Sample("ray", error=f"ray.init failed: {type(exc).__name__}: {exc}")
            ray_keys = []
        try:
            for key in ray_keys:
                results[key]["ray"] = run_case(key, "ray", functools.partial(_ray.CASES[key], sizes))
        finally:
            _ray.shutdown()

    # Profiles of ours on the overhead workloads.
    profiles: dict[str, str] = {}
    if args.profile:
        for key in keys:
            if key in _PROFILED:
                profiles[key] = profile_case(functools.partial(_ours.CASES[key], sizes))

    wall = time.perf_counter() - started
    title = (f"agentfleet benchmarks ({'quick' if args.quick else 'full'}) — median, min; "
             f"ratios of medians · python {env['python']} · {env['cpu_usable']} CPUs · "
             f"commit {(env['git_commit'] or '?')[:10]}{'+dirty' if env['git_dirty'] else ''}")
    console.print()
    verdicts = render(console, sizes, results, repeat, title, env["versions"])
    console.print(
        f"[dim]CP = critical path. Overhead rows: wall time / tasks. ours: provider path {provider}. "
        f"Ray: init {ray_info.get('init_s', 0):.1f} s (not timed); latency workloads on an async actor. "
        f"Setup (spec build / graph compile) is untimed and stored in the JSON. "
        f"Suite wall time {wall:.0f} s.[/]"
    )
    for key, text in profiles.items():
        console.print(f"\n[bold]cProfile of ours on {WORKLOADS[key].title(sizes)}[/] "
                      "(one run after a warm-up; top 15 by tottime)")
        console.print(text, highlight=False, markup=False)

    extra = {"ours_provider_path": provider, "ray": ray_info, "profiles": profiles, "engine_wall_s": wall}
    return results, dict(verdicts), extra
