"""Tests for ``agentfleet.analysis.render_html``: the self-contained HTML run report.

Hand-built records and events pin what the timeline draws (lanes, critical path, waits, retries,
cache hits); a real run on virtual time (sim agents, a rate limit, failing first attempts and a
cache) checks the store's events come out the same; big and empty runs check the page stays
bounded and never fails.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

import agentfleet.analysis
from agentfleet._types import TaskRecord, TaskState
from agentfleet.analysis import (
    Bottleneck,
    Pattern,
    RunReport,
    analyze,
    classify_bottlenecks,
    render_html,
)

from ..runtime.kit import build
from .test_metrics import rec

EventRow = tuple[int, float, str, str | None, str | None]


# -- parsing the page ---------------------------------------------------------------------------


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    task: str | None  # the data-task of the enclosing bar group, if any

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())


class Page(HTMLParser):
    """Every element of a page with its attributes, and the task group it sits in."""

    def __init__(self) -> None:
        super().__init__()
        self.elements: list[Element] = []
        self._groups: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        if tag == "g":
            self._groups.append(values.get("data-task") or (self._groups[-1] if self._groups else None))
        self.elements.append(Element(tag, values, self._groups[-1] if self._groups else None))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.elements.append(Element(tag, values, self._groups[-1] if self._groups else None))

    def handle_endtag(self, tag: str) -> None:
        if tag == "g" and self._groups:
            self._groups.pop()

    def find(self, tag: str, cls: str, task: str | None = None) -> list[Element]:
        return [e for e in self.elements
                if e.tag == tag and cls in e.classes and (task is None or e.task == task)]

    def bars(self) -> dict[str, Element]:
        return {e.task: e for e in self.find("rect", "bar") if e.task is not None}

    def ids(self) -> set[str]:
        return {e.attrs["id"] for e in self.elements if "id" in e.attrs}


def parse(page: str) -> Page:
    parsed = Page()
    parsed.feed(page)
    parsed.close()
    return parsed


def render(records: list[TaskRecord], events: Sequence[EventRow] = (), *,
           run: dict[str, Any] | None = None, max_parallel: int | None = None, **kw: Any) -> str:
    report = analyze(records, max_parallel=max_parallel)
    return render_html(run=run if run is not None else {"id": "r1", "name": "wf", "status": "succeeded"},
                       records=records, events=events, report=report,
                       bottlenecks=kw.pop("bottlenecks", classify_bottlenecks(records, report)), **kw)


def event(t: float, kind: str, task_id: str, data: dict[str, Any] | None = None, session: int = 1) -> EventRow:
    return (session, t, kind, task_id, json.dumps(data) if data else None)


def external_references(page: str) -> list[str]:
    """Every src=/href= value that is not an in-page anchor, and every url() that is not one."""
    found = [m.group(2) for m in re.finditer(r"""\b(src|href)\s*=\s*["']?([^"' >]*)""", page, re.I)
             if not m.group(2).startswith("#")]
    found += [m.group(1) for m in re.finditer(r"url\(\s*['\"]?([^)'\"]*)", page) if not m.group(1).startswith("#")]
    found += re.findall(r"@import", page)
    return found


def diamond() -> list[TaskRecord]:
    """split -> (a, b) -> release; b queued 0.5s; the path is split, b, release."""
    return [
        rec("split", "arch", 0.0, 2.0, tokens_in=100, tokens_out=50),
        rec("a", "dev", 2.0, 5.0, deps=("split",), tokens_in=10, tokens_out=20),
        rec("b", "dev", 2.5, 6.5, ready=2.0, deps=("split",), tokens_in=30, tokens_out=40),
        rec("release", "rel", 7.0, 8.0, ready=6.5, deps=("a", "b"), tokens_in=1, tokens_out=2),
    ]


# -- tests ----------------------------------------------------------------------------------------


class TestExport:
    def test_render_html_is_public(self) -> None:
        """``render_html`` is exported from ``agentfleet.analysis``."""
        assert "render_html" in agentfleet.analysis.__all__
        assert agentfleet.analysis.render_html is render_html


