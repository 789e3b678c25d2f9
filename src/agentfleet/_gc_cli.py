"""``agentfleet gc`` and ``agentfleet info``: remove old runs from the run database (archived first, or
restored from an archive), and describe what the database holds.

Thin like the rest of the CLI: the work is in ``agentfleet.store._retention``. User errors (a bad
age, a database that does not exist, conflicting flags) print one ``error:`` line and exit 2.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from ._subcli import DbOpt, JsonOpt, fail, out
from ._subcli import duration as _duration
from .errors import AgentFleetError, SpecError, StoreError
from .store import (
    DEFAULT_DB,
    RUN_TABLES,
    GcPlan,
    RunStore,
    StoreInfo,
    archive_name,
    compact,
    gc_runs,
    parse_age,
    plan_gc,
    restore_runs,
    store_files,
    store_info,
)

__all__ = ["gc", "info", "register"]


def _size(n: int) -> str:
    """1.2 MiB, 340 KiB, 12 B."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _when(t: float | None) -> str:
    return "-" if t is None else time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))


def _rows_text(rows: dict[str, int]) -> str:
    return ", ".join(f"{table} {rows.get(table, 0):,}" for table in RUN_TABLES)


def _progress(enabled: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = out()
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=console, transient=True, disable=not (enabled and console.is_terminal))


def _archive_file(directory: Path, now: float) -> Path:
    """A new file in ``directory`` named for ``now`` (a second gc in the same second gets ``-2``...)."""
    name = archive_name(now)
    target = directory / name
    n = 2
    while target.exists():
        target = directory / name.replace(".jsonl.gz", f"-{n}.jsonl.gz")
        n += 1
    return target


def gc(
    ctx: typer.Context,
    older_than: Annotated[str | None, typer.Option("--older-than", metavar="AGE",
                                                   help="Remove runs that ended more than AGE ago: 30d, 12h, 90m, "
                                                        "2w.")] = None,
    archive: Annotated[Path | None, typer.Option("--archive", metavar="DIR",
                                                 help="Archive folder (default: 'archive' beside the database).")
                       ] = None,
    delete: Annotated[bool, typer.Option("--delete", help="Remove without archiving.")] = False,
    keep_failed: Annotated[bool, typer.Option("--keep-failed", help="Keep failed runs, however old.")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would be removed; change nothing.")] = False,
    vacuum: Annotated[bool, typer.Option("--vacuum", help="VACUUM afterwards: give the freed space back to the "
                                                          "filesystem (rewrites the file).")] = False,
    restore: Annotated[Path | None, typer.Option("--restore", metavar="FILE",
                                                 help="Import an archive (runs already present are skipped).")
                       ] = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=100_000,
                                            help="Runs per transaction.")] = 500,
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """Remove runs that ended (succeeded, failed, interrupted, cancelled) more than --older-than ago, with
    all their tasks, attempts, results, events, extras and metric history, archived first to a
    gzip-compressed JSON-lines file (or not, with --delete). Queued and running runs, artifacts, agent
    memory, the cache and benchmark baselines are never touched. --restore FILE brings archived runs back."""
    try:
        if restore is not None:
            if older_than is not None or archive is not None or delete or dry_run or keep_failed or vacuum:
                raise SpecError("--restore takes only --db, --batch-size and --json; it cannot be combined with "
                                "--older-than, --archive, --delete, --keep-failed, --dry-run or --vacuum")
            _restore(restore, db=db, batch_size=batch_size, json_out=json_out)
            return
        if older_than is None:
            raise SpecError("give --older-than AGE (for example 30d), or --restore FILE")
        if archive is not None and delete:
            raise SpecError("give --archive DIR or --delete, not both")
        try:
            age = parse_age(older_than)
        except ValueError as exc:
            raise SpecError(f"--older-than: {exc}") from None
        _gc(db=db, age=age, older_than=older_than, archive=archive, delete=delete, keep_failed=keep_failed,
            dry_run=dry_run, vacuum=vacuum, batch_size=batch_size, json_out=json_out)
    except AgentFleetError as exc:
        fail(ctx, exc)


