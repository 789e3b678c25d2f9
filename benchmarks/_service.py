"""The service suite: ``agentfleet serve`` under load, on loopback, in the same run as its floor.

1. Submissions. The real service (``python -m agentfleet serve ... --workers 1 --rate-limit 100000
   --max-queued 1000000``, a fresh database each time) in a child process, and agentfleet's load
   generator (``agentfleet.loadtest``: ``HttpClient`` + ``run_open_loop`` + ``WindowedRecorder``, the
   pieces ``agentfleet loadtest`` is made of) sending ``POST /v1/runs`` open-loop at 500, 750 and
   1,000 requests/s for 15 s each (``--quick``: 4 s), after a short unrecorded warm-up and once
   the runner has finished a run. Latency is from each request's intended start; only a ``202`` counts as a success.
   Target: >= 500/s sustained at p99 < 50 ms. Acknowledging is not executing: each row also says
   how many of the runs submitted had finished, were running and were still queued when the last
   answer came.
2. Ceiling against the floor. The same generator against the service and against the floor of
   this stack, a bare FastAPI app on uvicorn (same uvicorn options as ``serve``) whose
   ``POST /v1/runs`` parses the same JSON body with a pydantic model and answers 202: one ladder
   of rates (500 ... 6,000/s), 4 s a step (``--quick``: 2 s), a fresh server each step, up to the
   first rate not sustained in two tries (one with ``--quick``): p99 >= 50 ms, an error, a dropped
   send, or under 98% of the rate acknowledged. The highest sustained rate, the p99 at 500/s and
   the API process's CPU time per request (what other work on a shared machine moves least), ours
   over the floor's.
3. Event streams. 100 concurrent httpx clients, each submitting a ~2 s sim run (the service
   started with ``--max-runs 100`` so they all run together) and reading its
   ``GET /v1/runs/{id}/events`` until ``event: end``; every client's event ids are compared with
   ``SELECT id FROM events WHERE run_id = ? ORDER BY id`` once its run has ended: every id, in
   order, no duplicates, and the run succeeded. A thread polling the store every 5 ms times each
   event from stored to received.

``agentfleet loadtest FILE`` itself is not used: with ``target.url: http://HOST/v1/runs`` it sends
``POST /v1/runs/`` (the client appends ``/`` to the URL's path) and the service answers ``307``,
which the client counts as a success (``200 <= status < 400``); the suite therefore builds the
request with the path as given and counts only ``202``.

``python -m benchmarks._service [--quick]`` runs the suite alone; ``--floor --port N`` serves the floor.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import secrets
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict
from rich.console import Console

from ._runtime import Row, run_figures

TARGET_RATE = 500.0
TARGET_P99 = 0.050  # seconds
RATES = (500.0, 750.0, 1000.0)
LADDER = (500.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0, 6000.0)
BUSY_OTHER = 0.25  # cores used by other processes during a step above which the step is marked
SUSTAINED_SHARE = 0.98  # of the offered rate acknowledged (202) over the step
WARMUP = (100.0, 0.5)  # requests/s, seconds: unrecorded, opens the connections and parses the workflow once
SSE_CLIENTS = 100
SUBMIT_WORKFLOW = "bench_submit"
STREAM_WORKFLOW = "bench_stream"
SUBMIT_SCALE = 0.05
_ROOT = Path(__file__).resolve().parent.parent

# temperature > 0: sim answers are not cached, so every run does its (simulated) work
_WORKFLOWS = {
    f"{SUBMIT_WORKFLOW}.yaml": f"""\
name: {SUBMIT_WORKFLOW}
description: 4 sim tasks (a plan, two halves in parallel, a join); ~75 ms a run at scale 0.05
agents:
  worker:
    provider: sim
    temperature: 0.7
    options:
      latency: {{median: 0.5, sigma: 0.1}}
tasks:
  - {{id: plan, agent: worker, prompt: "plan the work"}}
  - {{id: left, agent: worker, prompt: "build the left half", depends_on: [plan]}}
  - {{id: right, agent: worker, prompt: "build the right half", depends_on: [plan]}}
  - {{id: join, agent: worker, prompt: "join the halves", depends_on: [left, right]}}
""",
    f"{STREAM_WORKFLOW}.yaml": f"""\
name: {STREAM_WORKFLOW}
description: 5 sim tasks (a split, three in parallel, a join); ~2 s a run at scale 1
agents:
  worker:
    provider: sim
    temperature: 0.7
    options:
      latency: {{median: 0.6, sigma: 0.1}}
