"""The load generator suite: how much load ``agentfleet loadtest`` can make, and what it sees.

1. Capacity. A trivial local HTTP server (``tests/loadtest_servers.py``: an asyncio Protocol
   server answering 13 bytes, uvloop when installed) in a child process, and one generator
   process at a time against it, each a fresh child process: Locust's ``FastHttpUser``
   (headless, ``wait_time = constant(0)``, its final ``--json`` stats), ours (the engine's
   closed loop with ``USERS`` virtual users over our HTTP client, on asyncio and on uvloop),
   the same closed loop with aiohttp and httpx as the send (why the client is hand-written),
   and ours in open loop: the highest constant arrival rate it sends on time (doubling from
   1,000/s until the generator reports itself saturated, then one step between; ``--quick``:
   on asyncio only). With two
   or more usable CPUs the server is pinned to one and the generator to another, so neither
   steals the other's core. Target: ours >= Locust, from one process.
2. Stalls. A server that freezes for 1 s in every 10 s (``--quick``: 0.3 s in every 1.5 s);
   an open loop at 200 requests/s and a closed loop of 10 users, 30 s each (``--quick``: 4 s),
   against it. The open loop, timing from each request's intended start, must show the freeze
   at p99; the closed loop (coordinated omission) hides it.

``python -m benchmarks._loadgen`` runs the suite alone; ``--worker JSON`` is the child's entry.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rich.console import Console

from ._runtime import Row, run_figures

ROOT = Path(__file__).resolve().parent.parent
USERS = 64
STALL_RATE = 200.0
STALL_USERS = 10

_LOCUSTFILE = '''\
from locust import FastHttpUser, constant, task


class Hit(FastHttpUser):
    wait_time = constant(0)

    @task
    def hit(self) -> None:
        self.client.get("/")
'''


# -- placement ----------------------------------------------------------------------------

def _cpus() -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, generator CPUs): one each when there are two or more, else no pinning."""
    try:
        usable = sorted(os.sched_getaffinity(0))
    except AttributeError:
        return None, None
    if len(usable) < 2:
        return None, None
    return {usable[-1]}, {usable[0]}


@contextlib.contextmanager
def _server(kind: str, cpus: set[int] | None, **options: float) -> Iterator[str]:
    sys.path.insert(0, str(ROOT))
    from tests.loadtest_servers import spawn_server

    with spawn_server(kind, cpus=cpus, **options) as url:
        yield url


