"""The printed table, the stored JSON and the environment they describe."""

from __future__ import annotations

import importlib
import json
import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._harness import Sample
from ._sizes import Sizes
from ._workloads import WORKLOADS, Verdict, Workload, evaluate, metric_json

__all__ = ["environment", "render", "write_json"]

ENGINES = ("floor", "ours", "langgraph", "ray")
HEADERS = {
    "floor": "bare asyncio (floor)",
    "ours": "agentfleet (ours)",
    "langgraph": "LangGraph",
    "ray": "Ray (local)",
}
RESULTS_DIR = Path(__file__).resolve().parent / "results"


def installed(module: str) -> bool:
    """Whether a peer engine can be imported (the optional ``peers`` extra)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


def _pkg(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def _agentfleet_path() -> str | None:
    """Where the measured agentfleet was imported from (a patched copy shows up here)."""
    try:
        import agentfleet
    except ImportError:
        return None
    return str(Path(agentfleet.__file__).resolve().parent)


def environment() -> dict[str, Any]:
    """Where the numbers came from: interpreter, machine, package versions, commit."""
    usable: int | None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    status = _git("status", "--porcelain")
    return {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "versions": {name: _pkg(name) for name in
                     ("agentfleet", "langgraph", "langchain-core", "ray", "pydantic", "rich")},
        "agentfleet_path": _agentfleet_path(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(status) if status is not None else None,
        "argv": sys.argv[1:],
    }


# -- formatting -------------------------------------------------------------------------

def _dur(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.1f} µs"
    if seconds < 1.0:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def _x(ratio: float) -> str:
    if ratio >= 100:
        return f"{ratio:.0f}x"
    if ratio >= 10:
        return f"{ratio:.1f}x"
    return f"{ratio:.2f}x"


def _cell(w: Workload, s: Sizes, engine: str, samples: dict[str, Sample], repeat: int) -> Text:
    sample = samples.get(engine)
    if sample is None:
        return Text("—", style="dim")
    if sample.skipped:
        return Text(sample.skipped, style="dim")
    if sample.error:
        return Text("error: " + sample.error[:120], style="red")
    n = w.units(s) if w.kind == "overhead" else 1
    unit = "/task" if w.kind == "overhead" else ""
    text = Text(f"{_dur(sample.median / n)}{unit}", style="bold")
    text.append(f"\nmin {_dur(sample.min / n)}", style="dim")
    if len(sample.times) < repeat:
        text.append(f" (n={len(sample.times)})", style="dim")
    if sample.gc_share >= 0.05:
        text.append(f"\nGC pauses {sample.gc_share:.0%}", style="dim")
    parts: list[str] = []
    if w.kind == "makespan":
        parts.append(f"{sample.median / w.ideal(s):.3f}x CP")
    floor, ours = samples.get("floor"), samples.get("ours")
    if engine != "floor" and floor is not None and floor.ok:
        parts.append(f"{_x(sample.median / floor.median)} floor")
    if engine not in ("floor", "ours") and ours is not None and ours.ok:
        parts.append(f"{_x(sample.median / ours.median)} ours")
    if parts:
        text.append("\n" + " · ".join(parts))
    return text


def _admission_cells(w: Workload, s: Sizes, samples: dict[str, Sample], repeat: int) -> tuple[Text, Text]:
    floor = Text(f"ours only\noptimum {_dur(w.ideal(s))}\nFIFO in theory {_dur(s.admission_fifo())}",
                 style="dim")
    lines = Text()
    for key, label in (("ours_cp", "critical_path"), ("ours_fifo", "fifo")):
        sample = samples.get(key)
        if sample is None:
            continue
        if not sample.ok:
            lines.append(f"{label}: error {sample.error or sample.skipped}\n", style="red")
            continue
        lines.append(f"{label} {_dur(sample.median)}", style="bold")
        lines.append(f" (min {_dur(sample.min)}; {sample.median / w.ideal(s):.2f}x opt)"
                     + (f" n={len(sample.times)}" if len(sample.times) < repeat else "") + "\n", style="dim")
    lines.rstrip()
    return floor, lines


def _verdict_text(v: Verdict) -> Text:
    if v.passed is None:
        return Text(f"n/a\n{v.text}", style="yellow")
    if v.passed:
        return Text(f"PASS\n{v.text}", style="bold green")
    return Text(f"FAIL\n{v.text}", style="bold red")


def render(console: Console, sizes: Sizes, results: dict[str, dict[str, Sample]], repeat: int,
           title: str, versions: dict[str, str | None]) -> dict[str, Verdict]:
    table = Table(title=title, show_lines=True, expand=False)
    table.add_column("workload", max_width=30)
    for engine in ENGINES:
        header = HEADERS[engine]
        pkg = {"ours": "agentfleet", "langgraph": "langgraph", "ray": "ray"}.get(engine)
        if pkg and versions.get(pkg):
            header += f" {versions[pkg]}"
        table.add_column(header, min_width=14)
    table.add_column("target", max_width=24)
    table.add_column("result", min_width=8)
    verdicts: dict[str, Verdict] = {}
    for key, samples in results.items():
        w = WORKLOADS[key]
        verdict = evaluate(w, sizes, samples)
        verdicts[key] = verdict
        if w.kind == "admission":
            floor_cell, ours_cell = _admission_cells(w, sizes, samples, repeat)
            peer_cells = [_cell(w, sizes, e, samples, repeat) for e in ("langgraph", "ray")]
            cells = [floor_cell, ours_cell, *peer_cells]
        else:
            cells = [_cell(w, sizes, e, samples, repeat) for e in ENGINES]
        table.add_row(Text(w.title(sizes)), *cells, Text(w.target_text(sizes)), _verdict_text(verdict))
    console.print(table)
    return verdicts


def write_json(path: Path, *, env: dict[str, Any], sizes: Sizes, options: dict[str, Any],
               results: dict[str, dict[str, Sample]], verdicts: dict[str, Verdict],
               extra: dict[str, Any]) -> None:
    workloads: dict[str, Any] = {}
    for key, samples in results.items():
        w = WORKLOADS[key]
        v = verdicts[key]
        workloads[key] = {
            "title": w.title(sizes),
            "kind": w.kind,
            "units": w.units(sizes),
            "ideal_s": w.ideal(sizes) or None,
            "target": w.target,
            "target_text": w.target_text(sizes),
            "passed": v.passed,
            "ratio": v.ratio,
            "engines": {name: {**s.to_json(), **metric_json(w, sizes, s)} for name, s in samples.items()},
        }
    doc = {
        "suite": "agentfleet benchmarks",
        "environment": env,
        "options": options,
        "sizes": sizes.__dict__,
        "workloads": workloads,
        **extra,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, default=str) + "\n")
