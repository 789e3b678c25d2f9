"""Running a load test: schedule -> engine -> recorder, thresholds watched, scenario figures derived.

# Design
# The schedule (``_schedule``) gives the intended send times; the engine (``_engine``) sends at
# them (open loop) or keeps N users busy (closed loop) and reports each outcome with its latency
# from the intended start; the recorder (``_recorder``) keeps per-second windows in bounded memory.
# A watcher task evaluates the thresholds marked ``abort`` once a second on the windows seen so far
# and stops the schedule when one fails. Scenario figures come from the per-window series:
#   spike      recovery time = from the end of the spike to the first window whose p99 is back
#              within 1.5x the baseline phase's p99 (None when it never is, within the run);
#   stress     the breaking point = the rate of the step in which a window's p99 or error rate
#              first crossed ``stress``'s limits (the schedule stops there); then ``recovery``
#              seconds at the starting rate, and whether p99 and errors came back under the limits;
#   endurance  latency drift = p99 of the last 10% of windows over the first 10%, and this
#              process's memory at the start and the end (the target's own, for an in-process one);
#   volume     one sub-run per phase with that phase's payload size; p99 per size.
"""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ._engine import DROPPED, LoopStats, Result, call_target, run_closed_loop, run_open_loop
from ._plan import LoadTestSpec
from ._recorder import LoadSummary, WindowedRecorder, WindowRow
from ._schedule import Phase, SpikeScenario, SteadyScenario, StressScenario, VolumeScenario, arrivals, phases
from ._thresholds import Verdict, aborting, evaluate_thresholds

__all__ = ["LoadTestResult", "run_load_test"]


@dataclass
class LoadTestResult:
    spec: LoadTestSpec
    summary: LoadSummary
    series: list[WindowRow]
    loops: list[LoopStats]
    verdicts: list[Verdict]
    aborted: str | None = None  # the threshold that stopped the run early
    ttft: LoadSummary | None = None
    itl_p50: float | None = None
    itl_p99: float | None = None
    phases: list[Phase] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)  # scenario figures (recovery, breaking point, drift)

    @property
    def passed(self) -> bool:
        """Every threshold passed, nothing aborted, and at least one request succeeded (a target that
        answered nothing has not passed a load test, thresholds or not)."""
        return all(v.passed for v in self.verdicts) and self.aborted is None and self.summary.ok > 0

    @property
    def failure(self) -> str | None:
        if self.aborted:
            return self.aborted
        if self.summary.ok == 0:
            return "no request succeeded" + (f" ({self.summary.requests} failed)" if self.summary.requests else "")
        failed = [v for v in self.verdicts if not v.passed]
        return failed[0].message if failed else None

    @property
    def saturation(self) -> str | None:
        return next((s.saturation for s in self.loops if s.saturated), None)


Send = Callable[[], Awaitable[Result]]


def _rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / (1024 * 1024)


class _Target:
    """Builds ``send`` callables for the spec's target (an HTTP endpoint or an in-process workflow)."""

    def __init__(self, spec: LoadTestSpec) -> None:
        self.spec = spec
        self.client: Any = None
        self._workflow: Any = None

    async def open(self) -> None:
        target = self.spec.target
        if target.url is not None:
            from ._http import HttpClient

            self.client = HttpClient(target.url, max_connections=target.max_connections, timeout=self.spec.timeout)
        else:
            from ..spec import load_workflow

            self._workflow = load_workflow(self.spec.workflow_path())

    def sender(self, size: int | None = None) -> Send:
        target = self.spec.target
        if self.client is not None:
            body = target.body
            if size is not None:
                body = (body or "") + "x" * max(0, size - len(body or ""))
            send = self.client.sender(target.method, "", headers=target.headers, body=body, stream=target.stream)
            return send  # type: ignore[no-any-return]
        from ..runtime import Runner

        spec = self._workflow
        timeout = self.spec.timeout

        async def once() -> object:
            runner = Runner(spec, cache=False)
            if size is not None:
                runner.spec.vars["size"] = size
            result = await asyncio.wait_for(runner.run(), timeout)
            if not result.ok:
                raise RuntimeError(result.failure or result.status)
            return None

        return call_target(once)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()


