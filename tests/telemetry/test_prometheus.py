"""Prometheus exposition: names, types, labels and values parsed back, and /metrics over HTTP."""

from __future__ import annotations

import math
import socket
import subprocess
import sys

import httpx
import prometheus_client
import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

import agentfleet.telemetry
from agentfleet.telemetry import (
    QUANTILES,
    LatencyHistogram,
    MetricSpec,
    MetricsRegistry,
    MetricsServer,
    collector_registry,
    prometheus_text,
)


def families(text: str) -> dict[str, tuple[str, list[Sample]]]:
    """family name -> (type, samples), as prometheus_client's parser reads the text."""
    return {family.name: (family.type, family.samples) for family in text_string_to_metric_families(text)}


def sample(samples: list[Sample], name: str, **labels: str) -> float:
    matches = [s.value for s in samples if s.name == name and s.labels == labels]
    assert len(matches) == 1, (name, labels, samples)
    return matches[0]


@pytest.fixture
def registry() -> MetricsRegistry:
    metrics = MetricsRegistry()
    for i in range(1, 1001):
        metrics.observe("agent", "developer", i / 1000)
    metrics.observe("agent", "reviewer", 2.0)
    metrics.observe("task_kind", "implement", 0.25)
    metrics.observe("provider", "openai/gpt-4o", 0.75)
    metrics.inc("tasks_total", 40, state="done")
    metrics.inc("tasks_total", 2, state="failed")
    metrics.inc("tokens_total", 1200, direction="input")
    metrics.inc("tokens_total", 345, direction="output")
    metrics.inc("cost_usd_total", 0.0625)
    metrics.inc("retries_total", 3)
    metrics.inc("cache_hits_total", 5, level="memory")
    metrics.inc("cache_hits_total", level="sqlite")
    metrics.set_gauge("queue_depth", 12)
    metrics.add_gauge("in_flight", 4)
    metrics.set_gauge("pool_size", 8, agent="developer")
    return metrics


