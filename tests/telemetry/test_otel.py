"""OpenTelemetry spans of a run: a run span, a child span per task that ran, their attributes and
times, OTLP/HTTP delivery to a real local collector (and to none), and the optional extra."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra is not installed: pip install 'agentfleet[otel]'")

from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from agentfleet._types import TaskRecord
from agentfleet.cache import MemoryCache, TieredCache
from agentfleet.errors import SpecError
from agentfleet.runtime import Instance, Runner, RunResult, TaskEvent
from agentfleet.spec import WorkflowSpec
from agentfleet.store import RunStore
from agentfleet.telemetry import RunTracer, make_tracer
from agentfleet.telemetry._otel import traces_url
from agentfleet.testing import run_virtual

from ..runtime.kit import build, rec, sim

EPOCH = 1_700_000_000 * 10**9  # the wall clock the tests give the tracer: the run starts here


def fixed_clock() -> int:
    return EPOCH


def mixed_spec() -> WorkflowSpec:
    """a fails once then succeeds; b maps over 3 items after a; c fails for good; d (after c) is skipped."""
    return build(
        [{"id": "a", "agent": "flaky", "prompt": "plan", "retries": 2},
         {"id": "b", "agent": "worker", "prompt": "do {{ item }}", "depends_on": ["a"], "map": [1, 2, 3]},
         {"id": "c", "agent": "broken", "prompt": "try", "depends_on": ["a"]},
         {"id": "d", "agent": "worker", "prompt": "after c", "depends_on": ["c"]}],
        {"flaky": sim(1.0, model="sim-fast", fail_attempts=1),
         "worker": sim(2.0, model="sim-default"),
         "broken": sim(0.5, fail_attempts=9)},
        policy="continue", max_parallel=2,
    )


def traced_run(spec: WorkflowSpec, **runner: Any) -> tuple[RunResult, RunTracer, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracer = make_tracer(exporter, clock=fixed_clock)
    runner.setdefault("cache", False)
    r = Runner(spec, **runner)
    tracer.attach(r)
    result = run_virtual(r.run())
    assert tracer.finish(result) is None
    return result, tracer, exporter


def split(spans: tuple[ReadableSpan, ...]) -> tuple[ReadableSpan, dict[str, ReadableSpan]]:
    """(the run span, task id -> task span)."""
    runs = [s for s in spans if s.name.startswith("run ")]
    assert len(runs) == 1
    tasks = {str(s.attributes["agentfleet.task.id"]): s for s in spans if s.name.startswith("task ")}  # type: ignore[index]
    assert len(tasks) == len(spans) - 1
    return runs[0], tasks


def ns(seconds: float) -> int:
    return EPOCH + int(seconds * 1e9)


@pytest.fixture(scope="module")
def mixed() -> tuple[RunResult, RunTracer, ReadableSpan, dict[str, ReadableSpan]]:
    result, tracer, exporter = traced_run(mixed_spec())
    run_span, tasks = split(exporter.get_finished_spans())
    return result, tracer, run_span, tasks


class TestRunSpans:
    def test_one_run_span_and_one_child_span_per_task_that_ran(self, mixed: Any) -> None:
        """The run span is the root; every task that started has a span under it; d never started."""
        result, tracer, run_span, tasks = mixed
        assert result.counts() == {"done": 4, "failed": 1, "skipped": 1}
        assert run_span.name == "run t" and run_span.parent is None
        assert sorted(tasks) == ["a", "b[0]", "b[1]", "b[2]", "c"]
        for span in tasks.values():
            assert span.parent is not None and span.parent.span_id == run_span.context.span_id
            assert span.context.trace_id == run_span.context.trace_id
        assert tasks["b[1]"].name == "task b"  # named by step, not instance: low cardinality
        stats = tracer.statistics()
        assert (stats.task_spans, stats.open_spans, stats.exported, stats.failed) == (5, 0, 6, 0)

    def test_task_attributes_are_the_records(self, mixed: Any) -> None:
        """Agent, provider, model, tokens (ours and gen_ai's), retries, waits, cache and state match the records."""
        result, _, _, tasks = mixed
        for task_id, span in tasks.items():
            record = rec(result, task_id)
            attrs = span.attributes
            assert attrs["agentfleet.agent"] == record.agent
            assert attrs["agentfleet.provider"] == "sim"
            assert attrs["agentfleet.state"] == record.state
            assert attrs["agentfleet.tokens.input"] == attrs["gen_ai.usage.input_tokens"] == record.tokens_in
            assert attrs["agentfleet.tokens.output"] == attrs["gen_ai.usage.output_tokens"] == record.tokens_out
            assert attrs["agentfleet.retries"] == record.attempts - 1
            assert attrs["agentfleet.queue_wait_s"] == pytest.approx(record.queue_wait)
            assert attrs["agentfleet.limit_wait_s"] == 0.0
            assert attrs["agentfleet.cache.hit"] is False and "agentfleet.cache.level" not in attrs
        assert tasks["a"].attributes["gen_ai.request.model"] == "sim-fast"
        assert tasks["b[0]"].attributes["gen_ai.request.model"] == "sim-default"
        assert tasks["a"].attributes["agentfleet.retries"] == 1  # failed once, then succeeded
        assert tasks["b[0]"].attributes["agentfleet.tokens.output"] > 0
        # max_parallel=2: the third item of b waits for a slot
        assert max(tasks[f"b[{i}]"].attributes["agentfleet.queue_wait_s"] for i in range(3)) == pytest.approx(2.0)

    def test_a_failed_task_has_error_status_with_its_error(self, mixed: Any) -> None:
        """failed: ERROR with the error text; done: OK; the failed run's span: ERROR with the run's failure."""
        result, _, run_span, tasks = mixed
        assert tasks["c"].status.status_code is StatusCode.ERROR
        assert tasks["c"].status.description == rec(result, "c").error
        assert "simulated failure" in (tasks["c"].status.description or "")
        assert all(tasks[t].status.status_code is StatusCode.OK for t in ("a", "b[0]", "b[1]", "b[2]"))
        assert run_span.status.status_code is StatusCode.ERROR
        assert run_span.status.description == result.failure

    def test_span_times_are_the_events_times_on_the_wall_clock(self, mixed: Any) -> None:
        """Start and end are the records' times, offset once to the wall clock; all inside the run span."""
        result, _, run_span, tasks = mixed
        assert run_span.start_time == EPOCH
        for task_id, span in tasks.items():
            record = rec(result, task_id)
            assert span.start_time == ns(record.started_at)
            assert span.end_time == ns(record.ended_at)
            assert run_span.start_time <= span.start_time <= span.end_time <= run_span.end_time
        # a failed attempt (1 s), a backoff, a good attempt (1 s): the span spans all of it
        assert tasks["a"].end_time - tasks["a"].start_time == pytest.approx(rec(result, "a").duration * 1e9, abs=2)
        assert rec(result, "a").duration > 2.0
        assert run_span.end_time == max(s.end_time for s in tasks.values())  # b's items end last

    def test_the_run_span_carries_the_totals(self, mixed: Any) -> None:
        """Counts by state (tasks that never started included), tokens, retries and makespan."""
        result, _, run_span, _ = mixed
        attrs = run_span.attributes
        assert attrs["agentfleet.workflow"] == "t" and attrs["agentfleet.run.status"] == "failed"
        assert (attrs["agentfleet.tasks.total"], attrs["agentfleet.tasks.done"], attrs["agentfleet.tasks.failed"],
                attrs["agentfleet.tasks.skipped"], attrs["agentfleet.tasks.not_started"]) == (6, 4, 1, 1, 1)
        assert attrs["agentfleet.task_spans"] == 5
        assert attrs["agentfleet.tokens.output"] == sum(r.tokens_out for r in result.records)
        assert attrs["agentfleet.tokens.input"] == sum(r.tokens_in for r in result.records)
        assert attrs["agentfleet.retries"] == 1
        ran = [r for r in result.records if r.started_at is not None]
        makespan = max(r.ended_at for r in ran) - min(r.started_at for r in ran)
        assert attrs["agentfleet.makespan_s"] == pytest.approx(makespan)
        assert "agentfleet.run.id" not in attrs  # no store, no run id

    def test_a_stored_run_names_its_run_id(self, tmp_path: Path) -> None:
        """With a store the run span carries the run id the CLI prints; success is OK status."""
        spec = build([{"id": "x", "agent": "s", "prompt": "go"}], {"s": sim(0.5)})
        store = RunStore(tmp_path / "runs.db")
        try:
            result, _, exporter = traced_run(spec, store=store)
        finally:
            store.close()
        run_span, tasks = split(exporter.get_finished_spans())
        assert result.run_id and run_span.attributes["agentfleet.run.id"] == result.run_id
        assert run_span.status.status_code is StatusCode.OK and list(tasks) == ["x"]

    def test_a_cache_hit_is_marked_with_its_level(self) -> None:
        """The second run of a deterministic task is answered by the cache: cache.hit and cache.level."""
        cache = TieredCache([MemoryCache()])
        spec = build([{"id": "x", "agent": "s", "prompt": "same"}], {"s": sim(0.5, temperature=0)})
        traced_run(spec, cache=cache)
        _, _, exporter = traced_run(spec, cache=cache)
        run_span, tasks = split(exporter.get_finished_spans())
        assert tasks["x"].attributes["agentfleet.cache.hit"] is True
        assert tasks["x"].attributes["agentfleet.cache.level"] == "memory"
        assert run_span.attributes["agentfleet.cache.hits"] == 1

    def test_a_run_that_times_out_ends_its_running_tasks_as_interrupted(self) -> None:
        """Tasks running when the run stops get a span in state interrupted; the run span is ended too."""
        spec = build([{"id": f"t{i}", "agent": "s", "prompt": str(i)} for i in range(3)], {"s": sim(5.0)},
                     timeout=1.0)
        result, _, exporter = traced_run(spec)
        run_span, tasks = split(exporter.get_finished_spans())
        assert result.status == "failed" and sorted(tasks) == ["t0", "t1", "t2"]
        for span in tasks.values():
            assert span.attributes["agentfleet.state"] == "interrupted"
            assert span.status.status_code is StatusCode.UNSET
            assert span.end_time - span.start_time == pytest.approx(1e9, abs=2)
        assert run_span.end_time == ns(1.0)

    def test_finish_ends_spans_left_open_and_a_run_without_result(self) -> None:
        """A task still open at finish() ends as interrupted; finish(None) marks the run span as an error."""
        exporter = InMemorySpanExporter()
        tracer = make_tracer(exporter, clock=fixed_clock)
        spec = build([{"id": "x", "agent": "s", "prompt": "go"}], {"s": sim(1.0)})
        runner = Runner(spec)
        tracer.attach(runner)
        inst = _instance(runner, "x")
        tracer.on_event(TaskEvent("ready", inst, 0.0))
        tracer.on_event(TaskEvent("started", inst, 0.25))
        assert tracer.statistics().open_spans == 1
        assert tracer.finish(None) is None
        run_span, tasks = split(exporter.get_finished_spans())
        assert tasks["x"].attributes["agentfleet.state"] == "interrupted"
        # the wall clock is read at the first event handled (started, 0.25 s into the run)
        assert run_span.start_time == EPOCH - 250_000_000
        assert tasks["x"].start_time == tasks["x"].end_time == run_span.end_time == EPOCH
        assert run_span.status.status_code is StatusCode.ERROR
        assert run_span.attributes["agentfleet.run.status"] == "error"
        assert tracer.finish(None) is None and len(exporter.get_finished_spans()) == 2  # once only

    def test_finish_without_any_event_still_writes_the_run_span(self) -> None:
        """A run that failed before its first task (bad credentials, say) still leaves its run span."""
        exporter = InMemorySpanExporter()
        tracer = make_tracer(exporter, clock=fixed_clock)
        tracer.finish(None)
        (span,) = exporter.get_finished_spans()
        assert span.name == "run run" and span.start_time == span.end_time == EPOCH

    def test_resumed_tasks_get_no_span(self) -> None:
        """A task restored from an earlier session reports done without starting: counted, not spanned."""
        exporter = InMemorySpanExporter()
        tracer = make_tracer(exporter, clock=fixed_clock)
        spec = build([{"id": "x", "agent": "s", "prompt": "go"}], {"s": sim(1.0)})
        inst = _instance(Runner(spec), "x")
        inst.record.resumed = True
        tracer.on_event(TaskEvent("done", inst, 0.0))
        tracer.finish(None)
        assert [s.name for s in exporter.get_finished_spans()] == ["run run"]

    def test_meta_becomes_attributes(self) -> None:
        """Rate-limit waits, hedges, fallbacks, coalescing and the route that answered are attributes."""
        exporter = InMemorySpanExporter()
        tracer = make_tracer(exporter, clock=fixed_clock)
        spec = build([{"id": "x", "agent": "s", "prompt": "go"}], {"s": sim(1.0)})
        inst = _instance(Runner(spec), "x")
        tracer.on_event(TaskEvent("started", inst, 0.0))
        inst.record.meta.update(limit_wait=0.75, hedges=1, fallbacks=2, coalesced=True, route="sim/sim-fast",
                                cache="redis")
        inst.record.ended_at = 1.0
        tracer.on_event(TaskEvent("done", inst, 1.0))
        tracer.finish(None)
        _, tasks = split(exporter.get_finished_spans())
        attrs = tasks["x"].attributes
        assert attrs["agentfleet.limit_wait_s"] == 0.75
        assert (attrs["agentfleet.hedges"], attrs["agentfleet.fallbacks"]) == (1, 2)
        assert attrs["agentfleet.coalesced"] is True and attrs["agentfleet.route"] == "sim/sim-fast"
        assert attrs["agentfleet.cache.hit"] is True and attrs["agentfleet.cache.level"] == "redis"

    def test_the_global_tracer_provider_is_left_alone(self) -> None:
        """The tracer's provider is private: the process-wide provider is never set."""
        before = trace.get_tracer_provider()
        traced_run(build([{"id": "x", "agent": "s", "prompt": "go"}], {"s": sim(0.1)}))
        assert trace.get_tracer_provider() is before

    def test_the_service_name_is_agentfleet_unless_the_environment_names_one(
            self, monkeypatch: pytest.MonkeyPatch) -> None:
        """service.name: the argument, else OTEL_SERVICE_NAME over the default "agentfleet"."""
        monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
        monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)

        def service(**kw: Any) -> Any:
            exporter = InMemorySpanExporter()
            make_tracer(exporter, **kw).finish(None)
            return exporter.get_finished_spans()[0].resource.attributes["service.name"]

        assert service() == "agentfleet"
        monkeypatch.setenv("OTEL_SERVICE_NAME", "from-env")
        assert service() == "from-env"
        assert service(service_name="explicit") == "explicit"

    def test_console_spans_go_to_stderr(self, capsys: pytest.CaptureFixture[str]) -> None:
        """The console exporter writes JSON spans to stderr, so --json stdout stays clean."""
        tracer = make_tracer("console", service_name="svc-test")
        runner = Runner(build([{"id": "x", "agent": "s", "prompt": "go"}], {"s": sim(0.1)}), cache=False)
        tracer.attach(runner)
        assert tracer.finish(run_virtual(runner.run())) is None
        captured = capsys.readouterr()
        assert captured.out == ""
        assert '"name": "task x"' in captured.err and '"name": "run t"' in captured.err
        assert '"service.name": "svc-test"' in captured.err


