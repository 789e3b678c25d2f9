"""The ``agentfleet`` command line, run as a real subprocess: outputs, exit codes, errors, resume.

Every command runs in its own process with ``cwd`` in a temporary folder, ``--db`` there, and
an environment without API keys. Sim latencies are tiny (``latency: {fixed: 0.01}`` or
``--scale``) except in the kill / Ctrl-C tests, which need a run slow enough to interrupt.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import agentfleet

REPO_ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "agentfleet.cli"]
COMMANDS = ("run", "resume", "check", "runs", "show", "report", "trends", "profile", "bench", "loadtest", "tune",
            "demo", "init", "memory")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if "API_KEY" not in k and "TOKEN" not in k and not k.startswith("AGENTFLEET_")}
    env.update(
        COLUMNS="1000",  # rich wraps at the console width; keep one message on one line
        LINES="50",
        NO_COLOR="1",
        PYTHONIOENCODING="utf-8",
        PYTHONPATH=str(REPO_ROOT),  # python-provider agents live in tests/fixtures/cli
    )
    env.update(extra)
    return env


def cli(cwd: Path, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``agentfleet ARGS`` in ``cwd`` and capture its output."""
    return subprocess.run([*CLI, *args], cwd=cwd, env=_env(**env), capture_output=True, text=True,
                          encoding="utf-8", timeout=timeout, check=False)


def no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert "Traceback" not in result.stdout, result.stdout


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    return lines[0]


def sim_workflow(tasks: list[dict[str, Any]], *, name: str = "w", latency: float = 0.01,
                 settings: dict[str, Any] | None = None, vars_: dict[str, Any] | None = None) -> str:
    """A workflow of sim tasks on one agent ``a`` with a fixed latency, as YAML (JSON is YAML)."""
    spec: dict[str, Any] = {
        "name": name,
        "agents": {"a": {"provider": "sim", "options": {"latency": {"fixed": latency}}}},
        "tasks": tasks,
    }
    if settings:
        spec["settings"] = settings
    if vars_:
        spec["vars"] = vars_
    return json.dumps(spec, indent=2)


def independent(n: int) -> list[dict[str, Any]]:
    return [{"id": f"t{i:02d}", "agent": "a", "prompt": f"job {i}"} for i in range(n)]


CHAIN = [
    {"id": "first", "agent": "a", "prompt": "start"},
    {"id": "second", "agent": "a", "depends_on": ["first"], "inputs": ["first"],
     "prompt": "continue from {{ inputs.first }}"},
]