tasks:
  - {{id: split, agent: worker, prompt: "split the work"}}
  - {{id: one, agent: worker, prompt: "part one", depends_on: [split]}}
  - {{id: two, agent: worker, prompt: "part two", depends_on: [split]}}
  - {{id: three, agent: worker, prompt: "part three", depends_on: [split]}}
  - {{id: join, agent: worker, prompt: "join the parts", depends_on: [one, two, three]}}
""",
}


@dataclass(frozen=True)
class _Plan:
    quick: bool

    @property
    def step_s(self) -> float:
        return 4.0 if self.quick else 15.0

    @property
    def search_s(self) -> float:
        return 2.0 if self.quick else 4.0

    @property
    def attempts(self) -> int:
        """Tries per rate of the ceiling ladder (one stall of other work should not end it)."""
        return 1 if self.quick else 2

    @property
    def stream_scale(self) -> float:
        return 0.5 if self.quick else 1.0


# -- processes ----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _get_json(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    try:
        with _NO_PROXY.open(url, timeout=timeout) as response:
            return int(response.status), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return int(exc.code), None


@dataclass
class _Server:
    url: str
    proc: subprocess.Popen[bytes]
    log: Path
    db: Path | None = None
    token: str = ""
    startup_s: float = 0.0


def _tail(path: Path, n: int = 600) -> str:
    try:
        return path.read_text(errors="replace")[-n:].strip()
    except OSError:
        return ""


@contextlib.contextmanager
def _running(args: list[str], *, cwd: Path, env: dict[str, str], ready_path: str, log: Path,
             timeout: float = 30.0) -> Iterator[_Server]:
    """Start ``args`` (a server on ``url``) in its own process group; wait for ``ready_path`` to
    answer 200; on the way out SIGTERM it, then SIGKILL its group (runner processes included)."""
    port = int(args[args.index("--port") + 1])
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}: {_tail(log)}")
            with contextlib.suppress(OSError):
                status, _ = _get_json(url + ready_path, timeout=1.0)
                if status == 200:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not ready after {timeout:g} s: {_tail(log)}")
            time.sleep(0.05)
        yield _Server(url=url, proc=proc, log=log, startup_s=time.perf_counter() - started)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        # the service's runner processes are in the same (new) session and group: nothing else is
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


@contextlib.contextmanager
def _service(*, max_runs: int | None = None) -> Iterator[_Server]:
    """The real service on a free port with a fresh database and the benchmark's workflows."""
    token = "bench-" + secrets.token_hex(12)
    with tempfile.TemporaryDirectory(prefix="agentfleet-service-bench-") as tmp:
        root = Path(tmp)
        workflows = root / "workflows"
        workflows.mkdir()
        for name, text in _WORKFLOWS.items():
            (workflows / name).write_text(text)
        db = root / "agentfleet.db"
        args = [sys.executable, "-m", "agentfleet", "serve", "--host", "127.0.0.1", "--port", str(_free_port()),
                "--db", str(db), "--workflows", str(workflows), "--workers", "1", "--rate-limit", "100000",
                "--max-queued", "1000000", "--log-level", "warning"]
        if max_runs is not None:
            args += ["--max-runs", str(max_runs)]
        env = {**os.environ, "AGENTFLEET_TOKENS": f"{token}:submit"}
        with _running(args, cwd=root, env=env, ready_path="/readyz", log=root / "serve.log") as server:
            server.db = db
            server.token = token
            yield server


@contextlib.contextmanager
def _floor() -> Iterator[_Server]:
    """The floor: bare FastAPI + uvicorn, a trivial ``POST /v1/runs`` answering 202."""
    with tempfile.TemporaryDirectory(prefix="agentfleet-floor-bench-") as tmp:
        root = Path(tmp)
        args = [sys.executable, "-m", "benchmarks._service", "--floor", "--port", str(_free_port())]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(_ROOT), os.environ.get("PYTHONPATH")]))}
        with _running(args, cwd=_ROOT, env=env, ready_path="/healthz", log=root / "floor.log") as server:
            yield server


class _FloorSubmission(BaseModel):
    """The floor's body: the same JSON as a submission (at module level: FastAPI resolves it by name)."""

    model_config = ConfigDict(extra="forbid")
    workflow: str
    options: dict[str, Any] = {}


def _serve_floor(port: int) -> None:
    """The floor app (child process): what FastAPI + uvicorn cost for a JSON POST answered 202."""
    import uuid

    import uvicorn
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse

    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/runs", status_code=202)
    async def submit(body: _FloorSubmission) -> JSONResponse:
        run_id = uuid.uuid4().hex[:10]
        return JSONResponse({"id": run_id, "status": "queued", "workflow": body.workflow}, 202,
                            headers={"Location": f"/v1/runs/{run_id}"})

    # the options `agentfleet serve` gives uvicorn (loop and http parser: uvicorn's defaults, the same)
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=5, server_header=False)