class TestSections:
    def full_page(self) -> str:
        records = diamond()
        report = analyze(records, max_parallel=2)
        found = Bottleneck("slow_task", 3.0, "b", "b took 4s of the 7s path", "split b", "tasks[b].agent")
        pattern = Pattern("slow_task", "b", 3, 1, 4, found)
        return render_html(
            run={"id": "r5", "name": "wf", "status": "failed", "created_at": 1.7e9, "ended_at": 1.7e9 + 9,
                 "max_parallel": 2, "failure": "task 'b' failed", "cost_usd": 0.0421},
            records=records, events=[], report=report, bottlenecks=[found], patterns=[pattern],
            resources=[{"t": t / 2, "cpu_percent": 10.0 + t, "rss_mb": 50.0 + t, "threads": 4} for t in range(17)],
            anomalies=[{"metric": "cpu_percent", "t": 4.0, "run_id": None, "value": 99.0, "score": 8.1,
                        "method": "robust_z", "message": "cpu spike"}],
            profile={"tree": "run\n  schedule 40%", "duration_s": 8.0, "samples": 800, "runtime_share": 0.12,
                     "top": [{"function": "schedule", "location": "_scheduler.py:10", "self_s": 0.2, "total_s": 0.9}]},
            history=[(f"r{i}", 1.7e9 + i, {"makespan_s": 8.0 + i, "p95_s": 3.0, "cost_usd": 0.04})
                     for i in range(1, 6)],
        )

    def test_every_section_is_there(self) -> None:
        """Header, timeline, histograms, concurrency, resources, bottlenecks, anomalies, trends, profile."""
        page = self.full_page()
        parsed = parse(page)
        assert {"timeline", "concurrency", "resources", "bottlenecks", "patterns", "anomalies", "trends",
                "profile-top", "agents"} <= parsed.ids()
        assert len(parsed.find("svg", "histogram")) == 3  # arch, dev, rel
        assert "makespan" in page and "8.0s" in page and "$0.0421" in page
        assert 'class="status bad"' in page and "task &#x27;b&#x27; failed" in page
        assert "seen in 3 of last 5 runs" in page
        assert "cpu spike" in page
        assert "<details><summary>Call tree</summary><pre" in page and "schedule 40%" in page
        assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")

    def test_anomaly_is_marked_on_the_charts(self) -> None:
        """An anomaly with a time is drawn as a marker on the timeline and the matching resource panel."""
        parsed = parse(self.full_page())
        assert len([e for e in parsed.elements if e.tag == "g" and "anomaly" in e.classes]) >= 2

    def test_optional_sections_are_left_out(self) -> None:
        """Without samples the resources section says so; no anomalies, trends or profile sections."""
        page = render(diamond())
        ids = parse(page).ids()
        assert "resources" not in ids and "No resource samples" in page
        assert not {"anomalies", "trends", "profile-top", "patterns"} & ids
        assert "No bottleneck" in page or "bottlenecks" in ids

    def test_trends_need_two_runs(self) -> None:
        """One run of history draws no sparkline; two do."""
        one = [("r1", 1.7e9, {"makespan_s": 8.0})]
        assert "trends" not in parse(render(diamond(), history=one)).ids()
        two = [*one, ("r2", 1.7e9 + 60, {"makespan_s": 9.0})]
        page = render(diamond(), history=two)
        assert "trends" in parse(page).ids() and page.count('class="spark"') == 1

    def test_log_bins_when_the_spread_is_wide(self) -> None:
        """Durations spanning more than 20x are binned on a log scale."""
        records = [rec(f"t{i}", "dev", 0.0, d) for i, d in enumerate((0.01, 0.02, 0.5, 3.0, 9.0))]
        assert "log-spaced bins" in render(records)
        assert "log-spaced bins" not in render(diamond())


