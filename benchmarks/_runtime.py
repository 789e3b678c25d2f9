"""The runtime suite: ``python -m benchmarks --suite runtime [--quick]``.

Where the engine suite times whole workflows, this one measures the parts the product
targets name (PRODUCT.md, "Targets"): warm-pool activation, cold spawn per provider
kind, memory per idle pooled agent, context tokens against the whole-history baseline,
parallel efficiency from 1 to 512 agents, and the message bus (``_bus.run_bus_bench``,
when that module is there). Each figure is measured in the same run as its floor where
one exists and shown with the ratio to it. The result is one table (figure, measured,
target, verdict), one line per measurement method under it, and a ``"runtime"`` entry in
the JSON. Verdicts: PASS / FAIL against a target, REPORT where there is no target, N/A
when a figure could not be measured (the reason is in its cell).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import re
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from . import _runtime_measure as m

__all__ = ["Row", "render_suite", "run_runtime_suite"]

SCALING_SIZES = (1, 8, 64, 512)
SCALING_LATENCY = 0.2  # seconds, real time
SCALING_SIZES_LONG = (64, 512)
SCALING_LATENCY_LONG = 1.0  # a short real LLM call: where per-task overhead matters less
ACTIVATION_PAIRS = 100_000
MEMORY_MEMBERS = 1_000


@dataclass
class Row:
    """One line of the table: a figure, what was measured (first line bold), target, verdict."""

    key: str
    figure: str
    measured: list[str]
    target: str
    verdict: str  # PASS | FAIL | REPORT | N/A
    method: str  # key into the method lines
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class _Plan:
    quick: bool

    @property
    def handovers(self) -> int:
        return 5_000 if self.quick else 20_000

    @property
    def spawns(self) -> int:
        return 5 if self.quick else 20

    @property
    def spawn_budget(self) -> float:
        return 4.0 if self.quick else 12.0

    @property
    def calls(self) -> int:
        return 5 if self.quick else 20

    @property
    def scaling_repeat(self) -> int:
        return 3 if self.quick else 5


# -- formatting ---------------------------------------------------------------------------

def _ns(value: float) -> str:
    if value != value:  # NaN
        return "?"
    if value < 1e3:
        return f"{value:.0f} ns"
    if value < 1e6:
        return f"{value / 1e3:.2f} µs"
    if value < 1e9:
        return f"{value / 1e6:.2f} ms"
    return f"{value / 1e9:.2f} s"


def _s(seconds: float) -> str:
    return _ns(seconds * 1e9)


def _bytes(n: float) -> str:
    if n < 1e3:
        return f"{n:.0f} B"
    if n < 1e6:
        return f"{n / 1e3:.1f} kB"
    return f"{n / 1e6:.1f} MB"


def _x(ratio: float) -> str:
    return f"{ratio:.1f}x" if ratio >= 10 else f"{ratio:.2f}x"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


_STYLE = {"PASS": "bold green", "FAIL": "bold red", "REPORT": "cyan", "N/A": "yellow"}


# -- the figures --------------------------------------------------------------------------

def _activation_rows(plan: _Plan, methods: dict[str, str]) -> list[Row]:
    fast = asyncio.run(m.activation(ACTIVATION_PAIRS))
    hand = asyncio.run(m.handover(plan.handovers))
    ours, floor, timer = fast["ours"], fast["floor"], fast["timer"]
    methods["activation"] = (
        f"AgentPool(size={fast['members']}) of warm members over one shared sim provider (shared=True, "
        f"warm_each=False: an HTTP agent's pool without the network; sim and python agents get a SlotPool, a "
        f"bare counter, in runs), started; {fast['pairs']:,} acquire/release pairs after 2,000 warm-up, each acquire "
        f"timed alone with time.perf_counter_ns (release untimed): acquire_nowait(), else await acquire() "
        f"(needed {fast['slow_path']} times); GC on. Floor: an asyncio.Queue of {fast['members']} tokens, "
        f"get_nowait() else await get(), then put_nowait(). Both include the timer itself: two back-to-back "
        f"perf_counter_ns calls take p50 {_ns(timer['p50_ns'])}, p99 {_ns(timer['p99_ns'])}. Hand-over: "
        f"AgentPool(size=1, max=1) passed between two coroutines, {hand['handovers']:,} times: from just before "
        f"release() to the waiting acquire() returning (one event-loop turn); floor: the same "
        f"hand-over with a bare asyncio.Future per waiter (an asyncio.Queue cannot be the floor here: the "
        f"releasing coroutine takes the token back before the woken getter runs)."
    )
    rows = [Row(
        "activation_fast", "1 activation, warm pool (acquire_nowait)",
        [f"p50 {_ns(ours['p50_ns'])} · p99 {_ns(ours['p99_ns'])}",
         f"p99.9 {_ns(ours['p999_ns'])} · max {_ns(ours['max_ns'])}",
         f"floor asyncio.Queue: p50 {_ns(floor['p50_ns'])} · p99 {_ns(floor['p99_ns'])}",
         f"{_x(ours['p50_ns'] / floor['p50_ns'])} floor at p50 · {_x(ours['p99_ns'] / floor['p99_ns'])} at p99"],
        "p99 < 1 ms", _verdict(ours["p99_ns"] < 1e6), "activation", fast)]
    ho, hf = hand["ours"], hand["floor"]
    rows.append(Row(
        "activation_handover", "1 activation, hand-over to a waiter (release → waiter resumes)",
        [f"p50 {_ns(ho['p50_ns'])} · p99 {_ns(ho['p99_ns'])}",
         f"p99.9 {_ns(ho['p999_ns'])} · max {_ns(ho['max_ns'])}",
         f"floor future hand-over: p50 {_ns(hf['p50_ns'])} · p99 {_ns(hf['p99_ns'])}",
         f"{_x(ho['p50_ns'] / hf['p50_ns'])} floor at p50 · {_x(ho['p99_ns'] / hf['p99_ns'])} at p99"],
        "report (one loop turn)", "REPORT", "activation", hand))
    return rows


def _spawn_rows(plan: _Plan, methods: dict[str, str], log: Console) -> list[Row]:
    rows: list[Row] = []
    results: dict[str, dict[str, Any]] = {}
    for label in m.SPAWN_KINDS:
        try:
            data = asyncio.run(m.spawn_kind(label, plan.spawns, plan.spawn_budget, plan.calls))
        except Exception as exc:  # noqa: BLE001 - one provider kind failing must not stop the suite
            rows.append(Row(f"spawn_{_slug(label)}", f"2 cold spawn: {label}", [_error(exc)], "report", "N/A",
                            "spawn", {"error": _error(exc)}))
            continue
        results[label] = data
        log.print(f"  spawn {label:<34} p50 {_s(data['p50_s']):>10} ({data['spawns']} spawns)")
        lines = [f"p50 {_s(data['p50_s'])}", f"min {_s(data['min_s'])} · max {_s(data['max_s'])} · "
                 f"n={data['spawns']}"]
        if data.get("call_p50_s") is not None:
            lines.append(f"then a call: p50 {_s(data['call_p50_s'])}")
        rows.append(Row(f"spawn_{_slug(label)}", f"2 cold spawn: {label}", lines, "report (seed doc: < 1 s)",
                        "REPORT", "spawn", data))
    floor = results.get("command worker (stdlib protocol)")
    example = results.get("command worker (echo_worker.py)")
    if floor is not None and example is not None:
        for row in rows:
            if row.key == "spawn_command_worker_echo_worker_py":
                row.measured.insert(2, f"{_x(example['p50_s'] / floor['p50_s'])} the stdlib worker (floor)")
    methods["spawn"] = (
        f"Per kind, up to {plan.spawns} times (fewer once {plan.spawn_budget:g} s are spent, never under 3): "
        "AgentPool(name, lambda: build_provider(agent), size=1); time of await pool.start() (build, warm(), "
        "first healthy()), then one member checked and the pool closed (untimed). sim: build the SimProvider; "
        "python: build it and import/bind benchmarks._agents:echo (imported once, so later spawns only bind); "
        "command worker: start the process, ping it (warm) and ping again (first health check): "
        "examples/workers/echo_worker.py imports agentfleet.worker and with it the whole agentfleet package, "
        "benchmarks/_runtime_worker.py speaks the protocol with the standard library only and is the floor of a "
        "Python worker; command per-task: build the CommandProvider only (each task then starts a process: "
        "'then a call' is the p50 of calls on the last member, a whole process start per call in per-task mode, "
        "a pipe round trip in worker mode)."
    )
    return rows


def _slug(label: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def _memory_rows(methods: dict[str, str], workers: dict[str, dict[str, Any]]) -> list[Row]:
    data = asyncio.run(m.memory(MEMORY_MEMBERS))
    rows = [
        Row("memory_shared", "3 memory per idle pooled agent (members over one shared provider)",
            [f"{_bytes(data['shared_per_member'])} per member",
             f"{_bytes(data['shared_bytes'])} for {data['members']:,}"],
            "< 100 kB per agent", _verdict(data["shared_per_member"] < 100_000), "memory", data),
        Row("memory_own", "3 memory per idle pooled agent (a sim provider each, non-shared pool)",
            [f"{_bytes(data['own_per_member'])} per member",
             f"{_bytes(data['own_bytes'])} for {data['members']:,}",
             f"{_x(data['own_per_member'] / max(data['shared_per_member'], 1))} the shared pool's"],
            "report (< 100 kB)", "REPORT", "memory", data),
    ]
    procs = {label: d["worker_memory"] for label, d in workers.items() if d.get("worker_memory")}
    if procs:
        lines = []
        for label, mem in procs.items():
            name = label.removeprefix("command worker ").strip("()")
            lines.append(f"{name}: RSS {_bytes(mem.get('rss', 0))} · private {_bytes(mem.get('private', 0))}")
        rows.append(Row("memory_worker_process", "3 memory: a command-worker member's OS process", lines,
                        "report (a process, not Python state)", "REPORT", "memory", {"processes": procs}))
    methods["memory"] = (
        f"tracemalloc: Python allocations still alive after building and starting a pool of "
        f"{MEMORY_MEMBERS:,} idle members and a full gc.collect(), minus before, divided by {MEMORY_MEMBERS:,}. "
        "Shared: AgentPool(name, factory, shared=True, provider=p, warm_each=False), one sim provider built "
        "beforehand (members over one client, as HTTP agents are pooled; sim, python and per-task command "
        "agents get a SlotPool in runs, which keeps no object per agent at all). "
        "Non-shared: AgentPool(name, lambda: build_provider(agent), size=N), a SimProvider per member (how "
        "command-worker pools are built). tracemalloc counts Python objects only. A command-worker member also "
        "holds an OS process: RSS and private (unshared) memory from /proc/<pid>/status and smaps_rollup of the "
        "last worker started in (2)."
    )
    return rows


def _context_rows(methods: dict[str, str]) -> list[Row]:
    data = m.context()
    reduction = data["reduction"]
    all_done = data["done"] == data["tasks"] and data["status"] == "succeeded"
    by_ref = sum(1 for t in data["per_task"].values() if t["by_reference"])
    lines = [f"{reduction:.1%} fewer tokens" if reduction is not None else "nothing sent",
             f"sent {data['sent']:,} vs naive {data['naive']:,}",
             f"{data['done']}/{data['tasks']} tasks done ({data['status']})",
             f"{by_ref} outputs stored by reference"]
    ok = reduction is not None and reduction >= 0.80 and all_done
    methods["context"] = (
        f"run_virtual(Runner(load_workflow({os.path.relpath(data['path'])}), store=None).run()): the sprint "
        "example on the sim provider in virtual time (no wall-clock waits). Sent = RunResult.context_tokens (the "
        "tokens each task's prompt and system prompt carried, as the runner built them from its declared inputs); "
        "naive = RunResult.naive_tokens (each task given its own instructions plus every earlier output in full); "
        "reduction = 1 - sent / naive. Every task must also have succeeded. Per-task figures are in the JSON."
    )
    return [Row("context", "4 context: parallel_sprint.yaml vs the whole-history baseline", lines,
                ">= 80% fewer; every task done", _verdict(ok), "context", data)]


def _scaling_rows(plan: _Plan, methods: dict[str, str], log: Console) -> list[Row]:
    rows = []
    for latency, sizes, repeat in ((SCALING_LATENCY, SCALING_SIZES, plan.scaling_repeat),
                                   (SCALING_LATENCY_LONG, SCALING_SIZES_LONG, min(3, plan.scaling_repeat))):
        rows.extend(_scaling_pass(latency, sizes, repeat, log))
    methods["scaling"] = (
        f"Per N: a workflow of N independent tasks on one sim agent with latency {{fixed: L}} "
        f"on real time (L = {SCALING_LATENCY:g} s for N in {SCALING_SIZES}; L = {SCALING_LATENCY_LONG:g} s, a short "
        f"real LLM call, for N in {SCALING_SIZES_LONG}), max_concurrency N and max_parallel N (the pool is N slots "
        f"over one provider), run with agentfleet.run_async(spec, store=None) and timed around that call (planning, "
        f"providers, pools, scheduling, records; spec validation untimed); then the floor, asyncio.gather of N "
        f"asyncio.sleep(L); {plan.scaling_repeat} runs of each ({min(3, plan.scaling_repeat)} at "
        f"{SCALING_LATENCY_LONG:g} s), interleaved, after one warm-up workflow. Efficiency = ideal makespan (L) / "
        f"median measured makespan. "
        f"Overhead/task = (makespan - L) / N: the runtime's CPU per task, paid while all N start and finish at once, "
        f"so efficiency = L / (L + N x overhead) and falls with N at a fixed L."
    )
    return rows


def _scaling_pass(latency: float, sizes: tuple[int, ...], repeat: int, log: Console) -> list[Row]:
    data = asyncio.run(m.scaling(sizes, latency, repeat))
    rows = []
    for key, d in data["sizes"].items():
        n = d["n"]
        log.print(f"  scaling N={n:<4} ours {d['efficiency']:.1%} ({_s(d['ours_median_s'])}) · "
                  f"floor {d['floor_efficiency']:.1%} ({_s(d['floor_median_s'])})")
        rows.append(Row(
            f"scaling_{key}" + ("" if latency == SCALING_LATENCY else f"_at_{latency:g}s"),
            f"5 scaling: {n} concurrent sim agent{'s' if n > 1 else ''} × {_s(latency)}",
            [f"efficiency {d['efficiency']:.1%} (makespan {_s(d['ours_median_s'])})",
             f"floor gather+sleep: {d['floor_efficiency']:.1%} ({_s(d['floor_median_s'])})",
             f"{d['efficiency'] / d['floor_efficiency']:.3f} of the floor's efficiency",
             f"overhead {_s(d['overhead_per_task_s'])}/task (floor {_s(d['floor_overhead_per_task_s'])})",
             f"scheduler only (RunResult.elapsed): {d['scheduler_efficiency']:.1%}",
             f"95% leaves {_s(latency * (1 / 0.95 - 1) / n)}/task"],
            ">= 95% efficiency", _verdict(d["efficiency"] >= 0.95), "scaling", d))
    return rows


# -- the bus (benchmarks/_bus.py, written separately) --------------------------------------

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0}


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            out.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(data, list | tuple) and len(data) > 8:
        out[prefix] = f"[{len(data)} values]"
    else:
        out[prefix] = data
    return out


def _seconds(key: str, value: Any) -> float | None:
    """A latency in seconds from a key's unit suffix (``p99_ms``, ``p50_us`` ...), else None."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return None
    match = re.search(r"(?:_|\b)(ns|us|µs|ms|s)$", key.rsplit(".", 1)[-1])
    return value * _UNITS[match.group(1)] if match else None


