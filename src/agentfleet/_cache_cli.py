"""``agentfleet cache``: stats, clear and invalidate the response cache kept across runs.

A typer sub-app (``cache_app``) that cli.py registers; thin like the rest of the CLI. The
SQLite level (L3) lives in the run database (``--db``); the Redis level (L2) is reached only
when ``--redis URL`` is given; the memory level (L1) lives inside each running process, so
only its counters (recorded by runs in the database) can be shown.

User errors (a file that is not a SQLite database, a Redis URL that is bad or does not
answer, clearing or invalidating where there is no cache database) print one line and exit 2.
``stats`` on a database that does not exist yet says there is no cache yet and exits 0.
``--debug`` on the main app shows tracebacks.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ._subcli import duration as _duration
from ._subcli import fail as _fail
from ._subcli import out as _out
from .errors import AgentFleetError, CacheError, StoreError
from .store import DEFAULT_DB

if TYPE_CHECKING:  # the cache package imports redis: only the commands that run need it
    from .cache import RedisCache, RedisCacheSummary, SqliteCache, SqliteCacheEntry, SqliteCacheSummary

__all__ = ["cache_app"]

T = TypeVar("T")

cache_app = typer.Typer(
    name="cache",
    help="The response cache kept across runs: statistics, clearing, tag invalidation.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)

LEVELS = ("memory", "redis", "sqlite")
DEFAULT_NAMESPACE = "agentfleet:cache"

DbOpt = Annotated[str, typer.Option("--db", help="Run database (SQLite) holding the L3 cache.",
                                    envvar="AGENTFLEET_DB")]
RedisOpt = Annotated[str | None, typer.Option("--redis", metavar="URL",
                                              help="Also the L2 cache in this Redis, e.g. redis://127.0.0.1:6379/0.")]
NamespaceOpt = Annotated[str, typer.Option("--namespace", help="Key prefix of the cache in Redis (with --redis).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON only.")]


def _open_for_change(ctx: typer.Context, db: str, redis_url: str | None) -> SqliteCache | None:
    """The SQLite level a command changes (None when there is no database but a Redis to change);
    no database and no Redis is an error."""
    from .cache import SqliteCache

    if not _db_exists(db):
        if redis_url is None:
            _fail(ctx, _no_database(db))
        return None
    try:
        return SqliteCache(db, create=False)
    except AgentFleetError as exc:
        _fail(ctx, exc)


def _db_exists(db: str) -> bool:
    return db == ":memory:" or os.path.exists(db)


def _no_database(db: str) -> StoreError:
    error = StoreError("no cache database at this path yet", path=db)
    error.exit_code = 2
    return error


def _with_redis(ctx: typer.Context, url: str | None, namespace: str,
                work: Callable[[RedisCache | None], Awaitable[T]]) -> T:
    """Run ``work`` in an event loop with a RedisCache for ``url`` (None without one), closed afterwards.

    Any Redis failure is the user's to fix here (a bad or unreachable URL): one line, exit 2.
    """
    from .cache import RedisCache

    async def main() -> T:
        redis = None if url is None else RedisCache(url, namespace=namespace)
        try:
            return await work(redis)
        finally:
            if redis is not None:
                await redis.aclose()

    try:
        return asyncio.run(main())
    except CacheError as exc:
        exc.exit_code = 2
        _fail(ctx, exc)
    except AgentFleetError as exc:
        _fail(ctx, exc)


# -- formatting ------------------------------------------------------------------------------


def _size(n: int | None) -> str:
    if n is None:
        return "—"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def _latency(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def _span(seconds: float) -> str:
    """Provider time saved: 42.0s, 12m 3s, 3h 5m."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m {int(seconds % 60)}s"
    return f"{int(seconds // 3600)}h {int(seconds % 3600 // 60)}m"


def _ago(when: float | None, now: float) -> str:
    return "—" if when is None else f"{_duration(now - when)} ago"


def _plural(n: int, word: str, plural: str | None = None) -> str:
    return f"{n} {word if n == 1 else plural or word + 's'}"


# -- stats -----------------------------------------------------------------------------------


def _level_rows(counters: dict[str, dict[str, float]], sqlite: SqliteCacheSummary | None,
                redis: RedisCacheSummary | None) -> dict[str, dict[str, Any]]:
    """Per level: what it holds (None where unknown), its cumulative counters, hit rate and mean lookup."""
    names = [*LEVELS, *sorted(set(counters) - set(LEVELS))]
    rows: dict[str, dict[str, Any]] = {}
    for name in names:
        c = counters.get(name, {})
        hits, misses = int(c.get("hits", 0)), int(c.get("misses", 0))
        lookups = hits + misses
        held: tuple[int | None, int | None] = (None, None)
        if name == "sqlite" and sqlite is not None:
            held = (sqlite.entries, sqlite.bytes)
        elif name == "redis" and redis is not None:
            held = (redis.entries, redis.bytes)
        rows[name] = {
            "entries": held[0], "bytes": held[1],
            "hits": hits, "misses": misses,
            "writes": int(c.get("writes", 0)), "evictions": int(c.get("evictions", 0)),
            "saved_tokens": int(c.get("saved_tokens", 0)), "saved_seconds": float(c.get("saved_seconds", 0.0)),
            "lookup_seconds": float(c.get("lookup_seconds", 0.0)), "reports": int(c.get("reports", 0)),
            "hit_rate": hits / lookups if lookups else None,
            "mean_lookup_seconds": float(c.get("lookup_seconds", 0.0)) / lookups if lookups else None,
        }
    return rows


