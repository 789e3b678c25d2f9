"""Process sampling: CPU, memory, I/O of the process and its children, bounded series."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import pytest

from agentfleet.telemetry._resources import ProcessSampler, RunResources, summarize_resources


def test_a_busy_child_process_counts_in_the_cpu_figure() -> None:
    child = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        sampler = ProcessSampler()
        time.sleep(0.05)  # the child is found by the first sample; its CPU counts from there
        first = sampler.sample(0.0)
        time.sleep(0.5)
        second = sampler.sample(0.5)
    finally:
        child.kill()
        child.wait()
    assert first["processes"] >= 2 and second["processes"] >= 2
    # one core spinning for the whole interval: far above what this idle test process uses
    assert second["cpu_percent"] > 40, second
    assert second["rss_mb"] > first["rss_mb"] * 0.5 > 0


def test_disk_writes_show_as_a_rate(tmp_path: Any) -> None:
    sampler = ProcessSampler()
    sampler.sample(0.0)
    with open(tmp_path / "blob", "wb") as f:
        for _ in range(16):
            f.write(b"x" * 1024 * 1024)
            f.flush()
        import os

        os.fsync(f.fileno())
    point = sampler.sample(1.0)
    if point["write_mb_s"] == 0.0:
        pytest.skip("this kernel does not account block writes per process (no io accounting)")
    assert point["write_mb_s"] >= 8


class Fake:
    def __init__(self) -> None:
        self.n = 0

    def sample(self, t: float) -> dict[str, float]:
        self.n += 1
        if self.n == 3:
            raise OSError("gone")
        return {"t": t, "cpu_percent": float(self.n), "rss_mb": 10.0 * self.n}


def test_the_series_stays_bounded_and_evenly_spaced() -> None:
    clock = [0.0]
    resources = RunResources(Fake(), now=lambda: clock[0], sleep=lambda s: None, interval=1.0, max_samples=4)
    for i in range(6):
        clock[0] = float(i)
        resources.take()
    # sample 3 failed (counted, not fatal); 5 points went past the cap of 4: every other one dropped
    assert resources.errors == 1
    assert [s["t"] for s in resources.samples] == [0.0, 3.0, 5.0]
    assert resources.interval == 2.0


def test_summary_of_a_series() -> None:
    samples = [{"t": 0.0, "cpu_percent": 10.0, "rss_mb": 50.0, "write_mb_s": 0.0},
               {"t": 1.0, "cpu_percent": 30.0, "rss_mb": 70.0, "write_mb_s": 4.0},
               {"t": 3.0, "cpu_percent": 20.0, "rss_mb": 60.0, "write_mb_s": 1.0}]
    assert summarize_resources(samples) == {"cpu_peak_percent": 30.0, "cpu_mean_percent": 20.0, "rss_peak_mb": 70.0,
                                            "disk_read_mb": 0.0, "disk_write_mb": 6.0}
    assert summarize_resources([]) == {}


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="interval"):
        RunResources(Fake(), now=time.monotonic, sleep=lambda s: None, interval=0)