def _find(flat: dict[str, Any], *, need: tuple[str, ...], any_of: tuple[str, ...] = ()) -> tuple[str, Any] | None:
    for key, value in flat.items():
        low = key.lower()
        if all(n in low for n in need) and (not any_of or any(a in low for a in any_of)):
            return key, value
    return None


def _latency_cell(flat: dict[str, Any], scope: tuple[str, ...]) -> tuple[list[str], float | None, str | None]:
    """'p50 · p99' lines for the keys under ``scope``; the p99 in seconds when its unit is known."""
    lines: list[str] = []
    p99_s: float | None = None
    found_key: str | None = None
    for q in ("p50", "p99"):
        hit = _find(flat, need=(q,), any_of=scope)
        if hit is None:
            continue
        key, value = hit
        found_key = key
        sec = _seconds(key, value)
        lines.append(f"{q} {_s(sec)}" if sec is not None else f"{key} = {value}")
        if q == "p99":
            p99_s = sec
    return ([" · ".join(lines)] if lines else []), p99_s, found_key


def _bus_rows(quick: bool, methods: dict[str, str]) -> list[Row]:
    figures = (("bus_inprocess", "6 bus in-process: p50/p99 at 100k msg/s", "p99 < 1 ms"),
               ("bus_throughput", "6 bus throughput vs asyncio.Queue", ">= 0.5x asyncio.Queue"),
               ("bus_redis", "6 bus Redis: p50/p99", "p99 < 5 ms"))
    try:
        from . import _bus
        bench: Callable[[bool], Any] | None = getattr(_bus, "run_bus_bench", None)
    except ImportError as exc:
        reason = f"not available (benchmarks/_bus.py: {exc})"
        bench = None
    else:
        reason = "not available (benchmarks/_bus.py has no run_bus_bench)"
    if bench is None:
        methods["bus"] = "benchmarks/_bus.py: run_bus_bench(quick) -> dict, when that module exists (not yet)."
        return [Row(k, f, [reason], t, "N/A", "bus") for k, f, t in figures]
    try:
        data = bench(quick)
        if inspect.isawaitable(data):
            data = asyncio.run(_awaited(data))
    except Exception as exc:  # noqa: BLE001 - the bus bench failing must not stop the suite
        methods["bus"] = "benchmarks/_bus.py: run_bus_bench(quick) raised:\n" + traceback.format_exc(limit=3)
        return [Row(k, f, [_error(exc)], t, "N/A", "bus") for k, f, t in figures]
    flat = _flatten(data if isinstance(data, dict) else {"result": data})
    rows: list[Row] = []
    used: set[str] = set()

    inproc_scope = ("in_process", "inprocess", "inproc", "in-process", "memory", "local")
    lines, p99, key = _latency_cell(flat, inproc_scope)
    lines += _rate_lines(flat, inproc_scope)
    rows.append(_bus_row(figures[0], lines, None if p99 is None else p99 < 1e-3, key, data))
    used.update(k for k in (key,) if k)

    ratio_hit = _find(flat, need=("ratio",))
    if ratio_hit is not None and isinstance(ratio_hit[1], int | float) and not isinstance(ratio_hit[1], bool):
        lines = [f"{_x(float(ratio_hit[1]))} asyncio.Queue's rate ({ratio_hit[0]})"]
        for word in ("bus", "queue"):
            hit = _find(flat, need=(word,), any_of=("throughput", "per_s", "msg_s", "rate"))
            if hit is not None and isinstance(hit[1], int | float) and hit[0] != ratio_hit[0]:
                lines.append(f"{hit[0]} = {hit[1]:,.0f}")
        rows.append(_bus_row(figures[1], lines, float(ratio_hit[1]) >= 0.5, ratio_hit[0], data))
    else:
        rows.append(_bus_row(figures[1], [], None, None, data))

    lines, p99, key = _latency_cell(flat, ("redis",))
    why = None if lines else _find(flat, need=("redis",), any_of=("skip", "error", "reason", "available"))
    if why is not None:  # e.g. {"redis": {"skipped": "no Redis on 127.0.0.1:6379"}}
        k, f, t = figures[2]
        rows.append(Row(k, f, [f"not measured: {why[1]}"], t, "N/A", "bus", {"source_key": why[0]}))
    else:
        if lines and p99 is not None:
            lines += _rate_lines(flat, ("redis",))
            ping_hits = [_find(flat, need=("redis", "ping", q)) for q in ("p50", "p99")]
            ping50, ping99 = (_seconds(*hit) if hit is not None else None for hit in ping_hits)
            if ping50 and ping99:
                lines.append(f"floor PING: p50 {_s(ping50)} · p99 {_s(ping99)}")
                p50_hit = _find(flat, need=("redis", "latency", "p50"))
                p50 = _seconds(*p50_hit) if p50_hit is not None else None
                if p50 is not None:
                    lines.append(f"{_x(p50 / ping50)} PING at p50 · {_x(p99 / ping99)} at p99")
        rows.append(_bus_row(figures[2], lines, None if p99 is None else p99 < 5e-3, key, data))

    shown = "; ".join(f"{k} = {v}" for k, v in list(flat.items())[:40])
    methods["bus"] = (f"benchmarks/_bus.py: run_bus_bench(quick={quick}) (its own method); what it returned: "
                      f"{shown}")
    return rows


