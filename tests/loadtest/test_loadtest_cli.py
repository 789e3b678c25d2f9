"""``agentfleet loadtest``: end to end against local servers, thresholds and exit codes, scenario figures."""

from __future__ import annotations

import json
from pathlib import Path

from ..loadtest_servers import LocalServer
from ..test_cli import cli, no_traceback, one_line


def write(tmp_path: Path, text: str) -> None:
    (tmp_path / "lt.yaml").write_text(text)


def test_a_steady_test_passes_its_thresholds_and_writes_the_report(tmp_path: Path) -> None:
    with LocalServer("trivial") as server:
        write(tmp_path, f"""
name: api
target: {{url: "http://127.0.0.1:{server.port}/", method: GET}}
scenario: {{kind: steady, rate: 200, duration: 2s}}
thresholds: ["p99 < 500ms", "error_rate < 1%", "rps >= 150"]
""")
        done = cli(tmp_path, "loadtest", "lt.yaml", "--json", "--html", "out/lt.html")
    no_traceback(done)
    assert done.returncode == 0, done.stdout + done.stderr
    data = json.loads(done.stdout)
    assert data["passed"] and data["summary"]["requests"] == 400 and data["summary"]["errors"] == 0
    assert [t["passed"] for t in data["thresholds"]] == [True, True, True]
    assert len(data["series"]) >= 2 and data["generator"][0]["mode"] == "open"
    assert data["summary"]["max_lag"] is not None  # the engine's own lateness reaches the summary
    page = (tmp_path / "out" / "lt.html").read_text(encoding="utf-8")
    assert 'id="latency"' in page and 'id="throughput"' in page
    assert "src=" not in page and "href=" not in page and "http://" not in page.split("<main>")[0]


def test_a_failing_threshold_exits_1_and_an_abort_stops_early(tmp_path: Path) -> None:
    with LocalServer("stall", stall_every=0.5, stall_for=0.4) as server:
        write(tmp_path, f"""
target: {{url: "http://127.0.0.1:{server.port}/"}}
scenario: {{kind: steady, rate: 50, duration: 6s}}
thresholds: ["p99 < 50ms abort"]
""")
        done = cli(tmp_path, "loadtest", "lt.yaml", "--json")
    no_traceback(done)
    assert done.returncode == 1
    data = json.loads(done.stdout)
    assert not data["passed"] and data["aborted"].startswith("aborted: FAIL p99 < 50ms abort")
    assert data["summary"]["requests"] < 300  # stopped well before the 6 s schedule ended
    assert data["summary"]["p99"] > 0.2  # the stalls show: latency from the intended start


def test_a_spike_reports_its_recovery(tmp_path: Path) -> None:
    with LocalServer("trivial") as server:
        write(tmp_path, f"""
target: {{url: "http://127.0.0.1:{server.port}/"}}
scenario: {{kind: spike, baseline_rate: 50, spike_rate: 400, spike_start: 1s, spike_duration: 1s, duration: 4s}}
""")
        done = cli(tmp_path, "loadtest", "lt.yaml", "--json")
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)["figures"]
    assert figures["baseline_p99"] is not None and "recovery_s" in figures


def test_bad_files_are_one_line_errors(tmp_path: Path) -> None:
    write(tmp_path, "target: {url: 'http://127.0.0.1:9/'}\nscenario: {kind: stedy, rate: 1, duration: 1s}\n")
    done = cli(tmp_path, "loadtest", "lt.yaml")
    no_traceback(done)
    assert done.returncode == 2 and "did you mean 'steady'" in one_line(done.stderr)
    write(tmp_path, "target: {url: 'http://127.0.0.1:9/'}\nscenario: {kind: steady, rate: 1, duration: 1s}\n"
                    "thresholds: ['p42 < 1s']\n")
    done = cli(tmp_path, "loadtest", "lt.yaml")
    assert done.returncode == 2 and "p42" in one_line(done.stderr)
    for bad in ("target: {url: 'ftp://x'}\nscenario: {kind: steady, rate: 1, duration: 1s}\n",
                "target: {url: 'http:///nohost'}\nscenario: {kind: steady, rate: 1, duration: 1s}\n",
                "target: {url: 'http://h/', max_connections: lots}\nscenario: {kind: steady, rate: 1, duration: 1s}\n",
                "target: {url: 'http://h/'}\nmode: closed\nusers: 2\nscenario: {kind: spike, baseline_rate: 1, "
                "spike_rate: 2, spike_start: 1s, spike_duration: 1s, duration: 3s}\n"):
        write(tmp_path, bad)
        done = cli(tmp_path, "loadtest", "lt.yaml")
        no_traceback(done)
        assert done.returncode == 2, (bad, done.stderr)


