"""Pulled values: gauges bound to a function and collectors flushed before every read."""

from __future__ import annotations

import random
import threading

import pytest

from agentfleet.telemetry import LatencyHistogram, MetricsRegistry


def test_record_many_equals_recording_one_by_one() -> None:
    rng = random.Random(3)
    values = [rng.choice([0.00001, 0.00002, 0.5]) * rng.choice([1, 1, 3]) for _ in range(5000)] + [7200.0, 0.0]
    one, many = LatencyHistogram(), LatencyHistogram()
    for v in values:
        one.record(v)
    many.record_many(values)
    assert many.summary() == one.summary()
    assert many.clamped == one.clamped == 1
    assert many.encode() == one.encode()
    with pytest.raises(ValueError, match="non-negative"):
        many.record_many([1.0, -1.0])
    assert many.count == one.count  # nothing recorded from a batch with a bad value


def test_bound_gauges_are_read_on_demand_with_an_exact_peak() -> None:
    registry = MetricsRegistry()
    state = {"now": 3, "peak": 9}
    registry.bind_gauge("in_flight", lambda: state["now"], peak=lambda: state["peak"])
    registry.bind_gauge("pool_size", lambda: 4, agent="dev")
    assert registry.gauge("in_flight") == 3
    state["now"] = 0
    (row,) = registry.snapshot()["gauges"]["in_flight"]
    assert row == {"labels": {}, "value": 0, "peak": 9}
    assert registry.series("pool_size") == [({"agent": "dev"}, 4)]
    with pytest.raises(ValueError, match="takes labels"):
        registry.bind_gauge("pool_size", lambda: 1)


def test_collectors_flush_before_every_read_and_can_be_removed() -> None:
    registry = MetricsRegistry()
    pending: list[float] = []

    def flush() -> None:
        while pending:
            registry.observe("agent", "dev", pending.pop())
            registry.inc("tasks_total", 1, state="done")

    registry.add_collector(flush)
    pending.extend([1.0, 2.0])
    assert registry.counter("tasks_total", state="done") == 2
    pending.append(3.0)
    hist = registry.histogram("agent", "dev")
    assert hist is not None and hist.count == 3
    registry.remove_collector(flush)
    pending.append(4.0)
    assert registry.snapshot()["latency"]["agent"]["dev"]["count"] == 3


def test_a_collector_racing_a_writer_loses_nothing() -> None:
    from collections import deque

    registry = MetricsRegistry()
    pending: deque[int] = deque()

    def flush() -> None:
        n = 0
        while True:
            try:
                pending.popleft()
            except IndexError:
                break
            n += 1
        if n:
            registry.inc("tasks_total", n, state="done")

    registry.add_collector(flush)
    stop = threading.Event()

    def scrape() -> None:
        while not stop.is_set():
            registry.snapshot()

    reader = threading.Thread(target=scrape)
    reader.start()
    for _ in range(20_000):
        pending.append(1)
    stop.set()
    reader.join()
    assert registry.counter("tasks_total", state="done") == 20_000
