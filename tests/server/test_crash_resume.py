"""The service killed mid-run (kill -9 of the API and its runner): the run is resumable, by
``agentfleet resume`` or by the next ``agentfleet serve``, and finished tasks are not redone."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentfleet.store import RunStore

from .conftest import free_port

TOKEN = "crash-test-token-1"
# Three layers of two tasks, each ~0.6 s: long enough to kill the service between two layers.
WORKFLOW = """\
name: slow-layers
agents:
  worker:
    provider: sim
    options:
      latency: {median: 0.6, sigma: 0.05}
tasks:
  - {id: a1, agent: worker, prompt: "first a"}
  - {id: a2, agent: worker, prompt: "first b"}
  - {id: b1, agent: worker, prompt: "second a", depends_on: [a1, a2]}
  - {id: b2, agent: worker, prompt: "second b", depends_on: [a1, a2]}
  - {id: c1, agent: worker, prompt: "third", depends_on: [b1, b2]}
"""


class Service:
    """``agentfleet serve`` in its own process group, so a kill takes its runner with it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.db = str(tmp / "agentfleet.db")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)

    def start(self) -> None:
        env = {**os.environ, "AGENTFLEET_TOKENS": f"{TOKEN}:submit"}
        with open(self.tmp / f"serve-{time.monotonic_ns()}.log", "wb") as log:  # the child keeps its own copy
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "agentfleet", "serve", "--port", str(self.port), "--db", self.db,
                 "--workflows", str(self.tmp / "workflows")],
                env=env, cwd=self.tmp, start_new_session=True, stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, "agentfleet serve exited at start"
            time.sleep(0.1)
        raise AssertionError("agentfleet serve did not become ready in 30 s")

    def kill(self) -> None:
        """SIGKILL the service and its runner processes at once: a crash, nothing cleaned up."""
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.client.close()

    def wait_for(self, run_id: str, predicate: Any, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.client.get(f"/v1/runs/{run_id}").json()
            if predicate(run):
                return dict(run)
            time.sleep(0.05)
        raise AssertionError(f"run {run_id} never got there; last: {run}")


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    (tmp_path / "workflows").mkdir()
    (tmp_path / "workflows" / "slow.yaml").write_text(WORKFLOW, encoding="utf-8")
    svc = Service(tmp_path)
    try:
        yield svc
    finally:
        svc.stop()


def _done(run: dict[str, Any]) -> set[str]:
    return {t["id"] for t in run["tasks"] if t["state"] == "done"}


def _crash_mid_run(service: Service) -> tuple[str, set[str]]:
    """Submit, wait until the first layer is stored, kill -9: (run id, tasks done before the crash)."""
    service.start()
    answer = service.client.post("/v1/runs", json={"workflow": "slow-layers"})
    assert answer.status_code == 202
    run_id = answer.json()["id"]
    run = service.wait_for(run_id, lambda r: {"a1", "a2"} <= _done(r))
    service.kill()
    done = _done(run)
    assert "c1" not in done  # the crash came before the end
    with RunStore(service.db, create=False) as store:
        assert store.get_run(run_id).status == "running"  # left as the crash found it
        deadline = time.monotonic() + 10  # SIGKILL reaches the runner a moment later
        while store.owner_alive(run_id) is not None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert store.owner_alive(run_id) is None  # ... by a process that is gone
    return run_id, done


class TestCrashThenResume:
    def test_agentfleet_resume_finishes_a_run_the_service_was_killed_in(self, service: Service) -> None:
        """kill -9 of the service mid-run, then ``agentfleet resume``: the run succeeds and the
        tasks finished before the crash are kept, not run again."""
        run_id, done_before = _crash_mid_run(service)
        listed = subprocess.run([sys.executable, "-m", "agentfleet", "runs", "--db", service.db],
                                capture_output=True, text=True, timeout=60)
        assert run_id in listed.stdout  # the HTTP run is a run like any other
        resumed = subprocess.run([sys.executable, "-m", "agentfleet", "resume", run_id, "--db", service.db,
                                  "--json"], capture_output=True, text=True, timeout=60, cwd=service.tmp)
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["status"] == "succeeded"
        with RunStore(service.db, create=False) as store:
            row = store.get_run(run_id)
            records = {r.task_id: r for r in store.load_tasks(run_id)}
        assert row.status == "succeeded" and row.sessions == 2
        assert all(records[t].resumed for t in done_before)  # kept from the first session
        assert not any(records[t].resumed for t in set(records) - done_before)

    def test_the_next_service_resumes_the_run_by_itself(self, service: Service) -> None:
        """Restarted on the same database, the service queues the orphaned run again and finishes it."""
        run_id, done_before = _crash_mid_run(service)
        service.start()
        run = service.wait_for(run_id, lambda r: r["status"] in ("succeeded", "failed"))
        assert run["status"] == "succeeded"
        assert run["sessions"] == 2
        with RunStore(service.db, create=False) as store:
            records = {r.task_id: r for r in store.load_tasks(run_id)}
        assert all(records[t].resumed for t in done_before)
        assert _done(run) == set(records)
        # Its event stream holds both sessions and ends once.
        with service.client.stream("GET", f"/v1/runs/{run_id}/events") as stream:
            text = "".join(stream.iter_text())
        assert text.count("event: end") == 1
        assert '"session":1' in text and '"session":2' in text


class TestRunnerDeath:
    def test_a_killed_runner_is_replaced_and_its_run_resumed(self, service: Service) -> None:
        """kill -9 of the runner process alone: the service starts another, which resumes the run."""
        import psutil

        service.start()
        run_id = service.client.post("/v1/runs", json={"workflow": "slow-layers"}).json()["id"]
        run = service.wait_for(run_id, lambda r: {"a1", "a2"} <= _done(r))
        assert service.proc is not None
        (runner,) = psutil.Process(service.proc.pid).children()
        runner.kill()
        run = service.wait_for(run_id, lambda r: r["status"] in ("succeeded", "failed"))
        assert run["status"] == "succeeded" and run["sessions"] == 2
        (replacement,) = psutil.Process(service.proc.pid).children()
        assert replacement.pid != runner.pid
        assert service.client.get("/readyz").json()["workers"] == 1