# -- load ---------------------------------------------------------------------------------

def _submit_body(workflow: str, scale: float) -> str:
    return json.dumps({"workflow": workflow, "options": {"scale": scale}})


async def _open_loop(url: str, token: str, rate: float, seconds: float,
                     warm: Callable[[], bool] | None = None) -> dict[str, Any]:
    """``POST /v1/runs`` at ``rate`` for ``seconds`` (after the warm-up, and once ``warm()`` says the
    server is warm): the load test's figures."""
    from agentfleet.loadtest import DROPPED, HttpClient, Result, WindowedRecorder, run_open_loop

    client = HttpClient(url, max_connections=1000, timeout=10.0)
    headers = {"content-type": "application/json", "authorization": f"Bearer {token}"}
    send = client.sender("POST", "/v1/runs", headers=headers, body=_submit_body(SUBMIT_WORKFLOW, SUBMIT_SCALE))
    recorder = WindowedRecorder(window_s=1.0)
    statuses: collections.Counter[str] = collections.Counter()

    def on_result(t: float, result: Result) -> None:
        if result.error_kind == DROPPED:
            recorder.note_dropped()
            recorder.record(t, 0.0, False, DROPPED)
            statuses[DROPPED] += 1
            return
        ok = result.ok and result.status == 202  # a 3xx is not an acknowledgement
        kind = None if ok else (result.error_kind or f"http_{result.status}")
        statuses[str(result.status) if result.status is not None else str(kind)] += 1
        recorder.record(t, result.latency, ok, kind)

    try:
        warm_rate, warm_s = WARMUP
        warmup = await run_open_loop((i / warm_rate for i in range(int(warm_rate * warm_s))), send)
        waited = time.perf_counter()
        while warm is not None and not warm() and time.perf_counter() - waited < 20.0:
            await asyncio.sleep(0.05)
        waited = time.perf_counter() - waited
        stats = await run_open_loop((i / rate for i in range(int(rate * seconds))), send, on_result=on_result,
                                    max_outstanding=10_000)
        connections = client.statistics().opened
    finally:
        await client.aclose()
    recorder.flush()
    s = recorder.summary()
    series = [row.to_dict() for row in recorder.series()]
    worst = max((row for row in series if row["p99"] is not None), key=lambda row: row["p99"], default=None)
    sustained = (s.errors == 0 and s.dropped == 0 and s.p99 is not None and s.p99 < TARGET_P99
                 and (s.ok_rps or 0.0) >= SUSTAINED_SHARE * rate)
    return {"rate": rate, "seconds": seconds, "requests": s.requests, "ok": s.ok, "errors": s.errors,
            "errors_by_kind": s.errors_by_kind, "statuses": dict(statuses), "dropped": stats.dropped,
            "late": stats.late, "ok_rps": s.ok_rps, "span_s": s.span, "p50": s.p50, "p95": s.p95, "p99": s.p99,
            "p999": s.p999, "max": s.max, "worst_second": worst, "lateness_p99": stats.lateness_p99,
            "generator_cpu": stats.cpu_fraction, "saturation": stats.saturation, "connections": connections,
            "max_in_flight": stats.max_in_flight, "warmup_requests": warmup.sent, "warmup_ok": warmup.ok,
            "warm_wait_s": waited,
            "sustained": sustained, "series": series}


def _finished(server: _Server) -> bool:
    """Whether the service's runner has finished a run (it is up, imports done: the service is warm)."""
    assert server.db is not None
    with contextlib.closing(sqlite3.connect(f"file:{server.db}?mode=ro", uri=True, timeout=10)) as db:
        return db.execute("SELECT 1 FROM runs WHERE status = 'succeeded' LIMIT 1").fetchone() is not None


def _run_counts(server: _Server) -> dict[str, Any]:
    """Runs by status in the service's database, and the queue as /readyz reports it."""
    assert server.db is not None
    with contextlib.closing(sqlite3.connect(f"file:{server.db}?mode=ro", uri=True, timeout=10)) as db:
        counts = {str(k): int(n) for k, n in db.execute("SELECT status, COUNT(*) FROM runs GROUP BY status")}
    _, ready = _get_json(server.url + "/readyz", timeout=10)
    return {"by_status": counts, "readyz_queued": (ready or {}).get("queued")}