def _child(args: list[str], cpus: set[int] | None, timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if cpus:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(proc.pid, cpus)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


# -- the generators -----------------------------------------------------------------------

def _ours(url: str, cpus: set[int] | None, **job: Any) -> dict[str, Any]:
    """One run of our engine (or aiohttp/httpx as its send) in a fresh child process."""
    job = {"url": url, **job}
    done = _child([sys.executable, "-m", "benchmarks._loadgen", "--worker", json.dumps(job)], cpus,
                  timeout=float(job["duration"]) + 60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"worker {job['client']} failed ({done.returncode}): {done.stderr.strip()[-400:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _locust(url: str, cpus: set[int] | None, users: int, duration: float) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="agentfleet-locust-") as tmp:
        locustfile = Path(tmp) / "locustfile.py"
        locustfile.write_text(_LOCUSTFILE)
        done = _child([sys.executable, "-m", "locust", "-f", str(locustfile), "--headless", "-u", str(users),
                       "-r", str(users), "-t", f"{duration:g}s", "--host", url, "--json", "--skip-log"],
                      cpus, timeout=duration + 60)
    try:
        stats = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise RuntimeError(f"locust failed ({done.returncode}): {done.stderr.strip()[-400:]}") from None
    row = next(s for s in stats if s["name"] == "/")
    span = row["last_request_timestamp"] - row["start_time"]
    return {"rps": row["num_requests"] / span, "requests": row["num_requests"], "failures": row["num_failures"],
            "span_s": span, "cpu_warning": "CPU usage above" in done.stderr}


def _installed(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


# -- the worker (child process) -----------------------------------------------------------

async def _worker_async(job: dict[str, Any]) -> dict[str, Any]:
    from agentfleet.loadtest._engine import Result, Send, run_closed_loop, run_open_loop
    from agentfleet.loadtest._http import HttpClient

    url, client_name, users = job["url"], job["client"], int(job["users"])
    duration = float(job["duration"])
    closers: list[Callable[[], Any]] = []
    extra: dict[str, Any] = {}
    send: Send
    if client_name == "ours":
        client = HttpClient(url, max_connections=users if job["mode"] == "closed" else 1024)
        closers.append(client.aclose)
        send = client.sender("GET", "/")
    elif client_name == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=users))
        closers.append(session.close)

        async def send() -> Result:
            async with session.get(url + "/") as response:
                body = await response.read()
                return Result(response.status == 200, response.status, None, 0.0, None, None, len(body))
    else:
        import httpx

        hx = httpx.AsyncClient(limits=httpx.Limits(max_connections=users, max_keepalive_connections=users),
                               trust_env=False)
        closers.append(hx.aclose)

        async def send() -> Result:
            response = await hx.get(url + "/")
            return Result(response.status_code == 200, response.status_code, None, 0.0, None, None,
                          len(response.content))
    try:
        if job["mode"] == "closed":
            stats = await run_closed_loop(users, duration, send)
        else:
            rate = float(job["rate"])
            stats = await run_open_loop((i / rate for i in range(int(rate * duration))), send)
            extra["rate"] = rate
    finally:
        for close in closers:
            await close()
    if client_name == "ours":
        extra["connections"] = client.statistics().opened
    return {"rps": stats.completed / stats.duration, "completed": stats.completed, "ok": stats.ok,
            "errors": stats.errors, "dropped": stats.dropped, "late": stats.late, "lateness_p99": stats.lateness_p99,
            "cpu_fraction": stats.cpu_fraction, "saturated": stats.saturated, "saturation": stats.saturation,
            "duration": stats.duration, **extra}


def _worker(job: dict[str, Any]) -> None:
    if job.get("loop") == "uvloop":
        import uvloop

        result = uvloop.run(_worker_async(job))
    else:
        result = asyncio.run(_worker_async(job))
    print(json.dumps(result), flush=True)


# -- the figures --------------------------------------------------------------------------

def _open_capacity(url: str, cpus: set[int] | None, loop: str, seconds: float, log: Console) -> dict[str, Any]:
    """The highest constant rate the open loop sends on time: doubling, then one step between."""
    tried: list[dict[str, Any]] = []

    def attempt(rate: float) -> bool:
        r = _ours(url, cpus, client="ours", mode="open", users=USERS, duration=seconds, rate=rate, loop=loop)
        r["rate"] = rate
        tried.append(r)
        good = not r["saturated"] and r["errors"] == 0 and r["dropped"] == 0
        log.print(f"  [dim]open loop ({loop}) at {rate:,.0f}/s: {'on time' if good else 'saturated'}, "
                  f"lateness p99 {r['lateness_p99'] * 1e3:.1f} ms, cpu {r['cpu_fraction']:.0%}[/]")
        return good

    rate, good_rate, bad_rate = 1000.0, 0.0, 0.0
    while rate <= 128_000:
        if attempt(rate):
            good_rate = rate
            rate *= 2
        else:
            bad_rate = rate
            break
    if good_rate and bad_rate and attempt(mid := (good_rate + bad_rate) / 2):
        good_rate = mid
    return {"rate": good_rate, "tried": tried}


def _capacity_rows(quick: bool, methods: dict[str, str], log: Console) -> list[Row]:
    seconds = 3.0 if quick else 10.0
    open_seconds = 1.5 if quick else 3.0
    server_cpus, gen_cpus = _cpus()
    has_uvloop = _installed("uvloop")
    rows: list[Row] = []
    with _server("trivial", server_cpus) as url:
        locust: dict[str, Any] | None = None
        if _installed("locust"):
            locust = _locust(url, gen_cpus, USERS, seconds)
            log.print(f"  locust FastHttpUser: {locust['rps']:,.0f} requests/s")
            rows.append(Row("capacity_locust", f"Locust FastHttpUser, {USERS} users, one process",
                            [f"{locust['rps']:,.0f} requests/s",
                             f"{locust['requests']:,} requests, {locust['failures']} failures"
                             + (" · Locust warned its CPU was saturated" if locust["cpu_warning"] else "")],
                            "the baseline", "REPORT", "capacity", locust))
        else:
            rows.append(Row("capacity_locust", f"Locust FastHttpUser, {USERS} users, one process",
                            ["(locust not installed: pip install locust)"], "the baseline", "N/A", "capacity"))
        base = locust["rps"] if locust else None

        def versus(rps: float) -> str:
            return f"{rps / base:.1f}x Locust" if base else "Locust not measured"

        def verdict(rps: float) -> str:
            return ("PASS" if rps >= base else "FAIL") if base else "REPORT"

        loops = ["asyncio"] + (["uvloop"] if has_uvloop else [])
        for loop in loops:
            r = _ours(url, gen_cpus, client="ours", mode="closed", users=USERS, duration=seconds, loop=loop)
            log.print(f"  ours closed loop ({loop}): {r['rps']:,.0f} requests/s")
            rows.append(Row(f"capacity_ours_{loop}", f"ours, closed loop, {USERS} users ({loop})",
                            [f"{r['rps']:,.0f} requests/s", versus(r["rps"]),
                             f"{r['connections']} connections · generator CPU {r['cpu_fraction']:.0%} · "
                             f"{r['errors']} errors"], ">= Locust", verdict(r["rps"]), "capacity", r))
        for loop in loops[:1] if quick else loops:  # --quick: the rate search on the default loop only
            found = _open_capacity(url, gen_cpus, loop, open_seconds, log)
            rate = found["rate"]
            rows.append(Row(f"capacity_open_{loop}", f"ours, open loop: highest rate sent on time ({loop})",
                            [f"{rate:,.0f} requests/s", versus(rate),
                             "tried " + ", ".join(f"{t['rate']:,.0f}" + ("" if not t["saturated"] else " (saturated)")
                                                  for t in found["tried"])],
                            ">= Locust", verdict(rate), "capacity", found))
        for name in ("aiohttp", "httpx"):
            if not _installed(name):
                rows.append(Row(f"client_{name}", f"{name} as the send, closed loop, {USERS} users",
                                [f"({name} not installed)"], "report", "N/A", "capacity"))
                continue
            r = _ours(url, gen_cpus, client=name, mode="closed", users=USERS, duration=seconds, loop="asyncio")
            log.print(f"  {name} closed loop: {r['rps']:,.0f} requests/s")
            rows.append(Row(f"client_{name}", f"{name} as the send, closed loop, {USERS} users (asyncio)",
                            [f"{r['rps']:,.0f} requests/s", versus(r["rps"]),
                             f"generator CPU {r['cpu_fraction']:.0%}"], "report (client choice)", "REPORT",
                            "capacity", r))
    placement = (f"server pinned to CPU {sorted(server_cpus)}, generator to CPU {sorted(gen_cpus)}"
                 if server_cpus and gen_cpus else "no pinning (fewer than 2 usable CPUs)")
    methods["capacity"] = (
        f"tests/loadtest_servers.py 'trivial' (13-byte answers, keep-alive) in a child process on "
        f"{'uvloop' if has_uvloop else 'asyncio'}; each generator in a fresh child process, one after another, "
        f"{placement}. Locust: FastHttpUser, wait_time constant(0), -u {USERS} -r {USERS} -t {seconds:g}s --json; "
        f"rate = requests / (last request - start). Ours: run_closed_loop({USERS} users, {seconds:g} s) over "
        f"HttpClient(max_connections={USERS}); rate = answers / loop duration; aiohttp (TCPConnector(limit="
        f"{USERS})) and httpx (Limits({USERS})) as the send of the same loop. Open loop: constant spacing, "
        f"{open_seconds:g} s per rate, doubling from 1,000/s; 'on time' = not saturated (CPU <= 90% of a core and "
        f"p99 lateness <= 10 ms), no errors, no drops; then one rate halfway to the first saturated one.")
    return rows


async def _stall_runs(url: str, seconds: float) -> dict[str, Any]:
    from agentfleet.loadtest._engine import run_closed_loop, run_open_loop
    from agentfleet.loadtest._http import HttpClient

    open_lat: list[float] = []
    closed_lat: list[float] = []
    async with HttpClient(url, max_connections=1024) as client:
        send = client.sender()
        opened = await run_open_loop((i / STALL_RATE for i in range(int(STALL_RATE * seconds))), send,
                                     on_result=lambda t, r: open_lat.append(r.latency))
        closed = await run_closed_loop(STALL_USERS, seconds, send, on_result=lambda t, r: closed_lat.append(r.latency))
    return {"open": _summary(open_lat, opened.errors, opened.saturated),
            "closed": _summary(closed_lat, closed.errors, closed.saturated)}


def _summary(latencies: list[float], errors: int, saturated: bool) -> dict[str, Any]:
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))] if ordered else float("nan")

    return {"requests": len(ordered), "errors": errors, "saturated": saturated, "p50_s": pct(0.5),
            "p90_s": pct(0.9), "p99_s": pct(0.99), "max_s": ordered[-1] if ordered else float("nan")}


