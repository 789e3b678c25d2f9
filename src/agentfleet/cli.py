"""The ``agentfleet`` command line: parse, call the library, print. Nothing else lives here.

User errors (a bad spec, an unknown run, a missing key) print one line and exit 2;
other failures exit 1; a run with failed tasks exits 1; Ctrl-C exits 130 and leaves
the run resumable. ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from . import __version__, _gc_cli, _loadtest_cli, _profile_cli, _serve_cli, _tune_cli
from ._bench_cli import bench_app
from ._cache_cli import cache_app
from ._memory_cli import memory_app
from ._subcli import (
    AdmissionOpt,
    BaseUrlOpt,
    DbOpt,
    ExecutorOpt,
    JsonOpt,
    MaxParallelOpt,
    ModelOpt,
    NoCacheOpt,
    PolicyOpt,
    ProviderOpt,
    RayAddressOpt,
    ScaleOpt,
    SeedOpt,
    SetOpt,
    WorkflowArg,
    run_options,
)
from .errors import AgentFleetError, SpecError
from .store import DEFAULT_DB

app = typer.Typer(
    name="agentfleet",
    help="Run teams of agents in parallel, as fast as their dependencies allow, and prove how fast.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
app.add_typer(memory_app, name="memory")
app.add_typer(cache_app, name="cache")
app.add_typer(bench_app, name="bench")

_state: dict[str, Any] = {"debug": False}
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

OtelOpt = Annotated[str | None, typer.Option(
    "--otel", help="Export an OpenTelemetry span per run and per task: console (stderr) or otlp "
                   "(needs the otel extra: pip install 'agentfleet\\[otel]').")]
OtelEndpointOpt = Annotated[str | None, typer.Option(
    "--otel-endpoint", help="OTLP/HTTP endpoint for --otel otlp (default $OTEL_EXPORTER_OTLP_ENDPOINT "
                            "or http://127.0.0.1:4318).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No live progress; print the summary only.")]


def _fail(exc: AgentFleetError) -> NoReturn:
    if _state["debug"]:
        raise exc
    err.print(f"[bold red]error:[/] {escape(str(exc))}")
    raise typer.Exit(exc.exit_code)


def _version(value: bool) -> None:
    if value:
        out.print(f"agentfleet {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version.")] = False,
) -> None:
    _state["debug"] = debug


def _parse_sets(values: list[str] | None) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for item in values or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise SpecError(f"--set expects key=value, got {item!r}")
        overrides[key.strip()] = raw  # typed by the loader against the declared var
    return overrides


def _runner_for(spec: Any, store: Any, options: dict[str, Any], *, spec_path: str | None,
                overrides: dict[str, Any]) -> Any:
    from ._api import runner_for

    return runner_for(spec, store, options, spec_path=spec_path, overrides=overrides)


async def _run_with_signals(coro: Any) -> Any:
    """Run ``coro`` so SIGTERM behaves like Ctrl-C: cancel cleanly, keep the run resumable."""
    task = asyncio.ensure_future(coro)
    loop = asyncio.get_running_loop()
    try:
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    except (NotImplementedError, RuntimeError):
        pass
    try:
        return await task
    finally:
        try:
            loop.remove_signal_handler(signal.SIGTERM)
        except (NotImplementedError, RuntimeError):
            pass


def _execute(runner: Any, *, json_out: bool, quiet: bool, stream: bool, resume: str | None = None,
             title: str = "", metrics_port: int | None = None, otel: str | None = None,
             otel_endpoint: str | None = None) -> None:
    if otel_endpoint is not None and otel != "otlp":
        raise SpecError("--otel-endpoint is where --otel otlp sends spans; add --otel otlp")
    server = None
    if metrics_port is not None:
        from .telemetry import MetricsRegistry, MetricsServer

        runner.metrics = MetricsRegistry()
        server = MetricsServer(runner.metrics, metrics_port)
        try:
            server.start()
        except OSError as exc:
            raise SpecError(f"--metrics-port {metrics_port}: cannot listen on 127.0.0.1:{metrics_port} "
                            f"({exc.strerror or exc})") from None
        err.print(f"[dim]metrics: {server.url}[/]")
    tracer = None
    try:
        if otel is not None:
            from .telemetry import make_tracer

            tracer = make_tracer(otel, otel_endpoint)
            tracer.attach(runner)
        _execute_run(runner, json_out=json_out, quiet=quiet, stream=stream, resume=resume, title=title)
    finally:
        if server is not None:
            server.stop()
        if tracer is not None:
            problem = tracer.finish(getattr(runner, "result", None))
            if problem:
                err.print(f"[yellow]{escape(problem)}[/]")


def _execute_run(runner: Any, *, json_out: bool, quiet: bool, stream: bool, resume: str | None,
                 title: str) -> None:
    from ._live import LiveProgress
    from .analysis import analyze, render_summary, report_to_dict

    live = None
    if not json_out and not quiet and out.is_terminal:
        live = LiveProgress(runner, out, stream=stream, title=title)
    elif stream and not json_out:
        live = LiveProgress(runner, out, stream=True, title=title)
    interrupted = False
    try:
        if live is not None and out.is_terminal and not quiet:
            with live:
                result = asyncio.run(_run_with_signals(runner.run(resume=resume)))
        else:
            result = asyncio.run(_run_with_signals(runner.run(resume=resume)))
    except (KeyboardInterrupt, asyncio.CancelledError):
        interrupted = True
        result = getattr(runner, "result", None)
    if result is None:
        raise typer.Exit(130)
    report = analyze(result.records, max_parallel=result.max_parallel, latency_scale=result.latency_scale,
                     providers=result.providers,
                     pools={name: dataclasses.asdict(stats) for name, stats in result.pools.items()},
                     resilience=[dataclasses.asdict(stats) for stats in result.resilience], cache=result.cache)
    from ._report import bottlenecks, insights_for

    found = bottlenecks(result.records, report, runner.plan, strict=_state["debug"])
    insights = insights_for(runner.store, result.run_id, result.name, result.records, found, save=True,
                            strict=_state["debug"])
    if json_out:
        from .analysis._render import bottleneck_dict

        payload = {
            "run_id": result.run_id,
            "workflow": result.name,
            "status": result.status,
            "failure": result.failure,
            "counts": result.counts(),
            "report": report_to_dict(report),
            "bottlenecks": [bottleneck_dict(b) for b in found],
            "hook_failures": [f.__dict__ if hasattr(f, "__dict__") else
                              {"hook": f.hook, "event": f.event, "message": f.message} for f in result.hook_failures],
            "tasks": [{"id": r.task_id, "agent": r.agent, "state": r.state, "attempts": r.attempts,
                       "output": r.output, "error": r.error} for r in result.records],
            "alerts": result.alerts,
            "resources": result.resources,
            **({"shared": result.shared} if result.shared else {}),
            **insights.to_dict(),
        }
        out.print_json(json.dumps(payload, default=str))
    else:
        render_summary(report, out, title=f"{result.name} — {result.status}", bottlenecks=found,
                       patterns=insights.patterns, runs=insights.runs, anomalies=insights.anomalies)
        for failure in result.hook_failures:
            err.print(f"[yellow]hook failed:[/] {escape(failure.hook)} on {failure.event}: {escape(failure.message)}")
        for alert in result.alerts:
            style = "green" if alert["recovered"] else "yellow"
            note = f" ({alert['delivery']})" if alert.get("delivery") else ""
            err.print(f"[{style}]{escape(alert['message'])}[/] at {alert['at']:.1f}s{escape(note)}")
        if result.failure and not interrupted:
            err.print(f"[bold red]failed:[/] {escape(result.failure)}")
        if result.run_id:
            out.print(f"[dim]run {result.run_id} stored in {runner.store.path} · "
                      f"agentfleet report {result.run_id} · agentfleet show {result.run_id}[/]")
    if interrupted:
        if result.run_id:
            err.print("interrupted: finished tasks are saved; continue with "
                      f"[bold]agentfleet resume {result.run_id}[/]")
        raise typer.Exit(130)
    raise typer.Exit(0 if result.ok else 1)


@app.command()
def run(
    workflow: WorkflowArg,
    set_: SetOpt = None,
    provider: ProviderOpt = None,
    model: ModelOpt = None,
    base_url: BaseUrlOpt = None,
    max_parallel: MaxParallelOpt = None,
    policy: PolicyOpt = None,
    admission: AdmissionOpt = None,
    scale: ScaleOpt = None,
    seed: SeedOpt = 0,
    stream: Annotated[bool, typer.Option("--stream", help="Print each task's result as it completes.")] = False,
    no_cache: NoCacheOpt = False,
    metrics_port: Annotated[int | None, typer.Option(
        "--metrics-port", min=0, max=65535,
        help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics while the run lasts (0: any free port).")] = None,
    otel: OtelOpt = None,
    otel_endpoint: OtelEndpointOpt = None,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    share: Annotated[str | None, typer.Option(
        "--share", help="Claim this run's tasks in this Redis (redis://127.0.0.1:6379/0) so runners started with "
                        "'agentfleet join RUN' share them, each task executed once.")] = None,
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Run a workflow with live progress, then print where the time went."""
    from .spec import load_workflow
    from .store import RunStore

    try:
        overrides = _parse_sets(set_)
        spec = load_workflow(workflow, overrides=overrides)
        options = run_options(provider=provider, model=model, base_url=base_url, max_parallel=max_parallel,
                              policy=policy, admission=admission, scale=scale, seed=seed, no_cache=no_cache,
                              executor=executor, ray_address=ray_address)
        if share:
            options["share"] = share
        store = RunStore(db)
        runner = _runner_for(spec, store, options, spec_path=str(workflow), overrides=overrides)
        try:
            _execute(runner, json_out=json_out, quiet=quiet, stream=stream, title=spec.name,
                     metrics_port=metrics_port, otel=otel, otel_endpoint=otel_endpoint)
        finally:
            store.close()
    except AgentFleetError as exc:
        _fail(exc)


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix, or 'latest').")],
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    stream: Annotated[bool, typer.Option("--stream", help="Print each task's result as it completes.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Resume even if another process still runs it.")] = False,
) -> None:
    """Continue an interrupted or failed run: finished tasks are kept, the rest runs."""
    from .spec import parse_workflow
    from .store import RunStore

    try:
        store = RunStore(db, create=False)
        try:
            row = store.get_run(run_id)
            if row.spec_text is None:
                raise SpecError(f"run {row.id} was started from Python, not a workflow file; it cannot be resumed "
                                "from the command line")
            if row.status == "succeeded":
                err.print(f"run {row.id} already succeeded; nothing to resume")
                raise typer.Exit(0)
            if row.status == "queued" and not force:
                raise SpecError(f"run {row.id} is queued for agentfleet serve, which will run it; resuming it here "
                                "too would execute its tasks twice (pass --force if no service uses this database)")
            owner = store.owner_alive(row.id)
            if owner is not None and not force:
                raise SpecError(f"run {row.id} is still running in process {owner}; stop it first "
                                "(resuming a live run would execute its tasks twice), or pass --force")
            spec = parse_workflow(row.spec_text, file=row.spec_path or "<stored spec>", overrides=row.overrides)
            runner = _runner_for(spec, store, row.options, spec_path=row.spec_path, overrides=row.overrides)
            _execute(runner, json_out=json_out, quiet=quiet, stream=stream, resume=row.id, title=spec.name)
        finally:
            store.close()
    except AgentFleetError as exc:
        _fail(exc)


