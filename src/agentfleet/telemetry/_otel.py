"""OpenTelemetry spans for a run and its tasks (the optional ``otel`` extra).

# Design
# A ``RunTracer`` is a scheduler listener (``Runner.subscribe``) writing one span per run and one
# child span per task that ran, into a *private* ``TracerProvider``: the global provider is never
# set, so a host application's own tracing is untouched and two runs in one process do not mix.
# The exporter is the console (stderr, so ``--json`` stdout stays clean), OTLP over HTTP/protobuf
# (batched on the SDK's worker thread) or any SDK ``SpanExporter`` given (an in-memory one in tests).
#
# Times: scheduler events carry seconds since the run's start on the run's clock (monotonic, or
# virtual under ``run_virtual``). The wall-clock offset is measured once, at the first event
# (``clock()`` in epoch ns minus the event's time), and every span gets explicit start and end
# times from the events and records, so spans show when things happened, not when the listener
# got round to them, and a run on virtual time exports its virtual durations.
#
# Cost: the listener runs on every state change of 10,000-task runs. ``ready`` returns at the first
# comparison; ``started`` only notes the instance; a final state builds the task's span whole, as
# a finished ``ReadableSpan`` (the record has its start, end, attributes and status by then), and
# hands it on in groups of ``_GROUP``: to the batching processor (OTLP) as the SDK's ``Span.end``
# would, or for a synchronous exporter (console, in-memory) straight to the exporter as one batch.
# That skips the SDK's live ``Span`` (its lock, attribute re-validation, a second attribute write)
# and a context switch per span: the tracer's cost per task fell from ~85 to ~20 µs on the
# 10,000-task fan-out; the exporters see the same spans. A console user sees spans in groups.
# The run span is a regular SDK span (the sampler decides on it; its task spans follow its
# decision, as ParentBased sampling would). Run totals (counts, tokens, makespan) come from the
# ``RunResult`` in ``finish()``, not from per-event tallies.
#
# Delivery: export failures never raise into the run or out of ``finish()``. Exports go through a
# small counting wrapper; the OTLP exporter's own log lines are captured (not printed by logging's
# last-resort handler) and condensed into ``delivery_error``, one line the CLI prints as a warning.
# Once ``finish()`` has seen an export fail, the remaining batches are dropped at once rather than
# each waiting out the exporter's timeout against a collector that is not there.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import sys
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from .._types import TaskRecord, TaskState
from ..errors import SpecError

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
    from opentelemetry.trace import Span

    from ..runtime import Runner, RunResult, TaskEvent

__all__ = ["EXPORTERS", "RunTracer", "TracerStatistics", "make_tracer"]

#: task spans handed to the exporter (or the batching processor) together
_GROUP = 256

#: the exporters ``make_tracer`` builds by name (``--otel``)
EXPORTERS = ("console", "otlp")
DEFAULT_ENDPOINT = "http://127.0.0.1:4318"
#: seconds per OTLP export unless OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT says otherwise: half the SDK's
#: 10 s, so a run whose collector is down ends at most a few seconds late
DEFAULT_TIMEOUT = 5.0
TRACES_PATH = "/v1/traces"
INSTALL_HINT = "pip install 'agentfleet[otel]'"
DEFAULT_SERVICE_NAME = "agentfleet"

# Loggers whose warnings are about delivery: the OTLP/HTTP exporter, and the batch processor
# ("Queue full, dropping Span"). Captured while a tracer lives, so they do not reach stderr.
_DELIVERY_LOGGERS = ("opentelemetry.exporter.otlp.proto.http", "opentelemetry.sdk._shared_internal")
_TIMEOUT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")


@dataclass(frozen=True, slots=True)
class TracerStatistics:
    """What a tracer has done: task spans opened and still open, spans exported or not delivered."""

    task_spans: int
    open_spans: int
    exported: int
    failed: int


class RunTracer:
    """Writes a run span and a span per task that ran; build it with ``make_tracer``.

    ``attach(runner)`` before ``runner.run()``, ``finish(result)`` after it (also after a failed or
    interrupted run). ``on_event`` is the scheduler listener, usable on a bare ``Scheduler`` too.
    """

    def __init__(self, provider: TracerProvider, *, target: str, tally: _Tally, processor: SpanProcessor,
                 direct: bool = False, capture: _Capture | None = None,
                 clock: Callable[[], int] = time.time_ns) -> None:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags, set_span_in_context

        from .. import __version__

        self._provider = provider
        self._processor = processor
        #: task spans waiting to be handed over, in groups of ``_GROUP``; ``direct``: straight to the
        #: exporter as one batch (what a synchronous processor would do one span at a time)
        self._pending: list[ReadableSpan] = []
        self._direct = direct
        self._tracer = provider.get_tracer("agentfleet", __version__)
        self._scope = InstrumentationScope("agentfleet", __version__)
        self._readable = ReadableSpan
        self._span_context = SpanContext
        self._new_span_id = provider.id_generator.generate_span_id
        self._sampled = TraceFlags(TraceFlags.SAMPLED)
        self._unset = Status(StatusCode.UNSET)
        self._parent: Any = None  # the run span's SpanContext
        self._trace_id = 0
        self._recording = True  # False when the sampler dropped the run span: its tasks are dropped too
        self._target = target
        self._tally = tally
        self._capture = capture
        self._clock = clock
        self._kind = SpanKind.INTERNAL
        self._status = Status
        self._error = StatusCode.ERROR
        self._ok = Status(StatusCode.OK)
        self._in_context = set_span_in_context
        self._runner: Runner | None = None
        self._name = "run"
        self._models: dict[str, str] = {}
        self._agent_providers: dict[str, str] = {}
        self._base: dict[str, dict[str, Any]] = {}  # agent -> attributes every span of it starts with
        self._span_names: dict[str, str] = {}  # step id -> span name
        self._open: dict[str, Any] = {}  # instance id -> its Instance: started, not ended
        self._run_span: Span | None = None
        self._context: Context | None = None
        self._epoch = 0  # epoch ns of the run's time 0
        self._last = 0.0  # run time of the latest event
        self._spans = 0
        self._finished = False
        self.delivery_error: str | None = None
        """Why spans were not delivered (collector unreachable, queue full...), after ``finish()``."""

    # -- wiring -------------------------------------------------------------------------

    def attach(self, runner: Runner) -> None:
        """Subscribe to ``runner``'s task events and take its workflow name, agents and models."""
        self._runner = runner
        spec = runner.spec
        self._name = spec.name
        for name, agent in spec.agents.items():
            self._models[name] = agent.model
            self._agent_providers[name] = agent.provider
        runner.subscribe(self.on_event)

    def statistics(self) -> TracerStatistics:
        """Task spans opened and still open; spans exported and not delivered (so far)."""
        tally = self._tally
        return TracerStatistics(task_spans=self._spans, open_spans=len(self._open),
                                exported=tally.exported, failed=tally.failed)

    # -- the listener -------------------------------------------------------------------

    def on_event(self, event: TaskEvent) -> None:
        """Scheduler listener: a task span opens on ``started`` and ends on its final state."""
        kind = event.kind
        if kind == "ready":
            return
        t = event.time
        if self._context is None:
            self._begin(t)
        self._last = t
        inst = event.instance
        if kind == "started":
            if not self._finished:  # events after finish() (a run still going) have nowhere to go
                self._open[inst.id] = inst
            return
        if self._open.pop(inst.id, None) is not None:  # else never started this session (skipped...)
            self._end_task(inst.step, inst.id, inst.record, kind, t)

    def _base_attributes(self, agent: str) -> dict[str, Any]:
        base: dict[str, Any] = {"agentfleet.agent": agent}
        model = self._models.get(agent)
        if model:
            base["gen_ai.request.model"] = model
        self._base[agent] = base
        return base

    def _end_task(self, step: Any, task_id: str, record: TaskRecord, state: str, t: float) -> None:
        """The task's span, whole: built as a finished ``ReadableSpan`` (start, end, attributes and
        status known at once) and handed to the span processor, as the SDK's ``Span.end`` would."""
        self._spans += 1
        if not self._recording:
            return
        attempts = record.attempts
        tokens_in = record.tokens_in
        tokens_out = record.tokens_out
        started = record.started_at
        ready = record.ready_at
        attrs: dict[str, Any] = {
            "agentfleet.task.id": task_id,
            "agentfleet.state": state,
            "agentfleet.provider": record.provider or self._agent_providers.get(record.agent, ""),
            "agentfleet.retries": attempts - 1 if attempts > 1 else 0,
            "agentfleet.tokens.input": tokens_in,
            "agentfleet.tokens.output": tokens_out,
            "gen_ai.usage.input_tokens": tokens_in,
            "gen_ai.usage.output_tokens": tokens_out,
            "agentfleet.queue_wait_s": started - ready if started is not None and ready is not None
            and started > ready else 0.0,
            "agentfleet.limit_wait_s": 0.0,
            "agentfleet.cache.hit": False,
        }
        meta = record.meta
        if meta:
            _meta_attributes(meta, attrs)
        base = self._base.get(step.agent)
        if base is None:
            base = self._base_attributes(step.agent)
        name = self._span_names.get(step.id)
        if name is None:
            name = self._span_names[step.id] = "task " + step.id
        if state == TaskState.FAILED:
            status = self._status(self._error, record.error or "failed")
        elif state == TaskState.DONE:
            status = self._ok
        else:
            status = self._unset
        ended = record.ended_at
        start = record.started_at
        epoch = self._epoch
        context = self._span_context(self._trace_id, self._new_span_id(), False, self._sampled)
        pending = self._pending
        pending.append(self._readable(
            name, context, self._parent, self._provider.resource, {**base, **attrs}, kind=self._kind, status=status,
            start_time=epoch + int((t if start is None else start) * 1e9),
            end_time=epoch + int((t if ended is None else ended) * 1e9), instrumentation_scope=self._scope))
        if len(pending) >= _GROUP:
            self._hand_over()

    def _hand_over(self) -> None:
        """Give the waiting task spans to the exporter (one batch) or the batching processor."""
        spans, self._pending = self._pending, []
        if not spans:
            return
        if self._direct:
            self._tally.export(spans)
        else:
            on_end = self._processor.on_end
            for span in spans:
                on_end(span)

    def _begin(self, t: float) -> None:
        """Open the run span at the run's time 0, measuring the wall-clock offset once."""
        self._epoch = self._clock() - int(t * 1e9)
        attrs: dict[str, Any] = {"agentfleet.workflow": self._name}
        runner = self._runner
        if runner is not None:
            attrs["agentfleet.run.key"] = runner.run_key
            if runner.run_id:
                attrs["agentfleet.run.id"] = runner.run_id
        span = self._tracer.start_span("run " + self._name, None, self._kind, attrs, start_time=self._epoch)
        self._run_span = span
        self._context = self._in_context(span)
        parent = span.get_span_context()
        self._parent, self._trace_id = parent, parent.trace_id
        self._recording = span.is_recording() and parent.trace_flags.sampled

    # -- the end ------------------------------------------------------------------------

    def finish(self, result: RunResult | None = None) -> str | None:
        """End open task spans as interrupted and the run span with the run's totals, flush and shut down.

        ``result`` is the run's ``RunResult`` (None when the run raised). Blocks while the last spans
        are delivered: for OTLP at most about two export timeouts (``make_tracer(timeout=...)``) when
        the collector does not answer. Never raises for a delivery failure: returns (and keeps in
        ``delivery_error``) a one-line message instead, None when every span was delivered.
        Calling it again does nothing."""
        if self._finished:
            return self.delivery_error
        self._finished = True
        try:
            self._end_run(result)
        finally:
            self._shutdown()
        return self.delivery_error

    def _end_run(self, result: RunResult | None) -> None:
        if self._context is None:
            self._begin(0.0)  # no task ever changed state: a run span of no length still says so
        end = self._last
        for task_id, inst in list(self._open.items()):
            self._end_task(inst.step, task_id, inst.record, TaskState.INTERRUPTED, end)
        self._open.clear()
        self._hand_over()
        run_span = self._run_span
        assert run_span is not None
        attrs: dict[str, Any] = {"agentfleet.task_spans": self._spans}
        if result is None:
            attrs["agentfleet.run.status"] = "error"
            run_span.set_attributes(attrs)
            run_span.set_status(self._status(self._error, "the run ended without a result"))
            run_span.end(self._epoch + int(end * 1e9))
            return
        if result.run_id:
            attrs["agentfleet.run.id"] = result.run_id
        attrs["agentfleet.run.status"] = result.status
        attrs.update(_run_totals(result.records))
        run_span.set_attributes(attrs)
        if result.status == "failed":
            run_span.set_status(self._status(self._error, result.failure or "failed"))
        elif result.status == "succeeded":
            run_span.set_status(self._ok)
        run_span.end(self._epoch + int(end * 1e9))

    def _shutdown(self) -> None:
        tally = self._tally
        tally.closing = True
        try:
            self._provider.force_flush()
            self._provider.shutdown()
        except Exception as exc:  # noqa: BLE001 - delivery must never fail the caller
            tally.note(f"{type(exc).__name__}: {exc}")
        finally:
            capture = self._capture
            if capture is not None:
                capture.detach()
        ended = self._spans + 1  # the task spans and the run span
        lost = ended - tally.exported
        run_span = self._run_span
        sampled = run_span is not None and run_span.get_span_context().trace_flags.sampled
        if tally.failed or (lost > 0 and sampled):  # spans sampled out were never meant to be sent
            reason = tally.reason or (capture.reason if capture is not None else None)
            if reason is None and tally.failed == 0:
                reason = "dropped before export: queue full or shut down"
            elif reason is None and capture is not None:
                # The exporter gave up without saying why (its retries did not fit in its timeout):
                # one quick connection attempt tells a refused or unknown host from a slow one.
                reason = _probe(self._target) or "no answer within the export timeout"
            self.delivery_error = (f"OpenTelemetry: {lost} of {ended} spans not delivered to {self._target}"
                                   + (f" ({reason})" if reason else ""))


