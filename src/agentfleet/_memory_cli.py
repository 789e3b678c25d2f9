"""``agentfleet memory``: list, show, add and clear the agent memory kept across runs.

A typer sub-app (``memory_app``) that cli.py registers; thin like the rest of the CLI.
User errors (a missing database, an unknown id, a bad --ttl, clearing everything without
``--all``) print one line and exit 2. ``--debug`` on the main app shows tracebacks.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import asdict
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ._subcli import duration as _duration
from ._subcli import fail as _fail
from ._subcli import out as _out
from .errors import AgentFleetError, SpecError
from .store import DEFAULT_DB, MemoryEntry, MemoryScope, MemoryStore, parse_ttl

__all__ = ["memory_app"]

memory_app = typer.Typer(
    name="memory",
    help="Agent memory kept across runs: patterns, mistakes, best practices, project context.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)

DbOpt = Annotated[str, typer.Option("--db", help="Run database (SQLite).", envvar="AGENTFLEET_DB")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")]
AgentOpt = Annotated[str | None, typer.Option("--agent", help="Only this agent's memory.")]
TeamOpt = Annotated[str | None, typer.Option("--team", help="Only this team's memory.")]


def _owner(ctx: typer.Context, agent: str | None, team: str | None) -> tuple[str | None, MemoryScope | None]:
    if agent is not None and team is not None:
        _fail(ctx, SpecError("give --agent or --team, not both"))
    if agent is not None:
        return agent, "agent"
    if team is not None:
        return team, "team"
    return None, None


def _expiry(entry: MemoryEntry, now: float) -> str:
    if entry.expires is None:
        return "never"
    if entry.expires <= now:
        return "expired"
    return f"in {_duration(entry.expires - now)}"


def _one_line(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _describe(owner: str | None, scope: str | None, category: str | None) -> str:
    parts = [f"{scope} {owner!r}" if owner is not None else "every owner"]
    if category is not None:
        parts.append(f"category {category!r}")
    return ", ".join(parts)


@memory_app.command("list")
def list_(
    ctx: typer.Context,
    agent: AgentOpt = None,
    team: TeamOpt = None,
    category: Annotated[list[str] | None, typer.Option("--category", help="Only this category (repeatable).")] = None,
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """List remembered entries, most recently updated first."""
    owner, scope = _owner(ctx, agent, team)
    out = _out()
    entries: list[MemoryEntry] = []  # no database yet: nothing remembered, like ``agentfleet runs``
    if db == ":memory:" or os.path.exists(db):
        try:
            with MemoryStore(db, create=False) as store:
                entries = store.entries(owner, scope=scope, categories=category or None)
        except AgentFleetError as exc:
            _fail(ctx, exc)
    if json_out:
        out.print_json(json.dumps([asdict(e) for e in entries]))
        return
    if not entries:
        out.print(f"no memory in {escape(db)} yet — add some with [bold]agentfleet memory add[/]")
        return
    now = time.time()
    table = Table(header_style="bold")
    for col in ("id", "owner", "scope", "category", "key", "content", "age", "expires", "uses"):
        table.add_column(col, justify="right" if col in ("id", "age", "uses") else "left")
    for e in entries:
        table.add_row(str(e.id), escape(e.owner), e.scope, escape(e.category), escape(e.key or ""),
                      escape(_one_line(e.content, 60)), _duration(now - e.updated), _expiry(e, now), str(e.uses))
    out.print(table)


@memory_app.command()
def show(
    ctx: typer.Context,
    entry_id: Annotated[int, typer.Argument(metavar="ID", help="Entry id (see 'agentfleet memory list').")],
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """Show one entry in full."""
    try:
        with MemoryStore(db, create=False) as store:
            entry = store.get(entry_id)
    except AgentFleetError as exc:
        _fail(ctx, exc)
    out = _out()
    if json_out:
        out.print_json(json.dumps(asdict(entry)))
        return
    now = time.time()
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("id", str(entry.id))
    table.add_row("owner", f"{escape(entry.owner)} ({entry.scope})")
    table.add_row("category", escape(entry.category))
    if entry.key:
        table.add_row("key", escape(entry.key))
    table.add_row("created", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(entry.created)))
    table.add_row("updated", f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(entry.updated))} "
                             f"({_duration(now - entry.updated)} ago)")
    table.add_row("expires", _expiry(entry, now))
    if entry.source:
        table.add_row("source", escape(entry.source))
    table.add_row("uses", str(entry.uses))
    out.print(table)
    out.print()
    out.print(entry.content, markup=False, highlight=False, soft_wrap=True)


@memory_app.command()
def add(
    ctx: typer.Context,
    owner: Annotated[str, typer.Argument(help="Agent name (or team name with --team).")],
    category: Annotated[str, typer.Argument(help="patterns, mistakes, best_practices, project_context, or any.")],
    text: Annotated[str, typer.Argument(help="What to remember ('-' reads standard input).")],
    team: Annotated[bool, typer.Option("--team", help="OWNER is a team: every agent in it sees the entry.")] = False,
    key: Annotated[str | None, typer.Option("--key", help="A slot name: adding the same key replaces it.")] = None,
    ttl: Annotated[str | None, typer.Option("--ttl", help="Expire after 30d, 12h, 15m, 45s (default: never).")] = None,
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Remember something for an agent (or a team)."""
    if text == "-":
        text = sys.stdin.read()
    try:
        seconds = parse_ttl(ttl)
    except ValueError as exc:
        _fail(ctx, SpecError(str(exc), field="--ttl"))
    scope: MemoryScope = "team" if team else "agent"
    try:
        with MemoryStore(db) as store:
            entry = store.add(owner, category, text, scope=scope, key=key, ttl=seconds, source="cli")
    except ValueError as exc:
        _fail(ctx, SpecError(str(exc)))
    except AgentFleetError as exc:
        _fail(ctx, exc)
    verb = "updated" if entry.updated > entry.created else "added"
    expires = "never expires" if seconds is None else f"expires in {_duration(seconds)}"
    truncated = " (truncated)" if len(entry.content) < len(text) else ""
    _out().print(f"{verb} memory {entry.id} for {entry.scope} {escape(entry.owner)!r} in "
                 f"{escape(entry.category)}{truncated}; {expires}")


