"""``agentfleet profile WORKFLOW``: run a workflow under a sampling profiler and show where the
runtime itself spends its time.

The run is a normal run (stored, with a run id, resumable); pyinstrument samples the main thread
every ``--interval`` seconds while it lasts. The profile is summarised by :func:`profile_doc`, a
pure function of the pyinstrument session, printed, stored beside the run
(``RunStore.put_extra(run_id, "profile", ...)``) for the HTML run report, and with ``--html``
written as pyinstrument's interactive page (call tree, flame graph and timeline), made to open
offline.

User errors (a missing or invalid workflow, a bad option, an unwritable ``--html`` file) print one
line and exit 2; a run with failed tasks exits 1; Ctrl-C exits 130 and leaves the run resumable.
"""

# How a sample is attributed. Each pyinstrument sample is the main thread's Python stack and the
# time since the previous sample. Frames up to the command that started the profiler are cut
# off; of the rest, the sample goes to exactly one bucket, first match wins:
#
#   idle      the event loop is blocked in its selector (``selectors.py``: select/epoll/kqueue),
#             waiting for I/O or the next timer, or pyinstrument marked the sample ``[await]``.
#   import    an ``importlib._bootstrap`` frame is on the stack: a module imported lazily on
#             first use (one-off cost, whatever the workflow's size).
#   runtime   the innermost *owned* frame is in the agentfleet package, outside its providers.
#   provider  the innermost owned frame is in ``agentfleet/providers/`` (building requests,
#             parsing responses, HTTP clients, the sim model).
#   user      the innermost owned frame is the user's code (hooks, python-provider functions).
#   loop      no owned frame at all: asyncio's own dispatch between callbacks.
#
# An owned frame is one in the agentfleet package or in application code (neither the Python
# install nor site-packages, pyinstrument's definition); library frames (stdlib, third party)
# belong to their nearest owned caller, so json, sqlite3 or rich called by the scheduler count
# as runtime, httpx called by a provider as provider. Only the main thread is sampled: work in
# other threads (synchronous python-provider functions run via ``asyncio.to_thread``,
# subprocesses of the command provider) appears as the loop waiting for it, i.e. idle.

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypedDict

import typer
from rich.markup import escape
from rich.table import Table

from ._subcli import (
    AdmissionOpt,
    BaseUrlOpt,
    DbOpt,
    JsonOpt,
    MaxParallelOpt,
    ModelOpt,
    NoCacheOpt,
    PolicyOpt,
    ProviderOpt,
    ScaleOpt,
    SeedOpt,
    SetOpt,
    WorkflowArg,
    run_options,
)
from .errors import AgentFleetError, SpecError
from .store import DEFAULT_DB

if TYPE_CHECKING:  # pyinstrument is imported only by the command that profiles
    from pyinstrument.session import Session

__all__ = ["BUCKETS", "ProfileDoc", "TopFunction", "external_urls", "offline_html", "profile_doc", "register"]

#: The buckets a sample can fall in, in the order they are printed.
BUCKETS = ("runtime", "provider", "user", "loop", "import", "idle")

_PACKAGE_DIR = str(Path(__file__).resolve().parent)
_IDENTIFIER_SEP = "\x00"
_ATTRIBUTES_SEP = "\x01"
_CLASS_MARKER = "c"
_IDLE_LEAVES = frozenset({"[await]", "[out-of-context]"})
_IMPORT_FILE = "<frozen importlib._bootstrap"
# pyinstrument's page loads its fonts from Google Fonts; an empty data: stylesheet keeps it
# offline (the page falls back to local fonts).
_WEB_FONTS = re.compile(r"https?://fonts\.googleapis\.com/[^\"'\s)]*")
_URL = re.compile(r"https?://[^\s\"'<>)\\]+")
_XML_NAMESPACE = "http://www.w3.org/"


class TopFunction(TypedDict):
    """One row of the hottest agentfleet functions."""

    function: str  #: ``Class.method`` or ``function``
    location: str  #: file:line, shortened against sys.path (``agentfleet/runtime/_runner.py:978``)
    self_s: float  #: seconds in which this was the innermost agentfleet frame (runtime/provider samples)
    total_s: float  #: seconds in which it was anywhere on the stack (each sample counted once)
    samples: int  #: samples in which it was the innermost agentfleet frame
    kind: str  #: "runtime" or "provider"