def _meta_attributes(meta: dict[str, Any], attrs: dict[str, Any]) -> None:
    """Attributes from a task record's ``meta``: cache, limiter waits, hedges, fallbacks."""
    level = meta.get("cache")
    if level:
        attrs["agentfleet.cache.hit"] = True
        attrs["agentfleet.cache.level"] = str(level)
    waited = meta.get("limit_wait")
    if waited:
        attrs["agentfleet.limit_wait_s"] = float(waited)
    for key in ("hedges", "fallbacks"):
        value = meta.get(key)
        if value:
            attrs["agentfleet." + key] = int(value)
    if meta.get("coalesced"):
        attrs["agentfleet.coalesced"] = True
    route = meta.get("route")
    if route:
        attrs["agentfleet.route"] = str(route)


def _run_totals(records: Sequence[Any]) -> dict[str, Any]:
    """The run span's totals: tasks by state, tokens, retries, cache hits, makespan."""
    counts: dict[str, int] = {}
    tokens_in = tokens_out = retries = hits = not_started = resumed = 0
    first: float | None = None
    last: float | None = None
    for r in records:
        counts[r.state] = counts.get(r.state, 0) + 1
        if r.resumed:
            resumed += 1
            continue
        tokens_in += r.tokens_in
        tokens_out += r.tokens_out
        if r.attempts > 1:
            retries += r.attempts - 1
        if r.meta and r.meta.get("cache"):
            hits += 1
        if r.started_at is None:
            not_started += 1
        elif r.ended_at is not None:
            first = r.started_at if first is None else min(first, r.started_at)
            last = r.ended_at if last is None else max(last, r.ended_at)
    attrs: dict[str, Any] = {f"agentfleet.tasks.{state}": n for state, n in counts.items()}
    attrs.update({
        "agentfleet.tasks.total": len(records),
        "agentfleet.tasks.not_started": not_started,
        "agentfleet.tasks.resumed": resumed,
        "agentfleet.tokens.input": tokens_in,
        "agentfleet.tokens.output": tokens_out,
        "gen_ai.usage.input_tokens": tokens_in,
        "gen_ai.usage.output_tokens": tokens_out,
        "agentfleet.retries": retries,
        "agentfleet.cache.hits": hits,
        "agentfleet.makespan_s": (last - first) if first is not None and last is not None else 0.0,
    })
    return attrs