def test_a_target_that_never_answers_fails_even_without_thresholds(tmp_path: Path) -> None:
    write(tmp_path, "target: {url: 'http://127.0.0.1:9/'}\nscenario: {kind: steady, rate: 5, duration: 1s}\n")
    done = cli(tmp_path, "loadtest", "lt.yaml", "--json")
    data = json.loads(done.stdout)
    assert done.returncode == 1 and data["failure"] == "no request succeeded (5 failed)"


def test_an_unreachable_target_is_counted_as_errors(tmp_path: Path) -> None:
    write(tmp_path, "target: {url: 'http://127.0.0.1:9/'}\nscenario: {kind: steady, rate: 20, duration: 1s}\n"
                    "thresholds: ['error_rate < 1%']\n")
    done = cli(tmp_path, "loadtest", "lt.yaml", "--json")
    no_traceback(done)
    data = json.loads(done.stdout)
    assert done.returncode == 1 and data["summary"]["errors"] == 20
    assert data["summary"]["errors_by_kind"] == {"connect": 20}


def test_stress_finds_the_breaking_point_and_checks_recovery(tmp_path: Path) -> None:
    # the server answers one request at a time in 10 ms: about 100 req/s, then its queue grows
    with LocalServer("capacity", service=0.01) as server:
        write(tmp_path, f"""
target: {{url: "http://127.0.0.1:{server.port}/"}}
scenario: {{kind: stress, start_rate: 40, step: "+40", step_duration: 2s, max_rate: 400}}
stress: {{p99: 200ms, error_rate: 5%, recovery: 2s}}
""")
        done = cli(tmp_path, "loadtest", "lt.yaml", "--json")
    no_traceback(done)
    figures = json.loads(done.stdout)["figures"]
    assert figures["breaking_point"] == 120.0, figures  # the first step past the ~100/s capacity
    assert figures["recovered"] is True and figures["recovery_rate"] == 40.0


def test_closed_loop_volume_and_streaming(tmp_path: Path) -> None:
    with LocalServer("trivial") as server:
        write(tmp_path, f"""
target: {{url: "http://127.0.0.1:{server.port}/", method: POST, body: "{{}}"}}
scenario: {{kind: volume, rate: 40, phase_duration: 1s, sizes: [100, 10000]}}
""")
        volume = json.loads(cli(tmp_path, "loadtest", "lt.yaml", "--json").stdout)
        write(tmp_path, f"""
target: {{url: "http://127.0.0.1:{server.port}/"}}
scenario: {{kind: steady, rate: 1, duration: 1s}}
mode: closed
users: 4
""")
        closed = json.loads(cli(tmp_path, "loadtest", "lt.yaml", "--json").stdout)
    assert [row["size"] for row in volume["figures"]["p99_by_size"]] == [100, 10000]
    assert volume["summary"]["requests"] == 80 and volume["summary"]["errors"] == 0
    assert closed["generator"][0]["mode"] == "closed" and closed["summary"]["requests"] > 100
    with LocalServer("sse", tokens=5, gap=0.02, first=0.05) as server:
        write(tmp_path, f"""
target: {{url: "http://127.0.0.1:{server.port}/", stream: true}}
scenario: {{kind: steady, rate: 20, duration: 1s}}
thresholds: ["ttft_p95 < 500ms"]
""")
        sse = json.loads(cli(tmp_path, "loadtest", "lt.yaml", "--json").stdout)
    assert sse["passed"] and 0.04 < sse["ttft"]["p50"] < 0.3
    assert 0.01 < sse["itl"]["p50"] < 0.1


def test_shed_arrivals_count_as_errors(tmp_path: Path) -> None:
    # one request in flight at most against a server frozen for most of each second: arrivals are dropped
    with LocalServer("stall", stall_every=1.0, stall_for=0.8) as server:
        write(tmp_path, f"""
target: {{url: "http://127.0.0.1:{server.port}/"}}
scenario: {{kind: steady, rate: 50, duration: 2s}}
max_outstanding: 1
thresholds: ["error_rate < 10%"]
""")
        done = cli(tmp_path, "loadtest", "lt.yaml", "--json")
    data = json.loads(done.stdout)
    summary = data["summary"]
    assert summary["dropped"] > 10 and summary["errors_by_kind"]["dropped"] == summary["dropped"]
    assert done.returncode == 1 and summary["error_rate"] > 0.1