@contextlib.contextmanager
def read_only(db: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to the run database (it is WAL, so readers never block the writer)."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
    try:
        yield conn
    finally:
        conn.close()


def done_count(db: Path) -> int:
    try:
        with read_only(db) as conn:
            return int(conn.execute("SELECT count(*) FROM tasks WHERE state = 'done'").fetchone()[0])
    except sqlite3.Error:  # not created yet, or the schema is still being written
        return 0


def _default_sigint() -> None:
    """In the child: Ctrl-C as a terminal delivers it. A test suite started as a background job
    (``cmd &`` in a script) inherits SIGINT ignored, and Python would then leave it ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_and_wait(cwd: Path, spec: str, db: Path, *, done: int, deadline: float = 20.0,
                   **env: str) -> subprocess.Popen[str]:
    """Start ``agentfleet run spec --quiet`` and return once ``done`` tasks are stored as done."""
    proc = subprocess.Popen([*CLI, "run", spec, "--quiet", "--db", str(db)], cwd=cwd, env=_env(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                            preexec_fn=_default_sigint)
    end = time.monotonic() + deadline
    while done_count(db) < done:
        if proc.poll() is not None or time.monotonic() > end:
            proc.kill()
            out, err = proc.communicate()
            pytest.fail(f"run ended (rc={proc.returncode}) before {done} tasks were done:\n{out}\n{err}")
        time.sleep(0.01)
    return proc


def run_id_of(db: Path) -> str:
    with read_only(db) as conn:
        (run_id,) = conn.execute("SELECT id FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()
    return str(run_id)


def done_outputs(db: Path, run_id: str) -> dict[str, str]:
    """Stored outputs (raw JSON text) of the tasks in state done."""
    with read_only(db) as conn:
        rows = conn.execute(
            "SELECT r.task_id, r.output FROM results r JOIN tasks t ON t.run_id = r.run_id AND t.task_id = r.task_id"
            " WHERE r.run_id = ? AND t.state = 'done'", (run_id,)).fetchall()
    return dict(rows)


def attempts_of(db: Path, run_id: str) -> dict[str, list[tuple[int, int, str]]]:
    """(session, attempt, state) of every attempt, per task."""
    out: dict[str, list[tuple[int, int, str]]] = {}
    with read_only(db) as conn:
        for task_id, session, attempt, state in conn.execute(
                "SELECT task_id, session, attempt, state FROM attempts WHERE run_id = ? ORDER BY session, attempt",
                (run_id,)):
            out.setdefault(task_id, []).append((session, attempt, state))
    return out


# -- the demo and what reads a stored run ---------------------------------------------------


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, subprocess.CompletedProcess[str]]:
    """One ``agentfleet demo`` run shared by the tests that read it back: (folder, run id, result)."""
    cwd = tmp_path_factory.mktemp("demo")
    result = cli(cwd, "demo", "--quiet", "--scale", "0.02", "--db", "runs.db")
    assert result.returncode == 0, result.stderr
    return cwd, run_id_of(cwd / "runs.db"), result


class TestDemo:
    def test_demo_prints_summary_and_run_id(self, demo_run: tuple[Path, str, Any]) -> None:
        """`demo --quiet --scale 0.02` exits 0 and prints makespan, speedup, critical path and the run id."""
        _, run_id, result = demo_run
        no_traceback(result)
        out = result.stdout
        for needle in ("makespan", "speedup", "critical path", "parallel-sprint", "succeeded"):
            assert needle in out, out
        assert f"run {run_id} stored in" in out
        assert "sim" in out  # the demo says it is simulated

    def test_runs_lists_the_demo(self, demo_run: tuple[Path, str, Any]) -> None:
        """`runs` lists the run with its workflow and status; `runs --json` says the same."""
        cwd, run_id, _ = demo_run
        table = cli(cwd, "runs", "--db", "runs.db")
        assert table.returncode == 0, table.stderr
        assert run_id in table.stdout and "parallel-sprint" in table.stdout and "succeeded" in table.stdout
        listed = json.loads(cli(cwd, "runs", "--db", "runs.db", "--json").stdout)
        assert [(r["id"], r["workflow"], r["status"]) for r in listed] == [(run_id, "parallel-sprint", "succeeded")]
        assert listed[0]["counts"] == {"done": 10}

    def test_show_lists_every_task(self, demo_run: tuple[Path, str, Any]) -> None:
        """`show ID` prints the run's status and a row per task instance."""
        cwd, run_id, _ = demo_run
        result = cli(cwd, "show", run_id, "--db", "runs.db")
        assert result.returncode == 0, result.stderr
        assert f"run {run_id}: succeeded" in result.stdout
        for task in ("split", "implement[0]", "implement[3]", "review[2]", "release_note"):
            assert task in result.stdout

    def test_show_by_prefix_and_json(self, demo_run: tuple[Path, str, Any]) -> None:
        """`show PREFIX --json` resolves a unique id prefix and prints every task as JSON."""
        cwd, run_id, _ = demo_run
        result = cli(cwd, "show", run_id[:5], "--db", "runs.db", "--json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["id"] == run_id
        assert len(data["tasks"]) == 10
        assert {t["state"] for t in data["tasks"]} == {"done"}

    def test_show_one_task_prints_its_output(self, demo_run: tuple[Path, str, Any]) -> None:
        """`show ID --task split` prints split's full structured output (the four stories)."""
        cwd, run_id, _ = demo_run
        result = cli(cwd, "show", run_id, "--task", "split", "--db", "runs.db")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert len(data["stories"]) == 4

    def test_report_prints_summary(self, demo_run: tuple[Path, str, Any]) -> None:
        """`report ID` prints the summary again."""
        cwd, run_id, _ = demo_run
        result = cli(cwd, "report", run_id, "--db", "runs.db")
        assert result.returncode == 0, result.stderr
        for needle in ("makespan", "speedup", "critical path", run_id):
            assert needle in result.stdout

    def test_report_json(self, demo_run: tuple[Path, str, Any]) -> None:
        """`report ID --json` prints valid JSON with the makespan and the critical path."""
        cwd, run_id, _ = demo_run
        result = cli(cwd, "report", run_id, "--db", "runs.db", "--json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["run_id"] == run_id and data["status"] == "succeeded"
        assert data["report"]["makespan"] > 0
        assert data["report"]["speedup"] > 1
        path = [step["task_id"] for step in data["report"]["critical_path"]]
        assert path[0] == "split" and path[-1] == "release_note"

    def test_report_latest_timeline(self, demo_run: tuple[Path, str, Any]) -> None:
        """`report latest --timeline` adds a text Gantt row per task."""
        cwd, run_id, _ = demo_run
        result = cli(cwd, "report", "latest", "--timeline", "--db", "runs.db")
        assert result.returncode == 0, result.stderr
        assert run_id in result.stdout
        rows = [line for line in result.stdout.splitlines() if "│" in line and "█" in line]
        assert len(rows) == 10
        assert any(line.startswith("release_note") for line in rows)


    def test_show_lists_tasks_in_workflow_order(self, demo_run: tuple[Path, str, Any]) -> None:
        """`show ID --json` lists tasks in workflow order: split first, release_note last."""
        cwd, run_id, _ = demo_run
        data = json.loads(cli(cwd, "show", run_id, "--db", "runs.db", "--json").stdout)
        ids = [t["id"] for t in data["tasks"]]
        assert ids[0] == "split" and ids[-1] == "release_note", ids


# -- run ------------------------------------------------------------------------------------


class TestRun:
    def test_json_output(self, tmp_path: Path) -> None:
        """`run FILE --json` prints only JSON: status, counts, report and every task with its output."""
        (tmp_path / "w.yaml").write_text(sim_workflow(CHAIN), encoding="utf-8")
        result = cli(tmp_path, "run", "w.yaml", "--json", "--db", "runs.db")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["status"] == "succeeded" and data["failure"] is None
        assert data["counts"] == {"done": 2}
        assert [(t["id"], t["state"]) for t in data["tasks"]] == [("first", "done"), ("second", "done")]
        assert all(t["output"].startswith("[sim]") for t in data["tasks"])
        assert data["report"]["makespan"] > 0
        assert data["run_id"] == run_id_of(tmp_path / "runs.db")

    def test_default_output_is_summary(self, tmp_path: Path) -> None:
        """Without --json, `run` prints the summary and where the run is stored."""
        (tmp_path / "w.yaml").write_text(sim_workflow(CHAIN, name="chain"), encoding="utf-8")
        result = cli(tmp_path, "run", "w.yaml", "--db", "runs.db")
        assert result.returncode == 0, result.stderr
        no_traceback(result)
        assert "chain — succeeded" in result.stdout
        assert "makespan" in result.stdout
        assert f"run {run_id_of(tmp_path / 'runs.db')} stored in runs.db" in result.stdout

    def test_stream_prints_a_line_per_finished_task(self, tmp_path: Path) -> None:
        """`--stream` prints one line per task as it finishes, in completion order."""
        (tmp_path / "w.yaml").write_text(sim_workflow(CHAIN + independent(3)), encoding="utf-8")
        result = cli(tmp_path, "run", "w.yaml", "--stream", "--quiet", "--db", "runs.db")
        assert result.returncode == 0, result.stderr
        lines = [line for line in result.stdout.splitlines() if line.startswith("✓")]
        assert len(lines) == 5, result.stdout
        finished = [line.split()[2] for line in lines]
        assert sorted(finished) == ["first", "second", "t00", "t01", "t02"]
        assert finished.index("first") < finished.index("second")

    def test_set_overrides_a_var(self, tmp_path: Path) -> None:
        """`--set who=Zanzibar` replaces vars.who in the prompt a python-provider agent receives."""
        spec = {
            "name": "echo",
            "vars": {"who": "world"},
            "agents": {"e": {"provider": "python", "options": {"function": "tests.fixtures.cli.agents:echo"}}},
            "tasks": [{"id": "greet", "agent": "e", "prompt": "hello {{ vars.who }}"}],
        }
        (tmp_path / "w.yaml").write_text(json.dumps(spec), encoding="utf-8")
        default = json.loads(cli(tmp_path, "run", "w.yaml", "--json", "--db", "runs.db").stdout)
        assert default["tasks"][0]["output"] == "echo: hello world"
        result = cli(tmp_path, "run", "w.yaml", "--json", "--db", "runs.db", "--set", "who=Zanzibar")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["tasks"][0]["output"] == "echo: hello Zanzibar"
        shown = cli(tmp_path, "show", "latest", "--task", "greet", "--db", "runs.db")
        assert shown.stdout.strip() == "echo: hello Zanzibar"

    def test_failed_task_exits_1_and_names_it(self, tmp_path: Path) -> None:
        """A task that fails every attempt makes the run exit 1, and stderr names the task and the cause."""
        spec = {
            "agents": {"ok": {"options": {"latency": {"fixed": 0.01}}},
                       "bad": {"options": {"latency": {"fixed": 0.01}, "fail_attempts": 5}}},
            "tasks": [{"id": "fine", "agent": "ok"}, {"id": "doomed", "agent": "bad"}],
        }
        (tmp_path / "w.yaml").write_text(json.dumps(spec), encoding="utf-8")
        result = cli(tmp_path, "run", "w.yaml", "--quiet", "--db", "runs.db")
        assert result.returncode == 1
        no_traceback(result)
        assert "task 'doomed' failed" in result.stderr
        assert "simulated failure" in result.stderr
        data = json.loads(cli(tmp_path, "run", "w.yaml", "--json", "--db", "runs.db").stdout)
        assert data["status"] == "failed" and "doomed" in data["failure"]
        assert {t["id"]: t["state"] for t in data["tasks"]} == {"fine": "done", "doomed": "failed"}

    def test_unreachable_provider(self, tmp_path: Path) -> None:
        """An OpenAI-compatible agent on a closed port fails the run (exit 1) naming the URL, no traceback."""
        spec = {
            "agents": {"remote": {"provider": "openai", "model": "gpt-test",
                                  "options": {"base_url": "http://127.0.0.1:1/v1"}}},
            "tasks": [{"id": "ask", "agent": "remote", "prompt": "hi"}],
        }
        (tmp_path / "w.yaml").write_text(json.dumps(spec), encoding="utf-8")
        result = cli(tmp_path, "run", "w.yaml", "--quiet", "--db", "runs.db", OPENAI_API_KEY="sk-test-not-a-key")
        assert result.returncode == 1
        no_traceback(result)
        assert "http://127.0.0.1:1" in result.stderr
        assert "task 'ask' failed" in result.stderr


# -- check ----------------------------------------------------------------------------------


FALSE_PARALLEL = {
    "name": "fp",
    "agents": {"a": {"expected_latency": 1}},
    "tasks": [
        {"id": "a1", "agent": "a", "phase": "build"},
        {"id": "a2", "agent": "a", "phase": "build", "depends_on": ["a1"]},
        {"id": "b", "agent": "a", "phase": "build"},
    ],
}


@pytest.fixture(scope="module")
def checked(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    """`agentfleet check fp.yaml` on the false-parallelism spec."""
    cwd = tmp_path_factory.mktemp("check")
    (cwd / "fp.yaml").write_text(json.dumps(FALSE_PARALLEL), encoding="utf-8")
    return cli(cwd, "check", "fp.yaml")


class TestCheck:
    def test_analysis(self, checked: subprocess.CompletedProcess[str]) -> None:
        """`check` prints the critical path, width, depth and predicted speedup of a valid spec."""
        result = checked
        assert result.returncode == 0, result.stderr
        no_traceback(result)
        out = result.stdout
        assert "fp.yaml: fp is valid" in out
        assert "critical path" in out and "a1 1.0s → a2 1.0s" in out
        assert "width" in out and "2 tasks can run at once" in out
        assert "depth" in out and "2 steps on the longest chain" in out
        assert "speedup 1.50x" in out

    def test_false_parallelism_warning(self, checked: subprocess.CompletedProcess[str]) -> None:
        """Two chained tasks in the same phase give a false-parallelism warning naming the chain."""
        result = checked
        assert "false parallelism" in result.stdout
        assert "phase 'build' groups a1 and a2" in result.stdout
        assert "a1 → a2" in result.stdout

    def test_json(self, tmp_path: Path) -> None:
        """`check --json` prints valid JSON with the same analysis."""
        (tmp_path / "fp.yaml").write_text(json.dumps(FALSE_PARALLEL), encoding="utf-8")
        result = cli(tmp_path, "check", "fp.yaml", "--json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["valid"] is True and data["workflow"] == "fp"
        assert (data["width"], data["depth"], data["steps"]) == (2, 2, 3)
        assert [c["task"] for c in data["critical_path"]] == ["a1", "a2"]
        assert data["critical_path_seconds"] == pytest.approx(2.0)
        assert data["predicted_speedup"] == pytest.approx(1.5)
        assert data["false_parallelism"] == [{"phase": "build", "upstream": "a1", "downstream": "a2",
                                              "chain": ["a1", "a2"]}]

    def test_examples_are_valid(self, tmp_path: Path) -> None:
        """The shipped example workflows pass `check`."""
        examples = Path(agentfleet.__file__).parent / "examples"
        for example in sorted(examples.glob("*.yaml")):
            result = cli(tmp_path, "check", str(example), "--json")
            assert result.returncode == 0, (example, result.stderr)
            assert json.loads(result.stdout)["valid"] is True


# -- init -----------------------------------------------------------------------------------


class TestInit:
    def test_default_scaffold_is_valid(self, tmp_path: Path) -> None:
        """`init` writes workflow.yaml, which `check` accepts."""
        result = cli(tmp_path, "init")
        assert result.returncode == 0, result.stderr
        assert "wrote workflow.yaml" in result.stdout
        assert (tmp_path / "workflow.yaml").is_file()
        checked = cli(tmp_path, "check", "workflow.yaml")
        assert checked.returncode == 0, checked.stderr
        assert "is valid" in checked.stdout

    def test_template_to_named_file(self, tmp_path: Path) -> None:
        """`init developer -o x.yaml` writes x.yaml from the developer persona, and it is valid."""
        result = cli(tmp_path, "init", "developer", "-o", "x.yaml")
        assert result.returncode == 0, result.stderr
        assert not (tmp_path / "workflow.yaml").exists()
        assert "extends: developer" in (tmp_path / "x.yaml").read_text(encoding="utf-8")
        assert cli(tmp_path, "check", "x.yaml").returncode == 0

    def test_list(self, tmp_path: Path) -> None:
        """`init --list` lists every persona template and writes nothing."""
        result = cli(tmp_path, "init", "--list")
        assert result.returncode == 0, result.stderr
        for name in ("architect", "developer", "performance_specialist", "product_owner", "qa", "researcher"):
            assert name in result.stdout
        assert list(tmp_path.iterdir()) == []

    def test_unknown_template(self, tmp_path: Path) -> None:
        """`init nope` exits 2 with one line naming the known templates, and writes nothing."""
        result = cli(tmp_path, "init", "nope")
        assert result.returncode == 2
        no_traceback(result)
        line = one_line(result.stderr)
        assert "'nope'" in line and "developer" in line
        assert not (tmp_path / "workflow.yaml").exists()

    def test_existing_file_needs_force(self, tmp_path: Path) -> None:
        """An existing file is not overwritten without --force (exit 2), and is with it."""
        target = tmp_path / "workflow.yaml"
        target.write_text("mine\n", encoding="utf-8")
        result = cli(tmp_path, "init")
        assert result.returncode == 2
        no_traceback(result)
        line = one_line(result.stderr)
        assert "workflow.yaml" in line and "--force" in line
        assert target.read_text(encoding="utf-8") == "mine\n"
        assert cli(tmp_path, "init", "--force").returncode == 0
        assert target.read_text(encoding="utf-8") != "mine\n"


    def test_output_in_missing_folder_is_a_user_error(self, tmp_path: Path) -> None:
        """`init -o nodir/x.yaml` exits 2 with one line naming the file, not an internal error."""
        result = cli(tmp_path, "init", "-o", "nodir/x.yaml")
        no_traceback(result)
        line = one_line(result.stderr)
        assert "nodir/x.yaml" in line
        assert "internal error" not in line
        assert result.returncode == 2


# -- bad input ------------------------------------------------------------------------------

# name -> (file content, text the single stderr line must contain besides the file name)
BAD_SPECS: dict[str, tuple[bytes, tuple[str, ...]]] = {
    "malformed_yaml": (b"agents: {a: {}}\ntasks:\n  - id: x\n    agent: a\n   prompt: [\n",
                       (":5:", "YAML syntax error")),
    "wrong_type": (b"agents:\n  a: {}\nsettings:\n  max_parallel: lots\ntasks:\n  - id: x\n    agent: a\n",
                   (":4:", "settings.max_parallel", "integer")),
    "unknown_agent": (b"agents:\n  a: {}\ntasks:\n  - id: x\n    agent: b\n",
                      (":5:", "unknown agent 'b'")),
    "missing_dependency": (b"agents:\n  a: {}\ntasks:\n  - id: x\n    agent: a\n    depends_on: [ghost]\n",
                           (":6:", "unknown task 'ghost'")),
    "duplicate_id": (b"agents:\n  a: {}\ntasks:\n  - id: x\n    agent: a\n  - id: x\n    agent: a\n",
                     (":6:", "duplicate task id 'x'")),
    "cycle": (b"agents:\n  a: {}\ntasks:\n"
              b"  - id: x\n    agent: a\n    depends_on: [z]\n"
              b"  - id: y\n    agent: a\n    depends_on: [x]\n"
              b"  - id: z\n    agent: a\n    depends_on: [y]\n",
              (":6:", "cycle", "x -> z -> y -> x")),
    "input_nobody_produces": (b"agents:\n  a: {}\ntasks:\n  - id: x\n    agent: a\n    inputs: [nobody]\n",
                              (":6:", "'nobody' is not produced by any task")),
    "empty_file": (b"", ("empty",)),
    "only_comments": (b"# nothing here\n\n", ("empty",)),
    "binary_file": (b"\x00\x01\x02\x89PNG\r\n\x1a\n" + bytes(range(256)), ("binary",)),
    "not_utf8": (b"name: caf\xe9\nagents: {}\n", (":1:", "not UTF-8")),
    "list_not_mapping": (b"- agents\n- tasks\n", ("must be a mapping", "not a list")),
    "unknown_field": (b"agents:\n  a: {}\ntasks:\n  - id: x\n    agent: a\n    dependson: [y]\n",
                      (":6:", "dependson")),
}

# `run` loads the file through the same loader as `check`; a subset proves it reports the same way.
RUN_CASES = ("binary_file", "cycle", "malformed_yaml", "not_utf8")


BAD_CASES = [(case, "check") for case in sorted(BAD_SPECS)] + [(case, "run") for case in RUN_CASES]


@pytest.fixture(scope="module")
def bad_spec_results(tmp_path_factory: pytest.TempPathFactory
                     ) -> dict[tuple[str, str], tuple[Path, subprocess.CompletedProcess[str]]]:
    """Every bad-spec command, run concurrently (each in its own folder) to keep the file fast."""
    jobs: dict[tuple[str, str], Path] = {}
    for case, command in BAD_CASES:
        cwd = tmp_path_factory.mktemp(f"{case}-{command}")
        (cwd / f"{case}.yaml").write_bytes(BAD_SPECS[case][0])
        jobs[(case, command)] = cwd

    def one(key: tuple[str, str]) -> subprocess.CompletedProcess[str]:
        case, command = key
        extra = ["--quiet", "--db", "runs.db"] if command == "run" else []
        return cli(jobs[key], command, f"{case}.yaml", *extra)

    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = dict(zip(jobs, pool.map(one, jobs), strict=True))
    return {key: (jobs[key], results[key]) for key in jobs}


class TestBadInput:
    @pytest.mark.parametrize(("case", "command"), BAD_CASES)
    def test_bad_spec(self, bad_spec_results: dict[tuple[str, str], tuple[Path, Any]], case: str,
                      command: str) -> None:
        """A bad workflow file exits 2 with one stderr line naming the file and the problem, no traceback."""
        _, needles = BAD_SPECS[case]
        name = f"{case}.yaml"
        cwd, result = bad_spec_results[(case, command)]
        assert result.returncode == 2, (result.stdout, result.stderr)
        no_traceback(result)
        line = one_line(result.stderr)
        assert line.startswith(f"error: {name}"), line
        for needle in needles:
            assert needle in line, line
        assert result.stdout == ""
        if command == "run":  # nothing was recorded for a spec that never ran
            assert not (cwd / "runs.db").exists() or run_count(cwd / "runs.db") == 0

    @pytest.mark.parametrize("command", ["check", "run"])
    def test_missing_file(self, tmp_path: Path, command: str) -> None:
        """A workflow file that does not exist exits 2 with one line naming it."""
        result = cli(tmp_path, command, "nothere.yaml")
        assert result.returncode == 2
        no_traceback(result)
        assert one_line(result.stderr) == "error: nothere.yaml: no such file"

    def test_directory_instead_of_file(self, tmp_path: Path) -> None:
        """A directory given as the workflow exits 2 with one line naming it."""
        (tmp_path / "flows").mkdir()
        result = cli(tmp_path, "check", "flows")
        assert result.returncode == 2
        no_traceback(result)
        assert "flows" in one_line(result.stderr)

    @pytest.mark.parametrize(("command", "value"), [("run", "novalue"), ("check", "=x")])
    def test_set_without_key_value(self, tmp_path: Path, command: str, value: str) -> None:
        """`--set` without 'key=' exits 2 with one line quoting what was given; nothing runs."""
        (tmp_path / "w.yaml").write_text(sim_workflow(CHAIN), encoding="utf-8")
        extra = ["--db", "runs.db"] if command == "run" else []
        result = cli(tmp_path, command, "w.yaml", "--set", value, *extra)
        assert result.returncode == 2
        no_traceback(result)
        line = one_line(result.stderr)
        assert "--set expects key=value" in line and repr(value) in line
        assert not (tmp_path / "runs.db").exists()

    @pytest.mark.parametrize("command", ["show", "report", "resume"])
    def test_unknown_run_id(self, demo_run: tuple[Path, str, Any], command: str) -> None:
        """show/report/resume of an unknown run id exit 2 with one line naming the id and the database."""
        cwd, _, _ = demo_run
        result = cli(cwd, command, "zzzz", "--db", "runs.db")
        assert result.returncode == 2
        no_traceback(result)
        line = one_line(result.stderr)
        assert "'zzzz'" in line and "runs.db" in line

    def test_latest_in_empty_database(self, tmp_path: Path) -> None:
        """`report latest` on a database without runs exits 2 saying so."""
        result = cli(tmp_path, "report", "latest", "--db", "runs.db")
        assert result.returncode == 2
        no_traceback(result)
        assert "no runs recorded yet" in one_line(result.stderr)

    def test_show_unknown_task(self, demo_run: tuple[Path, str, Any]) -> None:
        """`show ID --task nope` exits 2 naming the task."""
        cwd, run_id, _ = demo_run
        result = cli(cwd, "show", run_id, "--task", "nope", "--db", "runs.db")
        assert result.returncode == 2
        no_traceback(result)
        assert "no task 'nope'" in one_line(result.stderr)

    @pytest.mark.parametrize(("option", "value"), [("--policy", "sometimes"), ("--admission", "random")])
    def test_bad_choice(self, tmp_path: Path, option: str, value: str) -> None:
        """A bad --policy or --admission value exits 2 with one line listing the allowed values; nothing runs."""
        (tmp_path / "w.yaml").write_text(sim_workflow(CHAIN), encoding="utf-8")
        result = cli(tmp_path, "run", "w.yaml", option, value, "--db", "runs.db")
        assert result.returncode == 2
        no_traceback(result)
        line = one_line(result.stderr)
        assert option in line and repr(value) in line
        assert ("fail_fast" if option == "--policy" else "critical_path") in line
        assert not (tmp_path / "runs.db").exists() or run_count(tmp_path / "runs.db") == 0

    def test_corrupt_database(self, tmp_path: Path) -> None:
        """A --db file that is not a database gives one line naming it, no traceback."""
        (tmp_path / "runs.db").write_bytes(b"not a database " * 100)
        result = cli(tmp_path, "runs", "--db", "runs.db")
        assert result.returncode != 0
        no_traceback(result)
        assert "runs.db" in one_line(result.stderr)

    def test_debug_shows_traceback(self, tmp_path: Path) -> None:
        """With --debug, a spec error shows its traceback (and still fails)."""
        content, _ = BAD_SPECS["cycle"]
        (tmp_path / "cycle.yaml").write_bytes(content)
        result = cli(tmp_path, "--debug", "check", "cycle.yaml")
        assert result.returncode != 0
        assert "Traceback" in result.stderr
        assert "PlanError" in result.stderr and "x -> z -> y -> x" in result.stderr


def run_count(db: Path) -> int:
    with read_only(db) as conn:
        return int(conn.execute("SELECT count(*) FROM runs").fetchone()[0])


# -- resume after kill -9, Ctrl-C and SIGTERM -------------------------------------------------


SLOW = sim_workflow(independent(12), name="slow", latency=0.25, settings={"max_parallel": 3})
# Long enough (~8 s) that the run cannot finish while a loaded machine runs `resume` beside it.
VERY_SLOW = sim_workflow(independent(12), name="slow", latency=2.0, settings={"max_parallel": 3})


class TestResume:
    def test_resume_of_a_live_run_is_refused(self, tmp_path: Path) -> None:
        """Resuming a run whose process is alive would run its tasks twice: refused (exit 2) until it dies."""
        (tmp_path / "slow.yaml").write_text(VERY_SLOW, encoding="utf-8")
        db = tmp_path / "runs.db"
        proc = start_and_wait(tmp_path, "slow.yaml", db, done=1)
        try:
            run_id = run_id_of(db)
            result = cli(tmp_path, "resume", run_id, "--db", "runs.db")
            assert result.returncode == 2
            assert f"still running in process {proc.pid}" in one_line(result.stderr)
        finally:
            os.kill(proc.pid, signal.SIGKILL)
            proc.communicate()
        listed = json.loads(cli(tmp_path, "runs", "--json", "--db", "runs.db").stdout)
        assert listed[0]["status"] == "stopped"

    def test_resume_after_kill_9(self, tmp_path: Path) -> None:
        """After kill -9, `resume` finishes the run without redoing or changing finished tasks; again is a no-op."""
        (tmp_path / "slow.yaml").write_text(SLOW, encoding="utf-8")
        db = tmp_path / "runs.db"
        proc = start_and_wait(tmp_path, "slow.yaml", db, done=3)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        assert proc.returncode == -signal.SIGKILL
        run_id = run_id_of(db)
        before = done_outputs(db, run_id)
        assert 3 <= len(before) < 12

        result = cli(tmp_path, "resume", run_id, "--db", "runs.db", "--json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["run_id"] == run_id and data["status"] == "succeeded"
        assert data["counts"] == {"done": 12}
        after = done_outputs(db, run_id)
        assert len(after) == 12
        assert {k: after[k] for k in before} == before  # byte-identical stored outputs
        attempts = attempts_of(db, run_id)
        for task_id in before:
            assert attempts[task_id] == [(1, 1, "done")], (task_id, attempts[task_id])
        for task_id in set(after) - set(before):
            assert attempts[task_id][-1][0] == 2 and attempts[task_id][-1][2] == "done"
        listed = json.loads(cli(tmp_path, "runs", "--json", "--db", "runs.db").stdout)
        assert (listed[0]["status"], listed[0]["sessions"]) == ("succeeded", 2)

        again = cli(tmp_path, "resume", run_id, "--db", "runs.db")  # a succeeded run: nothing to do
        assert again.returncode == 0
        assert "already succeeded" in one_line(again.stderr)
        assert attempts_of(db, run_id) == attempts

    def test_resume_after_kill_9_does_not_rerun_python_tasks(self, tmp_path: Path) -> None:
        """A python-provider chain killed mid-run: on resume, every finished task ran exactly once."""
        tasks = [{"id": "s0", "agent": "p", "prompt": "start"}]
        tasks += [{"id": f"s{i}", "agent": "p", "depends_on": [f"s{i - 1}"], "inputs": [f"s{i - 1}"],
                   "prompt": f"step {i} after {{{{ inputs.s{i - 1} }}}}"} for i in range(1, 6)]
        spec = {"name": "chain",
                "agents": {"p": {"provider": "python", "options": {"function": "tests.fixtures.cli.agents:counted"}}},
                "tasks": tasks}
        (tmp_path / "chain.yaml").write_text(json.dumps(spec), encoding="utf-8")
        log = tmp_path / "executions.log"
        env = {"AGENTFLEET_TEST_LOG": str(log), "AGENTFLEET_TEST_SLEEP": "0.15"}
        db = tmp_path / "runs.db"
        proc = start_and_wait(tmp_path, "chain.yaml", db, done=2, **env)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate()
        run_id = run_id_of(db)
        before = done_outputs(db, run_id)
        assert 2 <= len(before) < 6

        result = cli(tmp_path, "resume", "latest", "--db", "runs.db", "--json", **env)
        assert result.returncode == 0, result.stderr
        outputs = {t["id"]: t["output"] for t in json.loads(result.stdout)["tasks"]}
        assert outputs == {f"s{i}": f"result of s{i}" for i in range(6)}
        executions = log.read_text(encoding="utf-8").split()
        for task_id in before:
            assert executions.count(task_id) == 1, executions
        assert sorted(set(executions)) == [f"s{i}" for i in range(6)]

    @pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
    def test_interrupt_then_resume(self, tmp_path: Path, sig: signal.Signals) -> None:
        """Ctrl-C (or SIGTERM) exits 130 naming `agentfleet resume ID`; resume then completes the run."""
        (tmp_path / "slow.yaml").write_text(SLOW, encoding="utf-8")
        db = tmp_path / "runs.db"
        proc = start_and_wait(tmp_path, "slow.yaml", db, done=1)
        os.kill(proc.pid, sig)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, (out, err)
        assert "Traceback" not in err and "Traceback" not in out
        run_id = run_id_of(db)
        assert f"agentfleet resume {run_id}" in err
        listed = json.loads(cli(tmp_path, "runs", "--json", "--db", "runs.db").stdout)
        assert (listed[0]["id"], listed[0]["status"]) == (run_id, "interrupted")
        before = done_outputs(db, run_id)
        assert 1 <= len(before) < 12

        result = cli(tmp_path, "resume", run_id, "--db", "runs.db", "--json")
        assert result.returncode == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["status"] == "succeeded" and data["counts"] == {"done": 12}
        after = done_outputs(db, run_id)
        assert {k: after[k] for k in before} == before
        attempts = attempts_of(db, run_id)
        for task_id in before:
            assert attempts[task_id] == [(1, 1, "done")], (task_id, attempts[task_id])


    def test_interrupt_leaves_no_task_running(self, tmp_path: Path) -> None:
        """After Ctrl-C, no task is stored as running and asyncio reports no abandoned tasks."""
        (tmp_path / "slow.yaml").write_text(SLOW, encoding="utf-8")
        db = tmp_path / "runs.db"
        proc = start_and_wait(tmp_path, "slow.yaml", db, done=1)
        os.kill(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == 130
        with read_only(db) as conn:
            states = dict(conn.execute("SELECT task_id, state FROM tasks"))
        listed = json.loads(cli(tmp_path, "runs", "--json", "--db", "runs.db").stdout)
        assert "Task was destroyed but it is pending" not in err, err
        assert "running" not in states.values(), states
        assert "running" not in listed[0]["counts"], listed[0]["counts"]


# -- top level ------------------------------------------------------------------------------


class TestTopLevel:
    def test_version(self, tmp_path: Path) -> None:
        """`agentfleet --version` prints the package version."""
        result = cli(tmp_path, "--version")
        assert result.returncode == 0
        assert result.stdout.strip() == f"agentfleet {agentfleet.__version__}"

    def test_console_script(self, tmp_path: Path) -> None:
        """The installed `agentfleet` script is the same program."""
        script = shutil.which("agentfleet")
        if script is None:
            pytest.skip("the agentfleet console script is not on PATH")
        result = subprocess.run([script, "--version"], cwd=tmp_path, env=_env(), capture_output=True, text=True,
                                encoding="utf-8", timeout=60, check=False)
        assert result.returncode == 0
        assert result.stdout.strip() == f"agentfleet {agentfleet.__version__}"

    def test_help_lists_commands(self, tmp_path: Path) -> None:
        """`agentfleet --help` lists every command."""
        result = cli(tmp_path, "--help")
        assert result.returncode == 0
        for command in COMMANDS:
            assert f" {command} " in result.stdout, command

    def test_no_arguments_shows_help(self, tmp_path: Path) -> None:
        """`agentfleet` alone prints the usage and the commands, without a traceback."""
        result = cli(tmp_path)
        no_traceback(result)
        assert "Usage" in result.stdout + result.stderr
        assert "resume" in result.stdout + result.stderr

    def test_unknown_command(self, tmp_path: Path) -> None:
        """An unknown command exits 2 with a usage error, no traceback."""
        result = cli(tmp_path, "frobnicate")
        assert result.returncode == 2
        no_traceback(result)
        assert "frobnicate" in result.stderr


class TestReadOnlyCommands:
    def test_listing_does_not_create_a_database(self, tmp_path: Path) -> None:
        """runs/show/report on a path with no database create nothing."""
        result = cli(tmp_path, "runs", "--db", "nowhere/runs.db")
        assert result.returncode == 0 and "no runs" in result.stdout
        assert cli(tmp_path, "show", "latest", "--db", "nowhere/runs.db").returncode == 2
        assert not (tmp_path / "nowhere").exists()

    def test_unusable_db_path_is_a_user_error(self, tmp_path: Path) -> None:
        """A --db that is a directory exits 2 with one line naming it."""
        (tmp_path / "adir").mkdir()
        (tmp_path / "w.yaml").write_text(sim_workflow(independent(1)))
        result = cli(tmp_path, "run", "w.yaml", "--db", "adir", "--quiet")
        assert result.returncode == 2
        assert "adir" in one_line(result.stderr)
        no_traceback(result)


class TestCheckPreflight:
    def test_check_rejects_what_run_would(self, tmp_path: Path) -> None:
        """check fails (exit 2, file:line) on an unknown provider or a misspelt provider option."""
        (tmp_path / "p.yaml").write_text("name: p\nagents:\n  a: {provider: simm}\ntasks:\n"
                                         "  - {id: t, agent: a, prompt: x}\n")
        result = cli(tmp_path, "check", "p.yaml")
        assert result.returncode == 2 and "p.yaml:3:" in one_line(result.stderr)
        (tmp_path / "o.yaml").write_text("name: o\nagents:\n  a: {provider: sim, options: {latncy: 1}}\n"
                                         "tasks:\n  - {id: t, agent: a, prompt: x}\n")
        result = cli(tmp_path, "check", "o.yaml")
        assert result.returncode == 2 and "did you mean 'latency'" in one_line(result.stderr)

    def test_missing_api_key_is_a_warning_in_check(self, tmp_path: Path) -> None:
        """check only warns about an unset API key (it may be set where the workflow runs)."""
        (tmp_path / "k.yaml").write_text("name: k\nagents:\n  a: {provider: openai, model: gpt-4o-mini}\n"
                                         "tasks:\n  - {id: t, agent: a, prompt: x}\n")
        result = cli(tmp_path, "check", "k.yaml")
        assert result.returncode == 0
        assert "warning:" in result.stderr and "OPENAI_API_KEY" in result.stderr