def _instance(runner: Runner, task_id: str) -> Instance:
    """A scheduler instance of ``task_id`` that nothing runs (its events are fed by hand)."""
    step = runner.plan.steps[task_id]
    record = TaskRecord(task_id=task_id, agent=step.agent, ready_at=0.0, attempts=1)
    return Instance(task_id, step, None, None, record, None)  # type: ignore[arg-type]


# -- OTLP over HTTP -------------------------------------------------------------------------


class Collector:
    """A local OTLP/HTTP receiver: keeps every ExportTraceServiceRequest POSTed to /v1/traces."""

    def __init__(self, status: int = 200) -> None:
        self.requests: list[ExportTraceServiceRequest] = []
        self.paths: list[str] = []
        received, paths = self.requests, self.paths

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                paths.append(self.path)
                if status == 200:
                    request = ExportTraceServiceRequest()
                    request.ParseFromString(body)
                    received.append(request)
                self.send_response(status)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> Collector:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def spans(self) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
        """(name, attributes, resource attributes) of every span received."""
        out = []
        for request in self.requests:
            for resource_spans in request.resource_spans:
                resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        out.append((span.name, {kv.key: _value(kv.value) for kv in span.attributes}, resource))
        return out


def _value(any_value: Any) -> Any:
    return getattr(any_value, any_value.WhichOneof("value"))


