"""The live dashboard in a real browser, against a real ``agentfleet serve`` subprocess.

Starts the service on a free port with its own run database and a workflow of sim tasks that take
a second or two each, then drives headless Chromium through playwright: the runs list, the
new-run form, the live run page (the timeline must grow while the run goes), the report at the
end, and the sign-in form. Full-page screenshots go to build/test-artifacts/dashboard-*.png for a
human to look at. Skipped, with the reason, when playwright or Chromium is missing.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ..test_report_browser import chromium
from .conftest import free_port

ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
TOKEN = "tok-submit"
PARTS = ["api", "storage", "ui", "auth", "docs-site", "metrics"]

#: 10 task instances in 4 layers; the builders (2 at a time) hold the run back, so the report has
#: a bottleneck; about 8 s of run time, so the page is watched while tasks start. Temperature above
#: 0: no answer comes from the response cache, so a second run takes as long as the first.
WORKFLOW = """\
name: dash-demo
description: A lead plans, six builders work two at a time, two checkers verify, the lead ships.

vars:
  feature: search filters
  parts: [api, storage, ui, auth, docs-site, metrics]

settings:
  max_parallel: 6

agents:
  lead:
    provider: sim
    temperature: 0.7
    options:
      latency: {median: 1.2, sigma: 0.2}
  builder:
    provider: sim
    temperature: 0.7
    max_concurrency: 2
    options:
      latency: {median: 1.5, sigma: 0.2}
  checker:
    provider: sim
    temperature: 0.7
    options:
      latency: {median: 1.0, sigma: 0.2}

tasks:
  - id: plan
    agent: lead
    prompt: Plan the {{ vars.feature }} feature.
  - id: build
    agent: builder
    map: vars.parts
    inputs: [plan]
    prompt: Build the {{ item }} part.
  - id: test
    agent: checker
    inputs: [build]
    prompt: Test everything.
  - id: audit
    agent: checker
    inputs: [build]
    prompt: Audit everything.
  - id: ship
    agent: lead
    inputs: [test, audit]
    prompt: Ship it.
