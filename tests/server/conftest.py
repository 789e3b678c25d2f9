"""Fixtures of the service's API and schema tests: small sim workflows and a real uvicorn server.

The app runs under a real uvicorn server on 127.0.0.1 (a port the OS picks) in a background thread,
with ``workers=0``: runs execute inside the server's event loop, so a test sees the whole service
(lifespan, middleware, the runner, the event feed) without runner processes. ``serve(**config)``
starts one with any ``ServiceConfig`` field changed; every server a test started stops with it.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from agentfleet.server import ServiceConfig, Tokens, create_app

SUBMIT = "submit-token-1"
READ = "read-token-1"
ENDED = frozenset({"succeeded", "failed", "interrupted", "cancelled"})

#: two tasks in a chain; the var ``topic`` is in both prompts (the sim echoes a prompt's keywords)
TINY = """\
name: tiny
description: Two sim tasks in a chain.
vars:
  topic: widgets
agents:
  worker:
    provider: sim
    options:
      latency: {median: 0.05, sigma: 0.1}
tasks:
  - id: plan
    agent: worker
    prompt: "Plan the {{ vars.topic }} rollout"
  - id: build
    agent: worker
    inputs: [plan]
    prompt: "Build the {{ vars.topic }} release from {{ inputs.plan }}"
"""

#: a quick task, then two that take a minute each: a run that stays running until cancelled
SLOW = """\
name: slow
description: One quick task, then two very slow ones.
agents:
  quick:
    provider: sim
    options: {latency: {fixed: 0.01}}
  sluggish:
    provider: sim
    options: {latency: {fixed: 60}}
tasks:
  - id: first
    agent: quick
    prompt: "Start"
  - id: second
    agent: sluggish
    inputs: [first]
    prompt: "Go on"
  - id: third
    agent: sluggish
    inputs: [first]
    prompt: "Go on too"
"""

#: four tasks in a chain of 0.4 s each: events come in while a client watches
STEADY = """\
name: steady
description: Four sim tasks in a chain, 0.4 s each.
agents:
  worker:
    provider: sim
    options: {latency: {fixed: 0.4}}
tasks:
  - {id: one, agent: worker, prompt: "one"}
  - {id: two, agent: worker, prompt: "two", inputs: [one]}
  - {id: three, agent: worker, prompt: "three", inputs: [two]}
  - {id: four, agent: worker, prompt: "four", inputs: [three]}
"""

#: its only task fails (no retries): the run ends 'failed'
BROKEN = """\
name: broken
description: A task that always fails.
agents:
  flaky:
    provider: sim
    retries: 0
    options: {latency: {fixed: 0.01}, error_rate: 1.0}
tasks:
  - {id: doomed, agent: flaky, prompt: "Try"}
"""

WORKFLOWS = {"tiny.yaml": TINY, "slow.yaml": SLOW, "steady.yaml": STEADY, "broken.yaml": BROKEN}


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Live:
    """A running service: its base URL, the app and its config."""

    url: str
    app: FastAPI
    config: ServiceConfig

    @property
    def service(self) -> Any:
        return self.app.state.service

    def client(self, token: str | None = SUBMIT, **kwargs: Any) -> httpx.Client:
        """An HTTP client of this server, sending ``token`` as bearer (None: no Authorization)."""
        headers = auth(token) if token is not None else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=kwargs.pop("timeout", 30.0), **kwargs)

    def submit(self, client: httpx.Client, workflow: str = "tiny", **body: Any) -> str:
        """POST /v1/runs for ``workflow`` (fast: scale 0.1 unless ``options`` say otherwise); the run id."""
        payload: dict[str, Any] = {"workflow": workflow, "options": {"scale": 0.1}, **body}
        answer = client.post("/v1/runs", json=payload)
        assert answer.status_code == 202, answer.text
        run_id: str = answer.json()["id"]
        return run_id

    def wait(self, client: httpx.Client, run_id: str, until: Callable[[dict[str, Any]], bool] | None = None,
             timeout: float = 60.0) -> dict[str, Any]:
        """GET /v1/runs/{id} until ``until(run)`` holds (default: the run ended); the run then."""
        until = until or (lambda run: run["status"] in ENDED)
        deadline = time.monotonic() + timeout
        while True:
            answer = client.get(f"/v1/runs/{run_id}")
            assert answer.status_code == 200, answer.text
            run: dict[str, Any] = answer.json()
            if until(run):
                return run
            assert time.monotonic() < deadline, f"run {run_id} never got there: {run}"
            time.sleep(0.02)


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _listening_socket() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.contextmanager
def running(app: FastAPI) -> Iterator[str]:
    """Serve ``app`` with uvicorn on 127.0.0.1 in a thread; its base URL until the block ends."""
    sock = _listening_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on",
                                           ws="none", access_log=False, timeout_graceful_shutdown=5))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"uvicorn:{port}", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert thread.is_alive(), "the server thread died while starting"
            with contextlib.suppress(httpx.TransportError):
                if server.started and httpx.get(f"{url}/healthz", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, "the server did not answer /healthz within 30 s"
            time.sleep(0.02)
        yield url
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()
        assert not thread.is_alive(), "the server did not stop within 30 s"


@pytest.fixture
def workflows_dir(tmp_path: Path) -> Path:
    """A --workflows directory with the small sim workflows above."""
    folder = tmp_path / "workflows"
    folder.mkdir()
    for name, text in WORKFLOWS.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.fixture
def serve(tmp_path: Path, workflows_dir: Path) -> Iterator[Callable[..., Live]]:
    """Start a service (``ServiceConfig`` fields as keywords); each stops when the test ends."""
    with contextlib.ExitStack() as stack:
        count = 0

        def start(**overrides: Any) -> Live:
            nonlocal count
            count += 1
            fields: dict[str, Any] = {"db": str(tmp_path / f"service{count}.db"),
                                      "tokens": Tokens([(SUBMIT, "submit"), (READ, "read")]),
                                      "workflows": str(workflows_dir), "workers": 0, **overrides}
            config = ServiceConfig(**fields)
            app = create_app(config)
            url = stack.enter_context(running(app))
            return Live(url, app, config)

        yield start


@pytest.fixture
def live_server(serve: Callable[..., Live]) -> Live:
    """A service with the default limits."""
    return serve()