def _entry_json(entry: SqliteCacheEntry) -> dict[str, Any]:
    data = asdict(entry)
    data["tags"] = list(entry.tags)
    return data


def _print_stats(out: Console, db: str, levels: dict[str, dict[str, Any]], sqlite: SqliteCacheSummary | None,
                 redis: tuple[str, str, RedisCacheSummary] | None) -> None:
    now = time.time()
    runs = max((row["reports"] for row in levels.values()), default=0)
    source = f"cache in {escape(db)}" if sqlite is not None else f"no cache database in {escape(db)}"
    counted = f"counters from {_plural(runs, 'run')}" if runs else "no counters recorded yet"
    out.print(f"[bold]{source}[/] — {counted}")
    table = Table(header_style="bold")
    for col in ("level", "entries", "size", "hits", "misses", "hit rate", "mean lookup", "tokens saved",
                "time saved"):
        table.add_column(col, justify="left" if col == "level" else "right")
    for name, row in levels.items():
        rate = "—" if row["hit_rate"] is None else f"{row['hit_rate']:.1%}"
        table.add_row(escape(name), "—" if row["entries"] is None else f"{row['entries']:,}", _size(row["bytes"]),
                      f"{row['hits']:,}", f"{row['misses']:,}", rate, _latency(row["mean_lookup_seconds"]),
                      f"{row['saved_tokens']:,}", _span(row["saved_seconds"]))
    out.print(table)
    tokens = sum(row["saved_tokens"] for row in levels.values())
    seconds = sum(row["saved_seconds"] for row in levels.values())
    out.print(f"saved {tokens:,} tokens and {_span(seconds)} of provider time in total")
    notes = ["memory entries live inside each running process"]
    if redis is None:
        notes.append("redis entries: pass --redis URL")
    out.print(f"[dim]{'; '.join(notes)}[/]")
    if redis is not None:
        url, namespace, held = redis
        out.print(f"redis {escape(url)} namespace {escape(namespace)}: "
                  f"{_plural(held.entries, 'entry', 'entries')}, {_size(held.bytes)}, {_plural(held.tags, 'tag')}")
    if sqlite is None:
        return
    if sqlite.entries:
        ages = f"; oldest {_ago(sqlite.oldest, now)}, newest {_ago(sqlite.newest, now)}"
    else:
        ages = ""
    out.print(f"sqlite: {_plural(sqlite.entries, 'entry', 'entries')} ({sqlite.expired} expired), "
              f"{_size(sqlite.bytes)}, {_plural(sqlite.tags, 'tag')}, "
              f"{_plural(sqlite.tag_edges, 'derivation')}{ages}")
    if not sqlite.top:
        if sqlite.entries and not sqlite.hits:
            out.print("[dim]no stored entry has been read from the sqlite level yet[/]")
        return
    top = Table(title="most read entries (sqlite level)", title_justify="left", header_style="bold")
    for col in ("key", "model", "provider", "hits", "last hit", "size", "expires", "tags"):
        top.add_column(col, justify="right" if col in ("hits", "size") else "left")
    for entry in sqlite.top:
        if entry.expires is None:
            expires = "never"
        elif entry.expires <= now:
            expires = "expired"
        else:
            expires = f"in {_duration(entry.expires - now)}"
        tags = ", ".join(entry.tags)
        if len(tags) > 40:
            tags = tags[:39] + "…"
        top.add_row(entry.key[:12], escape(entry.model or "—"), escape(entry.provider or "—"), f"{entry.hits:,}",
                    _ago(entry.last_hit_at, now), _size(entry.size), expires, escape(tags))
    out.print(top)


@cache_app.command()
def stats(
    ctx: typer.Context,
    db: DbOpt = DEFAULT_DB,
    redis_url: RedisOpt = None,
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    top: Annotated[int, typer.Option("--top", min=0, help="How many of the most read entries to list.")] = 10,
    json_out: JsonOpt = False,
) -> None:
    """Per level: entries, size, hits, misses, hit rate, mean lookup latency, tokens and time saved."""
    from .cache import SqliteCache

    out = _out()
    exists = _db_exists(db)
    summary: SqliteCacheSummary | None = None
    counters: dict[str, dict[str, float]] = {}
    if exists:
        try:
            with SqliteCache(db, create=False) as cache:
                summary = cache.summary(top=top)
                counters = cache.counters()
        except AgentFleetError as exc:
            _fail(ctx, exc)

    async def count(redis: RedisCache | None) -> tuple[str, str, RedisCacheSummary] | None:
        return None if redis is None else (redis.url, redis.namespace, await redis.summary())

    redis = _with_redis(ctx, redis_url, namespace, count)
    levels = _level_rows(counters, summary, None if redis is None else redis[2])
    if json_out:
        out.print_json(json.dumps({
            "db": db,
            "exists": exists,
            "levels": levels,
            "sqlite": None if summary is None else {k: v for k, v in asdict(summary).items() if k != "top"},
            "redis": None if redis is None else {"url": redis[0], "namespace": redis[1], **asdict(redis[2])},
            "top": [] if summary is None else [_entry_json(e) for e in summary.top],
        }))
        return
    if not exists and redis is None:
        out.print(f"no cache in {escape(db)} yet — runs fill it when a workflow enables the cache")
        return
    _print_stats(out, db, levels, summary, redis)


