"""What the CLI adds to a run's own report from the run store: recurring bottlenecks, anomalies
against the workflow's history, the resource samples and profile kept beside the run.

# Design
# Each finished run's bottlenecks are kept beside it (``run_extras`` kind ``bottlenecks``), so
# finding recurring ones reads a few small JSON documents instead of re-analysing old runs. The
# recent runs are the ones in the workflow's metric history (every stored run that finished),
# newest ``RECENT`` of them, up to and including the run being reported.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .analysis import Bottleneck, Pattern, recurring
from .analysis._anomalies import run_anomalies
from .analysis._render import bottleneck_dict
from .store import RunStore

__all__ = ["RECENT", "Insights", "gather", "save_bottlenecks"]

#: how many recent runs of a workflow recurring bottlenecks and anomalies look back over
RECENT = 20


@dataclass
class Insights:
    patterns: list[Pattern] = field(default_factory=list)
    runs: int = 0  # runs the patterns were looked for in (this one included)
    anomalies: list[dict[str, Any]] = field(default_factory=list)
    history: list[tuple[str, float, dict[str, float]]] = field(default_factory=list)  # the recent runs
    resources: list[dict[str, float]] = field(default_factory=list)
    profile: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"recurring": [{"kind": p.kind, "subject": p.subject, "runs": p.count, "of": self.runs,
                               "latest": bottleneck_dict(p.latest)} for p in self.patterns],
                "anomalies": self.anomalies}


def save_bottlenecks(store: RunStore, run_id: str, found: Sequence[Bottleneck]) -> None:
    store.put_extra(run_id, "bottlenecks", json.dumps([bottleneck_dict(b) for b in found]))


def _load_bottlenecks(text: str | None) -> list[Bottleneck]:
    if not text:
        return []
    out = []
    for item in json.loads(text):
        out.append(Bottleneck(kind=item["kind"], severity=float(item.get("severity") or 0.0),
                              subject=item["subject"], evidence=item.get("evidence", ""),
                              recommendation=item.get("recommendation", ""), setting=item.get("setting", "")))
    return out


def _json_extra(store: RunStore, run_id: str, kind: str) -> Any:
    text = store.get_extra(run_id, kind)
    return None if text is None else json.loads(text)


def gather(store: RunStore, run_id: str, workflow: str, records: Sequence[Any],
           found: Sequence[Bottleneck], *, min_runs: int = 3) -> Insights:
    """Recurring bottlenecks over the workflow's recent runs up to ``run_id``, anomalies, and the
    stored resource samples and profile of the run."""
    history = store.metric_history(workflow, limit=1000)
    ids = [rid for rid, _, _ in history]
    if run_id in ids:
        history = history[: ids.index(run_id) + 1]
    else:
        # a run with no figures of its own (interrupted, resumed, profiled): the runs that ended
        # before it did, not those made after it
        row = store.get_run(run_id)
        until = row.ended_at or time.time()
        history = [h for h in history if h[1] <= until]
    recent = history[-RECENT:]
    lists: list[list[Bottleneck]] = []
    for rid, _, _ in recent:
        lists.append(list(found) if rid == run_id else _load_bottlenecks(store.get_extra(rid, "bottlenecks")))
    if run_id not in ids:
        lists.append(list(found))
    runs = len(lists)
    patterns = recurring(lists, min_runs=min_runs) if runs >= min_runs else []
    # only patterns this run shows: old news the run no longer has is not this run's concern
    current = {(b.kind, b.subject) for b in found}
    patterns = [p for p in patterns if (p.kind, p.subject) in current]
    resources = _json_extra(store, run_id, "resources") or []
    anomalies = run_anomalies(records, resources, history if run_id in ids else [], run_id=run_id)
    return Insights(patterns=patterns, runs=runs, anomalies=anomalies, history=recent, resources=resources,
                    profile=_json_extra(store, run_id, "profile"))