@app.command()
def join(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix) of a run started with --share.")],
    redis: Annotated[str | None, typer.Option(
        help="The Redis the run shares its tasks on (default: the run's).")] = None,
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Help a running shared run (``agentfleet run --share REDIS``) with its tasks: each task is executed
    by one runner only, and if a runner dies its tasks are taken over and the run still finishes."""
    from .spec import parse_workflow
    from .store import TERMINAL, RunStore

    try:
        store = RunStore(db, create=False)
        try:
            row = store.get_run(run_id)
            url = redis or row.options.get("share")
            if not url:
                raise SpecError(f"run {row.id} does not share its tasks (start it with --share REDIS_URL), "
                                "or give --redis")
            if row.status in TERMINAL:
                err.print(f"run {row.id} already ended ({row.status}); nothing to join")
                raise typer.Exit(0)
            if row.spec_text is None:
                raise SpecError(f"run {row.id} was started from Python, not a workflow file; it cannot be joined")
            spec = parse_workflow(row.spec_text, file=row.spec_path or "<stored spec>", overrides=row.overrides)
            runner = _runner_for(spec, store, {**row.options, "share": url}, spec_path=row.spec_path,
                                 overrides=row.overrides)
            runner.joining = row.id
            _execute(runner, json_out=json_out, quiet=quiet, stream=False, title=f"{spec.name} (joined)")
        finally:
            store.close()
    except AgentFleetError as exc:
        _fail(exc)


@app.command()
def check(
    workflow: Annotated[Path, typer.Argument(help="Workflow YAML file.")],
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a workflow var: key=value.")] = None,
    max_parallel: Annotated[int | None, typer.Option(min=1, help="Predict under this many slots.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Validate a workflow and analyse it: critical path, width, depth, predicted speedup."""
    from .plan import analyze_plan, build_plan
    from .runtime import Runner
    from .spec import load_workflow

    try:
        spec = load_workflow(workflow, overrides=_parse_sets(set_))
        plan = build_plan(spec)
        a = analyze_plan(plan, max_parallel=max_parallel)
        # What `run` would reject before starting: output schemas, hooks, provider options.
        warnings = asyncio.run(Runner(plan).preflight())
    except AgentFleetError as exc:
        _fail(exc)
    for warning in warnings:
        err.print(f"[yellow]warning:[/] {escape(warning)}")
    if json_out:
        out.print_json(json.dumps({
            "valid": True, "workflow": spec.name, "steps": a.steps, "instances": a.instances, "width": a.width,
            "depth": a.depth, "critical_path": [{"task": t, "seconds": s} for t, s in a.critical_path],
            "critical_path_seconds": a.critical_path_seconds, "sequential_seconds": a.sequential_seconds,
            "predicted_makespan": a.predicted_makespan, "predicted_speedup": a.predicted_speedup,
            "max_parallel": a.max_parallel,
            "false_parallelism": [{"phase": f.phase, "upstream": f.upstream, "downstream": f.downstream,
                                   "chain": list(f.chain)} for f in a.false_parallel],
            "assumed_fanout": list(a.assumed_counts),
        }))
        return
    out.print(f"[green]✓[/] {escape(str(workflow))}: [bold]{escape(spec.name)}[/] is valid — "
              f"{len(spec.agents)} agents, {a.steps} tasks ({a.instances} instances)")
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    path = " → ".join(f"{t} {s:.1f}s" for t, s in a.critical_path)
    table.add_row("critical path", f"{a.critical_path_seconds:.1f}s: {path}")
    table.add_row("width", f"{a.width} tasks can run at once")
    table.add_row("depth", f"{a.depth} steps on the longest chain")
    table.add_row("sequential", f"{a.sequential_seconds:.1f}s if run one at a time")
    table.add_row("predicted", f"{a.predicted_makespan:.1f}s with max_parallel={a.max_parallel} "
                               f"→ speedup {a.predicted_speedup:.2f}x")
    out.print(table)
    if a.assumed_counts:
        out.print(f"[yellow]note:[/] fan-out size of {', '.join(a.assumed_counts)} is unknown until run time; "
                  "assumed 3 (declare map.expect or an output_schema with minItems)")
    for f in a.false_parallel:
        out.print(f"[yellow]false parallelism:[/] phase {f.phase!r} groups {f.upstream} and {f.downstream} as "
                  f"parallel, but they chain: {' → '.join(f.chain)}")


