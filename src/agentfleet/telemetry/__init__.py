"""Telemetry: latency histograms with HDR precision, counters and gauges, Prometheus exposition.

    LatencyHistogram    seconds at 1 µs resolution from 1 µs to 1 hour (3 significant digits);
                        percentile(p), summary(), merge, encode/decode; values above an hour
                        are clamped and counted
    HistogramSummary    count, min, mean, p50, p95, p99, p999, max (seconds; None when empty)
    MetricsRegistry     latency histograms keyed by (kind, label), monotonic counters and
                        gauges, declared by MetricSpec / LatencySpec (DEFAULT_METRICS,
                        DEFAULT_LATENCY); snapshot() is a JSON-able dict; thread-safe
    RegistryCollector   a prometheus_client collector over a MetricsRegistry
    collector_registry  a fresh CollectorRegistry holding only that collector
    prometheus_text     the Prometheus text exposition of a registry
    MetricsServer       serves /metrics over HTTP from a background thread (127.0.0.1 by
                        default, port 0 = ephemeral), stoppable
    parse_rule, SLAMonitor, evaluate
                        SLA rules ("p95_task_latency < 2s", "error_rate < 1%"), edge-triggered
    RobustZDetector, EWMADetector, find_anomalies
                        anomalies on metric series (median/MAD z-score, EWMA band)
    make_tracer, RunTracer
                        OpenTelemetry spans per run and per task (console, OTLP/HTTP or an
                        SDK exporter); needs the ``otel`` extra only when a tracer is made

The registry, the SLA monitor and the detectors are pure (time injected). A run feeds a registry
(``Runner(metrics=...)``, ``agentfleet run --metrics-port``); the SLA monitor and the detectors are
not fed by the runtime yet. See docs/telemetry.md for the
metric list. The Prometheus names are imported on first use (PEP 562), so code that only
records metrics does not pay for importing prometheus_client.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._anomaly import Anomaly, EWMADetector, RobustZDetector, find_anomalies, robust_z
from ._cost import BUILTIN_PRICES, Price, Pricing
from ._histogram import HistogramSummary, LatencyHistogram
from ._metrics import DEFAULT_LATENCY, DEFAULT_METRICS, LatencySpec, MetricSpec, MetricsRegistry
from ._sla import METRICS, SLAMonitor, SLARule, Violation, evaluate, parse_rule

if TYPE_CHECKING:
    from ._otel import RunTracer, make_tracer
    from ._prometheus import PREFIX, QUANTILES, MetricsServer, RegistryCollector, collector_registry, prometheus_text

# name -> module for the names imported on first use
_LAZY: dict[str, str] = {
    "PREFIX": "._prometheus",
    "QUANTILES": "._prometheus",
    "MetricsServer": "._prometheus",
    "RegistryCollector": "._prometheus",
    "collector_registry": "._prometheus",
    "prometheus_text": "._prometheus",
    "RunTracer": "._otel",
    "make_tracer": "._otel",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "BUILTIN_PRICES",
    "DEFAULT_LATENCY",
    "DEFAULT_METRICS",
    "METRICS",
    "PREFIX",
    "QUANTILES",
    "Anomaly",
    "EWMADetector",
    "HistogramSummary",
    "LatencyHistogram",
    "LatencySpec",
    "MetricSpec",
    "MetricsRegistry",
    "MetricsServer",
    "Price",
    "Pricing",
    "RegistryCollector",
    "RobustZDetector",
    "RunTracer",
    "SLAMonitor",
    "SLARule",
    "Violation",
    "collector_registry",
    "evaluate",
    "find_anomalies",
    "make_tracer",
    "parse_rule",
    "prometheus_text",
    "robust_z",
]