async def run_load_test(spec: LoadTestSpec, *, on_window: Callable[[WindowRow, LoadSummary | None], None]
                        | None = None) -> LoadTestResult:
    """Run ``spec`` to the end (or until an aborting threshold fails) and judge it."""
    loop = asyncio.get_running_loop()
    recorder = WindowedRecorder(window_s=1.0)
    # stress steps are judged by the step a request was *meant* for, not when it finished
    by_intent = WindowedRecorder(window_s=1.0, window_by="intended", keep_windows=30) \
        if isinstance(spec.scenario, StressScenario) else None
    ttft = WindowedRecorder(window_s=1.0) if spec.target.stream else None
    from ..telemetry import LatencyHistogram

    gaps = LatencyHistogram()  # inter-token gaps: bounded however long the soak
    stop: dict[str, str | None] = {"why": None}
    state: dict[str, Any] = {"offset": 0.0}
    stress_hit: dict[str, Any] = {}
    per_phase: dict[int, WindowedRecorder] = {}
    plan = phases(spec.scenario)

    def on_result(t: float, result: Result) -> None:
        t += state["offset"]
        if result.error_kind == DROPPED:
            # a request the schedule wanted and the generator could not send (max_outstanding in
            # flight) is a failure of the system under test to keep up: counted as an error too, so
            # error_rate cannot look healthy while arrivals are being shed
            recorder.note_dropped()
            recorder.record(t, 0.0, False, DROPPED)
            if by_intent is not None:
                by_intent.record(t, 0.0, False, DROPPED)
            return
        recorder.record(t, result.latency, result.ok, result.error_kind)
        if by_intent is not None:
            by_intent.record(t, result.latency, result.ok, result.error_kind)
        if ttft is not None and result.ok and result.ttfb is not None:
            ttft.record(t, result.ttfb, True)
        if result.itl:
            gaps.record_many(result.itl)

    async def watch() -> None:
        shown = judged = -1.0  # start of the last window shown / judged
        while True:
            await asyncio.sleep(0.25)
            rows = recorder.series()
            # the newest window is still filling: only whole windows are shown and judged
            for row in rows[:-1]:
                if row.t > shown:
                    shown = row.t
                    if on_window is not None:
                        try:
                            on_window(row, None)
                        except Exception:  # noqa: BLE001 - a display that fails must not stop the watching
                            pass
            if by_intent is not None and not stress_hit:
                # a window of intended starts is whole once its requests had the limit's time to answer
                horizon = loop.time() - started - spec.stress.p99 - 1.0
                for row in by_intent.series():
                    if row.t <= judged or row.t + 1.0 > horizon or not row.count:
                        continue
                    judged = row.t
                    error_rate = row.errors / row.count
                    if (row.p99 or 0.0) > spec.stress.p99 or error_rate > spec.stress.error_rate:
                        stress_hit.update(t=row.t, p99=row.p99, error_rate=error_rate)
                        stop["why"] = "stress limit crossed"
                        break
            if any(t.abort for t in spec.thresholds) and rows[:-1]:
                failing = aborting(evaluate_thresholds(spec.thresholds, recorder.summary().metrics()))
                if failing:
                    stop["why"] = f"aborted: {failing[0].message}"

    target = _Target(spec)
    await target.open()
    started = loop.time()
    watcher = loop.create_task(watch())
    rss_start = _rss_mb()
    loops: list[LoopStats] = []

    def should_stop() -> bool:  # read by the engine between sends
        return stop["why"] is not None

    try:
        if spec.mode == "closed":
            assert spec.users is not None
            duration = plan[-1].end if plan else 0.0
            loops.append(await run_closed_loop(spec.users, duration, target.sender(), think_time=spec.think_time,
                                               on_result=on_result, should_stop=should_stop))
        elif isinstance(spec.scenario, VolumeScenario):
            for phase in plan:
                if should_stop():
                    break
                # each size is its own sub-run, started when the previous one drained
                state["offset"] = max(phase.start, loop.time() - started)
                own = per_phase[phase.index] = WindowedRecorder(window_s=1.0)
                times = (a.t - phase.start for a in arrivals(spec.scenario) if a.phase == phase.index)

                def both(t: float, result: Result, own: WindowedRecorder = own) -> None:
                    on_result(t, result)
                    if result.error_kind != DROPPED:
                        own.record(t, result.latency, result.ok, result.error_kind)

                loops.append(await run_open_loop(times, target.sender(phase.size), on_result=both,
                                                 max_outstanding=spec.max_outstanding, should_stop=should_stop))
        else:
            loops.append(await run_open_loop((a.t for a in arrivals(spec.scenario)), target.sender(),
                                             on_result=on_result, max_outstanding=spec.max_outstanding,
                                             should_stop=should_stop))
        aborted = stop["why"] if stop["why"] and not stress_hit else None
        figures: dict[str, Any] = {}
        if isinstance(spec.scenario, StressScenario):
            figures.update(await _stress_recovery(spec, plan, stress_hit, recorder, target, on_result, state, loops))
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
        await target.close()
    recorder.flush()
    # the engine knows how late each send was: the summary and thresholds (late, max_lag) take it
    summary = dataclasses.replace(recorder.summary(), late=sum(s.late for s in loops),
                                  max_lag=max((s.lateness_max for s in loops), default=None))
    series = recorder.series()
    figures.update(_scenario_figures(spec, plan, series, rss_start))
    if per_phase:
        sizes = []
        for phase in plan:
            mine = per_phase.get(phase.index)
            if mine is not None:
                mine.flush()
                phase_summary = mine.summary()
                sizes.append({"size": phase.size, "requests": phase_summary.requests, "p50": phase_summary.p50,
                              "p99": phase_summary.p99, "errors": phase_summary.errors})
        figures["p99_by_size"] = sizes
    metrics = summary.metrics()
    ttft_summary = None
    if ttft is not None:
        ttft.flush()
        ttft_summary = ttft.summary()
        metrics.update(ttft_summary.metrics(prefix="ttft_"))
    verdicts = evaluate_thresholds(spec.thresholds, metrics)
    return LoadTestResult(spec=spec, summary=summary, series=series, loops=loops, verdicts=verdicts, aborted=aborted,
                          ttft=ttft_summary, itl_p50=gaps.percentile(50) if gaps.count else None,
                          itl_p99=gaps.percentile(99) if gaps.count else None, phases=plan, figures=figures)


