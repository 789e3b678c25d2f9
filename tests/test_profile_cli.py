"""``agentfleet profile``: the profile summary (buckets, runtime share, top functions, call tree),
the command's output, what it stores beside the run, its offline HTML page and its exit codes.

The summary is checked on hand-made pyinstrument sessions (exact rules) and on a real profile of
a toy function; the command runs on the real ``agentfleet`` app through typer's CliRunner with a
tiny sim workflow (latencies of a few milliseconds) and ``--db`` in a temporary folder.
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import time
from pathlib import Path

import pytest
from pyinstrument import Profiler
from pyinstrument.session import Session
from typer.testing import CliRunner, Result

from agentfleet import _tokens
from agentfleet._profile_cli import BUCKETS, external_urls, offline_html, profile, profile_doc, register
from agentfleet.cli import app
from agentfleet.store import RunStore

register(app)  # until cli.py registers it; registering twice is a no-op

KEYS = {"tree", "duration_s", "cpu_s", "samples", "interval", "runtime_share", "top"}
TOP_KEYS = {"function", "location", "self_s", "total_s"}

SPEC = """
name: tiny-team
agents:
  lead: {provider: sim, options: {latency: {fixed: 0.01}}}
  dev: {provider: sim, max_concurrency: 4, options: {latency: {fixed: 0.02}}}
tasks:
  - {id: plan, agent: lead, prompt: plan the work}
  - {id: build, agent: dev, prompt: "build part {{ item }}", map: {over: [1, 2, 3, 4, 5, 6, 7, 8]}, depends_on: [plan]}
  - {id: ship, agent: lead, prompt: ship it, depends_on: [build]}
"""

FAILING = """
name: broken
agents:
  worker: {provider: sim, retries: 0, options: {latency: {fixed: 0.01}, error_rate: 1.0}}
tasks:
  - {id: only, agent: worker, prompt: hi}
