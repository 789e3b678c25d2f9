"""``agentfleet serve``: the HTTP API and the live dashboard on uvicorn (see docs/service.md)."""

from __future__ import annotations

import logging
import os
import socket
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from ._subcli import DbOpt, fail
from .errors import AgentFleetError, SpecError
from .store import DEFAULT_DB

__all__ = ["register"]


def _bundled_examples() -> str:
    return str(resources.files("agentfleet") / "examples")


def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    db: DbOpt = DEFAULT_DB,
    workflows: Annotated[Path | None, typer.Option(
        help="Directory of workflow files submitted by name (default: the bundled examples).")] = None,
    tokens_file: Annotated[Path | None, typer.Option(
        "--tokens-file", help="Bearer tokens, one 'token [read|submit]' per line (also $AGENTFLEET_TOKENS).")] = None,
    workers: Annotated[int, typer.Option(min=0, max=64, help="Runner processes executing runs "
                                                             "(0: inside the API process).")] = 1,
    max_runs: Annotated[int, typer.Option("--max-runs", min=1, max=10_000,
                                          help="Runs each runner executes at once.")] = 32,
    rate_limit: Annotated[float, typer.Option("--rate-limit", min=0.1,
                                              help="Requests per second per token (bursts of twice that).")] = 200.0,
    max_body: Annotated[int, typer.Option("--max-body", min=1024, help="Largest request body, bytes.")] = 1 << 20,
    max_queued: Annotated[int, typer.Option("--max-queued", min=1, help="Queued runs before 503.")] = 10_000,
    cors_origin: Annotated[list[str] | None, typer.Option(
        "--cors-origin", help="Allow browser calls from this origin (repeatable; none by default).")] = None,
    inline: Annotated[str, typer.Option(
        help="Inline YAML workflows: sim (sim provider only, no hooks/commands/includes), trusted, off.")] = "sim",
    recover: Annotated[bool, typer.Option(
        "--recover/--no-recover", help="Queue again (and resume) runs a crashed service left running.")] = True,
    log_level: Annotated[str, typer.Option("--log-level", help="uvicorn's log level.")] = "warning",
) -> None:
    """Serve the HTTP API (/v1) and the live dashboard (/dashboard/) on uvicorn."""
    import uvicorn

    from .server import ServiceConfig, Tokens, create_app, generate_token
    from .server._catalog import INLINE_MODES

    try:
        if inline not in INLINE_MODES:
            raise SpecError(f"--inline must be one of {', '.join(INLINE_MODES)}, not {inline!r}")
        if workflows is not None and not workflows.is_dir():
            raise SpecError(f"--workflows {workflows}: not a directory")
        tokens = Tokens.parse(os.environ.get("AGENTFLEET_TOKENS"), tokens_file)
        generated = None
        if not len(tokens):
            generated = generate_token()
            tokens = Tokens([(generated, "submit")])
        _check_port(host, port)
        config = ServiceConfig(db=db, tokens=tokens, workflows=str(workflows or _bundled_examples()), workers=workers,
                               max_runs=max_runs, rate=rate_limit, max_body=max_body, max_queued=max_queued,
                               cors_origins=list(cors_origin or []), inline=inline, recover=recover)
        app = create_app(config)
    except AgentFleetError as exc:
        fail(ctx, exc)
    err = Console(stderr=True, highlight=False)
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    err.print(f"[bold]agentfleet service[/] on {escape(url)}  ·  API {escape(url)}/v1  ·  docs {escape(url)}/docs  ·  "
              f"{workers or 'in-process'} runner{'s' if workers > 1 else ''}")
    if generated is not None:
        err.print(f"no token configured (AGENTFLEET_TOKENS or --tokens-file): made one for this run (submit scope):\n"
                  f"  token      {generated}\n  dashboard  {escape(url)}/dashboard/#token={generated}")
    else:
        err.print(f"dashboard  {escape(url)}/dashboard/  (sign in with a token)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    uvicorn.run(app, host=host, port=port, log_level=log_level, access_log=False, timeout_graceful_shutdown=5,
                server_header=False)


def _check_port(host: str, port: int) -> None:
    """A port that is taken is one clear error (exit 2) before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise SpecError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def register(app: typer.Typer) -> None:
    app.command()(serve)
