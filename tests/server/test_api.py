"""The service's HTTP API against docs/service.md, on a real uvicorn server (see conftest.py).

Runs execute inside the server (``workers=0``) on small sim workflows: ``tiny`` (two chained tasks
of a few milliseconds at ``scale`` 0.1), ``slow`` (a quick task, then two of a minute: a run that
stays running until cancelled), ``steady`` (four chained tasks of 0.4 s) and ``broken`` (fails).
"""

from __future__ import annotations

import inspect
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi.routing import APIRoute
from typer.testing import CliRunner, Result

from agentfleet import _serve_cli
from agentfleet.cli import app as cli_app
from agentfleet.store import RunStore

from .conftest import ENDED, READ, TINY, FakeClock, Live, auth, free_port

RUN_ID = re.compile(r"^[0-9a-f]{4,32}$")


# -- helpers -------------------------------------------------------------------------------


def frames(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Server-Sent Events frames ({"id", "event", "data"}; comments left out) from a stream's lines."""
    frame: dict[str, Any] = {}
    for line in lines:
        if not line:
            if frame:
                yield frame
            frame = {}
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            frame[field] = value.removeprefix(" ")
    if frame:
        yield frame


def read_stream(client: httpx.Client, run_id: str, **kwargs: Any) -> list[dict[str, Any]]:
    """The whole event stream of a run that has ended (it closes after ``event: end``)."""
    with client.stream("GET", f"/v1/runs/{run_id}/events", **kwargs) as answer:
        assert answer.status_code == 200, answer.read()
        assert answer.headers["content-type"].startswith("text/event-stream")
        return list(frames(answer.iter_lines()))


def event_ids(stream: list[dict[str, Any]]) -> list[int]:
    return [int(f["id"]) for f in stream if "id" in f]


def stored_events(db: str, run_id: str) -> list[dict[str, Any]]:
    """The run's events as the store holds them, in the stream's shape."""
    with RunStore(db) as store:
        with_ids = store.events_after(0, run_id=run_id, limit=100_000)
        plain = store.events(run_id)
    assert [(r[2], r[3], r[4], r[5], r[6]) for r in with_ids] == [tuple(e) for e in plain]
    return [{"id": r[0], "t": round(r[3], 6), "kind": r[4], "task": r[5], "session": r[2],
             "data": json.loads(r[6]) if r[6] else None} for r in with_ids]


def assert_error(answer: httpx.Response, status: int) -> dict[str, Any]:
    """``answer`` has ``status``, a JSON body with ``detail`` and no stack trace."""
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    assert "Traceback" not in answer.text
    body: dict[str, Any] = answer.json()
    assert "detail" in body
    return body


def locs(answer: httpx.Response) -> list[list[Any]]:
    """The ``loc`` of every problem of a 422 (FastAPI's shape)."""
    body = assert_error(answer, 422)
    assert isinstance(body["detail"], list) and body["detail"], body
    for problem in body["detail"]:
        assert set(problem) == {"loc", "msg", "type"}, problem  # the input is not echoed back
        assert problem["msg"]
    return [p["loc"] for p in body["detail"]]


def started(run: dict[str, Any]) -> bool:
    return run["started_at"] is not None


def task_running(task_id: str) -> Callable[[dict[str, Any]], bool]:
    """The run's task ``task_id`` has started (a done task before it is kept)."""
    return lambda run: any(t["id"] == task_id and t["state"] == "running" for t in run["tasks"])


def serve_cli(*args: str) -> Result:
    """``agentfleet serve ARGS`` through typer's CliRunner (no token in the environment)."""
    return CliRunner().invoke(cli_app, ["serve", *args], env={"COLUMNS": "200", "NO_COLOR": "1",
                                                              "AGENTFLEET_TOKENS": None, "AGENTFLEET_DB": None})


def one_error_line(result: Result) -> str:
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines
    return lines[0]


# -- happy paths ---------------------------------------------------------------------------


class TestWorkflows:
    def test_lists_the_workflows_directory(self, live_server: Live) -> None:
        """GET /v1/workflows lists each file by name with its file, description, vars and task count."""
        with live_server.client(READ) as client:
            answer = client.get("/v1/workflows")
        assert answer.status_code == 200
        listed = answer.json()["workflows"]
        assert [w["name"] for w in listed] == ["broken", "slow", "steady", "tiny"]
        tiny = next(w for w in listed if w["name"] == "tiny")
        assert tiny == {"name": "tiny", "file": "tiny.yaml", "description": "Two sim tasks in a chain.",
                        "vars": {"topic": "widgets"}, "tasks": 2}


class TestSubmit:
    def test_accepted_with_location_and_links_before_the_run_finishes(self, live_server: Live) -> None:
        """POST /v1/runs answers 202 queued, with the id, a Location and links, while the run has not ended."""
        with live_server.client() as client:
            answer = client.post("/v1/runs", json={"workflow": "slow"})
            assert answer.status_code == 202, answer.text
            body = answer.json()
            run_id = body["id"]
            assert RUN_ID.match(run_id)
            assert answer.headers["location"] == f"/v1/runs/{run_id}"
            assert body["status"] == "queued"
            assert body["workflow"] == "slow"
            assert body["links"] == {"self": f"/v1/runs/{run_id}", "events": f"/v1/runs/{run_id}/events",
                                     "report": f"/v1/runs/{run_id}/report",
                                     "dashboard": f"/dashboard/#/runs/{run_id}"}
            run = client.get(answer.headers["location"]).json()
            assert run["id"] == run_id
            assert run["ended_at"] is None and run["status"] not in ENDED

    def test_accepted_created_at_is_the_stored_one(self, live_server: Live) -> None:
        """The created_at of the 202 is the run's created_at as GET /v1/runs/{id} reports it."""
        with live_server.client() as client:
            answer = client.post("/v1/runs", json={"workflow": "tiny", "options": {"scale": 0.1}})
            assert answer.status_code == 202
            run = client.get(f"/v1/runs/{answer.json()['id']}").json()
        assert answer.json()["created_at"] == run["created_at"]

    def test_run_by_name_succeeds_with_tasks_outputs_counts_and_duration(self, live_server: Live) -> None:
        """A run by name ends 'succeeded'; GET shows each task done with its output, the counts and duration."""
        with live_server.client() as client:
            run_id = live_server.submit(client, "tiny", options={"scale": 0.1, "seed": 7})
            run = live_server.wait(client, run_id)
        assert run["status"] == "succeeded", run
        assert run["workflow"] == "tiny"
        assert run["error"] is None
        assert run["counts"] == {"done": 2}
        assert run["sessions"] == 1
        assert run["scale"] == 0.1
        assert run["created_at"] <= run["started_at"] <= run["ended_at"]
        assert run["duration"] == pytest.approx(run["ended_at"] - run["started_at"])
        assert run["duration"] > 0
        tasks = {t["id"]: t for t in run["tasks"]}
        assert set(tasks) == {"plan", "build"}
        for task_id, task in tasks.items():
            assert task["state"] == "done"
            assert task["agent"] == "worker"
            assert task["provider"] == "sim"
            assert task["attempts"] == 1
            assert task["error"] is None
            assert task["tokens_out"] > 0
            assert task["output"].startswith(f"[sim] Response for {task_id}.")
        assert tasks["plan"]["ended_at"] <= tasks["build"]["started_at"]  # build waited for plan

    def test_inline_yaml_runs(self, live_server: Live) -> None:
        """An inline sim workflow ('yaml') is accepted and runs to the end like a named one."""
        text = TINY.replace("name: tiny", "name: inline-tiny")
        with live_server.client() as client:
            answer = client.post("/v1/runs", json={"yaml": text, "options": {"scale": 0.1}})
            assert answer.status_code == 202, answer.text
            assert answer.json()["workflow"] == "inline-tiny"
            run = live_server.wait(client, answer.json()["id"])
        assert run["status"] == "succeeded", run
        assert run["workflow"] == "inline-tiny"
        assert run["counts"] == {"done": 2}

    def test_inputs_override_vars(self, live_server: Live) -> None:
        """inputs replace the workflow's vars: the prompts (echoed by the sim) and the stored run carry them."""
        with live_server.client() as client:
            default = live_server.wait(client, live_server.submit(client, "tiny"))
            run_id = live_server.submit(client, "tiny", inputs={"topic": "zeppelins"})
            run = live_server.wait(client, run_id)
        assert run["status"] == "succeeded", run
        for task in run["tasks"]:
            assert "zeppelins" in task["output"] and "widgets" not in task["output"], task["output"]
        for task in default["tasks"]:
            assert "widgets" in task["output"] and "zeppelins" not in task["output"], task["output"]
        with RunStore(live_server.config.db) as store:
            assert store.get_run(run_id).overrides == {"topic": "zeppelins"}

    def test_inline_inputs_override_vars(self, live_server: Live) -> None:
        """inputs work for inline workflows too."""
        with live_server.client() as client:
            answer = client.post("/v1/runs", json={"yaml": TINY, "inputs": {"topic": "airships"},
                                                   "options": {"scale": 0.1}})
            assert answer.status_code == 202, answer.text
            run = live_server.wait(client, answer.json()["id"])
        assert all("airships" in t["output"] for t in run["tasks"]), run["tasks"]


class TestListing:
    def test_pages_cover_every_run_once_newest_first(self, live_server: Live) -> None:
        """GET /v1/runs with limit pages through all runs exactly once, newest first, via next_cursor."""
        with live_server.client(READ) as reader, live_server.client() as client:
            submitted = [live_server.submit(client, "tiny") for _ in range(7)]
            for run_id in submitted:
                live_server.wait(client, run_id)
            pages: list[list[dict[str, Any]]] = []
            cursor: str | None = None
            while True:
                params: dict[str, Any] = {"limit": 3, **({"cursor": cursor} if cursor else {})}
                answer = reader.get("/v1/runs", params=params)
                assert answer.status_code == 200, answer.text
                body = answer.json()
                pages.append(body["runs"])
                cursor = body["next_cursor"]
                if cursor is None:
                    break
                assert len(pages) < 10, "next_cursor never ran out"
        assert [len(p) for p in pages] == [3, 3, 1]
        listed = [r["id"] for page in pages for r in page]
        assert listed == submitted[::-1]
        created = [r["created_at"] for page in pages for r in page]
        assert created == sorted(created, reverse=True)
        assert all(r["status"] == "succeeded" and r["counts"] == {"done": 2} for page in pages for r in page)

    def test_default_page_and_exact_fit(self, live_server: Live) -> None:
        """Without limit every run fits one page; a page that holds exactly the rest has no next_cursor."""
        with live_server.client() as client:
            submitted = [live_server.submit(client, "tiny") for _ in range(2)]
            whole = client.get("/v1/runs").json()
            exact = client.get("/v1/runs", params={"limit": 2}).json()
        assert [r["id"] for r in whole["runs"]] == submitted[::-1]
        assert whole["next_cursor"] is None
        assert exact["next_cursor"] is None and len(exact["runs"]) == 2

    def test_status_filter(self, live_server: Live) -> None:
        """?status= lists only the runs in that state."""
        with live_server.client() as client:
            good = [live_server.submit(client, "tiny") for _ in range(2)]
            bad = live_server.submit(client, "broken")
            for run_id in [*good, bad]:
                live_server.wait(client, run_id)

            def listed(status: str) -> list[str]:
                answer = client.get("/v1/runs", params={"status": status})
                assert answer.status_code == 200, answer.text
                assert all(r["status"] == status for r in answer.json()["runs"])
                return [r["id"] for r in answer.json()["runs"]]

            assert listed("succeeded") == good[::-1]
            assert listed("failed") == [bad]
            assert listed("queued") == []
            failed = client.get(f"/v1/runs/{bad}").json()
        assert failed["counts"] == {"failed": 1}
        assert failed["tasks"][0]["state"] == "failed" and failed["tasks"][0]["error"]


class TestReport:
    def test_report_has_makespan_and_bottlenecks(self, live_server: Live) -> None:
        """GET /v1/runs/{id}/report is the run's report: makespan, critical path, bottlenecks."""
        with live_server.client() as client:
            run_id = live_server.submit(client, "tiny")
            live_server.wait(client, run_id)
            answer = client.get(f"/v1/runs/{run_id}/report", headers=auth(READ))
        assert answer.status_code == 200, answer.text
        report = answer.json()
        assert report["run_id"] == run_id
        assert report["workflow"] == "tiny"
        assert report["status"] == "succeeded"
        assert report["report"]["makespan"] > 0
        assert [step["task_id"] for step in report["report"]["critical_path"]] == ["plan", "build"]
        assert isinstance(report["bottlenecks"], list)


class TestSharedStore:
    def test_the_run_is_in_the_store_like_a_cli_run(self, live_server: Live) -> None:
        """A run submitted over HTTP is in the run database and `agentfleet runs --json` lists it."""
        with live_server.client() as client:
            run_id = live_server.submit(client, "tiny")
            live_server.wait(client, run_id)
        db = live_server.config.db
        with RunStore(db) as store:
            (row,) = store.list_runs()
            assert (row.id, row.name, row.status) == (run_id, "tiny", "succeeded")
        env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTFLEET_")}
        result = subprocess.run([sys.executable, "-m", "agentfleet", "runs", "--db", db, "--json"],
                                capture_output=True, text=True, timeout=60, check=False,
                                env={**env, "NO_COLOR": "1", "COLUMNS": "200"})
        assert result.returncode == 0, result.stderr
        (listed,) = json.loads(result.stdout)
        assert (listed["id"], listed["workflow"], listed["status"]) == (run_id, "tiny", "succeeded")
        assert listed["counts"] == {"done": 2}


# -- errors --------------------------------------------------------------------------------


class TestAuthentication:
    @pytest.mark.parametrize("header", [None, "Bearer wrong-token-1", "Bearer submit-token-", "Basic c3VibWl0",
                                        "Bearer", "submit-token-1", "Bearer submit-token-1 x"])
    def test_401_with_www_authenticate(self, live_server: Live, header: str | None) -> None:
        """No, a wrong or a malformed Authorization header is 401 with WWW-Authenticate: Bearer."""
        headers = {"Authorization": header} if header is not None else {}
        with live_server.client(None) as client:
            answer = client.get("/v1/workflows", headers=headers)
        assert_error(answer, 401)
        assert answer.headers["www-authenticate"] == "Bearer"

    def test_every_route_needs_a_token(self, live_server: Live) -> None:
        """Every API route but /healthz, /readyz (and the / redirect) answers 401 without a token."""
        public = {"/healthz", "/readyz", "/"}
        routes = [r for r in live_server.app.routes if isinstance(r, APIRoute) and r.path not in public]
        assert {r.path for r in routes} >= {"/metrics", "/v1/workflows", "/v1/runs", "/v1/runs/{run_id}",
                                            "/v1/runs/{run_id}/cancel", "/v1/runs/{run_id}/events",
                                            "/v1/runs/{run_id}/report"}
        checked = []
        with live_server.client(None) as client:
            for route in routes:
                path = route.path.replace("{run_id}", "abcdef1234")
                for method in sorted(route.methods):
                    answer = client.request(method, path, json={"workflow": "tiny"} if method == "POST" else None)
                    assert answer.status_code == 401, (method, path, answer.text)
                    assert answer.headers["www-authenticate"] == "Bearer"
                    checked.append((method, route.path))
        assert len(checked) >= 8

    def test_only_known_routes_are_outside_the_api(self, live_server: Live) -> None:
        """Besides the API routes there are only the schema, its docs pages and the dashboard's files."""
        others = {getattr(r, "path", None) for r in live_server.app.routes if not isinstance(r, APIRoute)}
        assert others == {"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc", "/dashboard"}

    def test_health_answers_without_a_token(self, live_server: Live) -> None:
        """/healthz and /readyz need no token."""
        with live_server.client(None) as client:
            health = client.get("/healthz")
            ready = client.get("/readyz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        assert (ready.status_code, ready.json()) == (200, {"status": "ready", "workers": 1, "queued": 0})

    def test_403_for_a_read_token_on_submit_and_cancel(self, live_server: Live) -> None:
        """A read token may read but not submit (403) nor cancel (403); the run is untouched."""
        with live_server.client() as client, live_server.client(READ) as reader:
            run_id = live_server.submit(client, "slow")
            refused = reader.post("/v1/runs", json={"workflow": "tiny"})
            assert "submit" in assert_error(refused, 403)["detail"]
            assert_error(reader.post(f"/v1/runs/{run_id}/cancel"), 403)
            assert reader.get(f"/v1/runs/{run_id}").json()["status"] != "cancelled"
            assert reader.get("/v1/workflows").status_code == 200
            runs = reader.get("/v1/runs").json()["runs"]
        assert [r["id"] for r in runs] == [run_id]  # the refused submission stored nothing


class TestBodyLimit:
    def test_413_by_content_length(self, serve: Callable[..., Live]) -> None:
        """A body over max_body, declared by Content-Length, is 413 and nothing is stored."""
        live = serve(max_body=2048)
        with live.client() as client:
            answer = client.post("/v1/runs", json={"yaml": TINY + "#" * 3000})
            assert "2048" in assert_error(answer, 413)["detail"]
            assert client.get("/v1/runs").json()["runs"] == []

    def test_413_for_a_chunked_body(self, serve: Callable[..., Live]) -> None:
        """A chunked body (no Content-Length) that grows over max_body is 413 too."""
        live = serve(max_body=2048)
        payload = json.dumps({"yaml": TINY + "#" * 3000}).encode()

        def chunks() -> Iterator[bytes]:
            for i in range(0, len(payload), 500):
                yield payload[i:i + 500]

        with live.client() as client:
            answer = client.post("/v1/runs", content=chunks(), headers={"Content-Type": "application/json"})
            assert "2048" in assert_error(answer, 413)["detail"]
            assert client.get("/v1/runs").json()["runs"] == []

    def test_a_chunked_body_under_the_limit_is_read(self, serve: Callable[..., Live]) -> None:
        """A chunked body under max_body is accepted like any other."""
        live = serve(max_body=2048)
        payload = json.dumps({"workflow": "tiny", "options": {"scale": 0.1}}).encode()
        with live.client() as client:
            answer = client.post("/v1/runs", content=iter([payload[:10], payload[10:]]),
                                 headers={"Content-Type": "application/json"})
        assert answer.status_code == 202, answer.text


class TestValidation:
    @pytest.mark.parametrize(("body", "loc"), [
        ({"workflow": "tiny", "priority": 1}, ["body", "priority"]),
        ({"workflow": "tiny", "options": {"turbo": True}}, ["body", "options", "turbo"]),
        ({"workflow": "tiny", "options": {"scale": 0}}, ["body", "options", "scale"]),
        ({"workflow": "tiny", "options": {"scale": -1}}, ["body", "options", "scale"]),
        ({"workflow": "tiny", "options": {"scale": "fast"}}, ["body", "options", "scale"]),
        ({"workflow": "tiny", "options": {"max_parallel": 0}}, ["body", "options", "max_parallel"]),
        ({"workflow": "tiny", "inputs": ["topic"]}, ["body", "inputs"]),
        ({"workflow": ""}, ["body", "workflow"]),
    ])
    def test_422_names_the_field(self, live_server: Live, body: dict[str, Any], loc: list[Any]) -> None:
        """A body field that is unknown or out of range is 422 naming that field."""
        with live_server.client() as client:
            assert locs(client.post("/v1/runs", json=body)) == [loc]

    @pytest.mark.parametrize("body", [{"workflow": "tiny", "yaml": TINY}, {"inputs": {"topic": "x"}}, {}])
    def test_exactly_one_of_workflow_and_yaml(self, live_server: Live, body: dict[str, Any]) -> None:
        """Both 'workflow' and 'yaml', or neither, is 422 on the body saying to give exactly one."""
        with live_server.client() as client:
            answer = client.post("/v1/runs", json=body)
        assert locs(answer) == [["body"]]
        assert "exactly one" in answer.json()["detail"][0]["msg"]

    def test_unknown_workflow_name(self, live_server: Live) -> None:
        """A workflow name the directory does not have is 422 on body.workflow, listing the known ones."""
        with live_server.client() as client:
            answer = client.post("/v1/runs", json={"workflow": "nonesuch"})
        assert locs(answer) == [["body", "workflow"]]
        assert "tiny" in answer.json()["detail"][0]["msg"]

    def test_undeclared_input(self, live_server: Live) -> None:
        """An input the workflow does not declare as a var is 422 on body.inputs.<name>."""
        with live_server.client() as client:
            named = client.post("/v1/runs", json={"workflow": "tiny", "inputs": {"colour": "red"}})
            inline = client.post("/v1/runs", json={"yaml": TINY, "inputs": {"colour": "red"}})
        for answer in (named, inline):
            assert locs(answer) == [["body", "inputs", "colour"]]
            assert "topic" in answer.json()["detail"][0]["msg"]

    def test_bad_yaml(self, live_server: Live) -> None:
        """Inline text that is not YAML is 422 on body.yaml with the line."""
        with live_server.client() as client:
            answer = client.post("/v1/runs", json={"yaml": "name: x\nagents: [unclosed\n"})
        (loc,) = locs(answer)
        assert loc[:2] == ["body", "yaml"]
        assert "line" in answer.json()["detail"][0]["msg"]

    def test_invalid_inline_workflow(self, live_server: Live) -> None:
        """An inline workflow that does not validate is 422 on the field, under body.yaml, with the line."""
        text = TINY.replace("agent: worker\n    inputs", "agent: ghost\n    inputs")
        with live_server.client() as client:
            answer = client.post("/v1/runs", json={"yaml": text})
        (loc,) = locs(answer)
        assert loc[:2] == ["body", "yaml"] and len(loc) > 2, loc
        assert "ghost" in answer.json()["detail"][0]["msg"]
        assert "(line " in answer.json()["detail"][0]["msg"]

    def test_not_json(self, live_server: Live) -> None:
        """A body that is not JSON is 422 on the body."""
        with live_server.client() as client:
            answer = client.post("/v1/runs", content=b"{not json", headers={"Content-Type": "application/json"})
        (loc,) = locs(answer)
        assert loc[0] == "body"

    def test_not_utf8(self, live_server: Live) -> None:
        """A body that is not UTF-8 text is a client error with a JSON detail, and nothing is stored."""
        with live_server.client() as client:
            answer = client.post("/v1/runs", content=b'{"workflow": "\xff\xfe"}',
                                 headers={"Content-Type": "application/json"})
            assert answer.status_code in (400, 422), answer.text
            assert_error(answer, answer.status_code)
            assert client.get("/v1/runs").json()["runs"] == []

    def test_the_input_is_not_echoed(self, live_server: Live) -> None:
        """A 422 does not repeat the submitted values (a secret may be in them)."""
        with live_server.client() as client:
            answer = client.post("/v1/runs", json={"workflow": "tiny", "api_key": "sk-very-secret-value"})
        locs(answer)
        assert "sk-very-secret-value" not in answer.text

    @pytest.mark.parametrize(("params", "loc"), [
        ({"cursor": "not-a-cursor!"}, ["query", "cursor"]),
        ({"cursor": "W10"}, ["query", "cursor"]),  # base64 of [] : JSON, but not a cursor
        ({"limit": 0}, ["query", "limit"]),
        ({"limit": 201}, ["query", "limit"]),
        ({"status": "stopped"}, ["query", "status"]),
    ])
    def test_bad_query(self, live_server: Live, params: dict[str, Any], loc: list[Any]) -> None:
        """A bad cursor, limit or status of GET /v1/runs is 422 naming the query parameter."""
        with live_server.client(READ) as client:
            assert locs(client.get("/v1/runs", params=params)) == [loc]

    def test_bad_run_id(self, live_server: Live) -> None:
        """A run id that is not one (not hex) is 422 on path.run_id."""
        with live_server.client(READ) as client:
            assert locs(client.get("/v1/runs/NOT-AN-ID")) == [["path", "run_id"]]


# Inline workflows that reach outside the service. Each also names an agent that does not exist: past
# the policy, validation refuses it (422), so nothing runs (or reaches the network) when it is let through.
UNSAFE = {
    "openai": "agents:\n  a: {provider: openai, model: gpt-4o-mini}\n",
    "hooks": "hooks:\n  on_run_end: 'echo done'\nagents:\n  a: {provider: sim}\n",
    "include": "include: overlay.yaml\nagents:\n  a: {provider: sim}\n",
    "command": "agents:\n  a: {provider: sim, options: {command: 'echo hi'}}\n",
    "command provider": "agents:\n  a: {provider: command, options: {command: 'echo hi'}}\n",
    "fallback": "agents:\n  a: {provider: sim, fallbacks: [openai/gpt-4o-mini]}\n",
}
UNSAFE_TAIL = "tasks:\n  - {id: t, agent: ghost, prompt: hi}\n"


class TestInlinePolicy:
    @pytest.mark.parametrize("feature", list(UNSAFE))
    def test_403_under_the_default_sim_policy(self, live_server: Live, feature: str) -> None:
        """Inline YAML using another provider, hooks, include or a command is 403 by default."""
        assert live_server.config.inline == "sim"
        with live_server.client() as client:
            answer = client.post("/v1/runs", json={"yaml": f"name: risky\n{UNSAFE[feature]}{UNSAFE_TAIL}"})
            assert "inline" in assert_error(answer, 403)["detail"]
            assert client.get("/v1/runs").json()["runs"] == []

    @pytest.mark.parametrize("feature", list(UNSAFE))
    def test_passes_to_validation_when_trusted(self, serve: Callable[..., Live], feature: str) -> None:
        """Under inline="trusted" the same YAML is not refused by policy: it reaches validation (422)."""
        live = serve(inline="trusted")
        with live.client() as client:
            answer = client.post("/v1/runs", json={"yaml": f"name: risky\n{UNSAFE[feature]}{UNSAFE_TAIL}"})
        (loc,) = locs(answer)
        assert loc[:2] == ["body", "yaml"]

    def test_trusted_accepts_a_valid_workflow_with_hooks(self, serve: Callable[..., Live], tmp_path: Path) -> None:
        """Under inline="trusted" a valid inline workflow with a hook is accepted and runs it."""
        live = serve(inline="trusted")
        marker = tmp_path / "hook-ran"
        hook = f"{sys.executable} -c \"open({str(marker)!r}, 'w').close()\""
        text = TINY + f"hooks:\n  on_run_end: {json.dumps(hook)}\n"
        with live.client() as client:
            answer = client.post("/v1/runs", json={"yaml": text, "options": {"scale": 0.1}})
            assert answer.status_code == 202, answer.text
            run = live.wait(client, answer.json()["id"])
        assert run["status"] == "succeeded", run
        assert marker.exists()

    def test_off_refuses_inline(self, serve: Callable[..., Live]) -> None:
        """Under inline="off" every inline workflow is 403; named ones still run."""
        live = serve(inline="off")
        with live.client() as client:
            assert_error(client.post("/v1/runs", json={"yaml": TINY}), 403)
            assert client.post("/v1/runs", json={"workflow": "tiny"}).status_code == 202


class TestRateLimit:
    def test_429_with_retry_after_per_token(self, serve: Callable[..., Live]) -> None:
        """Over rate (burst first) a token gets 429 with Retry-After in whole seconds; others are unaffected."""
        clock = FakeClock()
        live = serve(rate=0.5, burst=2, clock=clock)
        with live.client() as client, live.client(READ) as reader:
            assert client.get("/v1/workflows").status_code == 200
            assert client.get("/v1/workflows").status_code == 200
            limited = client.get("/v1/workflows")
            assert_error(limited, 429)
            assert limited.headers["retry-after"] == "2"  # one request at 0.5/s
            assert reader.get("/v1/workflows").status_code == 200  # its own bucket
            assert client.get("/healthz").status_code == 200  # no token, no limit
            clock.now += 1.0
            again = client.get("/v1/workflows")
            assert_error(again, 429)
            assert again.headers["retry-after"] == "1"
            clock.now += 1.0
            assert client.get("/v1/workflows").status_code == 200
            assert client.get("/v1/workflows").status_code == 429

    def test_unknown_tokens_are_401_not_429(self, serve: Callable[..., Live]) -> None:
        """Failed authentication does not use up a bucket: a bad token stays 401."""
        live = serve(rate=0.5, burst=1, clock=FakeClock())
        with live.client("not-a-real-token") as client:
            assert [client.get("/v1/workflows").status_code for _ in range(3)] == [401, 401, 401]


class TestQueue:
    def test_503_when_max_queued_runs_wait(self, serve: Callable[..., Live]) -> None:
        """With max_queued runs waiting, a submission is 503 with Retry-After and is not stored."""
        live = serve(max_runs=1, max_queued=1)
        with live.client() as client:
            busy = live.submit(client, "slow")
            live.wait(client, busy, started)  # holds the only slot
            waiting = live.submit(client, "tiny")
            assert client.get(f"/v1/runs/{waiting}").json()["status"] == "queued"
            full = client.post("/v1/runs", json={"workflow": "tiny"})
            assert "1 runs are already queued" in assert_error(full, 503)["detail"]
            assert int(full.headers["retry-after"]) >= 1
            assert_error(client.post("/v1/runs", json={"workflow": "tiny"}), 503)
            assert len(client.get("/v1/runs").json()["runs"]) == 2
            assert client.get("/readyz").json()["queued"] == 1

    def test_no_503_once_the_queue_drained(self, serve: Callable[..., Live]) -> None:
        """503 means the queue is full: once the queued runs were taken, a submission is accepted at once
        (however recently the service last counted its queue)."""
        clock = FakeClock()  # frozen: no time passes for what the service times by its clock
        live = serve(max_queued=1, clock=clock)
        with live.client() as client:
            first = live.submit(client, "tiny")
            live.wait(client, first)
            assert client.get("/readyz").json()["queued"] == 0
            answer = client.post("/v1/runs", json={"workflow": "tiny", "options": {"scale": 0.1}})
        assert answer.status_code == 202, answer.text


class TestNotFound:
    @pytest.mark.parametrize(("method", "path"), [("GET", ""), ("GET", "/events"), ("GET", "/report"),
                                                  ("POST", "/cancel")])
    def test_404_for_an_unknown_run(self, live_server: Live, method: str, path: str) -> None:
        """Every route of a run is 404 with a detail for a run id the store does not have."""
        with live_server.client() as client:
            answer = client.request(method, f"/v1/runs/abcdef1234{path}")
        assert "abcdef1234" in assert_error(answer, 404)["detail"]

    def test_no_prefix_matching(self, live_server: Live) -> None:
        """A prefix of a real run id is not that run (the API takes exact ids only)."""
        with live_server.client() as client:
            run_id = live_server.submit(client, "tiny")
            assert_error(client.get(f"/v1/runs/{run_id[:6]}"), 404)


class TestInternalError:
    def test_500_has_an_id_and_no_traceback(self, live_server: Live, monkeypatch: pytest.MonkeyPatch,
                                            caplog: pytest.LogCaptureFixture) -> None:
        """An unexpected failure is 500 {"detail": "internal error", "id"}; the traceback is logged under the id."""

        def boom(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("the disk is on fire: /secret/path")

        monkeypatch.setattr(live_server.service.store, "page_runs", boom)
        with caplog.at_level("ERROR", logger="agentfleet.server"), live_server.client() as client:
            answer = client.get("/v1/runs")
        body = assert_error(answer, 500)
        assert set(body) == {"detail", "id"}
        assert body["detail"] == "internal error"
        assert re.fullmatch(r"[0-9a-f]{12}", body["id"])
        assert "fire" not in answer.text and "RuntimeError" not in answer.text
        logged = [r for r in caplog.records if r.name == "agentfleet.server" and body["id"] in r.getMessage()]
        assert logged and logged[0].exc_info is not None


# -- cancel --------------------------------------------------------------------------------


class TestCancel:
    def test_a_queued_run_cancelled_never_runs(self, serve: Callable[..., Live]) -> None:
        """Cancelling a queued run ends it 'cancelled' at once; no task of it ever runs."""
        live = serve(max_runs=1)
        with live.client() as client:
            busy = live.submit(client, "slow")
            live.wait(client, busy, started)
            queued = live.submit(client, "tiny")
            answer = client.post(f"/v1/runs/{queued}/cancel")
            assert answer.status_code == 202, answer.text
            assert answer.json() == {"id": queued, "status": "cancelled"}
            assert client.post(f"/v1/runs/{busy}/cancel").json()["status"] == "cancelling"
            live.wait(client, busy, timeout=10)
            later = live.submit(client, "tiny")  # the runner is free again and runs what is queued
            assert live.wait(client, later)["status"] == "succeeded"
            run = client.get(f"/v1/runs/{queued}").json()
        assert run["status"] == "cancelled"
        assert run["tasks"] == [] and run["started_at"] is None
        assert run["ended_at"] is not None
        with RunStore(live.config.db) as store:
            assert store.events(queued) == []

    def test_a_running_run_cancelled_keeps_done_tasks(self, live_server: Live) -> None:
        """Cancelling a running run ends it 'cancelled' within seconds; tasks done before stay done."""
        with live_server.client() as client:
            run_id = live_server.submit(client, "slow")
            live_server.wait(client, run_id, task_running("second"))
            answer = client.post(f"/v1/runs/{run_id}/cancel")
            assert answer.status_code == 202, answer.text
            assert answer.json() == {"id": run_id, "status": "cancelling"}
            run = live_server.wait(client, run_id, timeout=10)
        assert run["status"] == "cancelled", run
        assert run["ended_at"] is not None and run["duration"] is not None
        tasks = {t["id"]: t for t in run["tasks"]}
        assert tasks["first"]["state"] == "done"
        assert tasks["first"]["output"].startswith("[sim] Response for first.")
        assert tasks["second"]["state"] != "done" and tasks["third"]["state"] != "done"

    def test_409_for_a_run_that_ended(self, live_server: Live) -> None:
        """Cancelling a run that already ended is 409 and changes nothing."""
        with live_server.client() as client:
            run_id = live_server.submit(client, "tiny")
            live_server.wait(client, run_id)
            answer = client.post(f"/v1/runs/{run_id}/cancel")
            assert "ended" in assert_error(answer, 409)["detail"]
            assert client.get(f"/v1/runs/{run_id}").json()["status"] == "succeeded"

    def test_409_for_a_cancelled_run(self, live_server: Live) -> None:
        """Cancelling twice: the second is 409."""
        with live_server.client() as client:
            run_id = live_server.submit(client, "slow")
            live_server.wait(client, run_id, task_running("second"))
            assert client.post(f"/v1/runs/{run_id}/cancel").status_code == 202
            live_server.wait(client, run_id, timeout=10)
            assert_error(client.post(f"/v1/runs/{run_id}/cancel"), 409)


class TestRunningStatus:
    def test_a_run_executing_in_process_is_running(self, live_server: Live) -> None:
        """With workers=0 a run the service is executing shows 'running' (not 'stopped', which means its
        process is gone), in GET /v1/runs/{id}, in the list and in its report."""
        with live_server.client() as client:
            run_id = live_server.submit(client, "slow")
            live_server.wait(client, run_id, task_running("second"))
            run = client.get(f"/v1/runs/{run_id}").json()
            listed = client.get("/v1/runs", params={"status": "running"}).json()["runs"]
            report = client.get(f"/v1/runs/{run_id}/report").json()
        assert run["status"] == "running"
        assert [(r["id"], r["status"]) for r in listed] == [(run_id, "running")]
        assert report["status"] == "running"


# -- event stream --------------------------------------------------------------------------


class TestEvents:
    def test_a_finished_run_streams_every_stored_event_then_end(self, live_server: Live) -> None:
        """The stream of an ended run is every stored event in id order, then `event: end` with the status."""
        with live_server.client(READ) as client:
            with live_server.client() as submitter:
                run_id = live_server.submit(submitter, "tiny")
                live_server.wait(submitter, run_id)
            stream = read_stream(client, run_id)
        *events, end = stream
        assert end == {"event": "end", "data": json.dumps({"status": "succeeded"})}
        payloads = [json.loads(f["data"]) for f in events]
        assert payloads == stored_events(live_server.config.db, run_id)
        assert [f["event"] for f in events] == [p["kind"] for p in payloads]
        assert event_ids(events) == [p["id"] for p in payloads]
        ids = event_ids(events)
        assert ids == sorted(ids) and len(set(ids)) == len(ids)
        assert {(p["kind"], p["task"]) for p in payloads} >= {("started", "plan"), ("done", "plan"),
                                                             ("started", "build"), ("done", "build")}

    def test_the_stream_is_not_cached(self, live_server: Live) -> None:
        """The event stream says no-cache (and no proxy buffering)."""
        with live_server.client() as client:
            run_id = live_server.submit(client, "tiny")
            live_server.wait(client, run_id)
            with client.stream("GET", f"/v1/runs/{run_id}/events") as answer:
                assert answer.headers["cache-control"] == "no-cache"
                assert answer.headers["x-accel-buffering"] == "no"

    def test_resume_after_an_event(self, live_server: Live) -> None:
        """Last-Event-ID: N and ?after=N give exactly the events after N, then end."""
        with live_server.client() as client:
            run_id = live_server.submit(client, "tiny")
            live_server.wait(client, run_id)
            everything = event_ids(read_stream(client, run_id))
            assert len(everything) >= 4
            for n in (everything[0], everything[len(everything) // 2], everything[-1]):
                rest = [i for i in everything if i > n]
                by_header = read_stream(client, run_id, headers={"Last-Event-ID": str(n)})
                by_query = read_stream(client, run_id, params={"after": n})
                for resumed in (by_header, by_query):
                    assert event_ids(resumed) == rest
                    assert resumed[-1]["event"] == "end"
            assert event_ids(read_stream(client, run_id, params={"after": 0})) == everything

    def test_a_live_stream_follows_a_running_run(self, live_server: Live) -> None:
        """A stream opened on a running run gets its events while it runs and ends with `end`."""
        with live_server.client() as client, live_server.client(READ) as reader:
            run_id = live_server.submit(client, "steady", options={})
            got: list[dict[str, Any]] = []
            ended_at_first_done: Any = "not seen"
            with reader.stream("GET", f"/v1/runs/{run_id}/events") as answer:
                assert answer.status_code == 200
                for frame in frames(answer.iter_lines()):
                    got.append(frame)
                    if frame.get("event") == "done" and ended_at_first_done == "not seen":
                        ended_at_first_done = client.get(f"/v1/runs/{run_id}").json()["ended_at"]
                    if frame.get("event") == "end":
                        break
        assert ended_at_first_done is None  # the first task's result came while the run went on
        *events, end = got
        assert end == {"event": "end", "data": json.dumps({"status": "succeeded"})}
        assert [json.loads(f["data"]) for f in events] == stored_events(live_server.config.db, run_id)
        done = [json.loads(f["data"])["task"] for f in events if f["event"] == "done"]
        assert done == ["one", "two", "three", "four"]

    def test_a_cancelled_run_streams_end_cancelled(self, live_server: Live) -> None:
        """A stream open on a run that is cancelled ends with `end` and status cancelled."""
        with live_server.client() as client:
            run_id = live_server.submit(client, "slow")
            live_server.wait(client, run_id, task_running("second"))
            with client.stream("GET", f"/v1/runs/{run_id}/events") as answer:
                assert client.post(f"/v1/runs/{run_id}/cancel").status_code == 202
                stream = list(frames(answer.iter_lines()))
        assert stream[-1] == {"event": "end", "data": json.dumps({"status": "cancelled"})}
        assert event_ids(stream[:-1]) == [e["id"] for e in stored_events(live_server.config.db, run_id)]

    @pytest.mark.parametrize("value", ["abc", "1.5", "12a"])
    def test_a_bad_last_event_id_is_422(self, live_server: Live, value: str) -> None:
        """A Last-Event-ID that is not an event id is 422 on the header."""
        with live_server.client() as client:
            run_id = live_server.submit(client, "tiny")
            answer = client.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": value})
        assert locs(answer) == [["header", "Last-Event-ID"]]

    def test_an_out_of_range_last_event_id_is_422(self, live_server: Live) -> None:
        """A Last-Event-ID too large to be an event id is 422 like ?after= (not a stream that breaks off)."""
        with live_server.client() as client:
            run_id = live_server.submit(client, "tiny")
            live_server.wait(client, run_id)
            by_query = client.get(f"/v1/runs/{run_id}/events", params={"after": 2**63})
            assert locs(by_query) == [["query", "after"]]
            try:
                answer = client.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": "9" * 20})
            except httpx.RemoteProtocolError as exc:
                pytest.fail(f"the stream broke off: {exc}")
        assert locs(answer) == [["header", "Last-Event-ID"]]


# -- CORS and metrics ------------------------------------------------------------------------


class TestCors:
    def test_closed_by_default(self, live_server: Live) -> None:
        """Without cors_origins no response allows another origin, preflight included."""
        with live_server.client() as client:
            simple = client.get("/v1/workflows", headers={"Origin": "http://evil.test"})
            preflight = client.options("/v1/runs", headers={"Origin": "http://evil.test",
                                                            "Access-Control-Request-Method": "POST"})
        assert simple.status_code == 200
        for answer in (simple, preflight):
            assert "access-control-allow-origin" not in answer.headers

    def test_open_for_a_configured_origin(self, serve: Callable[..., Live]) -> None:
        """A configured origin is allowed (with a preflight for Authorization); another one is not."""
        live = serve(cors_origins=["http://dash.test"])
        with live.client() as client:
            simple = client.get("/v1/workflows", headers={"Origin": "http://dash.test"})
            preflight = client.options("/v1/runs", headers={
                "Origin": "http://dash.test", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type"})
            other = client.get("/v1/workflows", headers={"Origin": "http://evil.test"})
        assert simple.headers["access-control-allow-origin"] == "http://dash.test"
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://dash.test"
        assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
        assert "access-control-allow-origin" not in other.headers


class TestMetrics:
    def test_needs_a_read_token_and_counts(self, live_server: Live) -> None:
        """/metrics is 401 without a token; with a read token it has the submission and request counters."""
        with live_server.client(None) as anonymous:
            assert_error(anonymous.get("/metrics"), 401)
        with live_server.client() as client:
            live_server.submit(client, "tiny")
        with live_server.client(READ) as reader:
            answer = reader.get("/metrics")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        text = answer.text
        assert re.search(r"^agentfleet_runs_submitted_total 1\.0$", text, re.M), text
        assert re.search(r'^agentfleet_http_requests_total\{method="POST",route="/v1/runs",status="202"\} 1\.0$',
                         text, re.M), text
        assert re.search(r'^agentfleet_http_requests_total\{method="GET",route="/metrics",status="401"\} 1\.0$',
                         text, re.M), text
        assert re.search(r'^agentfleet_http_rejected_total\{reason="unauthorized"\} 1\.0$', text, re.M), text


# -- the serve command -----------------------------------------------------------------------


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve` must fail before it serves: a uvicorn.run call fails the test instead of blocking it."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("agentfleet serve started a server")

    monkeypatch.setattr(uvicorn, "run", refuse)


class TestServeCommand:
    def test_binds_127_0_0_1_by_default(self) -> None:
        """--host defaults to 127.0.0.1 (this machine only), in the code and in --help."""
        assert inspect.signature(_serve_cli.serve).parameters["host"].default == "127.0.0.1"
        result = serve_cli("--help")
        assert result.exit_code == 0, result.stderr
        assert re.search(r"--host\b.*default: 127\.0\.0\.1", result.stdout), result.stdout

    @pytest.mark.usefixtures("no_server")
    def test_a_taken_port_exits_2_with_one_line(self, tmp_path: Path) -> None:
        """A port that is taken is one 'error:' line and exit 2, no traceback."""
        tokens = tmp_path / "tokens"
        tokens.write_text("submit-token-1 submit\n", encoding="utf-8")
        with socket.socket() as taken:
            taken.bind(("127.0.0.1", 0))
            taken.listen()
            port = taken.getsockname()[1]
            result = serve_cli("--port", str(port), "--db", str(tmp_path / "a.db"), "--tokens-file", str(tokens))
        assert result.exit_code == 2, result.stdout + result.stderr
        assert f"127.0.0.1:{port}" in one_error_line(result)

    @pytest.mark.usefixtures("no_server")
    @pytest.mark.parametrize(("content", "expected"), [
        (None, "cannot read"),
        ("submit-token-1 admin\n", "scope 'admin'"),
        ("# only a comment\n\n", "no tokens"),
        ("short submit\n", "at least 8 characters"),
        ("submit-token-1 submit extra\n", ":1: expected 'token [scope]'"),
    ])
    def test_a_bad_tokens_file_exits_2(self, tmp_path: Path, content: str | None, expected: str) -> None:
        """A missing tokens file, a bad scope, no tokens, a short token or a bad line: one 'error:' line, exit 2."""
        tokens = tmp_path / "tokens"
        if content is not None:
            tokens.write_text(content, encoding="utf-8")
        result = serve_cli("--port", str(free_port()), "--db", str(tmp_path / "a.db"), "--tokens-file", str(tokens))
        assert result.exit_code == 2, result.stdout + result.stderr
        assert expected in one_error_line(result)

    @pytest.mark.usefixtures("no_server")
    def test_a_bad_inline_mode_exits_2(self, tmp_path: Path) -> None:
        """--inline must be sim, trusted or off."""
        result = serve_cli("--inline", "anything", "--db", str(tmp_path / "a.db"))
        assert result.exit_code == 2
        assert "--inline" in one_error_line(result)