class TestTimeline:
    def test_critical_path_is_outlined_and_listed(self) -> None:
        """Critical path bars carry the ``crit`` class; the others do not; the path is listed in order."""
        page = render(diamond())
        bars = parse(page).bars()
        assert {t for t, e in bars.items() if "crit" in e.classes} == {"split", "b", "release"}
        assert "crit" not in bars["a"].classes
        listed = re.findall(r"<li><code>([^<]+)</code>", page)
        assert listed == ["split", "b", "release"]

    def test_overlapping_tasks_of_one_agent_get_their_own_lanes(self) -> None:
        """Three overlapping tasks of one agent take three rows; a task starting at an end reuses a lane."""
        records = [rec("x", "dev", 0.0, 2.0), rec("y", "dev", 1.0, 3.0), rec("z", "dev", 1.5, 4.0),
                   rec("w", "dev", 2.0, 5.0), rec("solo", "ops", 0.0, 1.0)]
        page = render(records)
        bars = parse(page).bars()
        lanes = {t: float(bars[t].attrs["y"]) for t in ("x", "y", "z", "w")}
        assert len({lanes["x"], lanes["y"], lanes["z"]}) == 3
        assert lanes["w"] == lanes["x"]  # x ended at 2.0 exactly when w started
        assert ">dev #3<" in page and ">dev #4<" not in page and ">ops #1<" in page
        assert float(bars["solo"].attrs["y"]) not in lanes.values()

    def test_bar_position_and_width_follow_the_times(self) -> None:
        """Bars of equal duration are equally wide; a later start is further right."""
        bars = parse(render([rec("a", "dev", 0.0, 2.0), rec("b", "dev", 4.0, 6.0)])).bars()
        assert float(bars["a"].attrs["width"]) == pytest.approx(float(bars["b"].attrs["width"]), abs=0.15)
        assert float(bars["b"].attrs["x"]) > float(bars["a"].attrs["x"]) + float(bars["a"].attrs["width"])

    def test_states_are_coloured(self) -> None:
        """Done, failed, cancelled and interrupted bars get their state's class."""
        records = [rec("ok", "a", 0.0, 1.0), rec("bad", "a", 0.0, 1.0, state=TaskState.FAILED, error="boom"),
                   rec("cut", "a", 0.0, 1.0, state=TaskState.CANCELLED),
                   rec("stop", "a", 0.0, 1.0, state=TaskState.INTERRUPTED)]
        page = render(records)
        bars = parse(page).bars()
        assert "done" in bars["ok"].classes and "failed" in bars["bad"].classes
        assert "stopped" in bars["cut"].classes and "stopped" in bars["stop"].classes
        assert 'id="failed"' in page and "boom" in page

    def test_waits_retries_and_cache_hits_are_drawn(self) -> None:
        """rate_wait, retry and cache_hit events draw a hatched wait, a marker with backoff and a cache bar."""
        records = [rec("slow", "dev", 0.0, 8.0, attempts=2, error=None),
                   rec("hit", "dev", 1.0, 1.125), rec("meta_wait", "ops", 0.0, 4.0, meta={"limit_wait": 1.0}),
                   rec("queued", "ops", 5.0, 6.0, ready=4.0)]
        events = [event(0.0, "rate_wait", "slow", {"seconds": 1.5}),
                  event(3.0, "retry", "slow", {"attempt": 1, "delay": 2.0, "error": "429 too many"}),
                  event(1.0, "cache_hit", "hit", {"level": "sqlite"})]
        page = render(records, events)
        parsed = parse(page)
        assert len(parsed.find("rect", "ratewait", "slow")) == 1
        assert len(parsed.find("path", "retry", "slow")) == 1 and len(parsed.find("rect", "backoff", "slow")) == 1
        assert "cache" in parsed.bars()["hit"].classes and "from sqlite cache" in page
        assert len(parsed.find("rect", "ratewait", "meta_wait")) == 1  # from meta["limit_wait"]
        assert len(parsed.find("rect", "queue")) == 1 and "queued 1.0s" in page
        assert "429 too many" in page
        slow = parsed.bars()["slow"]
        wait = parsed.find("rect", "ratewait", "slow")[0]
        assert float(wait.attrs["x"]) == pytest.approx(float(slow.attrs["x"]), abs=0.1)
        assert float(wait.attrs["width"]) == pytest.approx(float(slow.attrs["width"]) * 1.5 / 8, abs=0.2)

    def test_only_the_last_session_counts(self) -> None:
        """Events of an earlier session (another clock) are not drawn."""
        records = [rec("a", "dev", 0.0, 4.0)]
        events = [event(0.0, "rate_wait", "a", {"seconds": 1.0}, session=1),
                  event(0.0, "started", "a", session=2)]
        assert not parse(render(records, events)).find("rect", "ratewait")

    def test_bad_event_data_is_ignored(self) -> None:
        """Malformed event payloads never break the page."""
        records = [rec("a", "dev", 0.0, 4.0)]
        events: list[EventRow] = [(1, 0.0, "rate_wait", "a", "{not json"), (1, 1.0, "retry", "a", "[1, 2]"),
                                  (1, 1.0, "cache_hit", None, None), (1, 2.0, "rate_wait", "a", '{"seconds": "x"}'),
                                  (1, float("nan"), "rate_wait", "a", '{"seconds": 1}')]
        page = render(records, events)
        assert 'id="timeline"' in page and not re.search(r'="[^"]*nan', page, re.I)

    def test_a_task_with_no_end_is_drawn_to_the_last_time_known(self) -> None:
        """A task a crashed run left running (no end) is drawn up to the run's last known time."""
        records = [rec("a", "dev", 0.0, 4.0), rec("b", "dev", 1.0, None, state=TaskState.RUNNING)]
        page = render(records)
        bars = parse(page).bars()
        assert "running" in bars["b"].classes and "no end recorded" in page
        right = float(bars["b"].attrs["x"]) + float(bars["b"].attrs["width"])
        assert right == pytest.approx(float(bars["a"].attrs["x"]) + float(bars["a"].attrs["width"]), abs=0.2)