# -- delivery -----------------------------------------------------------------------------

class _Tally:
    """Wraps an exporter (duck-typed, so this module imports no SDK class at import time):
    counts spans exported and failed, turns exceptions into failures, and once ``closing`` has
    seen a failure drops the rest at once instead of waiting out a timeout per batch."""

    def __init__(self, inner: SpanExporter, success: SpanExportResult, failure: SpanExportResult) -> None:
        self.inner = inner
        self._success = success
        self._failure = failure
        self.exported = 0
        self.failed = 0
        self.closing = False
        self.reason: str | None = None

    def note(self, reason: str) -> None:
        if self.reason is None:
            self.reason = reason[:200]

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self.closing and self.failed:
            self.failed += len(spans)
            return self._failure
        try:
            result = self.inner.export(spans)
        except Exception as exc:  # noqa: BLE001 - an exporter bug is a delivery failure, not a crash
            self.note(f"{type(exc).__name__}: {exc}")
            result = self._failure
        if result == self._success:
            self.exported += len(spans)
        else:
            self.failed += len(spans)
        return result

    def shutdown(self) -> None:
        try:
            self.inner.shutdown()
        except Exception as exc:  # noqa: BLE001 - see export
            self.note(f"{type(exc).__name__}: {exc}")

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        try:
            return bool(self.inner.force_flush(timeout_millis))
        except Exception as exc:  # noqa: BLE001 - see export
            self.note(f"{type(exc).__name__}: {exc}")
            return False


