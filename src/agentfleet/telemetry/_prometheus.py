"""Prometheus exposition of a ``MetricsRegistry``: a collector, the text format and a /metrics server.

# Design
# ``RegistryCollector`` turns a registry into metric families at every scrape, named
# ``agentfleet_<name>`` with the unit in the name (``_seconds``, ``_usd_total``) as Prometheus
# asks. It lives in its own ``CollectorRegistry`` (``collector_registry``), never in
# prometheus_client's global default one, so nothing else (process or GC collectors, another
# library's metrics, a second run in the same process) leaks into or collides with ours.
#
# Latency is a *summary* with quantile labels 0.5, 0.95, 0.99, 0.999 and 1 (the exact max),
# plus ``_count`` and ``_sum``, not a bucketed histogram. The HDR histograms already know
# every quantile to 0.1%; fixed ``le`` buckets would throw that away (a task's latency spans
# milliseconds for a sim agent to many minutes for an LLM, so no bucket layout fits all
# agents) and quadruple the series. What a summary gives up is aggregation across
# processes: a run is one process with one registry, which is what ``agentfleet run
# --metrics-port`` serves. The quantiles cover everything observed since the registry was
# made (the run), not a sliding window; ``rate(_sum) / rate(_count)`` still gives a windowed
# mean. ``LatencyHistogram.encode`` keeps the full distribution for anything finer.
#
# ``MetricsServer`` serves prometheus_client's WSGI app (content negotiation, OpenMetrics,
# gzip) on ``/metrics`` from a small threaded wsgiref server in a daemon thread, bound to
# 127.0.0.1 unless told otherwise. Port 0 asks the OS for a free port; ``port`` reports it.
# ``stop`` shuts the server down and closes its socket, so the port is free again.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable, Iterator
from socketserver import ThreadingMixIn
from types import TracebackType
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import CollectorRegistry, generate_latest, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

from ._metrics import MetricsRegistry

__all__ = [
    "PREFIX",
    "QUANTILES",
    "MetricsServer",
    "RegistryCollector",
    "collector_registry",
    "prometheus_text",
]

#: Every exported metric name starts with this.
PREFIX = "agentfleet_"
#: The quantile labels of every latency summary (1 is the exact maximum).
QUANTILES: tuple[float, ...] = (0.5, 0.95, 0.99, 0.999, 1.0)


class RegistryCollector(Collector):
    """A prometheus_client collector that reads a ``MetricsRegistry`` at every scrape."""

    def __init__(self, metrics: MetricsRegistry, prefix: str = PREFIX) -> None:
        self.metrics = metrics
        self.prefix = prefix

    def collect(self) -> Iterable[Metric]:
        yield from self._latency()
        yield from self._counters_and_gauges()

    def _latency(self) -> Iterator[Metric]:
        for spec in self.metrics.latency_specs():
            histograms = self.metrics.histograms(spec.kind)
            if not histograms:
                continue
            family = SummaryMetricFamily(self.prefix + spec.name, spec.help, labels=[spec.kind])
            for label, histogram in histograms.items():
                values = histogram.percentiles([q * 100 for q in QUANTILES])
                for q in QUANTILES:
                    value = values[q * 100]
                    family.add_sample(
                        family.name,
                        {spec.kind: label, "quantile": _float_label(q)},
                        float("nan") if value is None else value,
                    )
                family.add_metric([label], histogram.count, histogram.sum)
            yield family

    def _counters_and_gauges(self) -> Iterator[Metric]:
        for spec in self.metrics.metric_specs():
            series = self.metrics.series(spec.name)
            if not series:
                continue
            family: CounterMetricFamily | GaugeMetricFamily
            if spec.type == "counter":
                family = CounterMetricFamily(self.prefix + spec.name, spec.help, labels=list(spec.labels))
            else:
                family = GaugeMetricFamily(self.prefix + spec.name, spec.help, labels=list(spec.labels))
            for labels, value in series:
                family.add_metric([labels[name] for name in spec.labels], float(value))
            yield family


def _float_label(value: float) -> str:
    """A quantile as Prometheus clients write it: 0.5, 0.999, 1.0."""
    return repr(float(value))


def collector_registry(metrics: MetricsRegistry) -> CollectorRegistry:
    """A fresh prometheus_client ``CollectorRegistry`` holding only ``metrics``' collector."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RegistryCollector(metrics))
    return registry


def prometheus_text(metrics: MetricsRegistry) -> str:
    """The registry in the Prometheus text exposition format (what /metrics serves by default)."""
    return generate_latest(collector_registry(metrics)).decode("utf-8")


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never keeps the process alive
    allow_reuse_address = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged."""


class MetricsServer:
    """Serves ``registry`` as Prometheus text on ``http://host:port/metrics`` from a daemon thread.

    ``start()`` binds and returns the port (``port=0``: one the OS picks); ``stop()`` shuts the
    server down and releases the port; both are idempotent, and the server is a context manager.
    ``host`` defaults to 127.0.0.1: pass "0.0.0.0" (or "::") deliberately to expose the metrics
    beyond this machine. Other paths answer 404."""

    def __init__(self, registry: MetricsRegistry, port: int, host: str = "127.0.0.1") -> None:
        if not 0 <= port <= 65535:
            raise ValueError(f"port must be 0..65535, got {port!r}")
        self.registry = registry
        self.host = host
        self._requested_port = port
        self._server: _ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._app = make_wsgi_app(collector_registry(registry))

    def _route(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO", "") == "/metrics":
            result: Iterable[bytes] = self._app(environ, start_response)
            return result
        body = b"Not found: metrics are at /metrics\n"
        start_response("404 Not Found", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    def start(self) -> int:
        """Bind and start serving; returns the bound port. Starting a running server is a no-op."""
        if self._server is not None and self._port is not None:
            return self._port
        self._port = None
        family = socket.getaddrinfo(self.host, self._requested_port, type=socket.SOCK_STREAM)[0][0]

        class _Server(_ThreadingWSGIServer):
            address_family = family

        server = make_server(self.host, self._requested_port, self._route, _Server, _QuietHandler)
        self._server = server
        self._port = int(server.server_address[1])
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"agentfleet-metrics:{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self._port

    @property
    def port(self) -> int:
        """The bound port (still the last one after ``stop``). Raises ``RuntimeError`` before ``start``."""
        if self._port is None:
            raise RuntimeError("MetricsServer is not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://host:port/metrics`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    @property
    def running(self) -> bool:
        return self._server is not None

    def stop(self) -> None:
        """Stop serving, close the socket (the port is free again) and join the thread."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> MetricsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"{self.host}:{self._port}" if self._port is not None else "not started"
        return f"<MetricsServer {where}>"