def _rate_lines(flat: dict[str, Any], scope: tuple[str, ...]) -> list[str]:
    """The offered and achieved message rates of a latency measurement, when reported."""
    achieved = _find(flat, need=("achieved",), any_of=scope)
    target = _find(flat, need=("target_rate",), any_of=scope) or _find(flat, need=("rate",), any_of=scope)
    number = (int, float)
    if achieved is not None and isinstance(achieved[1], number):
        text = f"at {achieved[1]:,.0f} msg/s achieved"
        if target is not None and isinstance(target[1], number) and target[0] != achieved[0]:
            text += f" (offered {target[1]:,.0f})"
        return [text]
    if target is not None and isinstance(target[1], number):
        return [f"at {target[1]:,.0f} msg/s offered ({target[0]})"]
    return []


async def _awaited(value: Any) -> Any:
    return await value


def _bus_row(figure: tuple[str, str, str], lines: list[str], ok: bool | None, key: str | None,
             data: Any) -> Row:
    k, f, target = figure
    if not lines:
        return Row(k, f, ["not in run_bus_bench's result"], target, "N/A", "bus")
    verdict = "REPORT" if ok is None else _verdict(ok)
    return Row(k, f, lines, target, verdict, "bus", {"source_key": key})


# -- running and showing --------------------------------------------------------------------

