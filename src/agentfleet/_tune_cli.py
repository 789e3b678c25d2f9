"""``agentfleet tune WORKFLOW``: short runs over max_parallel, agent concurrency and hedging; the best
by the objective under the limits, written as an overlay file the workflow includes."""

from __future__ import annotations

import asyncio
import json
import math
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ._subcli import JsonOpt, ScaleOpt, SetOpt, WorkflowArg, fail, out
from .errors import AgentFleetError, SpecError

__all__ = ["register"]

_HTTP = frozenset({"openai", "anthropic", "ollama", "vllm", "llamacpp", "litellm"})


def _evaluate(spec: Any, candidate: Any, *, scale: float | None, runs: int) -> Any:
    from .analysis import analyze
    from .bench._tune import Measured, median_measured
    from .runtime import Runner
    from .spec import HedgeSpec

    measured = []
    for _ in range(runs):
        trial = spec.model_copy(deep=True)
        trial.settings.max_parallel = candidate.max_parallel
        for agent, cap in candidate.caps:
            trial.agents[agent].max_concurrency = cap
        for agent in trial.agents:
            trial.agents[agent].hedge = HedgeSpec() if agent in candidate.hedge else None
        result = asyncio.run(Runner(trial, latency_scale=scale, cache=False).run())
        if not result.ok:
            raise AgentFleetError(f"a trial run failed ({candidate.describe()}): {result.failure}")
        report = analyze(result.records)
        durations = sorted(r.duration for r in result.records if r.started_at is not None and r.ended_at is not None)
        p95 = durations[max(0, math.ceil(0.95 * len(durations)) - 1)] if durations else 0.0
        measured.append(Measured(report.makespan, p95, result.cost_usd))
    return median_measured(measured)


def _without_include(workflow: Path, overlay_file: Path, overrides: dict[str, Any]) -> Any:
    """The workflow as ``load_workflow`` reads it, but without ``overlay_file`` among its includes."""
    import yaml

    from .spec import load_workflow, parse_workflow

    spec = load_workflow(workflow, overrides=overrides)
    data = yaml.safe_load(workflow.read_text(encoding="utf-8"))
    includes = data.get("include") if isinstance(data, dict) else None
    if includes is None:
        return spec
    names = [includes] if isinstance(includes, str) else list(includes)
    kept = [n for n in names if (workflow.parent / n).resolve() != overlay_file.resolve()]
    if len(kept) == len(names):
        return spec
    data["include"] = kept
    return parse_workflow(yaml.safe_dump(data, sort_keys=False), file=str(workflow), overrides=overrides)


def _weights(text: str | None) -> dict[str, float] | None:
    if text is None:
        return None
    weights = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep or key not in ("makespan", "p95", "cost"):
            raise SpecError(f"--weights: {part!r} is not makespan=W, p95=W or cost=W")
        try:
            weights[key] = float(value)
        except ValueError:
            raise SpecError(f"--weights: {value!r} is not a number") from None
    return weights