@pytest.fixture
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Local collectors are reached directly, whatever proxy the environment names."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.usefixtures("no_proxy")
class TestOtlp:
    def test_spans_arrive_at_a_collector(self) -> None:
        """Every span reaches POST /v1/traces as protobuf, with its attributes and the service name."""
        with Collector() as collector:
            tracer = make_tracer("otlp", collector.url, service_name="fleet-test", timeout=5)
            runner = Runner(mixed_spec(), cache=False)
            tracer.attach(runner)
            result = run_virtual(runner.run())
            assert tracer.finish(result) is None
        assert set(collector.paths) == {"/v1/traces"}
        spans = collector.spans()
        assert sorted(name for name, _, _ in spans) == ["run t", "task a", "task b", "task b", "task b", "task c"]
        tasks = {attrs["agentfleet.task.id"]: attrs for name, attrs, _ in spans if name.startswith("task ")}
        assert tasks["a"]["agentfleet.retries"] == 1 and tasks["a"]["gen_ai.request.model"] == "sim-fast"
        assert tasks["c"]["agentfleet.state"] == "failed"
        assert tasks["b[2]"]["gen_ai.usage.output_tokens"] == rec(result, "b[2]").tokens_out
        assert all(resource["service.name"] == "fleet-test" for _, _, resource in spans)
        (run_attrs,) = [attrs for name, attrs, _ in spans if name == "run t"]
        assert run_attrs["agentfleet.tasks.failed"] == 1 and run_attrs["agentfleet.run.status"] == "failed"

    def test_an_unreachable_collector_is_a_warning_not_an_error(self, capfd: pytest.CaptureFixture[str]) -> None:
        """Connection refused: finish() returns one line saying so, quickly, and prints nothing itself."""
        port = closed_port()
        tracer = make_tracer("otlp", f"http://127.0.0.1:{port}", timeout=1)
        runner = Runner(mixed_spec(), cache=False)
        tracer.attach(runner)
        result = run_virtual(runner.run())
        started = time.monotonic()
        message = tracer.finish(result)
        assert time.monotonic() - started < 4
        assert message is not None and message == tracer.delivery_error
        assert message.startswith(f"OpenTelemetry: 6 of 6 spans not delivered to http://127.0.0.1:{port}/v1/traces")
        assert "Connection refused" in message
        assert tracer.statistics().failed == 6
        assert capfd.readouterr().err == ""  # the SDK's own log lines were captured, not printed

    def test_a_collector_answering_an_error_status_is_reported(self) -> None:
        """A 404 (wrong path, say) is not retried and is named in the warning."""
        with Collector(status=404) as collector:
            tracer = make_tracer("otlp", collector.url, timeout=2)
            runner = Runner(build([{"id": "x", "agent": "s", "prompt": "go"}], {"s": sim(0.1)}), cache=False)
            tracer.attach(runner)
            message = tracer.finish(run_virtual(runner.run()))
        assert message is not None and "2 of 2 spans not delivered" in message and "HTTP 404" in message

    def test_the_endpoint_is_a_base_url_or_the_traces_url(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """/v1/traces is appended to a base URL; the OTLP environment variables are the defaults."""
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", raising=False)
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT", raising=False)
        assert traces_url() == "http://127.0.0.1:4318/v1/traces"
        assert traces_url("http://collector:4318/") == "http://collector:4318/v1/traces"
        assert traces_url("https://c.example/v1/traces") == "https://c.example/v1/traces"
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env-collector:4318")
        assert traces_url() == "http://env-collector:4318/v1/traces"
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://traces:9999/custom")
        assert traces_url() == "http://traces:9999/custom"
        with pytest.raises(SpecError, match="not an http"):
            make_tracer("otlp", "collector:4318")


# -- the optional extra ---------------------------------------------------------------------


class TestExtra:
    def test_a_missing_extra_is_a_user_error_naming_it(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without opentelemetry installed, make_tracer says how to install it (exit code 2)."""
        monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)
        with pytest.raises(SpecError, match=r"pip install 'agentfleet\[otel\]'") as caught:
            make_tracer("console")
        assert caught.value.exit_code == 2

    def test_an_unknown_exporter_is_a_user_error(self) -> None:
        """Only console and otlp are exporters by name."""
        with pytest.raises(SpecError, match="unknown OpenTelemetry exporter 'jaeger'; use one of: console, otlp"):
            make_tracer("jaeger")
        with pytest.raises(SpecError, match="not an OpenTelemetry SpanExporter"):
            make_tracer(object())  # type: ignore[arg-type]

    def test_importing_telemetry_never_needs_opentelemetry(self) -> None:
        """agentfleet.telemetry (and the names) import with opentelemetry absent; only make_tracer fails."""
        code = (
            "import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'opentelemetry' or name.startswith('opentelemetry.'):\n"
            "            raise ImportError('blocked: ' + name)\n"
            "sys.meta_path.insert(0, Block())\n"
            "import agentfleet.telemetry as t\n"
            "from agentfleet.telemetry import RunTracer, make_tracer\n"
            "from agentfleet.errors import SpecError\n"
            "try:\n"
            "    make_tracer('otlp')\n"
            "except SpecError as exc:\n"
            "    print(exc)\n"
            "print(any(m.startswith('opentelemetry') for m in sys.modules))\n"
        )
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        first, second = done.stdout.splitlines()
        assert "pip install 'agentfleet[otel]'" in first
        assert second == "False"


@pytest.fixture(autouse=True)
def _no_leaked_handlers() -> Iterator[None]:
    """Each tracer removes the log handler it added to the SDK's loggers."""
    import logging

    names = ("opentelemetry.exporter.otlp.proto.http", "opentelemetry.sdk._shared_internal")
    before = {name: list(logging.getLogger(name).handlers) for name in names}
    yield
    assert {name: list(logging.getLogger(name).handlers) for name in names} == before