def _error(exc: BaseException) -> str:
    return f"error: {type(exc).__name__}: {exc}"[:300]


def _guard(name: str, rows: list[Row], fn: Callable[[], list[Row]], log: Console) -> None:
    t0 = time.perf_counter()
    try:
        rows.extend(fn())
    except Exception as exc:  # noqa: BLE001 - a broken figure is shown as N/A, the rest still run
        log.print(f"  [red]{name} failed:[/] {_error(exc)}")
        log.print(traceback.format_exc(), markup=False, highlight=False)
        rows.append(Row(name, name, [_error(exc)], "", "N/A", name, {"error": _error(exc)}))
    log.print(f"  [dim]{name}: {time.perf_counter() - t0:.1f} s[/]")


def render_suite(console: Console, title: str, rows: list[Row], methods: dict[str, str], order: tuple[str, ...],
                 label: str, wall: float) -> dict[str, int]:
    """A suite's table (figure, measured, target, verdict), its numbered method lines and the tally."""
    table = Table(title=title, show_lines=True, expand=False)
    table.add_column("figure", max_width=34)
    table.add_column("measured", min_width=40)
    table.add_column("target", max_width=22)
    table.add_column("verdict", min_width=7)
    for row in rows:
        cell = Text(row.measured[0] if row.measured else "", style="bold")
        for line in row.measured[1:]:
            cell.append("\n" + line, style="dim")
        table.add_row(Text(row.figure), cell, Text(row.target), Text(row.verdict, style=_STYLE.get(row.verdict, "")))
    console.print()
    console.print(table)
    for n, key in enumerate(order, 1):
        if key in methods:
            console.print(Text(f"[{n}] {key}: ", style="bold").append(methods[key], style="dim"))
    counts = {v: sum(1 for r in rows if r.verdict == v) for v in ("PASS", "FAIL", "REPORT", "N/A")}
    console.print(Text(f"{label}: {counts['PASS']} PASS, {counts['FAIL']} FAIL, {counts['REPORT']} REPORT, "
                       f"{counts['N/A']} N/A; wall time {wall:.1f} s.", style="dim"))
    return counts