class ProfileDoc(TypedDict):
    """What ``agentfleet profile`` stores beside a run (``put_extra(run_id, "profile", json)``)."""

    tree: str  #: plain-text call tree (pyinstrument's console renderer, no colour, frames >= threshold)
    duration_s: float  #: wall time profiled
    cpu_s: float  #: CPU time of the whole process over that wall time (all threads)
    samples: int
    interval: float  #: seconds between samples asked for
    runtime_share: float  #: breakdown["runtime"] / sampled seconds, 0-1 (see the module comment)
    top: list[TopFunction]
    breakdown: dict[str, float]  #: sampled seconds per bucket (BUCKETS)


def _parts(frame_info: str) -> tuple[str, str, str, str | None]:
    """(identifier, function, file, class name) of one of pyinstrument's frame-info strings."""
    identifier, _, attributes = frame_info.partition(_ATTRIBUTES_SEP)
    bits = identifier.split(_IDENTIFIER_SEP)
    function = bits[0]
    file = bits[1] if len(bits) > 1 else ""
    class_name = None
    if attributes:
        for attribute in attributes.split(_ATTRIBUTES_SEP):
            if attribute.startswith(_CLASS_MARKER):
                class_name = attribute[1:]
    return identifier, function, file, class_name


def _common_prefix(stack: Sequence[str], start: Sequence[str]) -> int:
    depth = 0
    for frame_info, start_info in zip(stack, start, strict=False):
        if frame_info.partition(_ATTRIBUTES_SEP)[0] != start_info:
            break
        depth += 1
    return depth


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


def _is_owned_app_code(file: str, prefixes: Iterable[str]) -> bool:
    """Application code by pyinstrument's rule: a real file outside the Python install and site-packages."""
    if not file or file.startswith("<") or (os.sep not in file and "/" not in file):
        return False
    return not any(prefix and file.startswith(prefix) for prefix in prefixes)


def profile_doc(session: Session, *, top: int = 15, tree_threshold: float = 0.01,
                package_dir: str | None = None) -> ProfileDoc:
    """Summarise a pyinstrument session: time per bucket, the runtime share, the ``top`` hottest
    agentfleet functions and a call tree hiding frames under ``tree_threshold`` of the total.

    ``package_dir`` is the directory whose frames count as agentfleet (default: this package);
    the rules are in the module comment. Pure: reads the session, changes nothing.
    """
    package = os.path.abspath(package_dir or _PACKAGE_DIR)
    providers = os.path.join(package, "providers")
    prefixes = [p for p in getattr(session, "sys_prefixes", []) if p]
    start = [info.partition(_ATTRIBUTES_SEP)[0] for info in session.start_call_stack]
    breakdown = dict.fromkeys(BUCKETS, 0.0)
    self_time: dict[str, float] = {}
    self_samples: dict[str, int] = {}
    total_time: dict[str, float] = {}
    names: dict[str, tuple[str, str, str | None, str]] = {}  # identifier -> function, file, class, kind
    for stack, seconds in session.frame_records:
        depth = _common_prefix(stack, start)
        frames = [_parts(info) for info in stack[depth:]]
        innermost: tuple[str, str] | None = None  # (identifier, kind) of the innermost agentfleet frame
        owner: str | None = None
        seen: set[str] = set()
        idle = bool(frames) and frames[-1][0] in _IDLE_LEAVES
        imported = False
        for identifier, function, file, class_name in reversed(frames):
            if file.endswith("selectors.py") and not _under(file, package):
                idle = True
            if file.startswith(_IMPORT_FILE):
                imported = True
            if _under(file, package):
                kind = "provider" if _under(file, providers) else "runtime"
                if identifier not in seen:
                    seen.add(identifier)
                    total_time[identifier] = total_time.get(identifier, 0.0) + seconds
                    if identifier not in names or names[identifier][2] is None:
                        names[identifier] = (function, file, class_name, kind)
                if owner is None:
                    owner = kind
                if innermost is None:
                    innermost = (identifier, kind)
            elif owner is None and _is_owned_app_code(file, prefixes):
                owner = "user"
        if idle:
            bucket = "idle"
        elif imported:
            bucket = "import"
        else:
            bucket = owner or "loop"
        breakdown[bucket] += seconds
        if bucket in ("runtime", "provider") and innermost is not None:
            identifier = innermost[0]
            self_time[identifier] = self_time.get(identifier, 0.0) + seconds
            self_samples[identifier] = self_samples.get(identifier, 0) + 1
    sampled = sum(breakdown.values())
    hottest = sorted(self_time, key=lambda ident: (-self_time[ident], ident))[:top]
    rows: list[TopFunction] = []
    for identifier in hottest:
        function, file, class_name, kind = names[identifier]
        line = identifier.split(_IDENTIFIER_SEP)[2] if identifier.count(_IDENTIFIER_SEP) >= 2 else ""
        location = session.shorten_path(file) + (f":{line}" if line else "")
        rows.append(TopFunction(function=f"{class_name}.{function}" if class_name else function, location=location,
                                self_s=round(self_time[identifier], 6), total_s=round(total_time[identifier], 6),
                                samples=self_samples[identifier], kind=kind))
    return ProfileDoc(
        tree=_tree_text(session, tree_threshold),
        duration_s=round(float(session.duration), 6),
        cpu_s=round(float(session.cpu_time), 6),
        samples=int(session.sample_count),
        interval=float(session.min_interval),
        runtime_share=round(breakdown["runtime"] / sampled, 6) if sampled > 0 else 0.0,
        top=rows,
        breakdown={bucket: round(seconds, 6) for bucket, seconds in breakdown.items()},
    )


