"""What the CLI's commands and sub-apps share: their console, their one-line errors, and the
options every command that runs a workflow takes (``run``, ``profile``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from .errors import AgentFleetError

__all__ = ["duration", "fail", "out", "run_options", "seconds"]

# The options of a command that runs a workflow file.
WorkflowArg = Annotated[Path, typer.Argument(help="Workflow YAML file.")]
SetOpt = Annotated[list[str] | None, typer.Option("--set", help="Override a workflow var: key=value.")]
ProviderOpt = Annotated[str | None, typer.Option(help="Run every agent on this provider (sim, openai, "
                                                      "anthropic, ollama, vllm, command, python).")]
ModelOpt = Annotated[str | None, typer.Option(help="Model for every agent (with --provider).")]
BaseUrlOpt = Annotated[str | None, typer.Option(help="Endpoint for every agent, e.g. a local vLLM.")]
MaxParallelOpt = Annotated[int | None, typer.Option(min=1, help="Global limit on running tasks.")]
PolicyOpt = Annotated[str | None, typer.Option(help="fail_fast or continue.")]
AdmissionOpt = Annotated[str | None, typer.Option(help="critical_path or fifo.")]
ScaleOpt = Annotated[float | None, typer.Option(min=0.0001, help="Scale sim latencies (0.1 = 10x faster).")]
SeedOpt = Annotated[int, typer.Option(help="Seed for the sim provider and retry jitter.")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the response cache.")]
DbOpt = Annotated[str, typer.Option("--db", help="Run database (SQLite).", envvar="AGENTFLEET_DB")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")]
ExecutorOpt = Annotated[str | None, typer.Option(
    help="Where provider calls run: local (default) or ray (agent pools as Ray actors).")]
RayAddressOpt = Annotated[str | None, typer.Option(
    "--ray-address", help="Ray cluster for --executor ray (auto, host:6379, ray://host:10001); default: a local Ray.")]


def run_options(*, provider: str | None, model: str | None, base_url: str | None, max_parallel: int | None,
                policy: str | None, admission: str | None, scale: float | None, seed: int,
                no_cache: bool, executor: str | None = None, ray_address: str | None = None) -> dict[str, Any]:
    """The runner options those flags give; a SpecError (exit 2) for a policy or admission that is not one."""
    from .errors import SpecError

    for name, value in (("policy", policy), ("admission", admission), ("executor", executor)):
        allowed = {"policy": ("fail_fast", "continue"), "admission": ("critical_path", "fifo"),
                   "executor": ("local", "ray")}[name]
        if value is not None and value not in allowed:
            raise SpecError(f"--{name} must be one of {', '.join(allowed)}, got {value!r}")
    return {"provider": provider, "model": model, "base_url": base_url, "max_parallel": max_parallel,
            "policy": policy, "admission": admission, "scale": scale, "seed": seed,
            **({"no_cache": True} if no_cache else {}),
            **({"executor": executor} if executor else {}), **({"ray_address": ray_address} if ray_address else {})}


def out() -> Console:
    """The console for a command's output; made per command, not at import, so it sees the
    current stream and COLUMNS."""
    return Console(highlight=False)


def fail(ctx: typer.Context, exc: AgentFleetError) -> NoReturn:
    """One ``error:`` line and the error's exit code; the traceback only with the main app's ``--debug``."""
    if ctx.find_root().params.get("debug"):
        raise exc
    Console(stderr=True, highlight=False).print(f"[bold red]error:[/] {escape(str(exc))}", soft_wrap=True)
    raise typer.Exit(exc.exit_code)


def duration(seconds: float) -> str:
    """3d, 5h, 12m, 40s: the largest whole unit."""
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def seconds(value: float) -> str:
    """A timing with the unit that suits it: 12.3 ns, 4.56 µs, 7.89 ms, 1.234 s ("n/a" when not finite)."""
    import math

    if not math.isfinite(value):
        return "n/a"
    if value < 1e-6:
        return f"{value * 1e9:.1f} ns"
    if value < 1e-3:
        return f"{value * 1e6:.2f} µs"
    if value < 1.0:
        return f"{value * 1e3:.2f} ms"
    return f"{value:.3f} s"