"""
INSTANCES = 1 + len(PARTS) + 3


@dataclass
class Service:
    base: str
    log: Path


@pytest.fixture(scope="class")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """``agentfleet serve`` on a free port (its own process group), stopped after the class."""
    tmp = tmp_path_factory.mktemp("dashboard")
    workflows = tmp / "workflows"
    workflows.mkdir()
    (workflows / "dash_demo.yaml").write_text(WORKFLOW, encoding="utf-8")
    port = free_port()
    log = tmp / "server.log"
    env = {**os.environ, "AGENTFLEET_TOKENS": f"{TOKEN}:submit"}
    cmd = [sys.executable, "-m", "agentfleet", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--db", str(tmp / "agentfleet.db"), "--workflows", str(workflows)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"agentfleet serve exited with {proc.returncode}:\n{log.read_text(errors='replace')}")
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1) as res:
                    if res.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"agentfleet serve did not answer /healthz in 30 s:\n{log.read_text(errors='replace')}")
            time.sleep(0.1)
        yield Service(base=base, log=log)
    finally:
        # The whole group: the API process and the runner processes it started.
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            if proc.poll() is not None:
                break
            try:
                os.killpg(proc.pid, sig)
            except ProcessLookupError:
                break
            try:
                proc.wait(timeout=wait)
            except subprocess.TimeoutExpired:
                continue
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="class")
def browser() -> Iterator[Any]:
    """Headless Chromium (Debian's), or a skip saying why not."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install playwright")
    executable = chromium()
    with sync_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        except sync_api.Error as exc:
            pytest.skip(f"chromium could not start: {exc}")
        try:
            yield browser
        finally:
            browser.close()


def open_page(browser: Any, errors: list[str], width: int = 1280, *, bypass_csp: bool = False) -> Any:
    """A page in a fresh context (its own sessionStorage) recording console errors and page errors.
    ``bypass_csp`` lets the test's own polling predicates (evaluated strings) run; the dashboard's
    Content-Security-Policy is enforced otherwise."""
    context = browser.new_context(viewport={"width": width, "height": 900}, bypass_csp=bypass_csp)
    page = context.new_page()
    page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.set_default_timeout(20_000)
    return page


def bars(page: Any) -> int:
    return int(page.locator("#timeline rect.bar").count())


def status(page: Any) -> str:
    return str(page.locator("#run-status").inner_text()).strip()


class TestDashboard:
    def test_a_run_submitted_from_the_form_is_watched_live_to_its_report(self, service: Service, browser: Any) -> None:
        """The list, the form, a live run page whose timeline grows, its report, a cancel: no console errors."""
        errors: list[str] = []
        page = open_page(browser, errors, bypass_csp=True)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        try:
            page.goto(f"{service.base}/dashboard/#token={TOKEN}")
            page.wait_for_selector("#page-runs:not([hidden])")
            page.wait_for_selector("#runs-table tbody tr")
            # The token left the address bar for the tab's sessionStorage.
            assert "token" not in page.url and page.url.endswith("#/runs")
            assert page.evaluate("sessionStorage.getItem('agentfleet.token')") == TOKEN
            page.wait_for_function("document.querySelectorAll('#nr-workflow option').length > 0")
            assert page.input_value("#nr-workflow") == "dash-demo"
            assert json.loads(page.input_value("#nr-inputs"))["parts"] == PARTS  # pre-filled from the vars
            assert page.locator("#service-strip .chip").count() >= 4

            page.fill("#nr-seed", "7")
            page.click("#new-run-form button[type=submit]")
            page.wait_for_url("**/dashboard/#/runs/*")
            run_id = page.url.rsplit("/", 1)[-1]
            page.wait_for_selector("#page-run:not([hidden])")
            assert page.locator("#run-id").inner_text() == run_id

            # The timeline grows while the run goes: sample the bars until the run ends.
            page.wait_for_selector("#timeline rect.bar", timeout=30_000)
            samples: list[int] = []
            live_shot = False
            deadline = time.monotonic() + 40
            while status(page) in ("queued", "running", "") and time.monotonic() < deadline:
                samples.append(bars(page))
                if not live_shot and samples[-1] >= 3 and status(page) == "running":
                    page.screenshot(path=str(ARTIFACTS / "dashboard-run-live.png"), full_page=True)
                    live_shot = True
                page.wait_for_timeout(600)
            assert live_shot, f"no mid-run screenshot (bar counts {samples})"
            assert len(samples) >= 2 and any(b > a for a, b in itertools.pairwise(samples)), samples

            page.wait_for_function("document.querySelector('#run-status').textContent === 'succeeded'", timeout=40_000)
            page.wait_for_selector("#report:not([hidden])")
            page.wait_for_selector("#bottlenecks > *")
            assert bars(page) == INSTANCES
            assert page.locator("#count-done").inner_text() == str(INSTANCES)
            assert page.locator("#count-failed").inner_text() == "0"
            assert int(page.locator("#count-events").inner_text()) >= 2 * INSTANCES
            assert page.locator("#stream-status").inner_text() == "ended"
            assert page.locator("#cancel-run").is_hidden()
            # Both charts drew data, with their axes.
            assert page.locator("#throughput-chart rect.tbar").count() >= 1
            assert page.locator("#throughput-chart text.axis-title").count() == 2
            assert page.locator("#latency-chart rect.hbar").count() >= 1
            assert page.locator("#latency-chart line.mark").count() >= 3  # p50, p95, max
            # The report: the builders' limit is the bottleneck; the critical path and the figures.
            found = page.locator("#bottlenecks [data-testid=bottleneck]")
            assert found.count() >= 1 and found.first.is_visible()
            assert "builder" in page.locator("#bottlenecks").inner_text()
            assert page.locator("#critical-path [data-testid=critical-step]").count() >= 3
            assert page.locator("#timeline rect.bar.crit").count() >= 3
            assert page.locator("[data-testid=report-makespan]").is_visible()
            page.mouse.move(0, 0)
            page.screenshot(path=str(ARTIFACTS / "dashboard-run-done.png"), full_page=True)

            # Back to the list: the run is there, finished, with its task counts.
            page.click("a.back")
            row = page.locator(f"#runs-body tr[data-run-id='{run_id}']")
            row.wait_for()
            assert row.get_attribute("data-status") == "succeeded"
            assert f"{INSTANCES}/{INSTANCES}" in row.inner_text()

            # A second run, cancelled from its page (the button asks for a second click).
            page.wait_for_function("document.querySelectorAll('#nr-workflow option').length > 0")
            page.click("#nr-submit")
            page.wait_for_url("**/dashboard/#/runs/*")
            second = page.url.rsplit("/", 1)[-1]
            assert second != run_id
            page.wait_for_selector("#timeline rect.bar", timeout=30_000)
            page.click("#cancel-run")
            assert page.locator("#cancel-run").inner_text() == "Click again to cancel"
            page.click("#cancel-run")
            page.wait_for_function("document.querySelector('#run-status').textContent === 'cancelled'")
            page.wait_for_selector("#report:not([hidden])")
            assert page.locator("#cancel-run").is_hidden()

            page.click("a.back")
            page.locator(f"#runs-body tr[data-run-id='{second}'][data-status='cancelled']").wait_for()
            assert page.locator("#runs-body tr[data-run-id]").count() == 2
            assert page.locator("[data-testid=strip-succeeded] b").inner_text() == "1"
            assert page.locator("[data-testid=strip-cancelled] b").inner_text() == "1"
            page.mouse.move(0, 0)
            page.screenshot(path=str(ARTIFACTS / "dashboard-runs.png"), full_page=True)
        finally:
            page.context.close()
        assert errors == []

    def test_without_a_token_the_sign_in_form_shows_and_a_wrong_token_is_refused(
            self, service: Service, browser: Any) -> None:
        """No token: the sign-in form; a wrong one: an error; then a 422 is shown beside the form."""
        errors: list[str] = []
        page = open_page(browser, errors)
        try:
            answer = page.goto(f"{service.base}/dashboard/")
            policy = answer.headers.get("content-security-policy", "")
            assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy  # enforced on this page
            page.wait_for_selector("#signin-form")
            assert page.locator("#page-runs").is_hidden() and page.locator("#page-run").is_hidden()
            assert page.locator("#signin-error").is_hidden()

            page.fill("#signin-token", "not-the-token")
            page.click("#signin-submit")
            page.wait_for_selector("#signin-error:not([hidden])")
            assert "not accepted" in page.locator("#signin-error").inner_text()
            assert page.locator("#page-runs").is_hidden()

            # A wrong token in the link: the service's 401 brings the form back, with the error.
            page.goto(f"{service.base}/dashboard/#token=wrong-token")
            page.wait_for_selector("#signin-error:not([hidden])")
            assert "401" in page.locator("#signin-error").inner_text()
            assert page.evaluate("sessionStorage.getItem('agentfleet.token')") is None
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-signin.png"), full_page=True)

            page.fill("#signin-token", TOKEN)
            page.click("#signin-submit")
            page.wait_for_selector("#page-runs:not([hidden])")
            page.wait_for_function("document.querySelectorAll('#nr-workflow option').length > 0")

            # The service's 422 names the field; the form shows it inline and marks the input.
            page.fill("#nr-scale", "0")
            page.click("#nr-submit")
            page.wait_for_selector("#new-run-errors:not([hidden])")
            assert "options.scale" in page.locator("#new-run-errors").inner_text()
            assert page.get_attribute("#nr-scale", "aria-invalid") == "true"
            assert page.url.endswith("#/runs")
        finally:
            page.context.close()
        # The browser logs the refused requests (401, 422) itself; the page raised nothing else.
        unexpected = [e for e in errors if "Failed to load resource" not in e]
        assert unexpected == []
        assert any("401" in e for e in errors)
