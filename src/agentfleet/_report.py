"""A stored run's report, as ``agentfleet report`` prints it and the service serves it: makespan,
speedup, critical path, bottlenecks with advice, what-if scenarios, recurring patterns, anomalies.

The extras (bottlenecks, what-if, insights) never cost the user the report: a failure in one of
them leaves it out, unless ``strict`` (``--debug``) asks to see the error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._insights import Insights, gather, save_bottlenecks
from .analysis import Bottleneck, RunReport, analyze, classify_bottlenecks, report_to_dict, what_if_scenarios
from .errors import AgentFleetError
from .store import RunRow, RunStore

__all__ = ["StoredReport", "bottlenecks", "insights_for", "stored_plan", "stored_report", "what_if"]


@dataclass
class StoredReport:
    """Everything a report of one stored run shows."""

    row: RunRow
    status: str  # the row's, or 'stopped' for a 'running' run whose process is gone
    records: list[Any]
    report: RunReport
    bottlenecks: list[Bottleneck]
    scenarios: list[Any]
    insights: Insights

    @property
    def facts(self) -> dict[str, Any]:
        """The run's effective settings: its options, then its summary (CLI flags and YAML alike)."""
        return {**self.row.options, **(self.row.summary or {})}

    def to_dict(self) -> dict[str, Any]:
        """What ``agentfleet report --json`` prints."""
        from .analysis._render import bottleneck_dict

        facts = self.facts
        return {"run_id": self.row.id, "workflow": self.row.name, "status": self.status,
                "report": report_to_dict(self.report), "bottlenecks": [bottleneck_dict(b) for b in self.bottlenecks],
                "alerts": facts.get("alerts") or [], "resources": facts.get("resources") or {},
                "what_if": [{"scenario": w.scenario, "setting": w.setting, "makespan": w.makespan,
                             "baseline": w.baseline, "change": w.change} for w in self.scenarios],
                **self.insights.to_dict()}


def stored_report(store: RunStore, row: RunRow, records: list[Any] | None = None, *,
                  strict: bool = False) -> StoredReport:
    """The report of stored run ``row`` (its tasks are loaded unless given)."""
    if records is None:
        records = store.load_tasks(row.id)
    facts = {**row.options, **(row.summary or {})}
    providers = {r.provider for r in records if r.provider}
    rep = analyze(records, max_parallel=facts.get("max_parallel") or None,
                  latency_scale=facts.get("latency_scale") or facts.get("scale") or 1.0, providers=providers,
                  pools=facts.get("pools") or None, resilience=facts.get("resilience") or None,
                  cache=facts.get("cache") or None)
    plan = stored_plan(row)
    found = bottlenecks(records, rep, plan, strict=strict)
    scenarios = what_if(records, plan, facts.get("max_parallel"), strict=strict)
    insights = insights_for(store, row.id, row.name, records, found, strict=strict)
    status = row.status
    if status == "running" and store.owner_alive(row.id, mine=True) is None:
        status = "stopped"  # its process is gone (kill -9, crash): resumable
    return StoredReport(row=row, status=status, records=records, report=rep, bottlenecks=found,
                        scenarios=scenarios, insights=insights)


def stored_plan(row: RunRow) -> Any:
    """The plan of a stored run (its declared limits sharpen the advice), or None."""
    if not row.spec_text:
        return None
    from .plan import build_plan
    from .spec import parse_workflow

    try:
        return build_plan(parse_workflow(row.spec_text, file=row.spec_path or "<stored spec>", overrides=row.overrides))
    except AgentFleetError:
        return None


def what_if(records: Any, plan: Any, max_parallel: int | None, *, strict: bool = False) -> list[Any]:
    """Re-simulated changes (twice the concurrency, capped agents with twice their cap, the busiest
    agents twice as fast) under the run's declared agent caps."""
    caps = {}
    if plan is not None:
        caps = {name: agent.max_concurrency for name, agent in plan.spec.agents.items() if agent.max_concurrency}
    try:
        return what_if_scenarios(records, max_parallel=max_parallel or None, caps=caps)
    except Exception:
        if strict:
            raise
        return []


def bottlenecks(records: Any, report: Any, plan: Any, *, strict: bool = False) -> list[Bottleneck]:
    """What held the run back, with what to change."""
    try:
        return list(classify_bottlenecks(records, report, plan=plan))
    except Exception:
        if strict:
            raise
        return []


def insights_for(store: RunStore | None, run_id: str | None, workflow: str, records: Any, found: Any, *,
                 save: bool = False, strict: bool = False) -> Insights:
    """Recurring bottlenecks, anomalies and stored samples for a stored run (empty without a store);
    with ``save``, this run's bottlenecks are kept for the next runs first."""
    if store is None or run_id is None:
        return Insights()
    try:
        if save:
            save_bottlenecks(store, run_id, found)
        return gather(store, run_id, workflow, records, found)
    except Exception:
        if strict:
            raise
        return Insights()
