"""Live terminal progress for a run: overall bar, running/queued/done counts, per-agent rows.

It reads the run's progress events from the message bus in batches (cheap counter
updates) and redraws at a fixed rate with rich, so a 10,000-task run costs the same to
display as a 10-task one.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from .runtime import Runner

__all__ = ["LiveProgress"]

_FINAL = {"done", "failed", "skipped", "cancelled"}


class LiveProgress:
    """Shows a run's progress while it runs; use as a context manager around ``runner.run()``."""

    def __init__(self, runner: Runner, console: Console, *, stream: bool = False, title: str = "") -> None:
        self.runner = runner
        self.console = console
        self.stream = stream
        self.title = title or runner.spec.name
        self.agents: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.state: dict[str, str] = {}
        self.totals: dict[str, int] = defaultdict(int)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=None),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TimeElapsedColumn(),
            console=console,
            expand=True,
        )
        self._bar = self._progress.add_task(self.title, total=None)
        self._live: Live | None = None
        runner.watch(self._on_batch)

    def _on_batch(self, batch: list[Any]) -> None:
        for kind, task_id, agent_name, t in batch:
            old = self.state.get(task_id)
            agent = self.agents[agent_name]
            if old is not None:
                agent[old] -= 1
                self.totals[old] -= 1
            self.state[task_id] = kind
            agent[kind] += 1
            self.totals[kind] += 1
            if self.stream and kind in ("done", "failed"):
                self._print_result(kind, task_id, agent_name, t)

    def _print_result(self, kind: str, task_id: str, agent: str, t: float) -> None:
        scheduler = self.runner.scheduler
        if scheduler is None or task_id not in scheduler.instances:
            return
        record = scheduler.instances[task_id].record
        text = record.output if kind == "done" else record.error
        if not isinstance(text, str):
            text = json.dumps(text, default=str)
        preview = " ".join(str(text).split())
        if len(preview) > 100:
            preview = preview[:97] + "..."
        mark = "[green]✓[/]" if kind == "done" else "[red]✗[/]"
        try:
            self.console.print(f"{mark} {t:7.2f}s [bold]{escape(task_id)}[/] ({agent}) "
                               f"{escape(preview)}", markup=True, highlight=False)
        except (OSError, SystemExit):
            # The reader went away (``| head``): stop streaming; the run itself goes on.
            self.stream = False

    def _render(self) -> Any:
        scheduler = self.runner.scheduler
        total = scheduler.expected_total() if scheduler is not None else None
        finished = sum(self.totals[s] for s in _FINAL)
        self._progress.update(self._bar, total=total, completed=finished)
        counts = Table.grid(padding=(0, 2))
        counts.add_row(
            f"[yellow]running {self.totals['started']}[/]",
            f"queued {self.totals['ready']}",
            f"[green]done {self.totals['done']}[/]",
            f"[red]failed {self.totals['failed']}[/]" if self.totals["failed"] else "failed 0",
            f"skipped {self.totals['skipped'] + self.totals['cancelled']}",
        )
        agents = Table(box=None, pad_edge=False, show_edge=False, header_style="bold dim")
        for col in ("agent", "running", "queued", "done", "failed"):
            agents.add_column(col, justify="left" if col == "agent" else "right")
        for name, c in sorted(self.agents.items()):
            agents.add_row(name, str(c["started"]), str(c["ready"]), str(c["done"]), str(c["failed"]))
        return Group(self._progress, counts, agents)

    def __enter__(self) -> LiveProgress:
        self._live = Live(self._render(), console=self.console, refresh_per_second=10, transient=False,
                          get_renderable=self._render)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._live is not None
        self._live.update(self._render(), refresh=True)
        self._live.__exit__(None, None, None)