@app.command()
def runs(
    limit: Annotated[int, typer.Option(min=1, help="How many runs to list.")] = 20,
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """List recorded runs, newest first."""
    from .errors import RunNotFound
    from .store import RunStore

    try:
        with RunStore(db, create=False) as store:
            rows = store.list_runs(limit)
            live = {r.id for r in rows if r.status == "running" and store.owner_alive(r.id) is not None}
    except RunNotFound:
        rows, live = [], set()
    except AgentFleetError as exc:
        _fail(exc)
    if json_out:
        out.print_json(json.dumps([{"id": r.id, "workflow": r.name,
                                    "status": "stopped" if r.status == "running" and r.id not in live else r.status,
                                    "created_at": r.created_at,
                                    "ended_at": r.ended_at, "sessions": r.sessions,
                                    "counts": (r.summary or {}).get("counts")} for r in rows]))
        return
    if not rows:
        out.print(f"no runs in {db} yet — try [bold]agentfleet demo[/]")
        return
    table = Table(header_style="bold")
    for col in ("run", "workflow", "status", "started", "took", "tasks"):
        table.add_column(col)
    for r in rows:
        took = f"{r.ended_at - r.created_at:.1f}s" if r.ended_at else "—"
        counts = (r.summary or {}).get("counts") or {}
        tasks = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        status = r.status
        if status == "running" and r.id not in live:
            status = "stopped"  # its process is gone (kill -9, crash): resumable
        colour = {"succeeded": "green", "failed": "red", "interrupted": "yellow", "stopped": "yellow"}.get(
            status, "white")
        table.add_row(r.id, r.name, f"[{colour}]{status}[/]",
                      time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.created_at)), took, tasks)
    out.print(table)