def _gc(*, db: str, age: float, older_than: str, archive: Path | None, delete: bool, keep_failed: bool, dry_run: bool,
        vacuum: bool, batch_size: int, json_out: bool) -> None:
    console = out()
    now = time.time()
    before = store_files(db)
    with RunStore(db, create=False) as store:
        plan = plan_gc(store, now=now, older_than=age, keep_failed=keep_failed)
        if dry_run:
            _print_plan(plan, older_than=older_than, json_out=json_out)
            return
        target = None if delete else _archive_file(archive or Path(db).parent / "archive", now)
        with _progress(not json_out and plan.runs > 0) as bar:
            task = bar.add_task("archiving runs" if target else "deleting runs", total=plan.runs)
            try:
                result = gc_runs(store, now=now, older_than=age, archive=target, keep_failed=keep_failed,
                                 batch_size=batch_size, progress=lambda done, total: bar.update(
                                     task, completed=done, total=total))
            except KeyboardInterrupt:
                where = f" (their copy is in {target})" if target is not None and target.exists() else ""
                console.print(f"interrupted: the batches already committed are removed{escape(where)}; "
                              "run gc again to finish", soft_wrap=True)
                raise typer.Exit(130) from None
        checkpoint = compact(store, vacuum=vacuum)
        free = store_info(store).free_bytes
    after = store_files(db)
    size_before, size_after = sum(before.values()), sum(after.values())
    if json_out:
        console.print_json(json.dumps({
            "dry_run": False, "older_than": older_than, "cutoff": result.cutoff, "runs": result.runs,
            "rows": result.rows, "archive": result.archive, "bytes_archived": result.bytes_archived,
            "skipped": result.skipped, "batches": result.batches, "size_before": size_before,
            "size_after": size_after, "free_bytes": free, "vacuumed": vacuum,
            "checkpoint": {"busy": bool(checkpoint[0]), "wal_frames": checkpoint[1], "checkpointed": checkpoint[2]}}))
        return
    if result.runs == 0 and result.skipped == 0:
        line = f"nothing to remove: no run ended before {_when(result.cutoff)} ({older_than} ago)"
    else:
        line = (f"removed {result.runs:,} runs that ended before {_when(result.cutoff)}: {_rows_text(result.rows)} "
                "rows; ")
        line += (f"archived {_size(result.bytes_archived)} to {result.archive}" if result.archive
                 else "not archived (--delete)" if delete else "nothing archived")
        if result.skipped:
            line += f"; {result.skipped:,} runs changed while gc ran and were kept"
    line += f"; database {_size(size_before)} -> {_size(size_after)}"
    if free and not vacuum:
        line += f" ({_size(free)} free inside the file: --vacuum returns it)"
    console.print(escape(line), soft_wrap=True)


def _print_plan(plan: GcPlan, *, older_than: str, json_out: bool) -> None:
    console = out()
    if json_out:
        console.print_json(json.dumps({"dry_run": True, "older_than": older_than, **asdict(plan)}))
        return
    if plan.runs == 0:
        console.print(f"dry run: nothing to remove: no run ended before {_when(plan.cutoff)} ({older_than} ago)",
                      soft_wrap=True)
        return
    statuses = ", ".join(f"{s} {n:,}" for s, n in plan.by_status.items())
    console.print(escape(f"dry run: would remove {plan.runs:,} runs ({statuses}) that ended between "
                         f"{_when(plan.oldest_ended)} and {_when(plan.newest_ended)}: {_rows_text(plan.rows)} rows; "
                         "nothing changed"), soft_wrap=True)


def _restore(source: Path, *, db: str, batch_size: int, json_out: bool) -> None:
    if not source.is_file():
        error = StoreError("no such archive file", path=str(source))
        error.exit_code = 2
        raise error
    with _progress(not json_out) as bar:
        task = bar.add_task("restoring runs", total=None)
        with RunStore(db) as store:
            result = restore_runs(store, source, batch_size=batch_size,
                                  progress=lambda lines: bar.update(task, completed=lines))
    console = out()
    if json_out:
        console.print_json(json.dumps(asdict(result)))
        return
    line = f"restored {result.restored:,} runs from {source}: {_rows_text(result.rows)} rows"
    if result.skipped:
        line += f"; {result.skipped:,} already in the database were skipped"
    if result.truncated:
        line += "; the archive ends mid-batch (the gc writing it was interrupted): every complete run was read"
    console.print(escape(line), soft_wrap=True)


def info(
    ctx: typer.Context,
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """What the run database holds: file sizes (with -wal and -shm), rows per table, runs by status, the
    oldest and newest run, and the free pages VACUUM would return."""
    try:
        with RunStore(db, create=False) as store:
            found = store_info(store)
    except AgentFleetError as exc:
        fail(ctx, exc)
    console = out()
    if json_out:
        console.print_json(json.dumps({**asdict(found), "total_bytes": found.total_bytes,
                                       "free_bytes": found.free_bytes}))
        return
    console.print(_info_table(found, now=time.time()))


def _info_table(found: StoreInfo, *, now: float) -> Table:
    table = Table(title=f"run database {escape(found.path)}", title_justify="left", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_column("", style="dim")
    files = " + ".join(f"{label} {_size(n)}" for label, n in found.files.items())
    table.add_row("size on disk", _size(found.total_bytes), escape(files))
    table.add_row("pages", f"{found.page_count:,}", f"{_size(found.page_size)} each")
    table.add_row("free pages", f"{found.freelist_pages:,}",
                  f"{_size(found.free_bytes)} VACUUM would return (agentfleet gc --vacuum)"
                  if found.freelist_pages else "")
    table.add_section()
    for name, n in found.tables.items():
        note = ""
        if name == "runs":
            note = ", ".join(f"{s} {c:,}" for s, c in found.runs_by_status.items())
        elif name == "artifact_links" and found.orphan_artifact_links:
            note = f"{found.orphan_artifact_links:,} of removed runs"
        table.add_row(name, f"{n:,}", escape(note))
    table.add_section()
    for label, t in (("oldest run", found.oldest_run), ("newest run", found.newest_run)):
        table.add_row(label, _when(t), "" if t is None else f"{_duration(now - t)} ago")
    return table


def register(app: typer.Typer) -> None:
    """Add ``gc`` and ``info`` to ``app`` (once)."""
    names = {getattr(c, "name", None) for c in app.registered_commands}
    if "gc" not in names:
        app.command("gc")(gc)
    if "info" not in names:
        app.command("info")(info)