def tune(
    ctx: typer.Context,
    workflow: WorkflowArg,
    set_: SetOpt = None,
    objective: Annotated[str, typer.Option(help="makespan, p95, cost, or mix (see --weights).")] = "makespan",
    weights: Annotated[str | None, typer.Option(help="For mix: e.g. makespan=1,cost=0.5 (ratios to the start).")
                       ] = None,
    budget: Annotated[int, typer.Option(min=1, max=1000, help="At most this many configurations tried.")] = 24,
    runs: Annotated[int, typer.Option(min=1, max=50, help="Runs per configuration (median).")] = 2,
    scale: ScaleOpt = None,
    max_parallel_limit: Annotated[int | None, typer.Option("--max-parallel-limit", min=1,
                                                           help="Never more slots than this.")] = None,
    max_cost: Annotated[float | None, typer.Option("--max-cost", min=0.0, help="Never more USD per run.")] = None,
    all_agents: Annotated[bool, typer.Option("--all-agents", help="Tune every agent's max_concurrency, not only "
                                                                  "the ones that declare one.")] = False,
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Overlay file to write (default: "
                                                                    "WORKFLOW.tuned.yaml).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Search max_parallel, agents' max_concurrency and hedging with short runs, keep the best by the
    objective under your limits, show the trade-off and write an overlay file: add it to the workflow
    with `include: [FILE]`."""
    import yaml

    from .bench._tune import Candidate, Space, ladder, overlay
    from .bench._tune import tune as search
    from .cli import _parse_sets

    try:
        overrides = _parse_sets(set_)
        target = output or workflow.with_name(workflow.stem + ".tuned.yaml")
        # the starting point is the workflow without the overlay tune writes (a rerun replaces it,
        # it does not diff against itself); other includes stay
        spec = _without_include(workflow, target, overrides)
        if objective not in ("makespan", "p95", "cost", "mix"):
            raise SpecError(f"--objective must be makespan, p95, cost or mix, got {objective!r}")
        start = Candidate(max_parallel=spec.settings.max_parallel,
                          caps=tuple(sorted((n, a.max_concurrency) for n, a in spec.agents.items()
                                            if a.max_concurrency is not None)),
                          hedge=tuple(sorted(n for n, a in spec.agents.items() if a.hedge is not None)))
        ceiling = max_parallel_limit or 100_000
        tuned = [n for n, a in spec.agents.items() if a.max_concurrency is not None or all_agents]
        space = Space(max_parallel=ladder(start.max_parallel, ceiling=ceiling),
                      caps={n: ladder(start.cap(n) or start.max_parallel) for n in tuned},
                      hedgeable=tuple(sorted(n for n, a in spec.agents.items()
                                             if a.provider.strip().lower() in _HTTP)))
        console = out()
        started = time.monotonic()

        def progress(n: int, trial: Any) -> None:
            if not json_out and console.is_terminal:
                console.print(f"[dim]{n:3d}. {escape(trial.candidate.describe())}: makespan "
                              f"{trial.measured.makespan:.3f}s, p95 {trial.measured.p95:.3f}s[/]")

        result = search(lambda c: _evaluate(spec, c, scale=scale, runs=runs), start, space, objective=objective,
                        weights=_weights(weights), budget=budget, max_parallel_limit=max_parallel_limit,
                        max_cost=max_cost, progress=progress)
        changes = overlay(result.start.candidate, result.best.candidate)
        header = (f"# agentfleet tune {workflow.name}: objective {objective}, {len(result.trials)} configurations, "
                  f"{runs} run(s) each\n# {result.start.candidate.describe()} -> {result.best.candidate.describe()}\n"
                  f"# use it: add `include: [{target.name}]` to {workflow.name}\n")
        try:
            target.write_text(header + (yaml.safe_dump(changes, sort_keys=True) if changes else "{}\n"),
                              encoding="utf-8")
        except OSError as exc:
            raise SpecError(f"cannot write the overlay: {exc.strerror or exc}", file=str(target)) from None
    except AgentFleetError as exc:
        fail(ctx, exc)
    if json_out:
        console.print_json(json.dumps({
            "objective": objective, "overlay": changes, "file": str(target), "improvement": result.improvement,
            "start": _trial_dict(result.start), "best": _trial_dict(result.best),
            "trials": [_trial_dict(t) for t in result.trials],
            "pareto": [t.candidate.describe() for t in result.pareto()], "seconds": time.monotonic() - started}))
        return
    front = {t.candidate for t in result.pareto()}
    table = Table(title=f"tune {workflow.name}: {len(result.trials)} configurations by {objective}",
                  title_justify="left")
    for col in ("configuration", "makespan", "p95", "cost", "score", ""):
        table.add_column(col, justify="left" if col in ("configuration", "") else "right")
    for t in sorted(result.trials, key=lambda t: (not t.feasible, t.score))[:15]:
        mark = "[bold green]best[/]" if t is result.best else ("pareto" if t.candidate in front else "")
        if not t.feasible:
            mark = f"[red]{escape(t.why_not or '')}[/]"
        cost = "-" if t.measured.cost is None else f"${t.measured.cost:.4f}"
        table.add_row(escape(t.candidate.describe()), f"{t.measured.makespan:.3f}s", f"{t.measured.p95:.3f}s", cost,
                      f"{t.score:.4g}", mark)
    console.print(table)
    gain = result.improvement
    console.print(f"{objective}: {result.start.score:.4g} as written -> [bold]{result.best.score:.4g}[/]"
                  + ("" if gain is None else f" ({gain * 100:+.0f}%)"))
    console.print(f"written {escape(str(target))}: add [bold]include: \\[{escape(target.name)}][/] to the workflow"
                  if changes else f"the workflow as written is already the best found; {escape(str(target))} "
                                  "is empty")


def _trial_dict(t: Any) -> dict[str, Any]:
    return {"configuration": t.candidate.describe(), "max_parallel": t.candidate.max_parallel,
            "caps": dict(t.candidate.caps), "hedge": list(t.candidate.hedge), "makespan": t.measured.makespan,
            "p95": t.measured.p95, "cost": t.measured.cost, "score": t.score, "feasible": t.feasible,
            "why_not": t.why_not}


def register(app: typer.Typer) -> None:
    if any(getattr(c, "name", None) == "tune" for c in app.registered_commands):
        return
    app.command("tune")(tune)