def _cpu(server: _Server) -> dict[str, float]:
    """CPU seconds so far: the whole machine (busy), the server's process, its children (the runner),
    and this process (the generator)."""
    import psutil

    machine = psutil.cpu_times()
    busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)

    def used(p: psutil.Process) -> float:
        try:
            t = p.cpu_times()
        except psutil.Error:
            return 0.0
        return float(t.user + t.system)

    try:
        main = psutil.Process(server.proc.pid)
        children = main.children(recursive=True)
    except psutil.Error:
        return {"busy": busy, "server": 0.0, "children": 0.0, "generator": used(psutil.Process())}
    return {"busy": busy, "server": used(main), "children": sum(used(c) for c in children),
            "generator": used(psutil.Process())}


def _step(kind: str, rate: float, seconds: float) -> dict[str, Any]:
    """One load step against a fresh server of ``kind`` (``ours`` or ``floor``)."""
    with (_service() if kind == "ours" else _floor()) as server:
        cpu0 = _cpu(server)
        t0 = time.perf_counter()
        result = asyncio.run(_open_loop(server.url, server.token, rate, seconds,
                                        warm=(lambda: _finished(server)) if kind == "ours" else None))
        wall = result["wall_s"] = time.perf_counter() - t0
        cpu1 = _cpu(server)
        result["startup_s"] = server.startup_s
        if kind == "ours":
            result["runs"] = _run_counts(server)
    # cores busy on average over the step (warm-up included): the server, its runner, the generator,
    # and everything else on the machine (other work skews the figures: it is shown, not hidden)
    cores = {k: (cpu1[k] - cpu0[k]) / wall for k in cpu0}
    cores["other"] = max(0.0, cores["busy"] - cores["server"] - cores["children"] - cores["generator"])
    result["cores"] = cores
    # the API process's CPU per request it answered (warm-up included): what other work on the
    # machine moves least, so the fairest comparison with the floor on a shared machine
    answered = result["requests"] + result["warmup_requests"]
    result["api_cpu_per_request_s"] = (cpu1["server"] - cpu0["server"]) / answered if answered else None
    return result


# -- formatting ---------------------------------------------------------------------------

def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1e3:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"


def _step_line(r: dict[str, Any]) -> str:
    return (f"{r['rate']:,.0f}/s: {r['ok_rps'] or 0:,.0f}/s acked, p99 {_ms(r['p99'])}"
            + ("" if r["errors"] == 0 and r["dropped"] == 0 else f", {r['errors']:,} errors")
            + (" (busy machine)" if r["cores"]["other"] > BUSY_OTHER else "")
            + (" ✓" if r["sustained"] else " ✗"))


def _log_step(log: Console, kind: str, r: dict[str, Any]) -> None:
    log.print(f"  [dim]{kind} {r['rate']:,.0f}/s × {r['seconds']:g} s: {r['ok_rps'] or 0:,.0f}/s acked, "
              f"p50 {_ms(r['p50'])} p99 {_ms(r['p99'])} max {_ms(r['max'])}, errors {r['errors']}, "
              f"late {r['late']}, cores: server {r['cores']['server']:.2f} runner {r['cores']['children']:.2f} "
              f"generator {r['cores']['generator']:.2f} other {r['cores']['other']:.2f}"
              + (f", runs {r['runs']['by_status']}" if "runs" in r else "") + "[/]")


# -- the figures --------------------------------------------------------------------------

def _serve_default(option: str) -> Any:
    """A default of ``agentfleet serve``'s options, as the installed command has it."""
    import inspect

    from agentfleet._serve_cli import serve

    return inspect.signature(serve).parameters[option].default