class _Capture(logging.Handler):
    """Keeps the last delivery warning of the SDK's loggers (instead of logging's stderr fallback)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reason: str | None = None
        self._loggers = [logging.getLogger(name) for name in _DELIVERY_LOGGERS]
        for logger in self._loggers:
            logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a malformed log record must not break delivery
            return
        if "due to timeout, max retries or shutdown" in message:
            return  # the generic last word: the transient error before it (if any) says more
        self.reason = _short_reason(message)

    def detach(self) -> None:
        for logger in self._loggers:
            logger.removeHandler(self)


def _short_reason(message: str) -> str:
    """A delivery log line, condensed: ``Connection refused``, ``HTTP 404 Not Found``..."""
    errno = re.search(r"\[Errno -?\d+\] ([^'\"()\]]+)", message)
    if errno:
        return errno.group(1).strip().rstrip(".,")
    status = re.search(r"code: (\d+), reason: ([^,]*)", message)
    if status:
        return f"HTTP {status.group(1)} {status.group(2).strip()}".strip()
    if "timed out" in message.lower():
        return "timed out"
    return message[:200]


def _probe(url: str) -> str | None:
    """Why a TCP connection to ``url``'s host and port fails (None when it connects)."""
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname or "", port), timeout=1.0):
            return None
    except (OSError, ValueError) as exc:
        text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return text or type(exc).__name__