def _stall_rows(quick: bool, methods: dict[str, str], log: Console) -> list[Row]:
    every, stall, seconds = (1.5, 0.3, 4.0) if quick else (10.0, 1.0, 30.0)
    server_cpus, _ = _cpus()
    with _server("stall", server_cpus, stall_every=every, stall_for=stall) as url:
        data = asyncio.run(_stall_runs(url, seconds))
    o, c = data["open"], data["closed"]
    log.print(f"  stall: open p99 {o['p99_s'] * 1e3:.0f} ms, closed p99 {c['p99_s'] * 1e3:.1f} ms")
    shows = o["p99_s"] >= 0.5 * stall
    hides = c["p99_s"] < 0.2 * stall
    methods["stall"] = (
        f"tests/loadtest_servers.py 'stall' in a child process: in every {every:g} s the last {stall:g} s are a "
        f"freeze (requests then are answered when it ends). In this process, one after the other over one "
        f"HttpClient: run_open_loop at {STALL_RATE:.0f}/s for {seconds:g} s (latency from the intended start), "
        f"then run_closed_loop with {STALL_USERS} users for {seconds:g} s (latency from the actual send). "
        "Nearest-rank percentiles of every answer. Target: the open loop's p99 shows at least half the stall, "
        "the closed loop's stays under a fifth of it (coordinated omission).")
    data.update(stall_every_s=every, stall_s=stall, seconds=seconds)
    return [Row("stall", f"a {stall:g} s freeze every {every:g} s: open vs closed loop p99",
                [f"open p99 {o['p99_s'] * 1e3:,.0f} ms · closed p99 {c['p99_s'] * 1e3:,.1f} ms",
                 f"open: {o['requests']:,} requests, p50 {o['p50_s'] * 1e3:.1f} ms, p90 {o['p90_s'] * 1e3:.0f} ms, "
                 f"max {o['max_s'] * 1e3:,.0f} ms",
                 f"closed: {c['requests']:,} requests, p50 {c['p50_s'] * 1e3:.2f} ms, max {c['max_s'] * 1e3:,.0f} ms "
                 "(the freeze happened; p99 does not show it)"],
                f"open p99 >= {0.5 * stall:g} s, closed p99 < {0.2 * stall:g} s",
                "PASS" if shows and hides else "FAIL", "stall", data)]


def run_loadgen_suite(console: Console, log: Console, *, quick: bool, env: dict[str, Any]) -> dict[str, Any]:
    """Measure every figure, print the table and the method lines; return the JSON entry."""
    methods: dict[str, str] = {}
    return run_figures(console, log, suite="load generator", label="Load generator suite", quick=quick, env=env,
                       methods=methods, figures=[("capacity", lambda: _capacity_rows(quick, methods, log)),
                                                 ("stall", lambda: _stall_rows(quick, methods, log))])


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--worker":
        _worker(json.loads(sys.argv[2]))
    else:
        from ._report import environment

        run_loadgen_suite(Console(width=170), Console(stderr=True, highlight=False, width=170),
                          quick="--quick" in sys.argv, env=environment())