def _submit_rows(plan: _Plan, methods: dict[str, str], log: Console) -> list[Row]:
    rows: list[Row] = []
    for rate in RATES:
        try:
            r = _step("ours", rate, plan.step_s)
        except Exception as exc:  # noqa: BLE001 - one broken step must not hide the others
            rows.append(Row(f"submit_{rate:.0f}", f"POST /v1/runs at {rate:,.0f}/s, open loop, {plan.step_s:g} s",
                            [f"{type(exc).__name__}: {exc}"[:300]], "", "N/A", "submit"))
            continue
        _log_step(log, "ours", r)
        runs = r["runs"]["by_status"]
        finished = sum(n for k, n in runs.items() if k not in ("queued", "running"))
        submitted = sum(runs.values())
        worst = r["worst_second"]
        lines = [f"{r['ok_rps'] or 0:,.1f} submissions/s acked (202) · p99 {_ms(r['p99'])}",
                 f"p50 {_ms(r['p50'])} · p95 {_ms(r['p95'])} · p99.9 {_ms(r['p999'])} · max {_ms(r['max'])}",
                 f"{r['requests']:,} requests · {r['errors']:,} errors"
                 + (f" ({', '.join(f'{k} {n}' for k, n in r['errors_by_kind'].items())})" if r["errors"] else "")
                 + f" · {r['dropped']:,} dropped · {r['late']:,} sent late",
                 f"worst second: p99 {_ms(worst['p99']) if worst else '-'} at t={worst['t']:.0f} s" if worst else
                 "worst second: -",
                 f"runs when the last ack came: {finished:,} finished, {runs.get('running', 0):,} running, "
                 f"{runs.get('queued', 0):,} queued of {submitted:,} (runner ~{finished / max(r['wall_s'], 1e-9):,.0f} "
                 f"runs/s)",
                 f"cores busy: API {r['cores']['server']:.2f} · runner {r['cores']['children']:.2f} · generator "
                 f"{r['cores']['generator']:.2f} · other processes {r['cores']['other']:.2f}"
                 + (" · BUSY MACHINE" if r["cores"]["other"] > BUSY_OTHER else ""),
                 f"API CPU per request {r['api_cpu_per_request_s'] * 1e6:,.0f} µs · generator lateness p99 "
             f"{_ms(r['lateness_p99'])}" + (" · SATURATED" if r["saturation"] else "")]
        if rate == TARGET_RATE:
            ok = r["sustained"]
            rows.append(Row(f"submit_{rate:.0f}", f"POST /v1/runs at {rate:,.0f}/s, open loop, {plan.step_s:g} s",
                            lines, f">= {TARGET_RATE:,.0f}/s at p99 < {TARGET_P99 * 1e3:.0f} ms",
                            "PASS" if ok else "FAIL", "submit", r))
        else:
            lines[0] += " · " + ("p99 < 50 ms" if r["sustained"] else "NOT sustained")
            rows.append(Row(f"submit_{rate:.0f}", f"POST /v1/runs at {rate:,.0f}/s, open loop, {plan.step_s:g} s",
                            lines, "report (where p99 crosses 50 ms)", "REPORT", "submit", r))
    methods["submit"] = (
        f"python -m agentfleet serve --workers 1 --rate-limit 100000 --max-queued 1000000 (a fresh database and "
        f"process per rate, token of scope submit; one runner process at serve's defaults: --max-runs "
        f"{_serve_default('max_runs')}, nice +5), workflow '{SUBMIT_WORKFLOW}' "
        f"(4 sim tasks, median 0.5 s x scale {SUBMIT_SCALE:g}). In this process, agentfleet.loadtest: HttpClient("
        f"max_connections=1000) sending POST /v1/runs {_submit_body(SUBMIT_WORKFLOW, SUBMIT_SCALE)} with the bearer "
        f"header, run_open_loop at a constant spacing for {plan.step_s:g} s after {WARMUP[0] * WARMUP[1]:.0f} "
        f"unrecorded warm-up requests and once the runner has finished one of them (imports done); "
        f"WindowedRecorder (HDR, latency from the intended start). Only 202 is a "
        f"success; acked/s = 202s / (first intended start to last answer). Sustained: no error or drop, p99 < "
        f"{TARGET_P99 * 1e3:.0f} ms and >= {SUSTAINED_SHARE:.0%} of the rate acked. Run counts: SELECT status, "
        f"COUNT(*) FROM runs right after the last answer. No CPU pinning: the service (API + runner) and the "
        f"generator share the machine's CPUs. Cores busy: CPU time over the step (psutil) of the API process, its "
        f"children (the runner), this process, and the rest of the machine ('other processes'; over "
        f"{BUSY_OTHER:g} cores marks the step BUSY MACHINE: its latencies are partly other work's).")
    return rows