def _load_run(db: str, run_id: str) -> tuple[Any, list[Any]]:
    """A stored run and its tasks, or exit with the error (never creates a database)."""
    from .store import RunStore

    try:
        with RunStore(db, create=False) as store:
            row = store.get_run(run_id)
            return row, store.load_tasks(row.id)
    except AgentFleetError as exc:
        _fail(exc)


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix, or 'latest').")],
    task: Annotated[str | None, typer.Option(help="Print one task's full output.")] = None,
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """Show a run's tasks and their results."""
    row, records = _load_run(db, run_id)
    if task is not None:
        match = [r for r in records if r.task_id == task]
        if not match:
            _fail(SpecError(f"run {row.id} has no task {task!r}"))
        value = match[0].output if match[0].output is not None else match[0].error
        if json_out:
            out.print_json(json.dumps(value, default=str))
        else:
            out.print(value if isinstance(value, str) else json.dumps(value, indent=2, default=str), markup=False)
        return
    if json_out:
        out.print_json(json.dumps({"id": row.id, "workflow": row.name, "status": row.status, "error": row.error,
                                   "tasks": [{"id": r.task_id, "agent": r.agent, "state": r.state,
                                              "attempts": r.attempts, "duration": r.duration,
                                              "tokens_in": r.tokens_in, "tokens_out": r.tokens_out,
                                              "output": r.output, "error": r.error} for r in records]},
                                  default=str))
        return
    suffix = f" — {escape(row.error)}" if row.error else ""
    out.print(f"[bold]{escape(row.name)}[/] run {row.id}: {row.status}{suffix}")
    table = Table(header_style="bold", expand=True)
    for col, kw in (("task", {"no_wrap": True}), ("agent", {}), ("state", {}), ("tries", {"justify": "right"}),
                    ("time", {"justify": "right"}), ("tokens", {"justify": "right"}), ("result", {"ratio": 1})):
        table.add_column(col, **kw)
    for r in records:
        value = r.output if r.output is not None else (r.error or "")
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        text = " ".join(text.split())
        if len(text) > 120:
            text = text[:117] + "..."
        colour = {"done": "green", "failed": "red", "interrupted": "yellow"}.get(r.state, "dim")
        table.add_row(r.task_id, r.agent, f"[{colour}]{r.state}[/]", str(r.attempts), f"{r.duration:.2f}s",
                      f"{r.tokens_in}/{r.tokens_out}", escape(text))
    out.print(table)
    out.print("[dim]full output of one task: agentfleet show RUN --task ID[/]")


