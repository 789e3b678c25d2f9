"""The HTML run report in a real browser: it draws, raises nothing and fetches nothing.

Opens the report of a real (virtual-time) run in headless Chromium through playwright and keeps a
full-page screenshot in build/test-artifacts/run-report.png for a human to look at. Skipped, with
the reason, when playwright or Chromium is missing.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from .analysis.test_html_report import real_run

ARTIFACTS = Path(__file__).resolve().parents[1] / "build" / "test-artifacts"


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.skip("chromium not installed: apt-get install chromium")
    return path


def visible(page: Any, selector: str) -> int:
    """How many elements matching ``selector`` have a non-empty bounding box."""
    return int(page.evaluate(
        """sel => Array.from(document.querySelectorAll(sel)).filter(e => {
               const b = e.getBoundingClientRect(); return b.width > 0 && b.height > 0; }).length""",
        selector))


def test_report_renders_in_chromium_without_errors_or_requests(tmp_path: Path) -> None:
    """No console or page errors, the charts draw, and the only request is the file itself."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright not installed: pip install playwright")
    executable = chromium()
    got = real_run(tmp_path)
    resources = [{"t": i * 0.5, "cpu_percent": 15.0 + (i * 37) % 60, "rss_mb": 90.0 + i, "threads": 6}
                 for i in range(int(got.report.makespan * 2) + 1)]
    history = [(f"r{i}", 1.7e9 + i * 60, {"makespan_s": 30.0 + i % 3, "p95_s": 2.0 + i % 2, "cost_usd": 0.01 * i})
               for i in range(1, 8)]
    report = tmp_path / "report.html"
    anomalies = [{"metric": "cpu_percent", "t": 3.0, "run_id": None, "value": 97.0, "score": 6.5,
                  "method": "robust_z", "message": "CPU far above its median"}]
    profile = {"tree": "run 100%\n  schedule 40%\n  <provider> 55%", "duration_s": got.report.makespan,
               "samples": 900, "runtime_share": 0.08,
               "top": [{"function": "schedule", "location": "_scheduler.py:1", "self_s": 0.1, "total_s": 0.4}]}
    report.write_text(got.html(resources=resources, history=history, anomalies=anomalies, profile=profile),
                      encoding="utf-8")

    errors: list[str] = []
    requests: list[str] = []
    with sync_api.sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=executable, headless=True, args=["--no-sandbox"])
        except sync_api.Error as exc:
            pytest.skip(f"chromium could not start: {exc}")
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.on("console", lambda m: errors.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
            page.on("request", lambda r: requests.append(r.url))
            page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                       else route.abort())
            page.goto(report.as_uri(), wait_until="load")

            bars = visible(page, "#timeline rect.bar")
            assert bars >= len([r for r in got.records if r.started_at is not None]) > 5
            assert visible(page, "svg.histogram rect.hbar") >= 2
            assert visible(page, "#concurrency path.line.running") == 1
            assert visible(page, "#resources path.line") >= 2
            assert visible(page, "#timeline path.retry") >= 1
            assert visible(page, "#resources g.anomaly") == 1
            page.click("details summary")  # the call tree opens
            assert page.locator("pre.tree").is_visible()

            # The styled tooltip shows a bar's details (its group holds the bar and its overlays).
            bar = page.locator("#timeline g.tip:has(rect.bar.crit)").last
            bar.evaluate("e => e.scrollIntoView({block: 'center'})")
            bar.hover(force=True, timeout=5000)
            tip = page.locator("#tooltip")
            assert tip.is_visible() and "critical path" in tip.inner_text()

            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.mouse.move(0, 0)
            page.screenshot(path=str(ARTIFACTS / "run-report.png"), full_page=True)
        finally:
            browser.close()
    assert errors == []
    assert requests == [report.as_uri()]