def _ladder(kind: str, seconds: float, attempts: int, log: Console) -> dict[str, Any]:
    """Rates up the ladder until the first rate not sustained in ``attempts`` tries (one stall of
    other work on a shared machine should not end the ladder)."""
    tried: list[dict[str, Any]] = []
    best: dict[str, Any] | None = None
    for rate in LADDER:
        for _ in range(attempts):
            r = _step(kind, rate, seconds)
            r.pop("series", None)
            _log_step(log, kind, r)
            tried.append(r)
            if r["sustained"]:
                break
        if not r["sustained"]:
            break
        best = r
    at_target = [t for t in tried if t["rate"] == TARGET_RATE]
    costs = sorted(t["api_cpu_per_request_s"] for t in tried if t["api_cpu_per_request_s"])
    return {"max_sustained": best["rate"] if best else 0.0, "tried": tried,
            "p99_at_target": min((t["p99"] for t in at_target if t["p99"] is not None), default=None),
            "api_cpu_per_request_s": costs[len(costs) // 2] if costs else None}


def _ceiling_rows(plan: _Plan, methods: dict[str, str], log: Console) -> list[Row]:
    ours = _ladder("ours", plan.search_s, plan.attempts, log)
    floor = _ladder("floor", plan.search_s, plan.attempts, log)
    o, f = ours["max_sustained"], floor["max_sustained"]
    po, pf = ours["p99_at_target"], floor["p99_at_target"]

    def rate(x: float) -> str:
        return f"{x:,.0f}/s" if x else f"< {LADDER[0]:,.0f}/s"

    first = f"ours {rate(o)} · floor {rate(f)}" + (f" → {o / f:.2f}x floor" if o and f else "")
    co, cf = ours["api_cpu_per_request_s"], floor["api_cpu_per_request_s"]
    lines = [first,
             f"p99 at {TARGET_RATE:,.0f}/s (best try): ours {_ms(po)} · floor {_ms(pf)}"
             + (f" → {po / pf:.1f}x floor" if po and pf else ""),
             (f"API process CPU per request: ours {co * 1e6:,.0f} µs · floor {cf * 1e6:,.0f} µs → {co / cf:.1f}x "
              f"floor (one core: ~{1 / co:,.0f}/s vs ~{1 / cf:,.0f}/s)") if co and cf else "CPU per request: -",
             "ours:  " + " · ".join(_step_line(t) for t in ours["tried"]),
             "floor: " + " · ".join(_step_line(t) for t in floor["tried"])]
    if LADDER[-1] in (o, f):
        lines.append(f"(the ladder stops at {LADDER[-1]:,.0f}/s: a figure there is a lower bound)")
    methods["ceiling"] = (
        f"The same generator and rules as [1], {plan.search_s:g} s a step, a fresh server each step, rates "
        f"{', '.join(f'{r:,.0f}' for r in LADDER)}/s up to the first rate not sustained in {plan.attempts} "
        f"tr{'y' if plan.attempts == 1 else 'ies'}. "
        f"CPU per request: the server process's CPU time over the step / the requests it answered (warm-up "
        f"included), the median over the ladder's steps; for ours the runner's CPU is not in it (another "
        f"process), and 'one core' is 1 / that cost, an upper bound on the rate. Floor: a bare FastAPI app "
        f"on uvicorn (python -m benchmarks._service --floor; uvicorn.run with serve's options: log level warning, "
        f"no access log, no server header) whose POST /v1/runs parses the same body into a pydantic model "
        f"(extra=forbid) and answers 202 JSON with a Location header: no auth, no rate limiter, no metrics, no "
        f"database. Ratio = highest sustained rate, ours / floor.")
    return [Row("ceiling", "highest sustained submission rate: ours vs bare FastAPI+uvicorn", lines,
                "report (ratio to the floor)", "REPORT", "ceiling", {"ours": ours, "floor": floor})]


# -- event streams ------------------------------------------------------------------------

class _StoreWatch:
    """When each event first became visible in the store: a thread polling ``events`` every
    ``interval`` seconds on its own read-only connection (sqlite releases the GIL while it reads)."""

    def __init__(self, db: Path, interval: float = 0.005) -> None:
        import threading

        self.db = db
        self.interval = interval
        self.seen: dict[int, float] = {}
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="store-watch", daemon=True)

    def __enter__(self) -> _StoreWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        last = 0
        with contextlib.closing(sqlite3.connect(f"file:{self.db}?mode=ro", uri=True, timeout=10,
                                                check_same_thread=False)) as db:
            while not self._stop.is_set():
                rows = db.execute("SELECT id FROM events WHERE id > ? ORDER BY id", (last,)).fetchall()
                now = time.time()
                self.polls += 1
                for (event_id,) in rows:
                    self.seen[int(event_id)] = now
                if rows:
                    last = int(rows[-1][0])
                self._stop.wait(self.interval)


async def _follow(client: Any, run_id: str) -> dict[str, Any]:
    """Read one run's event stream until ``event: end``: every event's id, kind and receive time."""
    events: list[tuple[int, str, float]] = []
    end: Any = None
    block: dict[str, str] = {}
    asked = time.time()
    async with client.stream("GET", f"/v1/runs/{run_id}/events") as response:
        status = response.status_code
        opened = time.time()
        async for line in response.aiter_lines():
            if line:
                if line.startswith(":"):
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                block[name] = block[name] + "\n" + value if name == "data" and name in block else value
                continue
            if not block:
                continue
            received = time.time()
            kind = block.get("event", "message")
            data = json.loads(block.get("data") or "null")
            if kind == "end":
                end = data
                break
            if int(data["id"]) != int(block["id"]):
                raise ValueError(f"event id {block['id']} carries data id {data['id']}")
            events.append((int(block["id"]), kind, received))
            block = {}
    return {"id": run_id, "http": status, "events": events, "end": end, "asked": asked, "opened": opened,
            "ended": time.time()}


async def _streams(server: _Server, n: int, scale: float) -> dict[str, Any]:
    """``n`` clients at once, each submitting a run and following its events to the end."""
    import httpx

    headers = {"authorization": f"Bearer {server.token}"}
    limits = httpx.Limits(max_connections=2 * n + 8, max_keepalive_connections=2 * n + 8)
    async with httpx.AsyncClient(base_url=server.url, headers=headers, limits=limits, trust_env=False,
                                 timeout=httpx.Timeout(120.0, connect=10.0)) as client:
        async def one() -> dict[str, Any]:
            submitted = time.time()
            response = await client.post("/v1/runs", content=_submit_body(STREAM_WORKFLOW, scale),
                                         headers={"content-type": "application/json"})
            if response.status_code != 202:
                raise RuntimeError(f"submit answered {response.status_code}: {response.text[:200]}")
            followed = await _follow(client, str(response.json()["id"]))
            followed["submitted"] = submitted
            return followed

        t0 = time.time()
        followed = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    return {"followed": followed, "wall_s": time.time() - t0}


def _pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


def _check_streams(db_path: Path, data: dict[str, Any], seen: dict[int, float]) -> dict[str, Any]:
    """Each client's ids against the store's: every id, in order, no duplicates; the run succeeded.
    With the store watch's times: how long each event took from the store to its client, and where
    a run's time from submission to its end event went."""
    problems: list[str] = []
    ok = total = live = 0
    delays: list[float] = []
    segments: dict[str, list[float]] = {"queued": [], "start": [], "run": [], "tail": [], "total": []}
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=10)) as db:
        for got in data["followed"]:
            if isinstance(got, BaseException):
                problems.append(f"client failed: {type(got).__name__}: {got}")
                continue
            run_id = got["id"]
            stored = [int(r[0]) for r in db.execute("SELECT id FROM events WHERE run_id = ? ORDER BY id", (run_id,))]
            status, started_at = db.execute("SELECT status, started_at FROM runs WHERE id = ?", (run_id,)).fetchone()
            ids = [e[0] for e in got["events"]]
            total += len(ids)
            why = []
            if got["http"] != 200:
                why.append(f"HTTP {got['http']}")
            if got["end"] is None:
                why.append("no end event")
            elif got["end"].get("status") != "succeeded" or status != "succeeded":
                why.append(f"ended {got['end'].get('status')} (store: {status})")
            if len(set(ids)) != len(ids):
                why.append(f"{len(ids) - len(set(ids))} duplicates")
            if ids != sorted(ids):
                why.append("out of order")
            if ids != stored:
                missing = len(set(stored) - set(ids))
                extra = len(set(ids) - set(stored))
                why.append(f"{len(ids)} ids received vs {len(stored)} stored ({missing} missing, {extra} not stored)")
            if why:
                problems.append(f"run {run_id}: " + "; ".join(why))
            else:
                ok += 1
            for event_id, _, received in got["events"]:
                written = seen.get(event_id)
                if written is not None and written >= got["opened"]:  # live, not replayed on connecting
                    live += 1
                    delays.append(max(0.0, received - written))
            firsts = [seen[i] for i in ids if i in seen]
            segments["total"].append(got["ended"] - got["submitted"])
            if started_at is not None and firsts:
                segments["queued"].append(started_at - got["submitted"])
                segments["start"].append(min(firsts) - started_at)
                segments["run"].append(max(firsts) - min(firsts))
                segments["tail"].append(got["ended"] - max(firsts))
    return {"clients": len(data["followed"]), "ok": ok, "events": total, "live_events": live,
            "problems": problems, "wall_s": data["wall_s"],
            "delay_p50": _pct(delays, 0.5), "delay_p99": _pct(delays, 0.99), "delay_max": max(delays, default=None),
            **{f"{k}_p50": _pct(v, 0.5) for k, v in segments.items()},
            **{f"{k}_p99": _pct(v, 0.99) for k, v in segments.items()}}


