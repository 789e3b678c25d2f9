"""``agentfleet tune``: the search on a formula (exact), include overlays, and the command end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentfleet.bench._tune import Candidate, Measured, Space, ladder, overlay, score, tune
from agentfleet.errors import SpecError
from agentfleet.spec import load_workflow, parse_workflow

from ..test_cli import cli, no_traceback


def model(c: Candidate) -> Measured:
    """A workload whose makespan falls with slots up to 16 and with the reviewer's cap up to 4,
    and whose cost grows with hedging."""
    reviewer = c.cap("reviewer") or 1
    makespan = 10.0 / min(c.max_parallel, 16) + 4.0 / min(reviewer, 4)
    return Measured(makespan=makespan, p95=1.0, cost=0.01 * (2 if "llm" in c.hedge else 1))


def test_coordinate_descent_finds_the_knee_under_the_limits() -> None:
    start = Candidate(max_parallel=4, caps=(("reviewer", 1),))
    space = Space(max_parallel=ladder(4), caps={"reviewer": ladder(1)}, hedgeable=("llm",))
    result = tune(model, start, space, budget=50)
    assert result.best.candidate.max_parallel >= 16 and result.best.candidate.cap("reviewer") >= 4
    assert result.best.measured.makespan == pytest.approx(10 / 16 + 1.0)
    assert "llm" not in result.best.candidate.hedge  # hedging did not help the makespan
    assert result.improvement == pytest.approx((10 / 16 + 1) / (10 / 4 + 4) - 1)
    limited = tune(model, start, space, budget=50, max_parallel_limit=8)
    assert limited.best.candidate.max_parallel == 8
    assert all(not t.feasible for t in limited.trials if t.candidate.max_parallel > 8)
    few = tune(model, start, space, budget=3)
    assert len(few.trials) == 3


def test_cost_limits_and_the_mix_objective() -> None:
    start = Candidate(max_parallel=16, caps=(("reviewer", 4),), hedge=("llm",))
    space = Space(max_parallel=(16,), caps={"reviewer": (4,)}, hedgeable=("llm",))
    result = tune(model, start, space, objective="cost", budget=10)
    assert result.best.candidate.hedge == ()  # half the cost
    assert score(Measured(2.0, 1.0, 0.02), "mix", {"makespan": 1, "cost": 1}, Measured(1.0, 1.0, 0.01)) == 4.0
    with pytest.raises(ValueError, match="objective"):
        tune(model, start, space, objective="speed")


def test_the_overlay_carries_only_what_changed() -> None:
    start = Candidate(8, (("a", 2), ("b", 2)), ("x",))
    best = Candidate(32, (("a", 2), ("b", 8)), ())
    assert overlay(start, best) == {"settings": {"max_parallel": 32},
                                    "agents": {"b": {"max_concurrency": 8}, "x": {"hedge": False}}}
    assert overlay(start, start) == {}


def test_include_lays_overlays_over_the_workflow(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text("name: w\ninclude: [over.yaml]\nsettings: {max_parallel: 4}\n"
                                      "agents: {a: {provider: sim, max_concurrency: 1}}\n"
                                      "tasks: [{id: t, agent: a, prompt: x}]\n")
    (tmp_path / "over.yaml").write_text("settings: {max_parallel: 32}\nagents: {a: {max_concurrency: 8}}\n")
    spec = load_workflow(tmp_path / "wf.yaml")
    assert spec.settings.max_parallel == 32 and spec.agents["a"].max_concurrency == 8
    assert spec.agents["a"].provider == "sim"
    # a stored run keeps the workflow with its overlays laid in: resume does not need the files
    again = parse_workflow(spec._source or "", file=str(tmp_path / "elsewhere.yaml"))
    assert again.settings.max_parallel == 32
    assert not any(line.startswith("include") for line in (spec._source or "").splitlines())
    (tmp_path / "over.yaml").write_text("include: [x.yaml]\n")
    with pytest.raises(SpecError, match="cannot include others"):
        load_workflow(tmp_path / "wf.yaml")
    (tmp_path / "over.yaml").unlink()
    with pytest.raises(SpecError, match=r"cannot read 'over\.yaml'"):
        load_workflow(tmp_path / "wf.yaml")


def test_tune_end_to_end_writes_an_overlay_the_workflow_includes(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text("""
name: squeezed
settings: {max_parallel: 8}
agents:
  dev: {provider: sim, max_concurrency: 1, options: {latency: {fixed: 0.2}}}
tasks:
  - {id: build, agent: dev, prompt: "part {{ item }}", map: {over: [1, 2, 3, 4, 5, 6]}}
""")
    done = cli(tmp_path, "tune", "wf.yaml", "--scale", "0.1", "--budget", "6", "--runs", "1", "--json",
               timeout=180)
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["best"]["caps"]["dev"] > 1 and data["improvement"] < -0.3
    assert data["overlay"]["agents"]["dev"]["max_concurrency"] == data["best"]["caps"]["dev"]
    text = (tmp_path / "wf.tuned.yaml").read_text()
    assert text.startswith("# agentfleet tune wf.yaml")
    (tmp_path / "wf.yaml").write_text((tmp_path / "wf.yaml").read_text().replace(
        "name: squeezed", "name: squeezed\ninclude: [wf.tuned.yaml]"))
    assert load_workflow(tmp_path / "wf.yaml").agents["dev"].max_concurrency == data["best"]["caps"]["dev"]


def test_a_second_tune_replaces_its_overlay_instead_of_diffing_against_it(tmp_path: Path) -> None:
    (tmp_path / "wf.yaml").write_text("""
name: squeezed
include: [wf.tuned.yaml]
settings: {max_parallel: 8}
agents:
  dev: {provider: sim, max_concurrency: 1, options: {latency: {fixed: 0.2}}}
tasks:
  - {id: build, agent: dev, prompt: "part {{ item }}", map: {over: [1, 2, 3, 4, 5, 6]}}
""")
    (tmp_path / "wf.tuned.yaml").write_text("agents: {dev: {max_concurrency: 4}}\n")
    done = cli(tmp_path, "tune", "wf.yaml", "--scale", "0.1", "--budget", "6", "--runs", "1", "--json",
               timeout=180)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["start"]["caps"]["dev"] == 1  # the workflow without the overlay tune writes
    assert data["overlay"]["agents"]["dev"]["max_concurrency"] > 1
    assert load_workflow(tmp_path / "wf.yaml").agents["dev"].max_concurrency == data["best"]["caps"]["dev"]


def test_limits_that_bind_together_move_together() -> None:
    def both(c: Candidate) -> Measured:  # only more slots AND a wider cap help
        return Measured(makespan=16 / min(c.max_parallel, c.cap("dev") or 1), p95=1.0, cost=None)

    start = Candidate(max_parallel=2, caps=(("dev", 2),))
    result = tune(both, start, Space(max_parallel=ladder(2), caps={"dev": ladder(2)}), budget=20)
    assert result.best.measured.makespan < 8.0
