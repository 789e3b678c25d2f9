"""What the CLI's sub-apps (``memory``, ``cache``) share: their console and their one-line errors."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape

from .errors import AgentFleetError

__all__ = ["duration", "fail", "out"]


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