"""


def invoke(*args: str) -> Result:
    """Run ``agentfleet profile ARGS`` and capture stdout and stderr separately."""
    return CliRunner().invoke(app, ["profile", *args], env={"COLUMNS": "200", "NO_COLOR": "1"},
                              catch_exceptions=False)


@pytest.fixture
def workflow(tmp_path: Path) -> Path:
    path = tmp_path / "team.yaml"
    path.write_text(SPEC)
    return path


def stored_profile(db: Path) -> dict[str, object]:
    with RunStore(str(db), create=False) as store:
        run_id = store.list_runs(1)[0].id
        text = store.get_extra(run_id, "profile")
    assert text is not None
    doc: dict[str, object] = json.loads(text)
    return doc


# -- the summary on hand-made sessions ------------------------------------------------------

PKG = "/app/src/agentfleet"
STDLIB = "/usr/lib/python3.11"
START = ["MainThread\x00<thread>\x001", f"profile\x00{PKG}/_profile_cli.py\x0010"]
LOOP = [f"run\x00{STDLIB}/asyncio/runners.py\x00160", f"_run_once\x00{STDLIB}/asyncio/base_events.py\x001900",
        f"_run\x00{STDLIB}/asyncio/events.py\x0078"]
SCHEDULER = f"_drive\x00{PKG}/runtime/_scheduler.py\x00443\x01cScheduler\x01l450"
SIM = f"complete\x00{PKG}/providers/_sim.py\x00130\x01cSimProvider"


def session(records: list[tuple[list[str], float]]) -> Session:
    """A pyinstrument session made of ``records`` (stacks below the profiler's start frame)."""
    return Session(frame_records=[([*START, *stack], seconds) for stack, seconds in records], start_time=0.0,
                   duration=sum(s for _, s in records), min_interval=0.001, max_interval=0.001,
                   sample_count=len(records), start_call_stack=[*START[:-1], START[-1] + "\x01l12"],
                   target_description="test", cpu_time=0.25, sys_path=["/app/src", STDLIB],
                   sys_prefixes=["/usr"])


class TestBuckets:
    def test_each_sample_goes_to_the_bucket_of_its_innermost_owned_frame(self) -> None:
        """Stdlib frames count for their nearest agentfleet or user caller; providers apart from the runtime."""
        doc = profile_doc(session([
            ([*LOOP, SCHEDULER, f"dumps\x00{STDLIB}/json/__init__.py\x00183"], 0.4),  # runtime (json via scheduler)
            ([*LOOP, SCHEDULER, SIM, f"send\x00{STDLIB}/site-packages/httpx/_client.py\x0010"], 0.2),  # provider
            ([*LOOP, SCHEDULER, SIM, "hook\x00/home/me/project/hooks.py\x005"], 0.1),  # user code called by sim
            ([*LOOP], 0.05),  # asyncio's own dispatch
            ([*LOOP[:2], f"select\x00{STDLIB}/selectors.py\x00468", "epoll.poll\x00<built-in>\x000"], 0.2),  # idle
            ([*LOOP, SCHEDULER, "_find_and_load\x00<frozen importlib._bootstrap>\x001165"], 0.05),  # import
        ]), package_dir=PKG)
        assert doc["breakdown"] == pytest.approx({"runtime": 0.4, "provider": 0.2, "user": 0.1, "loop": 0.05,
                                                  "idle": 0.2, "import": 0.05})
        assert set(doc["breakdown"]) == set(BUCKETS)
        assert doc["runtime_share"] == pytest.approx(0.4)
        assert doc["samples"] == 6 and doc["cpu_s"] == 0.25 and doc["interval"] == 0.001

    def test_frames_of_the_command_that_started_the_profiler_are_not_counted(self) -> None:
        """The profile command's own frame (agentfleet, above the start point) does not make loop time runtime."""
        doc = profile_doc(session([([*LOOP], 1.0)]), package_dir=PKG)
        assert doc["breakdown"]["loop"] == pytest.approx(1.0) and doc["runtime_share"] == 0.0

    def test_top_lists_the_innermost_agentfleet_function_with_self_and_total_time(self) -> None:
        """Self time is the innermost agentfleet frame's; total counts each sample once per function."""
        doc = profile_doc(session([
            ([*LOOP, SCHEDULER], 0.3),
            ([*LOOP, SCHEDULER, SIM], 0.2),
            ([*LOOP, SCHEDULER, SIM, f"loads\x00{STDLIB}/json/__init__.py\x00346"], 0.1),
        ]), package_dir=PKG, top=5)
        top = {row["function"]: row for row in doc["top"]}
        assert list(top) == ["SimProvider.complete", "Scheduler._drive"]
        assert top["Scheduler._drive"] == {"function": "Scheduler._drive",
                                           "location": "agentfleet/runtime/_scheduler.py:443",
                                           "self_s": pytest.approx(0.3), "total_s": pytest.approx(0.6),
                                           "samples": 1, "kind": "runtime"}
        assert top["SimProvider.complete"]["self_s"] == pytest.approx(0.3)
        assert top["SimProvider.complete"]["kind"] == "provider"
        assert len(profile_doc(session([([*LOOP, SCHEDULER], 0.1), ([*LOOP, SIM], 0.1)]), package_dir=PKG,
                               top=1)["top"]) == 1

    def test_an_empty_session_gives_zeros(self) -> None:
        """No samples: no share, no rows, a tree that says so."""
        doc = profile_doc(session([]), package_dir=PKG)
        assert doc["runtime_share"] == 0.0 and doc["top"] == [] and doc["samples"] == 0
        assert "No samples" in doc["tree"]


class TestRealProfile:
    def test_a_profiled_toy_separates_agentfleet_user_and_idle_time(self) -> None:
        """A real pyinstrument session: agentfleet calls are runtime, the toy's own loop is user, sleeping is idle."""

        async def toy() -> None:
            deadline = time.perf_counter() + 0.08
            while time.perf_counter() < deadline:
                _tokens.estimate_tokens("a fairly ordinary prompt " * 40)
            deadline = time.perf_counter() + 0.08
            total = 0
            while time.perf_counter() < deadline:
                total += sum(i * i for i in range(200))
            await asyncio.sleep(0.08)

        profiler = Profiler(interval=0.0005, async_mode="enabled")
        profiler.start()
        asyncio.run(toy())
        doc = profile_doc(profiler.stop())
        breakdown = doc["breakdown"]
        assert breakdown["runtime"] > 0.02 and breakdown["user"] > 0.02 and breakdown["idle"] > 0.02
        assert 0.0 < doc["runtime_share"] < 1.0
        assert sum(breakdown.values()) == pytest.approx(doc["duration_s"], rel=0.2)
        assert doc["top"][0]["function"] == "estimate_tokens"
        assert doc["top"][0]["location"].replace("\\", "/").startswith("agentfleet/_tokens.py:")
        assert "toy" in doc["tree"] and "\x1b[" not in doc["tree"] and "pyinstrument" not in doc["tree"]


class TestHtml:
    def test_the_web_font_fetch_is_removed(self) -> None:
        """pyinstrument's page loads Google Fonts; the offline page does not, and nothing else is fetched."""
        page = '<script>r.href="https://fonts.googleapis.com/css?family=Source+Code+Pro:400|X&display=swap";' \
               'a(e,"xmlns","http://www.w3.org/2000/svg")</script>'
        assert external_urls(page) == ["https://fonts.googleapis.com/css?family=Source+Code+Pro:400|X&display=swap"]
        assert external_urls(offline_html(page)) == []
        assert 'r.href="data:text/css,"' in offline_html(page)


# -- the command ----------------------------------------------------------------------------


class TestProfileCommand:
    def test_profiles_a_run_stores_it_and_prints_the_summary(self, workflow: Path, tmp_path: Path) -> None:
        """Exit 0; the run is stored with its profile beside it; the output names run, share, top and tree."""
        db = tmp_path / "runs.db"
        html = tmp_path / "profile.html"
        result = invoke(str(workflow), "--db", str(db), "--html", str(html), "--top", "5")
        assert result.exit_code == 0, result.stdout + result.stderr
        doc = stored_profile(db)
        assert KEYS <= set(doc)
        assert isinstance(doc["tree"], str) and "\x1b[" not in doc["tree"]
        assert isinstance(doc["runtime_share"], float) and 0.0 <= doc["runtime_share"] <= 1.0
        assert isinstance(doc["samples"], int) and doc["samples"] > 0
        assert isinstance(doc["duration_s"], float) and doc["duration_s"] > 0
        assert doc["interval"] == 0.001
        top = doc["top"]
        assert isinstance(top, list) and 0 < len(top) <= 5
        assert all(TOP_KEYS <= set(row) for row in top)
        assert all(row["location"].replace("\\", "/").startswith("agentfleet/") for row in top)
        with sqlite3.connect(db) as conn:
            (run_id, status), = conn.execute("SELECT id, status FROM runs").fetchall()
        assert status == "succeeded"
        out = result.stdout
        assert f"run {run_id}" in out and "runtime share" in out and "call tree" in out
        assert top[0]["function"] in out
        assert str(html) in out

        page = html.read_text(encoding="utf-8")
        assert "pyinstrument" in page and "<script" in page
        assert not re.search(r"""(?:src|href)\s*[=:]\s*["']?https?://""", page, re.IGNORECASE)
        assert external_urls(page) == []

    def test_json_prints_the_profile_with_run_id_and_status(self, workflow: Path, tmp_path: Path) -> None:
        """--json: one JSON document, the stored keys plus run id and status."""
        result = invoke(str(workflow), "--db", str(tmp_path / "runs.db"), "--json", "--interval", "0.002")
        assert result.exit_code == 0, result.stderr
        payload = json.loads(result.stdout)
        assert KEYS <= set(payload)
        assert payload["status"] == "succeeded" and payload["workflow"] == "tiny-team"
        assert payload["interval"] == 0.002
        with RunStore(str(tmp_path / "runs.db"), create=False) as store:
            assert store.get_extra(payload["run_id"], "profile") is not None

    def test_a_failed_run_exits_1_and_is_still_profiled(self, tmp_path: Path) -> None:
        """Like run: a task failed, exit 1, the failure on stderr; the profile is stored all the same."""
        (tmp_path / "broken.yaml").write_text(FAILING)
        result = invoke(str(tmp_path / "broken.yaml"), "--db", str(tmp_path / "runs.db"))
        assert result.exit_code == 1
        assert "failed:" in result.stderr and "Traceback" not in result.stdout + result.stderr
        assert KEYS <= set(stored_profile(tmp_path / "runs.db"))

    def test_a_missing_workflow_exits_2_with_one_line(self, tmp_path: Path) -> None:
        """A user error: one ``error:`` line naming the file, no traceback, nothing run."""
        result = invoke(str(tmp_path / "nope.yaml"), "--db", str(tmp_path / "runs.db"))
        assert result.exit_code == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:") and "nope.yaml" in lines[0]
        assert "Traceback" not in result.stdout + result.stderr

    def test_an_html_path_in_a_missing_folder_is_refused_before_running(self, workflow: Path,
                                                                         tmp_path: Path) -> None:
        """--html into a folder that does not exist: exit 2 at once, no run stored."""
        result = invoke(str(workflow), "--db", str(tmp_path / "runs.db"), "--html", str(tmp_path / "no" / "p.html"))
        assert result.exit_code == 2 and result.stderr.startswith("error:")
        assert not (tmp_path / "runs.db").exists()

    def test_registering_twice_adds_one_command(self) -> None:
        """register() is idempotent, so cli.py and tests can both call it."""
        register(app)
        assert sum(1 for info in app.registered_commands if info.callback is profile) == 1
