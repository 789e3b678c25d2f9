"""SLA rules in a run: evaluated while it goes and at its end, delivered to a real webhook and command."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from agentfleet.errors import SpecError
from agentfleet.runtime import Runner
from agentfleet.testing import run_virtual

from .kit import build, python, sim


class Receiver:
    """A local HTTP server keeping every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        received = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", 0))
                received.append(json.loads(self.rfile.read(length)))
                self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_violation_fires_once_during_the_run_and_recovers() -> None:
    # one slow task (5 s) among quick ones: p95 crosses 2 s at t=5, then enough quick tasks
    # finish after it to bring the p95 back under
    tasks = [{"id": "slow", "agent": "slow", "prompt": "x"}]
    tasks += [{"id": f"q{i}", "agent": "quick", "prompt": "y", "depends_on": ["slow"] if i >= 5 else []}
              for i in range(60)]
    spec = build(tasks, {"slow": sim(5.0), "quick": sim(0.5)}, max_parallel=100,
                 sla={"rules": ["max_task_latency < 10s", "p95_task_latency < 2s"], "interval": 1.0})
    result = run_virtual(Runner(spec, cache=False).run())
    assert result.ok
    fired = [(a["rule"], a["recovered"], a["at"]) for a in result.alerts]
    assert fired[0] == ("p95_task_latency < 2s", False, 5.0)
    assert fired[-1][:2] == ("p95_task_latency < 2s", True)
    assert all(a["metric"] != "max_task_latency" for a in result.alerts)


def test_a_rule_failing_at_the_end_is_reported_even_between_checks() -> None:
    spec = build([{"id": "t", "agent": "a", "prompt": "x"}], {"a": sim(0.3)},
                 sla={"rules": ["max_task_latency < 100ms"], "interval": 10})
    result = run_virtual(Runner(spec, cache=False).run())
    assert [a["message"] for a in result.alerts] == ["SLA violated: max_task_latency < 100ms (measured 300ms)"]


def fail(request: Any) -> str:
    raise RuntimeError("broken on purpose")


def test_alerts_reach_a_webhook_and_a_command(tmp_path: Path) -> None:
    out = tmp_path / "alerts.jsonl"
    script = f"import os; open({str(out)!r}, 'a').write(os.environ['AGENTFLEET_ALERT'] + chr(10))"
    command = f"{sys.executable} -c \"{script}\""
    with Receiver() as receiver:
        spec = build([{"id": "ok", "agent": "a", "prompt": "x"},
                      {"id": "bad", "agent": "b", "prompt": "y", "depends_on": ["ok"]}],
                     {"a": sim(0.01), "b": python(fail)}, policy="continue",
                     sla={"rules": ["error_rate < 10%"], "webhook": receiver.url, "command": command,
                          "interval": 0.01})
        result = asyncio.run(Runner(spec, cache=False).run())
        bodies = list(receiver.bodies)
    assert not result.ok
    assert len(bodies) == 1 and bodies[0]["rule"] == "error_rate < 10%" and bodies[0]["workflow"] == "t"
    assert bodies[0]["value"] == pytest.approx(0.5) and bodies[0]["recovered"] is False
    assert 0 <= bodies[0]["at"] < 5  # seconds since the run started, on a real clock too
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["message"] for line in lines] == ["SLA violated: error_rate < 10% (measured 50.0%)"]
    assert "delivery" not in result.alerts[0]


def test_an_unreachable_webhook_is_noted_not_fatal() -> None:
    spec = build([{"id": "t", "agent": "a", "prompt": "x"}], {"a": sim(0.01)},
                 sla={"rules": ["max_task_latency < 1ms"], "webhook": "http://127.0.0.1:9/nowhere"})
    result = asyncio.run(Runner(spec, cache=False).run())
    assert result.ok and "webhook http://127.0.0.1:9/nowhere" in result.alerts[0]["delivery"]


def test_a_bad_rule_is_a_spec_error_before_the_run() -> None:
    with pytest.raises(SpecError, match=r"did you mean 'p95_task_latency'"):
        Runner(build([{"id": "t", "agent": "a", "prompt": "x"}], {"a": sim(0.01)},
                     sla=["p95_latency < 2s"]))