class TestEscaping:
    def test_user_strings_appear_as_text(self) -> None:
        """Task ids, agent names, errors and run names are escaped, so markup in them stays text."""
        evil = "<script>alert(1)</script>"
        records = [rec(evil, "<b>agent</b>", 0.0, 1.0, state=TaskState.FAILED, error='"><img src=x onerror=alert(1)>'),
                   rec("ok", "<b>agent</b>", 1.0, 2.0, deps=(evil,))]
        events = [event(0.5, "retry", evil, {"attempt": 1, "delay": 0.1, "error": "</title><script>x()</script>"})]
        page = render(records, events, run={"id": "<i>id</i>", "name": evil, "status": "<u>ok</u>",
                                            "failure": "<svg onload=alert(1)>"},
                      anomalies=[{"metric": evil, "t": 0.5, "message": evil, "value": 1.0, "score": 9.0}],
                      profile={"tree": evil, "top": [{"function": evil, "location": evil}]},
                      history=[(evil, 1.0, {"makespan_s": 1.0}), ("r2", 2.0, {"makespan_s": 2.0})])
        assert page.count("<script>") == 1  # the report's own
        assert "alert(1)</script>" not in page and "<img" not in page and "<svg onload" not in page
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
        assert "&lt;b&gt;agent&lt;/b&gt;" in page and "<b>agent</b>" not in page
        assert parse(page).bars()[evil] is not None


class TestSelfContained:
    def test_no_external_references(self) -> None:
        """No src=, no href= but in-page anchors, no url() but SVG patterns, no http(s) URL at all."""
        page = TestSections().full_page()
        assert external_references(page) == []
        assert "http://" not in page and "https://" not in page
        assert "Content-Security-Policy" in page and "default-src 'none'" in page


class TestBounded:
    def big(self, n: int = 10_000) -> list[TaskRecord]:
        """``n`` tasks over 8 agents, chained in eights, about 50 running at once."""
        records = []
        for i in range(n):
            start = i * 0.05 + (i % 13) * 0.1
            records.append(rec(f"t{i}", f"agent{i % 8}", start, start + 0.5 + (i * 7919 % 97) / 20,
                               ready=i * 0.05, deps=(f"t{i - 8}",) if i >= 8 else (),
                               tokens_in=100, tokens_out=200, meta={"limit_wait": 0.1} if i % 7 == 0 else {}))
        return records

    def test_ten_thousand_tasks_render_quickly_and_small(self) -> None:
        """10,000 tasks: under 5 s and 5 MB; 3,000 bars drawn, the critical path among them, and said so."""
        records = self.big()
        report = analyze(records, max_parallel=64)
        events = [event(r.started_at or 0.0, "retry", r.task_id, {"attempt": 1, "delay": 0.1, "error": "x"})
                  for r in records[::10]]
        began = time.perf_counter()
        page = render_html(run={"id": "big", "name": "big", "status": "succeeded"}, records=records, events=events,
                           report=report, bottlenecks=[])
        took = time.perf_counter() - began
        assert took < 5.0
        assert len(page.encode()) < 5_000_000
        bars = parse(page).bars()
        assert len(bars) == 3000
        assert {s.task_id for s in report.critical_path} <= set(bars)
        assert "3,000 of 10,000 tasks drawn" in page

    def test_many_overlapping_tasks_of_one_agent_merge_lanes(self) -> None:
        """Beyond 32 lanes an agent's remaining lanes are merged into one row."""
        records = [rec(f"t{i}", "wide", 0.0, 1.0 + i / 100) for i in range(100)]
        page = render(records)
        assert ">wide #32<" in page and ">wide #33–100<" in page and ">wide #34<" not in page
        assert len(parse(page).bars()) == 100


