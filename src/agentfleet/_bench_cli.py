"""``agentfleet bench``: run a suite, store every sample, compare with a baseline, A/B two configurations."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ._subcli import DbOpt, JsonOpt, fail, out, seconds
from .errors import AgentFleetError, SpecError
from .store import DEFAULT_DB

__all__ = ["bench_app"]

bench_app = typer.Typer(
    help="Benchmark suites: samples in several processes, stored with the environment; a named baseline "
         "compared with a statistical test and a practical threshold; A/B of two configurations.",
    no_args_is_help=True, rich_markup_mode="rich")

SuiteArg = Annotated[str, typer.Argument(help="Suite YAML file, or module:attribute for a suite defined in Python "
                                              "(benchmarks: workflows or module:function).")]
ThresholdOpt = Annotated[float, typer.Option(
    "--threshold", min=0.0, max=0.99, help="Practical threshold: a change smaller than this share (0.05 = 5%) is "
                                          "never called a regression, however significant.")]


HtmlOpt = Annotated[Path | None, typer.Option(
    "--html", help="Also write the distributions (every sample, quartiles, median) as a self-contained page.")]


def _write_html(ctx: typer.Context, path: Path, title: str, sides: dict[str, Any], verdicts: dict[str, Any],
                subtitle: str) -> None:
    from .bench._chart import render_bench_html

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_bench_html(title, sides, verdicts, subtitle), encoding="utf-8")
    except OSError as exc:
        problem = AgentFleetError(f"cannot write the chart to {path}: {exc.strerror or exc}")
        problem.exit_code = 2
        fail(ctx, problem)


def _spread(samples: list[float]) -> str:
    """Median absolute deviation as a share of the median: the noise the comparison has to beat."""
    if len(samples) < 2:
        return "-"
    median = statistics.median(samples)
    mad = statistics.median(abs(x - median) for x in samples)
    return f"±{mad / median * 100:.1f}%" if median > 0 else "-"


def _progress() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=out(), transient=True, disable=not out().is_terminal)


def _compare(baseline: Any, current: dict[str, Any], *, threshold: float, seed: int) -> dict[str, Any]:
    import numpy as np

    from .bench._stats import compare_many

    pairs = {name: (baseline.results[name].samples, result.samples) for name, result in current.items()
             if name in baseline.results}
    try:
        return compare_many(pairs, threshold=threshold, rng=np.random.default_rng(seed)) if pairs else {}
    except ValueError as exc:  # too few samples to compare, a zero median: the suite's settings
        raise SpecError(f"cannot compare with the baseline: {exc} (raise runs: or processes:)") from None


def _table(title: str, results: dict[str, Any], comparisons: dict[str, Any]) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column("benchmark")
    table.add_column("median", justify="right")
    table.add_column("spread", justify="right")
    table.add_column("samples", justify="right")
    if comparisons:
        table.add_column("vs baseline", justify="right")
        table.add_column("95% CI", justify="right")
        table.add_column("verdict")
    for name, result in results.items():
        row = [escape(name), seconds(statistics.median(result.samples)), _spread(result.samples),
               f"{len(result.samples)} ({result.processes}p x{result.loops})"]
        c = comparisons.get(name)
        if comparisons:
            if c is None:
                row += ["new", "", ""]
            else:
                colour = {"slower": "red", "faster": "green"}.get(c.verdict, "dim")
                row += [f"{c.ratio:.3f}x", f"{c.ci_low:.3f}-{c.ci_high:.3f}", f"[{colour}]{c.verdict}[/]"]
        table.add_row(*row)
    return table


def _comparison_dict(c: Any) -> dict[str, Any]:
    return {"ratio": c.ratio, "ci": [c.ci_low, c.ci_high], "p_value": c.p_value, "p_adjusted": c.p_adjusted,
            "verdict": c.verdict, "reason": c.reason, "baseline_median": c.baseline_median,
            "candidate_median": c.candidate_median}


@bench_app.command("run")
def run(
    ctx: typer.Context,
    suite_file: SuiteArg,
    only: Annotated[list[str] | None, typer.Option("--only", help="Run only this benchmark (repeatable).")] = None,
    compare: Annotated[str | None, typer.Option(
        "--compare", help="Compare with this saved baseline; exit 1 on a regression confirmed by a rerun.")] = None,
    save_baseline: Annotated[str | None, typer.Option("--save-baseline", help="Save this run as the baseline NAME.")
                             ] = None,
    threshold: ThresholdOpt = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap resampling.")] = 0,
    html: HtmlOpt = None,
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """Run a suite: every benchmark in several worker processes, every sample stored with the environment;
    with --compare, each benchmark against the baseline (Mann-Whitney U and a bootstrap CI of the median
    ratio, Benjamini-Hochberg across the suite, and the practical --threshold must all agree)."""
    from .bench._runner import environment, run_benchmark, run_suite
    from .bench._stats import confirm
    from .bench._store import BenchStore
    from .bench._suite import load_suite

    try:
        suite = load_suite(suite_file)
        with BenchStore(db) as store:
            baseline = store.baseline(compare) if compare is not None else None
            with _progress() as bar:
                task = bar.add_task(suite.name, total=None)

                def progress(name: str, done: int, planned: int) -> None:
                    bar.update(task, description=f"{suite.name}: {name}", completed=done, total=planned)

                results = {r.name: r for r in run_suite(suite, only=only, progress=progress)}
                comparisons = _compare(baseline, results, threshold=threshold, seed=seed) if baseline else {}
                rerun = {}
                for name, c in list(comparisons.items()):
                    if c.verdict != "slower":
                        continue
                    # a regression fails CI only if a second, independent sampling shows it too
                    bench = next(b for b in suite.benchmarks if b.name == name)
                    again = run_benchmark(suite, bench, progress=progress)
                    second = _compare(baseline, {name: again}, threshold=threshold, seed=seed + 1)[name]
                    comparisons[name] = confirm(c, second)
                    rerun[name] = second
            env = environment()
            run_id = store.save(suite.name, list(results.values()), env)
            if save_baseline:
                store.save_baseline(save_baseline, run_id)
    except AgentFleetError as exc:
        fail(ctx, exc)
    regressions = [name for name, c in comparisons.items() if c.verdict == "slower"]
    if html is not None:
        sides = {name: ([("baseline " + str(compare), baseline.results[name].samples)] if baseline is not None
                        and name in baseline.results else []) + [(f"run {run_id}", r.samples)]
                 for name, r in results.items()}
        _write_html(ctx, html, f"{suite.name} · run {run_id}", sides,
                    {name: _comparison_dict(c) for name, c in comparisons.items()},
                    f"{env['cpu_model'] or '?'} · {env['cpu_usable']} CPUs · python {env['python']}")
    if json_out:
        out().print_json(json.dumps({
            "run_id": run_id, "suite": suite.name, "env": env, "baseline": compare,
            "results": {name: {"median": statistics.median(r.samples), "samples": r.samples, "loops": r.loops,
                               "processes": r.processes, "comparison": _comparison_dict(comparisons[name])
                               if name in comparisons else None} for name, r in results.items()},
            "regressions": regressions}, default=str))
    else:
        console = out()
        title = f"{suite.name} · run {run_id}" + (f" vs baseline {compare}" if compare else "")
        console.print(_table(title, results, comparisons))
        for name, c in comparisons.items():
            if c.verdict != "no change" or name in rerun:
                console.print(f"[bold]{escape(name)}[/]: {escape(c.reason)}")
        console.print(f"[dim]{env['cpu_model'] or '?'} · {env['cpu_usable']} CPUs · load {env['load_average']} · "
                      f"python {env['python']} · commit {(env['git_commit'] or '?')[:10]}[/]")
        if save_baseline:
            console.print(f"saved as baseline [bold]{escape(save_baseline)}[/]")
    raise typer.Exit(1 if regressions else 0)


def _variant(text: str, where: str) -> dict[str, Any]:
    """``max_parallel=8,scale=0.1,var.n=100`` → the fields of a workflow benchmark."""
    import yaml

    fields: dict[str, Any] = {"set": {}}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        if not sep:
            raise SpecError(f"{where}: {part!r} is not key=value (max_parallel=8, scale=0.1, var.NAME=VALUE)")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            raise SpecError(f"{where}: {value!r} is not a value") from None
        if key == "max_parallel" and not (isinstance(parsed, int) and not isinstance(parsed, bool) and parsed >= 1):
            raise SpecError(f"{where}: max_parallel must be an integer >= 1, got {value!r}")
        if key == "scale" and not (isinstance(parsed, (int, float)) and not isinstance(parsed, bool) and parsed > 0):
            raise SpecError(f"{where}: scale must be a number > 0, got {value!r}")
        if key.startswith("var."):
            fields["set"][key[4:]] = parsed
        elif key in ("max_parallel", "scale"):
            fields[key] = parsed
        else:
            raise SpecError(f"{where}: unknown key {key!r} (max_parallel, scale, var.NAME)")
    return fields


@bench_app.command("ab")
def ab(
    ctx: typer.Context,
    workflow: Annotated[Path, typer.Argument(help="Workflow YAML file to run in both configurations.")],
    a: Annotated[str, typer.Option("--a", help="Configuration A, e.g. 'max_parallel=8' or 'var.n=100,scale=0.1'.")],
    b: Annotated[str, typer.Option("--b", help="Configuration B, same keys.")],
    rounds: Annotated[int, typer.Option(min=2, max=1000, help="ABAB rounds (one worker process each).")] = 6,
    runs: Annotated[int, typer.Option(min=1, max=1000, help="Measured runs per process.")] = 3,
    warmups: Annotated[int, typer.Option(min=0, max=100, help="Discarded runs per process.")] = 1,
    threshold: ThresholdOpt = 0.05,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap resampling.")] = 0,
    html: HtmlOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """A/B: run a workflow in two configurations interleaved (ABAB...) so machine drift falls on both, and
    report B/A with its confidence interval and the verdict."""
    import numpy as np

    from .bench._runner import run_ab
    from .bench._stats import compare as compare_samples
    from .bench._suite import BenchSettings, BenchSpec, SuiteSpec

    try:
        if not workflow.is_file():
            raise SpecError("no such workflow file", file=str(workflow))
        settings = BenchSettings(processes=1, warmups=warmups, runs=runs)
        path = str(workflow.resolve())
        spec_a = BenchSpec(name="A", workflow=path, **_variant(a, "--a"))
        spec_b = BenchSpec(name="B", workflow=path, **_variant(b, "--b"))
        from .spec import load_workflow

        for side, bench in (("--a", spec_a), ("--b", spec_b)):  # a bad var is an error here, not in a worker
            try:
                load_workflow(path, overrides=bench.set)
            except SpecError as exc:
                raise SpecError(f"{side}: {exc.message}", file=exc.file) from None
        suite = SuiteSpec(name="ab", settings=settings, benchmarks=[spec_a, spec_b])
        with _progress() as bar:
            task = bar.add_task("A/B", total=rounds)
            ra, rb = run_ab(suite, spec_a, spec_b, rounds=rounds,
                            progress=lambda _n, done, _t: bar.update(task, completed=done))
        c = compare_samples("B vs A", ra.samples, rb.samples, threshold=threshold, rng=np.random.default_rng(seed))
    except AgentFleetError as exc:
        fail(ctx, exc)
    if html is not None:
        _write_html(ctx, html, f"A/B · {workflow.name}", {"B vs A": [(f"A {a}", ra.samples), (f"B {b}", rb.samples)]},
                    {"B vs A": _comparison_dict(c)}, f"{rounds} rounds ABAB")
    if json_out:
        out().print_json(json.dumps({"a": {"config": a, "samples": ra.samples},
                                     "b": {"config": b, "samples": rb.samples}, "comparison": _comparison_dict(c)}))
        return
    console = out()
    table = Table(title=f"A/B · {workflow.name} · {rounds} rounds ABAB", title_justify="left")
    for col in ("", "configuration", "median", "spread", "samples"):
        table.add_column(col, justify="right" if col in ("median", "spread", "samples") else "left")
    table.add_row("A", escape(a), seconds(statistics.median(ra.samples)), _spread(ra.samples), str(len(ra.samples)))
    table.add_row("B", escape(b), seconds(statistics.median(rb.samples)), _spread(rb.samples), str(len(rb.samples)))
    console.print(table)
    colour = {"slower": "red", "faster": "green"}.get(c.verdict, "dim")
    console.print(f"B/A = [bold]{c.ratio:.3f}x[/] (95% CI {c.ci_low:.3f}-{c.ci_high:.3f}) → "
                  f"[{colour}]B is {c.verdict}[/]: {escape(c.reason)}")


@bench_app.command("list")
def list_runs(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="How many recent runs.")] = 20,
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Recent benchmark runs and the saved baselines."""
    from .bench._store import BenchStore

    try:
        with BenchStore(db, create=False) as store:
            runs = store.runs(limit=limit)
            baselines = store.baselines()
    except AgentFleetError as exc:
        fail(ctx, exc)
    named: dict[str, list[str]] = {}
    for name, run_id, _, _ in baselines:
        named.setdefault(run_id, []).append(name)
    table = Table(title="benchmark runs", title_justify="left")
    for col in ("run", "suite", "when", "benchmarks", "baselines"):
        table.add_column(col)
    for run_id, suite, at, count in runs:
        table.add_row(run_id, escape(suite), time.strftime("%Y-%m-%d %H:%M", time.localtime(at)), str(count),
                      ", ".join(named.get(run_id, [])))
    out().print(table)