def run_figures(console: Console, log: Console, *, suite: str, label: str, quick: bool, env: dict[str, Any],
                figures: Sequence[tuple[str, Callable[[], list[Row]]]], methods: dict[str, str]) -> dict[str, Any]:
    """A suite's figures measured one after another (a broken one shown as N/A), its table and
    method lines printed under a title naming the machine and commit; the suite's JSON entry."""
    started = time.perf_counter()
    rows: list[Row] = []
    mode = "quick" if quick else "full"
    log.print(f"[bold]agentfleet {suite} benchmarks[/] ({mode}): " + ", ".join(key for key, _ in figures))
    for key, measure in figures:
        _guard(key, rows, measure, log)
    wall = time.perf_counter() - started
    title = (f"agentfleet {suite} benchmarks ({mode}) · python {env['python']} · {env['cpu_usable']} CPUs · "
             f"commit {(env['git_commit'] or '?')[:10]}{'+dirty' if env['git_dirty'] else ''}")
    counts = render_suite(console, title, rows, methods, tuple(key for key, _ in figures), label, wall)
    return {"quick": quick, "wall_s": wall, "rows": [asdict(r) for r in rows], "methods": methods, "verdicts": counts}


def run_runtime_suite(console: Console, log: Console, *, quick: bool, env: dict[str, Any]) -> dict[str, Any]:
    """Measure every figure, print the table and the method lines; return the JSON entry."""
    plan = _Plan(quick)
    started = time.perf_counter()
    methods: dict[str, str] = {}
    rows: list[Row] = []
    load0 = os.getloadavg()
    log.print(f"[bold]agentfleet runtime benchmarks[/] ({'quick' if quick else 'full'}): activation, cold spawn, "
              f"memory, context, scaling, bus; load average {load0[0]:.2f}")
    _guard("activation", rows, lambda: _activation_rows(plan, methods), log)
    spawn_rows: list[Row] = []
    _guard("spawn", spawn_rows, lambda: _spawn_rows(plan, methods, log), log)
    rows.extend(spawn_rows)
    workers = {r.figure.removeprefix("2 cold spawn: "): r.data for r in spawn_rows if r.data.get("worker_memory")}
    _guard("memory", rows, lambda: _memory_rows(methods, workers), log)
    _guard("context", rows, lambda: _context_rows(methods), log)
    _guard("scaling", rows, lambda: _scaling_rows(plan, methods, log), log)
    _guard("bus", rows, lambda: _bus_rows(quick, methods), log)
    wall = time.perf_counter() - started
    load1 = os.getloadavg()

    title = (f"agentfleet runtime benchmarks ({'quick' if quick else 'full'}) · python {env['python']} · "
             f"{env['cpu_usable']} CPUs · load avg {load0[0]:.2f} → {load1[0]:.2f} · "
             f"commit {(env['git_commit'] or '?')[:10]}{'+dirty' if env['git_dirty'] else ''}")
    counts = render_suite(console, title, rows, methods,
                          ("activation", "spawn", "memory", "context", "scaling", "bus"), "Runtime suite", wall)
    return {
        "quick": quick,
        "wall_s": wall,
        "load_average": {"start": load0, "end": load1},
        "rows": [asdict(r) for r in rows],
        "methods": methods,
        "verdicts": counts,
    }