class TestExposition:
    def test_names_and_types(self, registry: MetricsRegistry) -> None:
        """Every family has the agentfleet_ prefix, its unit in the name and the right type."""
        parsed = families(prometheus_text(registry))
        assert {name: kind for name, (kind, _) in parsed.items()} == {
            "agentfleet_task_duration_seconds": "summary",
            "agentfleet_task_kind_duration_seconds": "summary",
            "agentfleet_provider_call_duration_seconds": "summary",
            "agentfleet_tasks": "counter",  # the parser drops _total from a counter's family name
            "agentfleet_tokens": "counter",
            "agentfleet_cost_usd": "counter",
            "agentfleet_retries": "counter",
            "agentfleet_cache_hits": "counter",
            "agentfleet_rate_limited": "counter",
            "agentfleet_queue_depth": "gauge",
            "agentfleet_in_flight": "gauge",
            "agentfleet_pool_size": "gauge",
        }

    def test_latency_summary(self, registry: MetricsRegistry) -> None:
        """Quantile samples match the histogram; _count and _sum are exact; quantile 1 is the max."""
        _, samples = families(prometheus_text(registry))["agentfleet_task_duration_seconds"]
        name = "agentfleet_task_duration_seconds"
        developer = [s for s in samples if s.name == name and s.labels["agent"] == "developer"]
        quantiles = {s.labels["quantile"]: s.value for s in developer}
        assert set(quantiles) == {"0.5", "0.95", "0.99", "0.999", "1.0"} and len(QUANTILES) == 5
        assert quantiles["0.5"] == pytest.approx(0.5, rel=1e-3)
        assert quantiles["0.99"] == pytest.approx(0.99, rel=1e-3)
        assert quantiles["1.0"] == 1.0
        assert sample(samples, f"{name}_count", agent="developer") == 1000
        assert sample(samples, f"{name}_sum", agent="developer") == pytest.approx(500.5)
        assert sample(samples, name, agent="reviewer", quantile="0.5") == 2.0
        _, provider = families(prometheus_text(registry))["agentfleet_provider_call_duration_seconds"]
        assert sample(provider, "agentfleet_provider_call_duration_seconds_count", provider="openai/gpt-4o") == 1

    def test_counters_and_gauges(self, registry: MetricsRegistry) -> None:
        """Counter and gauge values and labels come back as recorded; unlabelled ones start at 0."""
        parsed = families(prometheus_text(registry))
        assert sample(parsed["agentfleet_tasks"][1], "agentfleet_tasks_total", state="done") == 40
        assert sample(parsed["agentfleet_tasks"][1], "agentfleet_tasks_total", state="failed") == 2
        assert sample(parsed["agentfleet_tokens"][1], "agentfleet_tokens_total", direction="input") == 1200
        assert sample(parsed["agentfleet_tokens"][1], "agentfleet_tokens_total", direction="output") == 345
        assert sample(parsed["agentfleet_cost_usd"][1], "agentfleet_cost_usd_total") == 0.0625
        assert sample(parsed["agentfleet_retries"][1], "agentfleet_retries_total") == 3
        assert sample(parsed["agentfleet_rate_limited"][1], "agentfleet_rate_limited_total") == 0
        assert sample(parsed["agentfleet_cache_hits"][1], "agentfleet_cache_hits_total", level="memory") == 5
        assert sample(parsed["agentfleet_queue_depth"][1], "agentfleet_queue_depth") == 12
        assert sample(parsed["agentfleet_in_flight"][1], "agentfleet_in_flight") == 4
        assert sample(parsed["agentfleet_pool_size"][1], "agentfleet_pool_size", agent="developer") == 8

    def test_fresh_registry(self) -> None:
        """Labelled families without series are left out; the unlabelled ones are there at 0."""
        parsed = families(prometheus_text(MetricsRegistry()))
        assert set(parsed) == {
            "agentfleet_cost_usd", "agentfleet_retries", "agentfleet_rate_limited",
            "agentfleet_queue_depth", "agentfleet_in_flight",
        }
        assert all(s.value == 0 for _, samples in parsed.values() for s in samples)

    def test_label_values_are_escaped(self) -> None:
        """Quotes, backslashes and newlines in label values survive the round trip."""
        metrics = MetricsRegistry()
        odd = 'say "hi"\\ then\nbye'
        metrics.observe("provider", odd, 0.1)
        metrics.inc("tasks_total", state=odd)
        parsed = families(prometheus_text(metrics))
        assert sample(parsed["agentfleet_tasks"][1], "agentfleet_tasks_total", state=odd) == 1
        _, samples = parsed["agentfleet_provider_call_duration_seconds"]
        assert sample(samples, "agentfleet_provider_call_duration_seconds_count", provider=odd) == 1

    def test_declared_metrics_and_empty_histograms(self) -> None:
        """A declared metric is exported with the prefix; an empty merged histogram has NaN quantiles."""
        metrics = MetricsRegistry()
        metrics.declare(MetricSpec("hedges_total", "counter", "Hedged calls.", ("provider",)))
        metrics.inc("hedges_total", 2, provider="p")
        metrics.merge_histogram("agent", "idle", LatencyHistogram())
        parsed = families(prometheus_text(metrics))
        assert sample(parsed["agentfleet_hedges"][1], "agentfleet_hedges_total", provider="p") == 2
        _, samples = parsed["agentfleet_task_duration_seconds"]
        assert math.isnan(sample(samples, "agentfleet_task_duration_seconds", agent="idle", quantile="0.5"))
        assert sample(samples, "agentfleet_task_duration_seconds_count", agent="idle") == 0

    def test_scrapes_see_new_values(self, registry: MetricsRegistry) -> None:
        """The collector reads the registry at every scrape."""
        collectors = collector_registry(registry)
        before = prometheus_client.generate_latest(collectors).decode()
        registry.inc("retries_total")
        after = prometheus_client.generate_latest(collectors).decode()
        assert sample(families(before)["agentfleet_retries"][1], "agentfleet_retries_total") == 3
        assert sample(families(after)["agentfleet_retries"][1], "agentfleet_retries_total") == 4

    def test_global_registry_untouched(self, registry: MetricsRegistry) -> None:
        """Nothing lands in prometheus_client's default registry, and two registries never collide."""
        prometheus_text(registry)
        prometheus_text(MetricsRegistry())
        MetricsServer(registry, 0)
        assert "agentfleet_" not in prometheus_client.generate_latest(prometheus_client.REGISTRY).decode()

    def test_prometheus_client_is_imported_lazily(self) -> None:
        """Recording metrics does not import prometheus_client; the exposition names load on first use."""
        code = (
            "import sys, agentfleet.telemetry as t\n"
            "r = t.MetricsRegistry(); r.observe('agent', 'a', 0.1); r.snapshot()\n"
            "assert 'prometheus_client' not in sys.modules, 'imported eagerly'\n"
            "assert t.prometheus_text(r).startswith('# HELP')\n"
            "assert 'prometheus_client' in sys.modules\n"
        )
        subprocess.run([sys.executable, "-c", code], check=True, timeout=60)

    def test_exports(self) -> None:
        """Every name in __all__ resolves and none is private."""
        for name in agentfleet.telemetry.__all__:
            assert not name.startswith("_")
            assert getattr(agentfleet.telemetry, name) is not None
        assert set(agentfleet.telemetry.__all__) <= set(dir(agentfleet.telemetry))