def _sse_rows(plan: _Plan, methods: dict[str, str], log: Console) -> list[Row]:
    n = SSE_CLIENTS
    with _service(max_runs=n) as server:
        assert server.db is not None
        with _StoreWatch(server.db) as watch:
            data = asyncio.run(_streams(server, n, plan.stream_scale))
        found = _check_streams(server.db, data, watch.seen)
    found["watch_polls"] = watch.polls
    log.print(f"  [dim]streams: {found['ok']}/{found['clients']} clients complete, {found['events']:,} events, "
              f"submit → end p50 {_ms(found['total_p50'])} p99 {_ms(found['total_p99'])}, "
              f"store → client p99 {_ms(found['delay_p99'])}[/]")
    lines = [f"{found['ok']}/{found['clients']} clients got every event of their run, in order, no duplicates",
             f"{found['events']:,} events in all ({found['events'] / max(1, found['clients']):.1f} a run, "
             f"{found['live_events']:,} stored after the client connected)",
             f"submit → end event: p50 {_ms(found['total_p50'])} · p99 {_ms(found['total_p99'])}",
             f"  of which (p50): queued {_ms(found['queued_p50'])} · claim → first event stored "
             f"{_ms(found['start_p50'])} · first → last event stored {_ms(found['run_p50'])} · last event stored → "
             f"end received {_ms(found['tail_p50'])}",
             f"event stored → received (live events): p50 {_ms(found['delay_p50'])} · p99 {_ms(found['delay_p99'])} "
             f"· max {_ms(found['delay_max'])}"]
    lines += found["problems"][:5]
    if len(found["problems"]) > 5:
        lines.append(f"... and {len(found['problems']) - 5} more")
    methods["sse"] = (
        f"python -m agentfleet serve as in [1] plus --max-runs {n} (one runner executing every run at once); "
        f"workflow '{STREAM_WORKFLOW}' (5 sim tasks, median 0.6 s x scale {plan.stream_scale:g}: ~"
        f"{1.8 * plan.stream_scale:.1f} s of simulated work a run). {n} httpx clients at once (one AsyncClient), "
        f"each POST /v1/runs then GET /v1/runs/{{id}}/events read until 'event: end'. Check per client: its ids == "
        f"SELECT id FROM events WHERE run_id = ? ORDER BY id after the end (every id, in order, none twice), and "
        f"the end event and the store say succeeded. Times: a thread in this process polls SELECT id FROM events "
        f"every 5 ms (when an event became visible in the store, ±5 ms); 'stored → received' counts events stored "
        f"after the client's stream opened; the segments use runs.started_at (the runner's claim).")
    ok = found["ok"] == n and found["clients"] == n
    return [Row("sse", f"{n} concurrent SSE clients, one per run", lines, f"{n}/{n} receive every event",
                "PASS" if ok else "FAIL", "sse", found)]