@memory_app.command()
def clear(
    ctx: typer.Context,
    agent: AgentOpt = None,
    team: TeamOpt = None,
    category: Annotated[str | None, typer.Option("--category", help="Only this category.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Clear every owner's memory.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    db: DbOpt = DEFAULT_DB,
) -> None:
    """Forget entries of an agent, a team or a category (or, with --all, everything)."""
    owner, scope = _owner(ctx, agent, team)
    narrowed = owner is not None or category is not None
    if all_ and narrowed:
        _fail(ctx, SpecError("--all clears everything; drop it to clear only --agent, --team or --category"))
    if not all_ and not narrowed:
        _fail(ctx, SpecError("refusing to clear all memory without --all "
                             "(or narrow it with --agent, --team, --category)"))
    out = _out()
    try:
        with MemoryStore(db, create=False) as store:
            what = _describe(owner, scope, category)
            n = store.count(owner, scope=scope, category=category)
            if n == 0:
                out.print(f"no memory entries for {escape(what)}; nothing removed")
                return
            if not yes and not typer.confirm(f"Remove {n} memory entr{'y' if n == 1 else 'ies'} ({what})?",
                                             default=False):
                out.print("nothing removed")
                raise typer.Exit(1)
            removed = store.clear(owner, scope=scope, category=category)
    except AgentFleetError as exc:
        _fail(ctx, exc)
    out.print(f"removed {removed} memory entr{'y' if removed == 1 else 'ies'} ({escape(what)})")
