"""``agentfleet bench``: a suite sampled in worker processes, stored, compared with a baseline; A/B."""

from __future__ import annotations

import json
from pathlib import Path

from ..test_cli import cli, no_traceback, one_line

# A callable whose cost a file decides: the baseline run sleeps 2 ms, the "regressed" one 4 ms.
MODULE = '''
import pathlib, time

def work(path):
    time.sleep(float(pathlib.Path(path).read_text()))

def steady():
    sum(range(2000))
'''

SUITE = """
name: demo
settings: {processes: 2, warmups: 1, runs: 4, min_time: 0.005}
benchmarks:
  - {name: sleepy, callable: "benchmod:work", params: {path: delay.txt}}
  - {name: steady, callable: "benchmod:steady"}
  - {name: flow, workflow: flow.yaml, scale: 0.01, processes: 1, runs: 3}
"""

FLOW = """
name: tiny
agents:
  a: {provider: sim, options: {latency: {fixed: 0.5}}}
tasks:
  - {id: t, agent: a, prompt: "x {{ item }}", map: {over: [1, 2, 3]}}
"""


def setup(tmp_path: Path) -> None:
    (tmp_path / "benchmod.py").write_text(MODULE)
    (tmp_path / "suite.yaml").write_text(SUITE)
    (tmp_path / "flow.yaml").write_text(FLOW)
    (tmp_path / "delay.txt").write_text("0.002")


def test_a_suite_is_stored_and_a_regression_fails_with_its_ratio(tmp_path: Path) -> None:
    setup(tmp_path)
    first = cli(tmp_path, "bench", "run", "suite.yaml", "--db", "b.db", "--save-baseline", "main", "--json",
                timeout=180)
    no_traceback(first)
    assert first.returncode == 0, first.stderr
    data = json.loads(first.stdout)
    assert set(data["results"]) == {"sleepy", "steady", "flow"}
    sleepy = data["results"]["sleepy"]
    assert len(sleepy["samples"]) == 8 and sleepy["processes"] == 2  # 2 processes x 4 runs, raw
    assert 0.0019 < sleepy["median"] < 0.02
    assert data["results"]["flow"]["processes"] == 1 and len(data["results"]["flow"]["samples"]) == 3
    assert data["env"]["python"] and data["env"]["cpu_usable"] >= 1 and "load_average" in data["env"]

    (tmp_path / "delay.txt").write_text("0.004")  # twice as slow
    # only the benchmark whose cost the test controls: a few-ms CPU loop on a shared CI machine can
    # really change speed between two runs minutes apart, and the tool would rightly say so
    second = cli(tmp_path, "bench", "run", "suite.yaml", "--db", "b.db", "--compare", "main", "--only", "sleepy",
                 "--json", timeout=180)
    no_traceback(second)
    assert second.returncode == 1, second.stdout + second.stderr  # a confirmed regression fails CI
    data = json.loads(second.stdout)
    assert data["regressions"] == ["sleepy"]
    c = data["results"]["sleepy"]["comparison"]
    assert c["verdict"] == "slower" and 1.5 < c["ratio"] < 2.5 and c["ci"][0] > 1.05
    assert set(data["results"]) == {"sleepy"}

    listing = cli(tmp_path, "bench", "list", "--db", "b.db")
    assert listing.returncode == 0 and "main" in listing.stdout and "demo" in listing.stdout


def test_bad_suites_and_baselines_are_one_line_errors(tmp_path: Path) -> None:
    setup(tmp_path)
    (tmp_path / "bad.yaml").write_text("name: x\nbenchmarks:\n  - {name: a, callable: nocolon}\n")
    done = cli(tmp_path, "bench", "run", "bad.yaml", "--db", "b.db")
    no_traceback(done)
    assert done.returncode == 2 and "module:function" in one_line(done.stderr)
    done = cli(tmp_path, "bench", "run", "suite.yaml", "--db", "b.db", "--compare", "nope", "--only", "steady")
    assert done.returncode == 2 and "no baseline named 'nope'" in one_line(done.stderr)
    (tmp_path / "broken.yaml").write_text("name: x\nbenchmarks:\n  - {name: a, callable: 'benchmod:missing'}\n")
    done = cli(tmp_path, "bench", "run", "broken.yaml", "--db", "b.db")
    no_traceback(done)
    # a function the suite names that is not there is the user's to fix (2), not a regression (1)
    assert done.returncode == 2 and "benchmark 'a' failed: AttributeError" in one_line(done.stderr)
    done = cli(tmp_path, "bench", "run", "suite.yaml", "--db", "b.db", "--only", "steady", "--threshold", "1")
    no_traceback(done)
    assert done.returncode == 2


def test_ab_interleaves_two_configurations_and_reports_the_ratio(tmp_path: Path) -> None:
    setup(tmp_path)
    done = cli(tmp_path, "bench", "ab", "flow.yaml", "--a", "scale=0.02", "--b", "scale=0.3", "--rounds", "3",
               "--runs", "2", "--warmups", "1", "--json", timeout=180)
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert len(data["a"]["samples"]) == len(data["b"]["samples"]) == 6
    c = data["comparison"]
    # B's sim latencies are 15x A's (150 ms vs 10 ms per task, plus the same fixed runtime cost)
    assert c["verdict"] == "slower" and c["ratio"] > 1.5
    bad = cli(tmp_path, "bench", "ab", "flow.yaml", "--a", "speed=2", "--b", "scale=1")
    assert bad.returncode == 2 and "unknown key 'speed'" in one_line(bad.stderr)
    for a in ("max_parallel=[", "scale=abc", "var.nope=3"):
        bad = cli(tmp_path, "bench", "ab", "flow.yaml", "--a", a, "--b", "scale=1")
        no_traceback(bad)
        assert bad.returncode == 2, (a, bad.stderr)


def test_a_suite_defined_in_python(tmp_path: Path) -> None:
    setup(tmp_path)
    (tmp_path / "mysuite.py").write_text(
        "def suite():\n"
        "    return {'name': 'py', 'settings': {'processes': 1, 'runs': 3, 'min_time': 0.002},\n"
        "            'benchmarks': [{'name': 'steady', 'callable': 'benchmod:steady'}]}\n")
    done = cli(tmp_path, "bench", "run", "mysuite:suite", "--db", "b.db", "--json", timeout=120)
    no_traceback(done)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["suite"] == "py" and len(data["results"]["steady"]["samples"]) == 3
    done = cli(tmp_path, "bench", "run", "mysuite:nothing", "--db", "b.db")
    assert done.returncode == 2 and "cannot load the suite" in one_line(done.stderr)
