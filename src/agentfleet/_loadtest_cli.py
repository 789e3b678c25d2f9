"""``agentfleet loadtest FILE``: an open-loop (or closed-loop) load test with a live view, thresholds,
scenario figures and an HTML report."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ._subcli import JsonOpt, fail, out
from .errors import AgentFleetError, SpecError

__all__ = ["register"]


def _summary_table(result: Any) -> Table:
    from .loadtest._report import ms

    s = result.summary
    table = Table(title=f"{result.spec.name} · {type(result.spec.scenario).__name__} · {result.spec.mode} loop",
                  title_justify="left", show_header=False)
    table.add_column("figure")
    table.add_column("value")
    errors = ", ".join(f"{k} {n}" for k, n in sorted(s.errors_by_kind.items())) or "none"
    table.add_row("requests", f"{s.requests:,} ({s.ok:,} ok, {s.errors:,} errors: {escape(errors)})")
    table.add_row("sent late / dropped", f"{s.late:,} / {s.dropped:,}")
    table.add_row("throughput", f"{(s.rps or 0):,.1f} req/s over {s.span:.1f} s")
    table.add_row("latency (from intended start)", f"p50 {ms(s.p50)} · p95 {ms(s.p95)} · p99 {ms(s.p99)} · "
                                                   f"p99.9 {ms(s.p999)} · max {ms(s.max)}")
    table.add_row("error rate", "-" if s.error_rate is None else f"{s.error_rate:.2%}")
    if result.ttft is not None:
        table.add_row("time to first token", f"p50 {ms(result.ttft.p50)} · p95 {ms(result.ttft.p95)} · "
                                             f"p99 {ms(result.ttft.p99)}")
        table.add_row("inter-token gap", f"p50 {ms(result.itl_p50)} · p99 {ms(result.itl_p99)}")
    for key, value in result.figures.items():
        table.add_row(escape(str(key)), escape(str(value)))
    return table


def _live_line(row: Any, started: float, total: float) -> Text:
    from .loadtest._report import ms

    line = Text()
    line.append(f"{time.monotonic() - started:5.1f}s / {total:.0f}s  ", style="dim")
    line.append(f"{row.rps:8.1f} req/s  ", style="bold")
    line.append(f"p99 {ms(row.p99):>10}  ")
    line.append(f"errors {row.errors}", style="red" if row.errors else "dim")
    return line


def loadtest(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="Load test YAML: target, scenario, thresholds.")],
    target: Annotated[str | None, typer.Option("--target", help="Override target.url.")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="Also write the report page (charts per second).")
                    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a load test: requests sent at the scenario's intended times (open loop; latency measured from
    the intended start, so a stalling target cannot hide its stalls) or by N virtual users (closed loop),
    a live view, thresholds (exit 1 when one fails; 'abort' ones stop the run), and the scenario's own
    figures (spike recovery, stress breaking point, endurance drift, p99 per payload size)."""
    import dataclasses

    from .loadtest._plan import load_test_file
    from .loadtest._report import render_loadtest_html
    from .loadtest._run import run_load_test

    try:
        spec = load_test_file(file)
        if target is not None:
            if not target.startswith(("http://", "https://")):
                raise SpecError(f"--target must be an http:// or https:// URL, got {target!r}")
            spec = dataclasses.replace(spec, target=dataclasses.replace(spec.target, url=target, workflow=None))
    except AgentFleetError as exc:
        fail(ctx, exc)
    from .loadtest import phases

    console = out()
    plan = phases(spec.scenario)
    total = plan[-1].end if plan else 0.0
    started = time.monotonic()
    live = Live(Text("starting..."), console=console, transient=True, refresh_per_second=4) \
        if console.is_terminal and not json_out else None

    def on_window(row: Any, _summary: Any) -> None:
        if live is not None:
            live.update(_live_line(row, started, total))

    try:
        if live is not None:
            with live:
                result = asyncio.run(run_load_test(spec, on_window=on_window))
        else:
            result = asyncio.run(run_load_test(spec, on_window=on_window))
    except KeyboardInterrupt:
        console.print("interrupted")
        raise typer.Exit(130) from None
    except AgentFleetError as exc:
        fail(ctx, exc)
    if html is not None:
        try:
            html.parent.mkdir(parents=True, exist_ok=True)
            html.write_text(render_loadtest_html(result), encoding="utf-8")
        except OSError as exc:
            problem = AgentFleetError(f"cannot write the report to {html}: {exc.strerror or exc}")
            problem.exit_code = 2
            fail(ctx, problem)
    if json_out:
        s = result.summary
        console.print_json(json.dumps({
            "name": spec.name, "passed": result.passed, "failure": result.failure, "aborted": result.aborted,
            "saturation": result.saturation,
            "summary": dataclasses.asdict(s), "figures": result.figures,
            "ttft": dataclasses.asdict(result.ttft) if result.ttft is not None else None,
            "itl": {"p50": result.itl_p50, "p99": result.itl_p99},
            "thresholds": [{"expression": v.expression, "measured": v.measured, "passed": v.passed}
                           for v in result.verdicts],
            "series": [row.to_dict() for row in result.series],
            "generator": [dataclasses.asdict(stats) for stats in result.loops]}, default=str))
    else:
        console.print(_summary_table(result))
        for v in result.verdicts:
            console.print(f"[{'green' if v.passed else 'red'}]{escape(v.message)}[/]")
        if result.failure and (result.aborted or result.summary.ok == 0):
            console.print(f"[bold red]{escape(result.failure)}[/]")
        if result.saturation:
            console.print(f"[yellow]{escape(result.saturation)}[/]")
        if html is not None:
            console.print(f"[dim]report: {escape(str(html))}[/]")
    raise typer.Exit(0 if result.passed else 1)


def register(app: typer.Typer) -> None:
    """Add ``loadtest`` to ``app`` (once)."""
    if any(getattr(c, "name", None) == "loadtest" for c in app.registered_commands):
        return
    app.command("loadtest")(loadtest)
