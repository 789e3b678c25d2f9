"""The run summary and ``agentfleet report`` name the run's bottlenecks and what to change."""

from __future__ import annotations

import json
from pathlib import Path

from .test_cli import cli, no_traceback

SPEC = """
name: squeezed
agents:
  dev: {provider: sim, max_concurrency: 1, options: {latency: {fixed: 0.2}}}
tasks:
  - {id: build, agent: dev, prompt: "part {{ item }}", map: {over: [1, 2, 3, 4, 5, 6]}}
"""


def test_contention_is_named_with_the_setting_to_change(tmp_path: Path) -> None:
    (tmp_path / "flow.yaml").write_text(SPEC)
    done = cli(tmp_path, "run", "flow.yaml", "--json", "--db", "runs.db")
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    kinds = {(b["kind"], b["subject"]): b for b in payload["bottlenecks"]}
    found = kinds.get(("agent_overload", "dev")) or kinds.get(("contention", "dev"))
    assert found is not None, payload["bottlenecks"]
    assert found["setting"] == "agents.dev.max_concurrency" and found["severity"] > 0
    report = cli(tmp_path, "report", "latest", "--db", "runs.db")
    assert report.returncode == 0, report.stderr
    assert "bottleneck" in report.stdout and "agents.dev.max_concurrency" in report.stdout