async def _stress_recovery(spec: LoadTestSpec, plan: list[Phase], hit: dict[str, Any], recorder: WindowedRecorder,
                           target: _Target, on_result: Callable[[float, Result], None], state: dict[str, Any],
                           loops: list[LoopStats]) -> dict[str, Any]:
    """The breaking point, then ``recovery`` seconds at the starting rate: does the target come back?"""
    if not hit:
        return {"breaking_point": None, "note": f"no step crossed p99 {spec.stress.p99:g}s or error rate "
                                                f"{spec.stress.error_rate:.1%} up to {plan[-1].rate:g}/s"}
    step = next((p for p in plan if p.start <= hit["t"] < p.end), plan[-1])
    recovery = spec.stress.recovery
    start_rate = plan[0].rate
    since = time.monotonic()
    state["offset"] = max(row.t for row in recorder.series()) + 1.0 if recorder.series() else hit["t"] + 1.0
    after = WindowedRecorder(window_s=1.0)

    def both(t: float, result: Result) -> None:
        on_result(t, result)
        if result.error_kind != DROPPED:
            after.record(t, result.latency, result.ok, result.error_kind)

    calm = SteadyScenario(rate=start_rate, duration=recovery)
    loops.append(await run_open_loop((a.t for a in arrivals(calm)), target.sender(), on_result=both,
                                     max_outstanding=spec.max_outstanding))
    after.flush()
    tail = [r for r in after.series() if r.count]
    last = tail[-max(1, len(tail) // 3):]
    p99 = max((r.p99 or 0.0) for r in last) if last else None
    errors = sum(r.errors for r in last) / max(1, sum(r.count for r in last)) if last else None
    recovered = p99 is not None and p99 <= spec.stress.p99 and (errors or 0.0) <= spec.stress.error_rate
    return {"breaking_point": step.rate, "broke_at": hit["t"], "broke_p99": hit["p99"],
            "broke_error_rate": hit["error_rate"], "recovery_rate": start_rate, "recovery_s": recovery,
            "recovered": recovered, "recovery_p99": p99, "recovery_error_rate": errors,
            "recovery_wall": time.monotonic() - since}


def _scenario_figures(spec: LoadTestSpec, plan: list[Phase], series: list[WindowRow], rss_start: float
                      ) -> dict[str, Any]:
    scenario = spec.scenario
    out: dict[str, Any] = {}
    rows = [r for r in series if r.count]
    if isinstance(scenario, SpikeScenario) and rows:
        base = [r.p99 for r in rows if r.t < scenario.spike_start and r.p99 is not None]
        baseline = statistics.median(base) if base else None
        out["baseline_p99"] = baseline
        after = [r for r in rows if r.t >= scenario.spike_end]
        back = next((r for r in after if baseline is not None and r.p99 is not None and r.p99 <= 1.5 * baseline), None)
        out["recovery_s"] = None if back is None else max(0.0, back.t - scenario.spike_end)
        out["spike_p99"] = max((r.p99 or 0.0) for r in rows if scenario.spike_start <= r.t < scenario.spike_end) \
            if any(scenario.spike_start <= r.t < scenario.spike_end for r in rows) else None
    if spec.scenario.__class__.__name__ == "EnduranceScenario" and len(rows) >= 10:
        tenth = max(1, len(rows) // 10)
        first = statistics.median([r.p99 or 0.0 for r in rows[:tenth]])
        last = statistics.median([r.p99 or 0.0 for r in rows[-tenth:]])
        out["p99_first"] = first
        out["p99_last"] = last
        out["latency_drift"] = last / first if first > 0 else None
        out["rss_start_mb"] = round(rss_start, 1)
        out["rss_end_mb"] = round(_rss_mb(), 1)
    return out
