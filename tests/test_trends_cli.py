"""``agentfleet trends`` and the recurring bottlenecks and anomalies of ``run`` and ``report``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .test_bottleneck_cli import SPEC
from .test_cli import cli, no_traceback, one_line


def runs(tmp_path: Path, n: int) -> list[dict[str, object]]:
    (tmp_path / "flow.yaml").write_text(SPEC)
    out = []
    for _ in range(n):
        done = cli(tmp_path, "run", "flow.yaml", "--json", "--db", "runs.db", "--scale", "0.2")
        no_traceback(done)
        assert done.returncode == 0, done.stderr
        out.append(json.loads(done.stdout))
    return out


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, object]]]:
    """Three runs of a workflow whose one agent is a bottleneck every time."""
    tmp_path = tmp_path_factory.mktemp("three")
    return tmp_path, runs(tmp_path, 3)


def test_the_same_bottleneck_three_runs_running_is_a_pattern(three: tuple[Path, list[dict[str, object]]]) -> None:
    tmp_path, (first, second, third) = three
    assert first["recurring"] == [] and second["recurring"] == []
    (pattern,) = [p for p in third["recurring"] if p["subject"] == "dev"]  # type: ignore[union-attr]
    assert pattern["runs"] == 3 and pattern["of"] == 3
    report = cli(tmp_path, "report", "latest", "--db", "runs.db")
    assert report.returncode == 0, report.stderr
    assert "recurring (in 3 of the last 3 runs)" in " ".join(report.stdout.split())
    again = json.loads(cli(tmp_path, "report", "latest", "--db", "runs.db", "--json").stdout)
    assert again["recurring"] == third["recurring"]


def test_trends_show_every_run_of_the_workflow(three: tuple[Path, list[dict[str, object]]]) -> None:
    tmp_path, _ = three
    done = cli(tmp_path, "trends", "--db", "runs.db")
    assert done.returncode == 0, done.stderr
    assert "squeezed: 3 runs" in done.stdout and "makespan" in done.stdout and "p95 task" in done.stdout
    data = json.loads(cli(tmp_path, "trends", "flow.yaml", "--db", "runs.db", "--json").stdout)
    assert data["workflow"] == "squeezed" and len(data["runs"]) == 3
    makespans = data["metrics"]["makespan_s"]["values"]
    assert len(makespans) == 3 and all(0.2 < m < 2 for m in makespans)  # 6 x 0.04 s one at a time
    assert data["metrics"]["tasks"]["values"] == [6.0, 6.0, 6.0]


def test_trends_errors_name_what_is_missing(tmp_path: Path) -> None:
    done = cli(tmp_path, "trends", "--db", "none.db")
    assert done.returncode == 2 and "no run database" in one_line(done.stderr)
    runs(tmp_path, 1)
    done = cli(tmp_path, "trends", "squeezd", "--db", "runs.db")
    no_traceback(done)
    assert done.returncode == 2 and "did you mean 'squeezed'" in one_line(done.stderr)
    done = cli(tmp_path, "trends", "--db", "runs.db")
    assert done.returncode == 0 and "trends need two or more" in done.stdout


def test_report_writes_the_html_page_and_what_if(three: tuple[Path, list[dict[str, object]]]) -> None:
    tmp_path, _ = three
    done = cli(tmp_path, "report", "latest", "--db", "runs.db", "--html", "out/report.html", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    page = (tmp_path / "out" / "report.html").read_text(encoding="utf-8")
    assert data["html"] == "out/report.html"
    assert 'id="timeline"' in page and 'id="what-if"' in page and "squeezed" in page
    # the one agent capped at 1: a wider cap is the change that helps, and the page says so
    (wider,) = [w for w in data["what_if"] if w["setting"] == "agents.dev.max_concurrency"]
    assert wider["change"] < -0.3
    bad = cli(tmp_path, "report", "latest", "--db", "runs.db", "--html", "/proc/no/report.html")
    no_traceback(bad)
    assert bad.returncode == 2 and "cannot write the HTML report" in one_line(bad.stderr)
