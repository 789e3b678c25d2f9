"""The metrics of a run: latency histograms, counters and gauges in one registry.

# Design
# ``MetricsRegistry`` holds three kinds of series, each declared before use so that a typo
# in a name or a label fails at once instead of exporting a stray series:
#
#   latency   ``LatencySpec(kind)``: one ``LatencyHistogram`` per (kind, label), e.g.
#             ("agent", "developer"), ("provider", "openai/gpt-4o"), ("task_kind", "implement")
#   counters  ``MetricSpec(type="counter")``: monotonic totals, optionally labelled
#             (``tasks_total{state}``, ``tokens_total{direction}``, ``cost_usd_total`` ...)
#   gauges    ``MetricSpec(type="gauge")``: values that go up and down (``queue_depth``,
#             ``in_flight``, ``pool_size{agent}``); the registry also keeps each one's peak
#
# ``DEFAULT_LATENCY`` and ``DEFAULT_METRICS`` are the catalogue the runtime feeds
# (``runtime/_telemetry.py``; docs/telemetry.md lists it); ``declare`` adds more. An unlabelled counter or gauge exists
# with value 0 from the start (so a rate over it is defined from the first scrape); a
# labelled one gets a series on first use.
#
# The registry is pure bookkeeping: no I/O, no background work. The clock is injected and
# only read by ``snapshot`` (its ``at`` and ``uptime_s``). The runtime writes from the event
# loop while a ``MetricsServer`` reads from its own thread, so every method takes one lock;
# readers copy under it (a histogram copy is one C array add) and compute percentiles
# outside it, so a scrape never holds up a writer for more than a copy.
"""

from __future__ import annotations

import math
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from ._histogram import LatencyHistogram

__all__ = [
    "DEFAULT_LATENCY",
    "DEFAULT_METRICS",
    "LatencySpec",
    "MetricSpec",
    "MetricsRegistry",
]

_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")
# Label names Prometheus reserves (``__*``) or gives a meaning in summaries and histograms.
_RESERVED_LABELS = frozenset({"quantile", "le"})


def _check_label_name(label: str, what: str) -> None:
    if not _NAME.match(label) or label.startswith("__") or label in _RESERVED_LABELS:
        raise ValueError(f"{what} {label!r} is not a valid label name (lower_snake_case, not quantile/le/__*)")


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """A counter or gauge: ``name`` without the ``agentfleet_`` prefix (a counter's ends with
    ``_total``), what it means (``help``) and its label names, in order."""

    name: str
    type: Literal["counter", "gauge"]
    help: str
    labels: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"metric name {self.name!r} is not lower_snake_case")
        if self.type not in ("counter", "gauge"):
            raise ValueError(f"metric type must be 'counter' or 'gauge', got {self.type!r}")
        if self.type == "counter" and not self.name.endswith("_total"):
            raise ValueError(f"counter name {self.name!r} must end with '_total'")
        if self.type == "gauge" and self.name.endswith("_total"):
            raise ValueError(f"gauge name {self.name!r} must not end with '_total'")
        for label in self.labels:
            _check_label_name(label, f"label of {self.name!r}")
        if len(set(self.labels)) != len(self.labels):
            raise ValueError(f"metric {self.name!r} repeats a label")


@dataclass(frozen=True, slots=True)
class LatencySpec:
    """A family of latency histograms: ``kind`` is both the registry key and the label name
    (``agent``, ``provider``, ``task_kind``); ``name`` is the exported metric name without the
    ``agentfleet_`` prefix (ends with ``_seconds``); ``help`` what is timed."""

    kind: str
    name: str
    help: str

    def __post_init__(self) -> None:
        _check_label_name(self.kind, "latency kind")
        if not _NAME.match(self.name) or not self.name.endswith("_seconds"):
            raise ValueError(f"latency metric name {self.name!r} must be lower_snake_case ending in '_seconds'")


DEFAULT_LATENCY: tuple[LatencySpec, ...] = (
    LatencySpec("agent", "task_duration_seconds", "Task run time (start to end of its last attempt) by agent."),
    LatencySpec("task_kind", "task_kind_duration_seconds", "Task run time by task kind (the step it comes from)."),
    LatencySpec("provider", "provider_call_duration_seconds", "Provider call latency by provider/model."),
)