def run_service_suite(console: Console, log: Console, *, quick: bool, env: dict[str, Any]) -> dict[str, Any]:
    """Measure every figure, print the table and the method lines; return the JSON entry."""
    plan = _Plan(quick)
    methods: dict[str, str] = {}
    load0 = os.getloadavg()
    entry = run_figures(console, log, suite="service", label="Service suite", quick=quick, env=env, methods=methods,
                        figures=[("submit", lambda: _submit_rows(plan, methods, log)),
                                 ("ceiling", lambda: _ceiling_rows(plan, methods, log)),
                                 ("sse", lambda: _sse_rows(plan, methods, log))])
    load1 = os.getloadavg()
    steps = [row["data"] for row in entry["rows"] if "cores" in row["data"]]
    for row in entry["rows"]:
        if row["key"] == "ceiling":
            steps += row["data"]["ours"]["tried"] + row["data"]["floor"]["tried"]
    busy = [st for st in steps if st["cores"]["other"] > BUSY_OTHER]
    worst = max((st["cores"]["other"] for st in steps), default=0.0)
    console.print(f"[dim]load average {load0[0]:.2f} → {load1[0]:.2f}; other processes used up to {worst:.2f} of "
                  f"{os.cpu_count()} cores during a load step; {len(busy)} of {len(steps)} steps ran on a busy machine "
                  f"(> {BUSY_OTHER:g} cores of other work): read their latencies as upper bounds.[/]")
    entry["load_average"] = {"start": load0, "end": load1}
    entry["busy_steps"] = len(busy)
    return entry


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--floor":
        _serve_floor(int(sys.argv[sys.argv.index("--port") + 1]))
    else:
        from ._report import environment

        run_service_suite(Console(width=170), Console(stderr=True, highlight=False, width=170),
                          quick="--quick" in sys.argv, env=environment())