class TestMetricsServer:
    def test_serves_metrics_on_loopback_then_releases_the_port(self, registry: MetricsRegistry) -> None:
        """Port 0 binds an ephemeral port on 127.0.0.1 (the default host); /metrics answers; stop frees the port."""
        server = MetricsServer(registry, 0)
        assert not server.running
        with pytest.raises(RuntimeError):
            _ = server.port
        port = server.start()
        try:
            assert server.running and port == server.port > 0
            assert server.start() == port  # idempotent
            assert server.url == f"http://127.0.0.1:{port}/metrics"
            assert server._server is not None and server._server.server_address[0] == "127.0.0.1"  # not 0.0.0.0
            with httpx.Client(trust_env=False, timeout=5) as client:
                response = client.get(server.url)
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/plain")
                parsed = families(response.text)
                assert sample(parsed["agentfleet_tasks"][1], "agentfleet_tasks_total", state="done") == 40

                registry.inc("tasks_total", state="done")
                again = families(client.get(server.url).text)
                assert sample(again["agentfleet_tasks"][1], "agentfleet_tasks_total", state="done") == 41

                openmetrics = client.get(server.url, headers={"Accept": "application/openmetrics-text"})
                assert openmetrics.headers["content-type"].startswith("application/openmetrics-text")
                assert openmetrics.text.endswith("# EOF\n")

                assert client.get(f"http://127.0.0.1:{port}/other").status_code == 404
        finally:
            server.stop()
        server.stop()  # idempotent
        assert not server.running and server.port == port

        with pytest.raises(httpx.ConnectError), httpx.Client(trust_env=False, timeout=2) as client:
            client.get(f"http://127.0.0.1:{port}/metrics")
        with socket.socket() as probe:  # the port can be bound again
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))

    def test_fixed_port_and_restart(self, registry: MetricsRegistry) -> None:
        """A given port is used as is, and a stopped server starts again on it."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            free = probe.getsockname()[1]
        with MetricsServer(registry, free) as server:
            assert server.port == free
            server.stop()
            assert server.start() == free
            response = httpx.get(server.url, trust_env=False, timeout=5)
            assert response.status_code == 200
        assert not server.running

    def test_bad_port(self, registry: MetricsRegistry) -> None:
        with pytest.raises(ValueError, match="port"):
            MetricsServer(registry, 70000)