def _tree_text(session: Session, threshold: float) -> str:
    """pyinstrument's console call tree without its banner or colour, frames under ``threshold`` hidden."""
    from pyinstrument.renderers import ConsoleRenderer

    renderer = ConsoleRenderer(unicode=True, color=False, processor_options={"filter_threshold": threshold})
    text = renderer.render(session)
    preamble = renderer.render_preamble(session)
    if text.startswith(preamble):
        text = text[len(preamble):]
    return text.strip("\n") + "\n"


def offline_html(html: str) -> str:
    """pyinstrument's page with its one network fetch (web fonts) replaced by an empty stylesheet."""
    return _WEB_FONTS.sub("data:text/css,", html)


def external_urls(html: str) -> list[str]:
    """The http(s) URLs left in a page, XML namespace names (never fetched) aside."""
    return sorted({url for url in _URL.findall(html) if not url.startswith(_XML_NAMESPACE)})


def _session_html(session: Session) -> str:
    from pyinstrument.renderers import HTMLRenderer

    return offline_html(str(HTMLRenderer().render(session)))


# -- the command ------------------------------------------------------------------------------


def _profile_run(runner: Any, interval: float, description: str) -> tuple[Any, Session, bool]:
    """Run ``runner`` to the end under pyinstrument: (result or None, session, interrupted)."""
    import asyncio

    from pyinstrument import Profiler

    from . import cli as _cli

    profiler = Profiler(interval=interval, async_mode="enabled")
    interrupted = False
    profiler.start(target_description=description)
    try:
        result = asyncio.run(_cli._run_with_signals(runner.run()))
    except (KeyboardInterrupt, asyncio.CancelledError):
        interrupted = True
        result = getattr(runner, "result", None)
    finally:
        session = profiler.stop()
    return result, session, interrupted


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole > 0 else "—"