DEFAULT_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec("tasks_total", "counter", "Task instances that reached a final state, by state.", ("state",)),
    MetricSpec("tokens_total", "counter", "Tokens sent to and received from providers, by direction.", ("direction",)),
    MetricSpec("cost_usd_total", "counter", "Estimated provider cost in US dollars."),
    MetricSpec("retries_total", "counter", "Task attempts retried after a retryable failure."),
    MetricSpec("cache_hits_total", "counter", "Provider calls answered by the response cache, by level.", ("level",)),
    MetricSpec("rate_limited_total", "counter", "Provider calls answered with a rate-limit error (HTTP 429)."),
    MetricSpec("queue_depth", "gauge", "Task instances ready to run and waiting for a slot."),
    MetricSpec("in_flight", "gauge", "Task instances running now."),
    MetricSpec("pool_size", "gauge", "Members (workers, connections or slots) in an agent's pool.", ("agent",)),
)


LabelValues = tuple[str, ...]


class MetricsRegistry:
    """Latency histograms, counters and gauges of one run (see the module notes).

    Writers: ``observe(kind, label, seconds)``, ``merge_histogram``, ``inc(name, amount, **labels)``,
    ``set_gauge`` / ``add_gauge(name, value, **labels)``, ``bind_gauge`` (read on demand) and
    collectors (``add_collector``: buffered writes flushed before each read). Readers: ``histogram``, ``histograms``,
    ``counter``, ``gauge``, ``series`` and ``snapshot()``, a JSON-able dict of everything.
    Thread-safe. ``clock`` (monotonic seconds) is only read by ``snapshot``."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        latency: Iterable[LatencySpec] = DEFAULT_LATENCY,
        metrics: Iterable[MetricSpec] = DEFAULT_METRICS,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._latency_specs: dict[str, LatencySpec] = {}
        self._histograms: dict[str, dict[str, LatencyHistogram]] = {}
        self._specs: dict[str, MetricSpec] = {}
        self._values: dict[str, dict[LabelValues, float]] = {}
        self._peaks: dict[str, dict[LabelValues, float]] = {}
        #: pulled at read time: gauges bound to a function, and collectors that flush buffered writes
        self._bound: dict[tuple[str, LabelValues], Callable[[], float]] = {}
        self._bound_peaks: dict[tuple[str, LabelValues], Callable[[], float]] = {}
        self._collectors: list[Callable[[], None]] = []
        self._collecting = threading.RLock()
        self._created = clock()
        for lspec in latency:
            self.declare(lspec)
        for spec in metrics:
            self.declare(spec)

    # -- declaring ----------------------------------------------------------------------

    def declare(self, spec: MetricSpec | LatencySpec) -> None:
        """Add a metric or latency family. Declaring the same spec again is a no-op; a
        different spec under a name (or exported name) already in use raises ``ValueError``."""
        with self._lock:
            if isinstance(spec, LatencySpec):
                known = self._latency_specs.get(spec.kind)
                if known is not None:
                    if known != spec:
                        raise ValueError(f"latency kind {spec.kind!r} is already declared as {known!r}")
                    return
                self._check_free(spec.name)
                self._latency_specs[spec.kind] = spec
                self._histograms[spec.kind] = {}
                return
            known_metric = self._specs.get(spec.name)
            if known_metric is not None:
                if known_metric != spec:
                    raise ValueError(f"metric {spec.name!r} is already declared as {known_metric!r}")
                return
            self._check_free(spec.name)
            self._specs[spec.name] = spec
            self._values[spec.name] = {} if spec.labels else {(): 0}
            if spec.type == "gauge":
                self._peaks[spec.name] = {} if spec.labels else {(): 0}

    def _check_free(self, name: str) -> None:
        # Exported names must not collide, including a summary's _count/_sum samples.
        taken = set(self._specs)
        for lspec in self._latency_specs.values():
            taken |= {lspec.name, f"{lspec.name}_count", f"{lspec.name}_sum"}
        if name in taken or f"{name}_count" in taken or f"{name}_sum" in taken:
            raise ValueError(f"metric name {name!r} is already in use")

    def latency_specs(self) -> tuple[LatencySpec, ...]:
        """The latency families declared, in declaration order."""
        with self._lock:
            return tuple(self._latency_specs.values())

    def metric_specs(self) -> tuple[MetricSpec, ...]:
        """The counters and gauges declared, in declaration order."""
        with self._lock:
            return tuple(self._specs.values())

    # -- latency ------------------------------------------------------------------------

    def _family(self, kind: str) -> dict[str, LatencyHistogram]:
        family = self._histograms.get(kind)
        if family is None:
            raise KeyError(f"latency kind {kind!r} is not declared (known: {sorted(self._histograms)})")
        return family

    def observe_many(self, kind: str, label: str, values: Iterable[float]) -> None:
        """``observe`` for many durations at once, under one lock (a buffered writer's flush)."""
        if not isinstance(label, str):
            raise TypeError(f"a {kind} label must be a string, got {label!r}")
        with self._lock:
            self._histogram(kind, label).record_many(values)

    def _histogram(self, kind: str, label: str) -> LatencyHistogram:
        """The (kind, label) histogram, made on first use; call with the lock held."""
        family = self._family(kind)
        histogram = family.get(label)
        if histogram is None:
            histogram = family[label] = LatencyHistogram()
        return histogram

    def observe(self, kind: str, label: str, seconds: float) -> None:
        """Record one duration in the (kind, label) histogram, e.g. ("agent", "developer", 1.25).

        Raises ``KeyError`` for an undeclared kind, ``ValueError`` for a negative duration."""
        if not isinstance(label, str):
            raise TypeError(f"a {kind} label must be a string, got {label!r}")
        with self._lock:
            self._histogram(kind, label).record(seconds)

    def merge_histogram(self, kind: str, label: str, histogram: LatencyHistogram) -> None:
        """Add every value of ``histogram`` (e.g. a decoded one) to the (kind, label) histogram."""
        if not isinstance(label, str):
            raise TypeError(f"a {kind} label must be a string, got {label!r}")
        incoming = histogram.copy()
        with self._lock:
            family = self._family(kind)
            mine = family.get(label)
            if mine is None:
                family[label] = incoming
            else:
                mine.merge(incoming)

    def histogram(self, kind: str, label: str) -> LatencyHistogram | None:
        """A copy of the (kind, label) histogram, None if nothing was observed for it."""
        self.collect()
        with self._lock:
            histogram = self._family(kind).get(label)
            return None if histogram is None else histogram.copy()

    def histograms(self, kind: str) -> dict[str, LatencyHistogram]:
        """Copies of every histogram of ``kind``, by label (sorted)."""
        self.collect()
        with self._lock:
            family = self._family(kind)
            return {label: family[label].copy() for label in sorted(family)}

    # -- counters and gauges ------------------------------------------------------------

    def _key(self, name: str, kind: str, labels: dict[str, str]) -> tuple[MetricSpec, LabelValues]:
        spec = self._specs.get(name)
        if spec is None:
            raise KeyError(f"metric {name!r} is not declared")
        if spec.type != kind:
            raise TypeError(f"metric {name!r} is a {spec.type}, not a {kind}")
        if set(labels) != set(spec.labels):
            raise ValueError(f"metric {name!r} takes labels {list(spec.labels)}, got {sorted(labels)}")
        values = tuple(labels[label] for label in spec.labels)
        for value in values:
            if not isinstance(value, str):
                raise TypeError(f"label values of {name!r} must be strings, got {value!r}")
        return spec, values

    def inc(self, name: str, amount: float = 1, /, **labels: str) -> None:
        """Add ``amount`` (>= 0) to a counter, e.g. ``inc("tokens_total", 1200, direction="input")``."""
        if not amount >= 0 or math.isinf(amount):
            raise ValueError(f"a counter only goes up by a finite amount, got {amount!r}")
        with self._lock:
            _, key = self._key(name, "counter", labels)
            series = self._values[name]
            series[key] = series.get(key, 0) + amount

    def set_gauge(self, name: str, value: float, /, **labels: str) -> None:
        """Set a gauge, e.g. ``set_gauge("queue_depth", 12)``."""
        if not math.isfinite(value):
            raise ValueError(f"a gauge takes a finite value, got {value!r}")
        with self._lock:
            _, key = self._key(name, "gauge", labels)
            self._set(name, key, value)

    def add_gauge(self, name: str, delta: float, /, **labels: str) -> None:
        """Add ``delta`` (may be negative) to a gauge, e.g. ``add_gauge("in_flight", -1)``."""
        if not math.isfinite(delta):
            raise ValueError(f"a gauge takes a finite change, got {delta!r}")
        with self._lock:
            _, key = self._key(name, "gauge", labels)
            self._set(name, key, self._values[name].get(key, 0) + delta)

    def _set(self, name: str, key: LabelValues, value: float) -> None:
        self._values[name][key] = value
        peaks = self._peaks[name]
        if key not in peaks or value > peaks[key]:
            peaks[key] = value

    # -- pulled values -----------------------------------------------------------------

    def bind_gauge(self, name: str, fn: Callable[[], float], /, peak: Callable[[], float] | None = None,
                   **labels: str) -> None:
        """Make a gauge read ``fn()`` whenever the registry is read (a scrape, ``snapshot``), instead of
        being set on every change: free for the writer. Its peak is ``peak()`` when the source keeps
        one (exact), else the highest value read."""
        with self._lock:
            _, key = self._key(name, "gauge", labels)
            self._bound[(name, key)] = fn
            if peak is not None:
                self._bound_peaks[(name, key)] = peak

    def unbind_gauge(self, name: str, /, **labels: str) -> None:
        """Read a bound gauge one last time and keep that value; it is a plain gauge again."""
        self.collect()
        with self._lock:
            _, key = self._key(name, "gauge", labels)
            self._bound.pop((name, key), None)
            self._bound_peaks.pop((name, key), None)

    def add_collector(self, fn: Callable[[], None]) -> None:
        """Call ``fn()`` before every read: a writer that buffers (``runtime.RunMetrics``) flushes there."""
        with self._lock:
            self._collectors.append(fn)

    def remove_collector(self, fn: Callable[[], None]) -> None:
        with self._lock:
            if fn in self._collectors:
                self._collectors.remove(fn)

    def collect(self) -> None:
        """Run the collectors and read the bound gauges (every reader does this first)."""
        with self._collecting:  # one collection at a time; the writers it calls take the lock
            with self._lock:
                collectors = list(self._collectors)
                bound = list(self._bound.items())
                bound_peaks = list(self._bound_peaks.items())
            for collector in collectors:
                collector()
            values = [(name, key, float(fn())) for (name, key), fn in bound]
            peaks = [(name, key, float(fn())) for (name, key), fn in bound_peaks]
            with self._lock:
                for name, key, value in values:
                    if math.isfinite(value):
                        self._set(name, key, value)
                for name, key, value in peaks:
                    if math.isfinite(value) and value > self._peaks[name].get(key, -math.inf):
                        self._peaks[name][key] = value

    def counter(self, name: str, /, **labels: str) -> float:
        """A counter's value (0 for a series never incremented)."""
        self.collect()
        with self._lock:
            _, key = self._key(name, "counter", labels)
            return self._values[name].get(key, 0)

    def gauge(self, name: str, /, **labels: str) -> float:
        """A gauge's value (0 for a series never set)."""
        self.collect()
        with self._lock:
            _, key = self._key(name, "gauge", labels)
            return self._values[name].get(key, 0)

    def series(self, name: str) -> list[tuple[dict[str, str], float]]:
        """Every series of a counter or gauge as (labels, value), sorted by label values."""
        self.collect()
        with self._lock:
            spec = self._specs.get(name)
            if spec is None:
                raise KeyError(f"metric {name!r} is not declared")
            items = sorted(self._values[name].items())
        return [(dict(zip(spec.labels, key, strict=True)), value) for key, value in items]

    # -- snapshot -----------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything, as plain JSON-able data::

            {"at": clock(), "uptime_s": seconds since the registry was made,
             "latency": {kind: {label: {count, min, mean, p50, p95, p99, p999, max, clamped}}},
             "counters": {name: [{"labels": {...}, "value": v}, ...]},
             "gauges": {name: [{"labels": {...}, "value": v, "peak": highest value}, ...]}}

        Latency figures are seconds (None when a histogram is empty); series are sorted."""
        self.collect()
        with self._lock:
            now = self._clock()
            families = {kind: {label: h.copy() for label, h in fam.items()} for kind, fam in self._histograms.items()}
            specs = list(self._specs.values())
            values = {name: dict(series) for name, series in self._values.items()}
            peaks = {name: dict(series) for name, series in self._peaks.items()}
        latency: dict[str, dict[str, dict[str, Any]]] = {}
        for kind, family in families.items():
            latency[kind] = {}
            for label in sorted(family):
                figures = family[label].summary().to_dict()
                figures["clamped"] = family[label].clamped
                latency[kind][label] = figures
        counters: dict[str, list[dict[str, Any]]] = {}
        gauges: dict[str, list[dict[str, Any]]] = {}
        for spec in specs:
            rows: list[dict[str, Any]] = []
            for key, value in sorted(values[spec.name].items()):
                row: dict[str, Any] = {"labels": dict(zip(spec.labels, key, strict=True)), "value": value}
                if spec.type == "gauge":
                    row["peak"] = peaks[spec.name][key]
                rows.append(row)
            (counters if spec.type == "counter" else gauges)[spec.name] = rows
        return {
            "at": now,
            "uptime_s": now - self._created,
            "latency": latency,
            "counters": counters,
            "gauges": gauges,
        }
