"""``agentfleet run --metrics-port``: Prometheus metrics served while a run lasts, scraped for real."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from agentfleet.runtime import Runner
from agentfleet.telemetry import MetricsRegistry
from agentfleet.testing import run_virtual

from .runtime.kit import build
from .test_cli import CLI, _env, cli, no_traceback

SPEC = """
name: metered
agents:
  worker: {provider: sim, options: {latency: {fixed: 4.0}}}
tasks:
  - {id: quick, agent: worker, prompt: one}
  - {id: wide, agent: worker, prompt: "part {{ item }}", map: {over: [1, 2, 3]}, depends_on: [quick]}
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def test_a_run_feeds_the_registry() -> None:
    registry = MetricsRegistry()
    spec = build([{"id": "a", "agent": "w", "prompt": "x"},
                  {"id": "b", "agent": "w", "prompt": "y {{ item }}", "map": {"over": [1, 2]}, "depends_on": ["a"]}],
                 {"w": {"provider": "sim", "options": {"latency": {"fixed": 2.0}}}})
    result = run_virtual(Runner(spec, metrics=registry, cache=False).run())
    assert result.ok
    snap = registry.snapshot()
    assert snap["latency"]["agent"]["w"]["count"] == 3
    assert snap["latency"]["task_kind"]["b"]["p50"] == 2.0
    assert snap["latency"]["provider"]["sim/sim-default"]["count"] == 3
    counters = {c["labels"].get("state"): c["value"] for c in snap["counters"]["tasks_total"]}
    assert counters == {"done": 3}
    tokens = {c["labels"]["direction"]: c["value"] for c in snap["counters"]["tokens_total"]}
    assert tokens["input"] > 0 and tokens["output"] > 0
    gauges = {name: rows[0] for name, rows in snap["gauges"].items() if rows}
    assert gauges["in_flight"]["value"] == 0 and gauges["in_flight"]["peak"] == 2
    assert gauges["queue_depth"]["value"] == 0


def test_metrics_are_served_while_the_run_lasts(tmp_path: Path) -> None:
    (tmp_path / "flow.yaml").write_text(SPEC)
    port = _free_port()
    proc = subprocess.Popen([*CLI, "run", "flow.yaml", "--quiet", "--db", str(tmp_path / "runs.db"),
                             "--metrics-port", str(port)], cwd=tmp_path, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        seen: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2, trust_env=False)
            except httpx.HTTPError:
                time.sleep(0.1)
                continue
            seen = _values(response.text)
            if seen.get(("agentfleet_in_flight", ())) == 3:  # the three mapped tasks are running
                break
            time.sleep(0.1)
        assert seen.get(("agentfleet_in_flight", ())) == 3, seen
        assert seen[("agentfleet_tasks_total", (("state", "done"),))] == 1
        assert seen[("agentfleet_task_duration_seconds_count", (("agent", "worker"),))] == 1
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert f"metrics: http://127.0.0.1:{port}/metrics" in err
    # the server goes with the run
    try:
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1, trust_env=False)
    except httpx.HTTPError:
        pass
    else:
        raise AssertionError("the metrics server outlived the run")


def test_a_port_in_use_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "flow.yaml").write_text(SPEC)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli(tmp_path, "run", "flow.yaml", "--quiet", "--metrics-port", str(port))
    no_traceback(result)
    assert result.returncode == 2
    assert f"--metrics-port {port}: cannot listen on 127.0.0.1:{port}" in result.stderr


def test_an_otel_endpoint_without_otlp_is_refused(tmp_path: Path) -> None:
    (tmp_path / "flow.yaml").write_text(SPEC)
    done = subprocess.run([*CLI, "run", "flow.yaml", "--db", "runs.db", "--otel-endpoint", "http://127.0.0.1:4318"],
                          cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 2 and "add --otel otlp" in done.stderr and "Traceback" not in done.stderr
    assert "stored in" not in done.stdout  # refused before the run started
