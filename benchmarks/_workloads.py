"""The workloads: what each measures, its metric and its target.

Three kinds of metric:

* ``overhead``: wall time divided by the number of tasks (seconds per task); the target
  is a ratio ours / floor, where the floor is bare asyncio doing the same work.
* ``makespan``: wall time of a run whose tasks have known latencies, divided by its
  critical path (the least any scheduler could achieve); the target is a ratio to it.
* ``admission``: ours only, two settings compared: makespan(fifo) / makespan(critical_path).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ._harness import Sample
from ._sizes import Sizes

__all__ = ["ORDER", "WORKLOADS", "Verdict", "Workload", "evaluate", "resolve_keys"]


@dataclass(frozen=True)
class Workload:
    key: str
    kind: str  # overhead | makespan | admission
    target: float

    def title(self, s: Sizes) -> str:
        return {
            "a": f"(a) fan-out {s.fanout:,} no-op + join, one mapped step",
            "a_steps": f"(a) fan-out {s.fanout_steps:,} no-op + join, {s.fanout_steps:,} separate steps",
            "b": f"(b) chain of {s.chain:,} no-op steps",
            "c": f"(c) {s.layers} layers x {s.width} tasks of {s.layer_latency * 1e3:g} ms",
            "c_sim": f"(c') the same {s.layers} x {s.width} layers on the sim provider",
            "d": (f"(d) no barrier: {s.branch_steps} x {s.branch_step_latency * 1e3:g} ms chain "
                  f"|| one {s.branch_long * 1e3:g} ms task, then join"),
            "e": (f"(e) admission, max_parallel {s.admission_slots}: chain {s.admission_chain} x "
                  f"{s.admission_latency * 1e3:g} ms + {s.admission_short} short tasks"),
        }[self.key]

    def units(self, s: Sizes) -> int:
        """Tasks per run, for ``overhead`` workloads."""
        return {"a": s.fanout, "a_steps": s.fanout_steps, "b": s.chain}.get(self.key, 1)

    def ideal(self, s: Sizes) -> float:
        """The critical path, for ``makespan`` workloads; the optimum for ``admission``."""
        if self.key in ("c", "c_sim"):
            return s.layers_critical_path
        if self.key == "d":
            return s.branch_critical_path
        if self.key == "e":
            return s.admission_optimum()
        return 0.0

    def target_text(self, s: Sizes) -> str:
        if self.kind == "overhead":
            return f"ours <= {self.target:g}x floor per task"
        if self.kind == "makespan":
            return f"ours <= {self.target:g}x critical path ({self.ideal(s) * 1e3:g} ms)"
        return (f"fifo / critical_path >= {self.target:g} "
                f"(schedule theory {s.admission_fifo() / s.admission_optimum():.2f})")


WORKLOADS: dict[str, Workload] = {
    "a": Workload("a", "overhead", 5.0),
    "a_steps": Workload("a_steps", "overhead", 5.0),
    "b": Workload("b", "overhead", 5.0),
    "c": Workload("c", "makespan", 1.05),
    "c_sim": Workload("c_sim", "makespan", 1.05),
    "d": Workload("d", "makespan", 1.05),
    "e": Workload("e", "admission", 1.25),
}
ORDER = tuple(WORKLOADS)

_ALIASES = {
    "fanout": "a", "fan-out": "a", "fanout_steps": "a_steps", "steps": "a_steps", "a2": "a_steps",
    "chain": "b", "layers": "c", "c'": "c_sim", "sim": "c_sim", "barrier": "d", "no_barrier": "d", "nobarrier": "d",
    "admission": "e", "critical_path": "e",
}


def resolve_keys(only: str | None) -> list[str]:
    """Workload keys named by ``--only a,b`` (letters or names), in suite order."""
    if not only:
        return list(ORDER)
    wanted: set[str] = set()
    for raw in only.split(","):
        name = raw.strip().lower().strip("()")
        if not name:
            continue
        key = _ALIASES.get(name, name)
        if key not in WORKLOADS:
            raise SystemExit(f"unknown workload {raw!r}; known: {', '.join(ORDER)} "
                             f"(or {', '.join(sorted(_ALIASES))})")
        wanted.add(key)
    return [k for k in ORDER if k in wanted]


@dataclass(frozen=True)
class Verdict:
    passed: bool | None  # None: could not be judged (ours or the floor missing)
    ratio: float | None
    text: str


def evaluate(w: Workload, s: Sizes, samples: dict[str, Sample]) -> Verdict:
    if w.kind == "admission":
        cp, fifo = samples.get("ours_cp"), samples.get("ours_fifo")
        if not (cp and fifo and cp.ok and fifo.ok):
            return Verdict(None, None, "no result")
        ratio = fifo.median / cp.median
        return Verdict(ratio >= w.target, ratio, f"fifo/cp = {ratio:.2f}")
    ours = samples.get("ours")
    if ours is None or not ours.ok:
        return Verdict(None, None, "no result")
    if w.kind == "overhead":
        floor = samples.get("floor")
        if floor is None or not floor.ok:
            return Verdict(None, None, "no floor")
        ratio = ours.median / floor.median
        return Verdict(ratio <= w.target, ratio, f"{ratio:.2f}x floor")
    ratio = ours.median / w.ideal(s)
    return Verdict(ratio <= w.target, ratio, f"{ratio:.3f}x CP")


def metric_json(w: Workload, s: Sizes, sample: Sample) -> dict[str, Any]:
    """Derived figures for one sample, as stored in the JSON."""
    if not sample.ok:
        return {}
    if w.kind == "overhead":
        n = w.units(s)
        return {"per_task_us_median": sample.median / n * 1e6, "per_task_us_min": sample.min / n * 1e6}
    return {"makespan_ms_median": sample.median * 1e3, "makespan_ms_min": sample.min * 1e3,
            "over_ideal_median": sample.median / w.ideal(s)}
