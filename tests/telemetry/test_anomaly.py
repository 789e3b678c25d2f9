"""Anomaly detection on synthetic series with known anomalies."""

from __future__ import annotations

import math
import random

import pytest

from agentfleet.telemetry._anomaly import EWMADetector, RobustZDetector, find_anomalies, robust_z


def noisy(n: int, seed: int = 1, level: float = 100.0, noise: float = 5.0) -> list[float]:
    rng = random.Random(seed)
    return [level + rng.gauss(0, noise) for _ in range(n)]


@pytest.mark.parametrize("method", ["robust", "ewma"])
def test_a_spike_in_noise_is_found_and_nothing_else(method: str) -> None:
    series = noisy(300)
    series[200] = 180.0  # 16 sigma
    found = find_anomalies(series, method=method)
    assert [a.index for a in found] == [200]
    assert found[0].score > 0


@pytest.mark.parametrize("method", ["robust", "ewma"])
def test_no_false_alarms_on_clean_noise(method: str) -> None:
    for seed in range(5):
        assert find_anomalies(noisy(500, seed=seed), method=method) == []


def test_a_level_shift_is_flagged_when_it_happens() -> None:
    series = noisy(100) + noisy(100, seed=2, level=160.0)
    found = find_anomalies(series, method="robust", window=30)
    assert found and found[0].index == 100
    # the new level becomes normal once half the window holds it
    assert all(a.index < 116 for a in found)


def test_robust_z_ignores_the_outliers_it_looks_for() -> None:
    history = [10.0] * 20 + [1000.0]
    assert robust_z(11.0, history) == math.inf  # MAD 0 (flat history): any change is an anomaly
    assert robust_z(10.0, history) == 0.0
    assert robust_z(12.0, [9.0, 10.0, 11.0, 10.0, 1000.0]) == pytest.approx(0.6745 * 2 / 1)


def test_detectors_need_a_history_first() -> None:
    detector = RobustZDetector(window=20, min_points=10)
    assert all(detector.update(v) is None for v in [1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    assert detector.update(500) == math.inf  # the 11th point has a history of 10
    ewma = EWMADetector(min_points=5)
    assert all(ewma.update(v) is None for v in [1.0, 2.0, 1.0, 2.0, 100.0])


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(ValueError):
        RobustZDetector(window=5, min_points=10)
    with pytest.raises(ValueError):
        EWMADetector(alpha=0)
    with pytest.raises(ValueError, match="unknown method"):
        find_anomalies([1.0], method="magic")