# -- clear -----------------------------------------------------------------------------------


@cache_app.command()
def clear(
    ctx: typer.Context,
    db: DbOpt = DEFAULT_DB,
    redis_url: RedisOpt = None,
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    counters: Annotated[bool, typer.Option("--counters", help="Also reset the cumulative counters.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Remove every cached entry and the tag graph (in SQLite, and in Redis with --redis); counters stay."""

    out = _out()
    cache = _open_for_change(ctx, db, redis_url)

    async def work(redis: RedisCache | None) -> str | None:
        assert cache is not None or redis is not None
        in_redis = 0 if redis is None else (await redis.summary()).entries
        in_sqlite, edges, counted = 0, 0, 0
        if cache is not None:
            summary = cache.summary(top=0)
            in_sqlite, edges = summary.entries, summary.tag_edges
            counted = len(cache.counters())
        total = in_sqlite + in_redis
        if total == 0 and edges == 0 and not (counters and counted):
            return "the cache is empty; nothing removed"
        where = [f"sqlite {in_sqlite}" if cache is not None else "", f"redis {in_redis}" if redis is not None else ""]
        question = (f"Remove {_plural(total, 'cache entry', 'cache entries')} "
                    f"({', '.join(w for w in where if w)}) and the tag graph"
                    f"{', and reset the counters' if counters else ''}?")
        if not yes and not typer.confirm(question, default=False):
            out.print("nothing removed")
            raise typer.Exit(1)
        removed: dict[str, int] = {}
        if redis is not None:  # first: a Redis failure then leaves SQLite as it was
            removed["redis"] = await redis.clear()
        if cache is not None:
            removed = {"sqlite": cache.clear(tag_graph=True, counters=counters), **removed}
        counts = ", ".join(f"{n} from {level}" for level, n in removed.items())
        graph = "; tag graph cleared" if cache is not None else ""
        kept = "counters reset" if counters else "counters kept (--counters resets them)"
        return (f"removed {_plural(sum(removed.values()), 'cache entry', 'cache entries')} ({counts}){graph}; "
                f"{kept}")

    try:
        message = _with_redis(ctx, redis_url, namespace, work)
    finally:
        if cache is not None:
            cache.close()
    if cache is None:
        out.print(f"[dim]no cache database at {escape(db)}; cleared redis only[/]")
    if message:
        out.print(message)


# -- invalidate ------------------------------------------------------------------------------


@cache_app.command()
def invalidate(
    ctx: typer.Context,
    tags: Annotated[list[str], typer.Argument(metavar="TAG", help="Tags to invalidate (with what derives "
                                                                     "from them, transitively).")],
    db: DbOpt = DEFAULT_DB,
    redis_url: RedisOpt = None,
    namespace: NamespaceOpt = DEFAULT_NAMESPACE,
    json_out: JsonOpt = False,
) -> None:
    """Remove the entries carrying TAG, or a tag derived from it through the tag graph; how many per level."""

    out = _out()
    cache = _open_for_change(ctx, db, redis_url)

    async def work(redis: RedisCache | None) -> tuple[set[str], dict[str, int]]:
        # The tag graph lives in the SQLite level; without a database only the tags given count.
        closure = set(tags) if cache is None else cache.closure(tags)
        removed: dict[str, int] = {}
        if redis is not None:  # first: a Redis failure then leaves SQLite as it was
            removed["redis"] = len(await redis.invalidate_tags(closure))
        if cache is not None:
            removed = {"sqlite": len(cache.invalidate_tags(closure)), **removed}
        return closure, removed

    try:
        closure, removed = _with_redis(ctx, redis_url, namespace, work)
    finally:
        if cache is not None:
            cache.close()
    derived = sorted(closure - set(tags))
    if json_out:
        out.print_json(json.dumps({"tags": list(dict.fromkeys(tags)), "derived": derived, "removed": removed}))
        return
    if cache is None:
        out.print(f"[dim]no cache database at {escape(db)}: no tag graph to follow; redis only[/]")
    also = f" and derived {', '.join(escape(t) for t in derived)}" if derived else ""
    counts = ", ".join(f"{n} from {level}" for level, n in removed.items())
    total = sum(removed.values())
    out.print(f"invalidated {', '.join(escape(t) for t in dict.fromkeys(tags))}{also}: "
              f"removed {_plural(total, 'entry', 'entries')} ({counts})")
    out.print("[dim]running processes keep their in-memory (L1) copies until they expire or are evicted[/]")