# -- the factory ----------------------------------------------------------------------------

def traces_url(endpoint: str | None = None) -> str:
    """The OTLP/HTTP traces URL: ``endpoint`` (a base URL, or one ending in ``/v1/traces``), else
    ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` as is, else ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
    http://127.0.0.1:4318 with ``/v1/traces`` appended."""
    if endpoint is None:
        full = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        if full:
            return full
        endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or DEFAULT_ENDPOINT
    url = endpoint.strip().rstrip("/")
    if not re.match(r"https?://[^/\s]+", url):
        raise SpecError(f"OpenTelemetry endpoint {endpoint!r} is not an http(s) URL "
                        "(e.g. http://127.0.0.1:4318)")
    return url if url.endswith(TRACES_PATH) else url + TRACES_PATH


def make_tracer(exporter: str | SpanExporter, endpoint: str | None = None, *,
                service_name: str = DEFAULT_SERVICE_NAME,
                clock: Callable[[], int] = time.time_ns, timeout: float | None = None,
                batch: bool | None = None) -> RunTracer:
    """A ``RunTracer`` exporting to ``"console"`` (stderr), ``"otlp"`` (HTTP/protobuf to ``endpoint``,
    see ``traces_url``) or an SDK ``SpanExporter`` instance.

    ``service_name`` is the resource's ``service.name``; ``OTEL_SERVICE_NAME`` (or a ``service.name``
    in ``OTEL_RESOURCE_ATTRIBUTES``) wins over the default. ``clock`` gives wall time in epoch ns
    (read once per run). ``timeout`` bounds each OTLP export in seconds, retries included (default:
    ``OTEL_EXPORTER_OTLP_TIMEOUT`` or 5). ``batch`` chooses the ``BatchSpanProcessor`` (default for
    otlp: exports on a background thread) over the synchronous ``SimpleSpanProcessor`` (default for
    the console and an exporter given). Raises ``SpecError`` (exit 2) for an unknown exporter or a
    bad endpoint, and when the ``otel`` extra is not installed."""
    if isinstance(exporter, str) and exporter not in EXPORTERS:
        raise SpecError(f"unknown OpenTelemetry exporter {exporter!r}; use one of: {', '.join(EXPORTERS)}")
    url = traces_url(endpoint) if exporter == "otlp" else None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            ConsoleSpanExporter,
            SimpleSpanProcessor,
            SpanExportResult,
        )

        if exporter == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    except ImportError as exc:
        raise SpecError(f"OpenTelemetry export needs the otel extra: {INSTALL_HINT} ({exc})") from None
    capture: _Capture | None = None
    inner: SpanExporter
    if exporter == "console":
        inner, target = ConsoleSpanExporter(out=sys.stderr), "the console"
    elif exporter == "otlp":
        assert url is not None
        if timeout is None and not any(os.environ.get(name) for name in _TIMEOUT_VARIABLES):
            timeout = DEFAULT_TIMEOUT
        inner, target = OTLPSpanExporter(endpoint=url, timeout=timeout), url
        capture = _Capture()
    elif isinstance(exporter, str) or not callable(getattr(exporter, "export", None)):
        raise SpecError(f"not an OpenTelemetry SpanExporter: {exporter!r}")
    else:
        inner, target = exporter, type(exporter).__name__
    tally = _Tally(inner, SpanExportResult.SUCCESS, SpanExportResult.FAILURE)
    wrapped = cast("SpanExporter", tally)
    named_by_env = bool(os.environ.get("OTEL_SERVICE_NAME")) or "service.name=" in os.environ.get(
        "OTEL_RESOURCE_ATTRIBUTES", "")
    resource = Resource.create({} if named_by_env and service_name == DEFAULT_SERVICE_NAME
                               else {"service.name": service_name})
    provider = TracerProvider(resource=resource, shutdown_on_exit=False)
    processor: SpanProcessor
    if batch if batch is not None else exporter == "otlp":
        # A queue a 10,000-task run fits in: spans are exported while the run goes on, but a slow
        # collector must not make the processor drop them.
        processor = BatchSpanProcessor(wrapped, max_queue_size=65536, max_export_batch_size=1024)
    else:
        processor = SimpleSpanProcessor(wrapped)
    provider.add_span_processor(processor)
    return RunTracer(provider, target=target, tally=tally, processor=processor,
                     direct=isinstance(processor, SimpleSpanProcessor), capture=capture, clock=clock)