def _print(doc: ProfileDoc, result: Any, html: Path | None, db: str) -> None:
    from . import cli as _cli

    out = _cli.out
    status = {"succeeded": "green", "failed": "red"}.get(result.status, "yellow")
    out.print(f"[bold]profile of {escape(result.name)}[/] — [{status}]{result.status}[/] · run {result.run_id}")
    interval_ms = doc["interval"] * 1000
    out.print(f"wall {doc['duration_s']:.3f}s · CPU {doc['cpu_s']:.3f}s (process) · "
              f"{doc['samples']:,} samples every {interval_ms:g} ms (main thread)")
    breakdown = doc["breakdown"]
    sampled = sum(breakdown.values())
    busy = sampled - breakdown["idle"]
    labels = {"runtime": "runtime", "provider": "providers", "user": "your code", "loop": "event loop",
              "import": "imports", "idle": "idle (waiting)"}
    out.print("sampled time: " + " · ".join(f"{labels[b]} {_percent(breakdown[b], sampled)}" for b in BUCKETS))
    out.print(f"[bold]runtime share {doc['runtime_share'] * 100:.1f}%[/] of sampled time "
              f"({_percent(breakdown['runtime'], busy)} of the time the main thread was busy)")
    if doc["top"]:
        table = Table(header_style="bold", title="hottest agentfleet functions (self: own code and the "
                      "libraries it calls)", title_justify="left")
        for col in ("function", "location"):
            table.add_column(col)
        for col in ("self s", "total s", "% samples"):
            table.add_column(col, justify="right")
        table.add_column("kind")
        for row in doc["top"]:
            table.add_row(escape(row["function"]), escape(row["location"]), f"{row['self_s']:.3f}",
                          f"{row['total_s']:.3f}", _percent(row["samples"], doc["samples"]), row["kind"])
        out.print(table)
    out.print("[bold]call tree[/] (frames under 1% hidden)")
    out.print(doc["tree"], markup=False, highlight=False, end="")
    if result.failure:
        _cli.err.print(f"[bold red]failed:[/] {escape(result.failure)}")
    if html is not None:
        out.print(f"flame graph and timeline: {escape(str(html))}")
    if result.run_id:
        out.print(f"[dim]profile stored with run {result.run_id} in {escape(db)} · "
                  f"agentfleet report {result.run_id}[/]")


def profile(
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
    no_cache: NoCacheOpt = False,
    interval: Annotated[float, typer.Option(min=0.0001, max=1.0, help="Seconds between samples.")] = 0.001,
    html: Annotated[Path | None, typer.Option("--html", help="Also write pyinstrument's interactive page "
                                                            "(call tree, flame graph, timeline; opens offline).")
                    ] = None,
    top: Annotated[int, typer.Option(min=1, help="How many of the hottest agentfleet functions to list.")] = 15,
    db: DbOpt = DEFAULT_DB,
    json_out: JsonOpt = False,
) -> None:
    """Run a workflow under a sampling profiler (pyinstrument) and show where the runtime spends CPU."""
    from . import cli as _cli
    from .spec import load_workflow
    from .store import RunStore

    try:
        overrides = _cli._parse_sets(set_)
        spec = load_workflow(workflow, overrides=overrides)
        options = run_options(provider=provider, model=model, base_url=base_url, max_parallel=max_parallel,
                              policy=policy, admission=admission, scale=scale, seed=seed, no_cache=no_cache)
        if html is not None and not html.parent.is_dir():
            raise SpecError("--html: no such directory", file=str(html.parent))
        store = RunStore(db)
        try:
            runner = _cli._runner_for(spec, store, options, spec_path=str(workflow), overrides=overrides)
            runner.history = False  # slowed by the profiler: not a figure for trends and anomalies
            result, session, interrupted = _profile_run(runner, interval, f"agentfleet profile {workflow}")
            if result is None:
                raise typer.Exit(130)
            doc = profile_doc(session, top=top)
            if result.run_id:
                store.put_extra(result.run_id, "profile", json.dumps(doc))
            db_path = str(store.path)
        finally:
            store.close()
        if html is not None:
            try:
                html.write_text(_session_html(session), encoding="utf-8")
            except OSError as exc:
                raise SpecError(f"--html: cannot write: {exc.strerror}", file=str(html)) from None
    except AgentFleetError as exc:
        _cli._fail(exc)
    if json_out:
        _cli.out.print_json(json.dumps({"run_id": result.run_id, "workflow": result.name, "status": result.status,
                                        "failure": result.failure, "db": db_path,
                                        "html": str(html) if html is not None else None, **doc}))
    else:
        _print(doc, result, html, db_path)
    if interrupted:
        if result.run_id:
            _cli.err.print("interrupted: finished tasks are saved; continue with "
                           f"[bold]agentfleet resume {result.run_id}[/]")
        raise typer.Exit(130)
    raise typer.Exit(0 if result.ok else 1)


def register(app: typer.Typer) -> None:
    """Add ``profile`` to ``app`` (the main ``agentfleet`` app); registering twice is a no-op."""
    for info in app.registered_commands:
        if info.callback is profile or info.name == "profile":
            return
    app.command("profile")(profile)
