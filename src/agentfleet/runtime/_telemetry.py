"""Feeding a run's task events into a ``MetricsRegistry`` (``Runner(metrics=...)``, ``--metrics-port``).

# Design
# Subscribed only when a registry is given, so a run without metrics pays nothing; and cheap
# when one is. Gauges are not written per event: queue depth, tasks in flight and each agent's
# pool size are bound to the scheduler's and the pools' own counts (``bind_gauge``) and read
# when the registry is read (a scrape, a snapshot). A task's final state appends one tuple to a
# buffer (a deque: appends from the event loop and pops from a scraping thread are both
# atomic); the buffer is flushed into the histograms and counters before every read of the
# registry (``add_collector``), when it grows past ``FLUSH_AT`` and when the run ends, grouped so
# each histogram takes one lock per flush. Per task, in its final state: ``tasks_total`` by
# state and, for a task that ran in this session, its duration by agent and by step, tokens,
# cost, retries and the cache level that answered it. Provider call latency and 429s come from
# the runner where it sees each call (``provider_call``, ``rate_limited``), buffered the same way.
# A reader therefore sees every task that finished before the read began: nothing is sampled.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Any

from .._types import TaskState
from ._scheduler import Scheduler, TaskEvent

__all__ = ["RunMetrics"]

_FINAL = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.SKIPPED, TaskState.CANCELLED})

#: flush inline once this many facts wait (bounds the buffer of a run nobody scrapes)
FLUSH_AT = 4096


class RunMetrics:
    """Writes one run's progress into ``registry`` (a ``agentfleet.telemetry.MetricsRegistry``)."""

    __slots__ = ("_pending", "pools", "registry", "scheduler")

    def __init__(self, registry: Any, scheduler: Scheduler, pools: Mapping[str, Any] | None = None) -> None:
        self.registry = registry
        self.scheduler = scheduler
        self.pools = pools or {}
        self._pending: deque[tuple[Any, ...]] = deque()
        registry.bind_gauge("queue_depth", lambda: scheduler.statistics().ready, peak=lambda: scheduler.peak_ready)
        registry.bind_gauge("in_flight", lambda: scheduler.running, peak=lambda: scheduler.peak_running)
        for name, pool in self.pools.items():
            registry.bind_gauge("pool_size", lambda pool=pool: pool.statistics().members,
                                peak=lambda pool=pool: pool.statistics().peak_members, agent=name)
        registry.add_collector(self.flush)

    def on_event(self, event: TaskEvent) -> None:
        kind = event.kind
        if kind not in _FINAL:
            return
        record = event.instance.record
        pending = self._pending
        if record.resumed or record.started_at is None:
            pending.append(("t", kind))
        else:
            pending.append(("r", kind, record.agent, event.instance.step.id, record.duration, record.tokens_in,
                            record.tokens_out, record.attempts, record.meta.get("cache"),
                            record.meta.get("cost_usd")))
        if len(pending) >= FLUSH_AT:
            self.flush()

    def provider_call(self, identity: str, seconds: float) -> None:
        self._pending.append(("p", identity, seconds))

    def rate_limited(self) -> None:
        self._pending.append(("l",))

    def close(self) -> None:
        """Flush what is left and let go of the run (it ended): the gauges keep their last values,
        and the registry (which may outlive the run, e.g. in the service) no longer holds the
        scheduler or the pools."""
        self.flush()
        registry = self.registry
        registry.remove_collector(self.flush)
        registry.unbind_gauge("queue_depth")
        registry.unbind_gauge("in_flight")
        for name in self.pools:
            registry.unbind_gauge("pool_size", agent=name)

    def flush(self) -> None:
        """Move the buffered facts into the registry, grouped (safe from any thread)."""
        pending = self._pending
        states: dict[str, int] = {}
        by_agent: dict[str, list[float]] = {}
        by_step: dict[str, list[float]] = {}
        by_provider: dict[str, list[float]] = {}
        caches: dict[str, int] = {}
        tokens_in = tokens_out = retries = limited = 0
        cost = 0.0
        while True:
            try:
                fact = pending.popleft()
            except IndexError:
                break
            tag = fact[0]
            if tag == "r":
                _, state, agent, step, duration, t_in, t_out, attempts, cache, spent = fact
                states[state] = states.get(state, 0) + 1
                by_agent.setdefault(agent, []).append(duration)
                by_step.setdefault(step, []).append(duration)
                tokens_in += t_in
                tokens_out += t_out
                retries += max(0, attempts - 1)
                if cache:
                    caches[str(cache)] = caches.get(str(cache), 0) + 1
                if spent:
                    cost += float(spent)
            elif tag == "t":
                states[fact[1]] = states.get(fact[1], 0) + 1
            elif tag == "p":
                by_provider.setdefault(fact[1], []).append(fact[2])
            else:
                limited += 1
        registry = self.registry
        for state, n in states.items():
            registry.inc("tasks_total", n, state=state)
        for kind, groups in (("agent", by_agent), ("task_kind", by_step), ("provider", by_provider)):
            for label, values in groups.items():
                registry.observe_many(kind, label, values)
        if tokens_in:
            registry.inc("tokens_total", tokens_in, direction="input")
        if tokens_out:
            registry.inc("tokens_total", tokens_out, direction="output")
        if retries:
            registry.inc("retries_total", retries)
        for level, n in caches.items():
            registry.inc("cache_hits_total", n, level=level)
        if cost:
            registry.inc("cost_usd_total", cost)
        if limited:
            registry.inc("rate_limited_total", limited)