class TestEmpty:
    @pytest.mark.parametrize("records", [
        [],
        [TaskRecord("never", "dev", state=TaskState.SKIPPED)],
        [TaskRecord("queued", "dev", state=TaskState.CANCELLED, ready_at=1.0)],
        [rec("old", "dev", 0.0, 1.0, resumed=True)],
    ], ids=["no-records", "skipped", "cancelled-before-start", "resumed"])
    def test_runs_where_nothing_ran_render(self, records: list[TaskRecord]) -> None:
        """A run where no task ran still renders every chart's placeholder."""
        page = render(records, run={})
        parsed = parse(page)
        assert {"timeline", "concurrency"} <= parsed.ids()
        assert "No task ran in this run." in page
        assert not parsed.bars()

    def test_zero_length_tasks(self) -> None:
        """Tasks that start and end at one instant (cache hits) are drawn at least 1 unit wide."""
        bars = parse(render([rec("a", "dev", 0.0, 0.0), rec("b", "dev", 0.0, 0.0)])).bars()
        assert all(float(b.attrs["width"]) >= 1 for b in bars.values())


# -- a real run ---------------------------------------------------------------------------------


@dataclass
class RealRun:
    run: dict[str, Any]
    records: list[TaskRecord]
    events: list[EventRow]
    report: RunReport
    bottlenecks: list[Bottleneck]

    def html(self, **kw: Any) -> str:
        return render_html(run=self.run, records=self.records, events=self.events, report=self.report,
                           bottlenecks=self.bottlenecks, **kw)


def real_run(tmp_path: Path) -> RealRun:
    """plan -> impl x6 -> merge on sim agents, stored: dev fails every first attempt (retried) under a
    2-call burst rate limit; run twice with a memory cache so the second run answers lead from it."""
    from agentfleet.cache import MemoryCache, TieredCache
    from agentfleet.runtime import Runner
    from agentfleet.store import RunStore
    from agentfleet.testing import run_virtual

    tasks = [{"id": "plan", "agent": "lead", "prompt": "plan it"},
             {"id": "impl", "agent": "dev", "prompt": "part {{ item }}", "depends_on": ["plan"],
              "map": {"over": list(range(6))}},
             {"id": "merge", "agent": "lead", "prompt": "merge", "depends_on": ["impl"]}]
    agents = {"lead": {"provider": "sim", "latency": {"fixed": 0.5}, "temperature": 0},
              "dev": {"provider": "sim", "latency": {"fixed": 1.0}, "max_concurrency": 3, "retries": 2,
                      "options": {"fail_attempts": 1}, "rate_limit": {"rpm": 120, "burst": 2}}}
    cache = TieredCache([MemoryCache()])
    with RunStore(tmp_path / "runs.db") as store:
        for _ in range(2):
            result = run_virtual(Runner(build(tasks, agents, max_parallel=4, policy="continue"), store=store,
                                        cache=cache).run())
        assert result.run_id is not None
        row = store.get_run(result.run_id)
        records = store.load_tasks(row.id)
        events = store.events(row.id)
    facts = {**row.options, **(row.summary or {})}
    report = analyze(records, max_parallel=facts.get("max_parallel"), latency_scale=facts.get("latency_scale") or 1.0,
                     resilience=facts.get("resilience"), cache=facts.get("cache"))
    run = {"id": row.id, "name": row.name, "status": row.status, "created_at": row.created_at,
           "ended_at": row.ended_at, "max_parallel": facts.get("max_parallel"), "failure": row.error}
    return RealRun(run, records, events, report, classify_bottlenecks(records, report))


class TestRealRun:
    def test_a_stored_run_draws_its_events(self, tmp_path: Path) -> None:
        """The store's rate_wait, retry and cache_hit events show on the timeline of a real run."""
        got = real_run(tmp_path)
        kinds = {e[2] for e in got.events}
        page = got.html()
        parsed = parse(page)
        bars = parsed.bars()
        assert set(bars) == {r.task_id for r in got.records}
        assert {s.task_id for s in got.report.critical_path} == {t for t, e in bars.items() if "crit" in e.classes}
        hits = {e[3] for e in got.events if e[2] == "cache_hit"}
        assert hits and all("cache" in bars[t].classes for t in hits if t)
        if "retry" in kinds:
            assert parsed.find("path", "retry")
        if "rate_wait" in kinds:
            assert parsed.find("rect", "ratewait")
        assert len(parsed.find("svg", "histogram")) == 2
        assert external_references(page) == []


def test_what_if_scenarios_are_tabled_with_their_settings() -> None:
    from agentfleet.analysis import what_if_scenarios

    records = diamond()
    page = render(records, what_if=what_if_scenarios(records, max_parallel=4, caps={"dev": 1}))
    assert 'id="what-if"' in page
    assert "dev max_concurrency 1 -&gt; 2" in page and "agents.dev.max_concurrency" in page
    assert "max_parallel 4 -&gt; 8" in page and "dev twice as fast" in page
    assert 'id="what-if"' not in render(records)