@app.command()
def report(
    run_id: Annotated[str, typer.Argument(help="Run id (or a unique prefix, or 'latest').")],
    timeline: Annotated[bool, typer.Option("--timeline", help="Add a text timeline of the tasks.")] = False,
    html: Annotated[Path | None, typer.Option(
        "--html", help="Also write a self-contained HTML report (timeline, histograms, concurrency, "
                       "resources, bottlenecks) to this file.")] = None,
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """Print a run's summary again: makespan, speedup, critical path, per-agent time, bottlenecks,
    recurring patterns and anomalies, and the context each task was sent against passing it the
    whole history. ``--html`` writes the same as a page with charts."""
    from ._report import stored_report
    from .analysis import format_seconds, gantt_text, render_context, render_summary
    from .store import RunStore

    row, records = _load_run(db, run_id)
    with RunStore(db, create=False) as store:
        stored = stored_report(store, row, records, strict=_state["debug"])
        events = store.events(row.id, limit=10_000_000) if html is not None else []
    rep, found, scenarios, insights, status = (stored.report, stored.bottlenecks, stored.scenarios, stored.insights,
                                               stored.status)
    if html is not None:
        _write_html(html, row, status, records, events, rep, found, insights, scenarios)
    if json_out:
        out.print_json(json.dumps({**stored.to_dict(), **({"html": str(html)} if html is not None else {})},
                                  default=str))
        return
    render_summary(rep, out, title=f"{row.name} — run {row.id} — {status}", bottlenecks=found,
                   patterns=insights.patterns, runs=insights.runs, anomalies=insights.anomalies)
    if scenarios:
        shown = " · ".join(f"{w.scenario}: {format_seconds(w.makespan)}"
                           + ("" if w.change is None else f" ({w.change * 100:+.0f}%)") for w in scenarios)
        out.print(f"[bold]what if[/] (replayed; as is {format_seconds(scenarios[0].baseline)}) · {escape(shown)}")
    render_context(rep, out)
    if timeline:
        out.print(gantt_text(records), markup=False, highlight=False)
    if html is not None:
        out.print(f"[dim]HTML report written to {escape(str(html))}[/]")


@app.command()
def trends(
    workflow: Annotated[str | None, typer.Argument(
        help="Workflow name, or its YAML file (default: the only workflow with stored runs).")] = None,
    last: Annotated[int, typer.Option("--last", min=2, max=10_000, help="How many recent runs to show.")] = 20,
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """How a workflow's makespan, latency percentiles, errors, tokens, cost and resource use moved
    across its runs: a sparkline per figure, the best and latest runs, and anomalies flagged."""
    from .analysis._trends import render_trends, trends_dict
    from .store import RunStore

    try:
        with RunStore(db, create=False) as store:
            known = store.workflows()
            name = _trend_workflow(workflow, known)
            history = store.metric_history(name, limit=last)
    except AgentFleetError as exc:
        _fail(exc)
    if json_out:
        out.print_json(json.dumps({"workflow": name, **trends_dict(history)}, default=str))
        return
    if len(history) < 2:
        out.print(f"{escape(name)} has {len(history)} stored run with figures; trends need two or more "
                  "(run it again).")
        return
    render_trends(history, out, workflow=name)


def _trend_workflow(given: str | None, known: list[tuple[str, int]]) -> str:
    """The workflow name ``trends`` shows: as given, read from a YAML file, or the only one stored."""
    names = [name for name, _ in known]
    if given is None:
        if len(names) == 1:
            return names[0]
        if not names:
            raise _no_runs("no run with stored figures yet: run a workflow first")
        listing = ", ".join(f"{name} ({runs} runs)" for name, runs in known[:10])
        raise _no_runs(f"several workflows have stored runs; name one: {listing}")
    if given in names:
        return given
    path = Path(given)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        from .spec import load_workflow

        name = load_workflow(path).name
        if name in names:
            return name
        raise _no_runs(f"workflow {name!r} (from {given}) has no stored runs yet")
    import difflib

    close = difflib.get_close_matches(given, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else (f"; stored: {', '.join(names[:10])}" if names else "")
    raise _no_runs(f"no stored runs of workflow {given!r}{hint}")


def _no_runs(message: str) -> AgentFleetError:
    from .errors import RunNotFound

    return RunNotFound(message)


def _write_html(path: Path, row: Any, status: str, records: Any, events: Any, rep: Any, found: Any,
                insights: Any, scenarios: Any) -> None:
    from .analysis import render_html

    facts = {**row.options, **(row.summary or {})}
    run = {"id": row.id, "name": row.name, "status": status, "created_at": row.created_at,
           "ended_at": row.ended_at, "max_parallel": facts.get("max_parallel"),
           "latency_scale": facts.get("latency_scale") or facts.get("scale") or 1.0, "failure": row.error,
           "cost_usd": facts.get("cost_usd")}
    page = render_html(run=run, records=records, events=events, report=rep, bottlenecks=found,
                       patterns=insights.patterns, resources=insights.resources, anomalies=insights.anomalies,
                       profile=insights.profile, history=insights.history, what_if=scenarios)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(page, encoding="utf-8")
    except OSError as exc:
        problem = AgentFleetError(f"cannot write the HTML report to {path}: {exc.strerror or exc}")
        problem.exit_code = 2  # a path the user gave
        _fail(problem)


@app.command()
def demo(
    scale: Annotated[float, typer.Option(min=0.0001, help="Sim latency scale (default 0.5: twice as fast).")] = 0.5,
    db: DbOpt = DEFAULT_DB,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Run the parallel-sprint example on the sim provider: no network, no API key."""
    from .spec import parse_workflow
    from .store import RunStore

    try:
        text = _example_text("parallel_sprint.yaml")
        spec = parse_workflow(text, file="examples/parallel_sprint.yaml")
        if not json_out:
            out.print(f"[bold]agentfleet demo[/]: {escape(spec.name)} on the [bold]sim[/] provider "
                      f"(simulated LLM, latencies x{scale:g}; no network, no API key)")
        store = RunStore(db)
        # The demo shows parallel execution, so it always runs for real (never from the cache).
        runner = _runner_for(spec, store, {"scale": scale, "provider": "sim", "no_cache": True},
                             spec_path="examples/parallel_sprint.yaml", overrides={})
        try:
            _execute(runner, json_out=json_out, quiet=quiet, stream=not (json_out or quiet), title=spec.name)
        finally:
            store.close()
    except AgentFleetError as exc:
        _fail(exc)


def _example_text(name: str) -> str:
    from importlib import resources

    return (resources.files("agentfleet") / "examples" / name).read_text(encoding="utf-8")


@app.command()
def init(
    template: Annotated[str | None, typer.Argument(help="Persona template to start from (see --list).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")] = Path("workflow.yaml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    list_: Annotated[bool, typer.Option("--list", help="List the persona templates.")] = False,
) -> None:
    """Scaffold a workflow file from a persona template."""
    from .spec._scaffold import scaffold, templates_table

    if list_:
        table = Table(header_style="bold")
        table.add_column("template")
        table.add_column("persona")
        for name, description in templates_table():
            table.add_row(name, description)
        out.print(table)
        return
    try:
        text = scaffold(template, file=str(output))
    except KeyError as exc:
        _fail(SpecError(str(exc.args[0])))
    if output.exists() and not force:
        _fail(SpecError("file exists; pass --force to overwrite", file=str(output)))
    try:
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        _fail(SpecError(f"cannot write: {exc.strerror}", file=str(output)))
    out.print(f"[green]✓[/] wrote {output} — check it with [bold]agentfleet check {output}[/], "
              f"run it with [bold]agentfleet run {output}[/]")


_profile_cli.register(app)  # agentfleet profile WORKFLOW: defined beside the runner helpers it reuses
_loadtest_cli.register(app)  # agentfleet loadtest FILE
_tune_cli.register(app)  # agentfleet tune WORKFLOW
_serve_cli.register(app)  # agentfleet serve
_gc_cli.register(app)  # agentfleet gc / agentfleet info


def main() -> None:
    """Entry point of the ``agentfleet`` script."""
    if "--debug" in sys.argv[1:]:
        _state["debug"] = True
    try:
        app()
    except AgentFleetError as exc:  # raised outside a command body
        if _state["debug"]:
            raise
        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as exc:
        if _state["debug"]:
            raise
        err.print(f"[bold red]internal error:[/] {type(exc).__name__}: {escape(str(exc))} "
                  "(run again with --debug for the traceback, and please report it)")
        sys.exit(1)


if __name__ == "__main__":
    main()
