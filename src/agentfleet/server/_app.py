"""The service's FastAPI app: the /v1 API, health, metrics and the dashboard.

# Design
# The API process only validates, stores and reads: a submission is one insert of a 'queued' run
# (``RunStore.create_run(queued=True)``) and a 202; runner processes (``_executor``) do the work.
# Auth, scopes and the per-token rate limit are one dependency per route (so the OpenAPI schema
# states each route's security); the body limit, request metrics and the error handlers are ASGI
# middleware and exception handlers, so no route can forget them. Everything the store is asked
# here is an indexed read or a single-row write on the event loop's thread (tens of microseconds).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.staticfiles import StaticFiles
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import RunNotFound
from ..store import TERMINAL, RunRow, RunStore
from ._auth import RateLimiter, Token, Tokens, retry_after
from ._catalog import Catalog, Rejected
from ._executor import Executor
from ._feed import EventFeed
from ._models import (
    CancelAnswer,
    Error,
    Health,
    Links,
    Ready,
    Report,
    RunAccepted,
    RunDetail,
    RunList,
    RunRequest,
    RunSummary,
    Stats,
    TaskView,
    WorkflowList,
    WorkflowView,
)

__all__ = ["ServiceConfig", "create_app"]

log = logging.getLogger("agentfleet.server")
STATIC = Path(__file__).with_name("static")
RUN_ID = r"^[0-9a-f]{4,32}$"


@dataclass
class ServiceConfig:
    """What ``agentfleet serve`` was told (see ``agentfleet serve --help``)."""

    db: str
    tokens: Tokens
    workflows: str | None = None
    workers: int = 1  # runner processes; 0 runs the work inside the API process
    max_runs: int = 32  # runs each runner executes at once (mostly waiting on providers)
    rate: float = 200.0  # requests per second per token
    burst: float | None = None  # default: twice the rate
    max_body: int = 1 << 20
    max_queued: int = 10_000
    cors_origins: list[str] = field(default_factory=list)
    inline: str = "sim"
    recover: bool = True  # queue again runs a crashed service left behind
    nice: int = 5
    clock: Callable[[], float] = time.monotonic


# -- middleware ----------------------------------------------------------------------------


class BodyLimit:
    """413 for a request body over ``limit`` bytes, by its Content-Length or as it streams in.

    A body is read here, up to the limit, before the app sees it (so a chunked body that grows too
    large is a 413, not a parse error), then handed on in one piece."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        has_body = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.limit:
                    await self._too_large(send)
                    return
                has_body = has_body or declared > 0
            elif name == b"transfer-encoding":
                has_body = True
        if not has_body:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        seen = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message], receive), send)  # the client went away
                return
            chunk = message.get("body", b"")
            seen += len(chunk)
            if seen > self.limit:
                await self._too_large(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        whole: Message = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        await self.app(scope, _replay([whole], receive), send)

    async def _too_large(self, send: Send) -> None:
        body = json.dumps({"detail": f"request body is larger than {self.limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def _replay(messages: list[Message], receive: Receive) -> Receive:
    """A receive that gives ``messages`` first, then the connection's own."""
    pending = list(messages)

    async def replay() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replay


class RequestMetrics:
    """Counts requests by route and status and times them (``agentfleet_http_*``)."""

    def __init__(self, app: ASGIApp, requests: Counter, latency: Histogram) -> None:
        self.app = app
        self.requests = requests
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = 500

        async def note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, note)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or ("/dashboard" if scope["path"].startswith("/dashboard") else "other")
            self.requests.labels(scope["method"], path, str(status)).inc()
            self.latency.labels(path).observe(time.perf_counter() - t0)


class SecurityHeaders:
    """The dashboard's pages may load only their own files, and may not be framed by another site."""

    HEADERS: tuple[tuple[bytes, bytes], ...] = (
        (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                     b"frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
        (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"))

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/dashboard"):
            await self.app(scope, receive, send)
            return

        async def add(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.HEADERS]}
            await send(message)

        await self.app(scope, receive, add)


class _StoreCollector(Collector):
    """Runs by status and the queue's depth, read from the store at scrape time."""

    def __init__(self, service: Service) -> None:
        self.service = service

    def collect(self) -> Any:
        counts = self.service.store.status_counts()
        runs = GaugeMetricFamily("agentfleet_runs", "Runs in the run database by status", labels=["status"])
        for status in ("queued", "running", "succeeded", "failed", "interrupted", "cancelled"):
            runs.add_metric([status], counts.get(status, 0))
        yield runs
        yield GaugeMetricFamily("agentfleet_queue_depth", "Runs waiting for a runner", value=counts.get("queued", 0))
        yield GaugeMetricFamily("agentfleet_runners", "Runner processes alive", value=self.service.workers_alive())
        yield GaugeMetricFamily("agentfleet_event_streams", "Open event streams", value=self.service.feed.streams)


# -- the service ---------------------------------------------------------------------------


class Service:
    """The app's state: the store, the catalog, the event feed, the runner processes."""

    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.store = RunStore(config.db)
        self.catalog = Catalog(config.workflows, inline=config.inline)
        self.feed = EventFeed(self.store)
        self.limiter = RateLimiter(config.rate, config.burst or 2 * config.rate, clock=config.clock)
        self.metrics = CollectorRegistry(auto_describe=True)
        self.requests = Counter("agentfleet_http_requests", "HTTP requests by method, route and status",
                                ["method", "route", "status"], registry=self.metrics)
        self.latency = Histogram("agentfleet_http_request_seconds", "HTTP request latency by route", ["route"],
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
                                 registry=self.metrics)
        self.submitted = Counter("agentfleet_runs_submitted", "Runs accepted for execution", registry=self.metrics)
        self.rejected = Counter("agentfleet_http_rejected", "Requests refused by auth or limits", ["reason"],
                                registry=self.metrics)
        self.ready = Gauge("agentfleet_ready", "1 when the service accepts work", registry=self.metrics)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.executor: Executor | None = None
        self._executor_task: Any = None
        self._supervisor: Any = None
        self.started = False
        self._queued, self._queued_at, self._since_count = 0, float("-inf"), 0
        self.metrics.register(_StoreCollector(self))

    # runners ---------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Queue again the runs a dead service or runner left 'running' (they resume)."""
        requeued = [run_id for run_id in self.store.orphaned() if self.store.requeue(run_id)]
        if requeued:
            log.warning("queued again %d run(s) left running by a process that is gone: %s", len(requeued),
                        ", ".join(requeued))
        return requeued

    async def start(self) -> None:
        if self.config.recover:
            self.recover()
        if self.config.workers == 0:
            self.executor = Executor(self.config.db, max_runs=self.config.max_runs)
            self._executor_task = asyncio.get_running_loop().create_task(self.executor.serve())
        else:
            for _ in range(self.config.workers):
                self.processes.append(self._spawn())
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise())
        self.started = True
        self.ready.set(1)

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen([sys.executable, "-m", "agentfleet.server", "--db", self.config.db,
                                 "--max-runs", str(self.config.max_runs), "--nice", str(self.config.nice)])

    async def _supervise(self) -> None:
        """Replace a runner process that died; its runs are queued again and resumed."""
        beats = 0
        while True:
            await asyncio.sleep(1.0)
            beats += 1
            if beats % 30 == 0:  # runs an earlier service left behind after this one started
                self.recover()
            for i, proc in enumerate(self.processes):
                if proc.poll() is not None:
                    log.error("runner process %d exited with %s; starting another", proc.pid, proc.returncode)
                    self.recover()
                    self.processes[i] = self._spawn()

    def queued(self, *, exact: bool = False) -> int:
        """Runs waiting for a runner, counted at most every quarter second unless ``exact`` (counting is
        a scan of the queue, which is long exactly when submissions come fastest)."""
        now = time.monotonic()
        if exact or now - self._queued_at >= 0.25:
            self._queued, self._queued_at, self._since_count = self.store.queued_count(), now, 0
        return self._queued + self._since_count

    def note_submitted(self) -> None:
        self.submitted.inc()
        self._since_count += 1

    def workers_alive(self) -> int:
        if self.config.workers == 0:
            return 1 if self._executor_task is not None and not self._executor_task.done() else 0
        return sum(1 for p in self.processes if p.poll() is None)

    async def stop(self) -> None:
        self.ready.set(0)
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for proc in self.processes:
            if proc.poll() is None:
                proc.terminate()
        deadline = time.monotonic() + 10
        for proc in self.processes:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        if self.executor is not None:
            self.executor.stop()
            await asyncio.gather(self._executor_task, return_exceptions=True)
        await self.feed.aclose()
        self.store.close()

    # views -----------------------------------------------------------------------------

    def summary(self, row: RunRow, live_counts: dict[str, dict[str, int]] | None = None) -> dict[str, Any]:
        status = row.status
        if status == "running" and self.store.owner_alive(row.id, mine=True) is None:
            status = "stopped"
        summary = row.summary or {}
        start = row.started_at or row.created_at
        counts = summary.get("counts")
        if counts is None:  # still going (or stopped): what its tasks' rows say so far
            known = live_counts if live_counts is not None else self.store.task_counts([row.id])
            counts = known.get(row.id)
        return {"id": row.id, "workflow": row.name, "status": status, "created_at": row.created_at,
                "started_at": row.started_at, "ended_at": row.ended_at,
                "duration": (row.ended_at - start) if row.ended_at is not None and status in TERMINAL else None,
                "error": row.error, "counts": counts or {}, "cost_usd": summary.get("cost_usd")}


# -- the app -------------------------------------------------------------------------------

_bearer = HTTPBearer(auto_error=False, description="A token from AGENTFLEET_TOKENS or --tokens-file")
_AUTH_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "No or unknown bearer token"},
    403: {"model": Error, "description": "The token's scope does not allow this"},
    429: {"model": Error, "description": "Over the token's request rate; see Retry-After"},
    500: {"model": Error, "description": "Internal error (its id is in the server's log)"},
}


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _access(scope: str) -> Callable[..., Awaitable[Token]]:
    async def check(request: Request,
                    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Token:
        service = _service(request)
        token = service.config.tokens.check(credentials.credentials) if credentials is not None else None
        if token is None:
            service.rejected.labels("unauthorized").inc()
            raise HTTPException(401, "missing or unknown bearer token (Authorization: Bearer TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})
        wait = service.limiter.acquire(token.key)
        if wait > 0:
            service.rejected.labels("rate_limited").inc()
            raise HTTPException(429, f"over {service.config.rate:g} requests per second for this token",
                                headers={"Retry-After": retry_after(wait)})
        if scope not in _SCOPE_ALLOWS[token.scope]:
            service.rejected.labels("forbidden").inc()
            raise HTTPException(403, f"this token's scope ({token.scope}) does not allow {scope}")
        return token

    return check


_SCOPE_ALLOWS = {"read": {"read"}, "submit": {"read", "submit"}}
Reader = Annotated[Token, Depends(_access("read"))]
Submitter = Annotated[Token, Depends(_access("submit"))]
RunId = Annotated[str, PathParam(pattern=RUN_ID, description="a run id")]


def create_app(config: ServiceConfig) -> FastAPI:
    """The service as an ASGI app (``agentfleet serve`` runs it under uvicorn)."""
    from .. import __version__

    service = Service(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="agentfleet", version=__version__, lifespan=lifespan,
                  description="Submit workflow runs, follow their events, read their results and reports.",
                  responses=_AUTH_ERRORS)
    app.state.service = service
    app.add_middleware(SecurityHeaders)
    app.add_middleware(RequestMetrics, requests=service.requests, latency=service.latency)
    if config.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "Last-Event-ID"])
    app.add_middleware(BodyLimit, limit=config.max_body)

    @app.exception_handler(Rejected)
    async def rejected(_: Request, exc: Rejected) -> JSONResponse:
        if exc.status == 422:
            return JSONResponse({"detail": [{"loc": exc.loc, "msg": exc.message, "type": exc.kind}]}, 422)
        return JSONResponse({"detail": exc.message}, exc.status)

    @app.exception_handler(RunNotFound)
    async def not_found(_: Request, exc: RunNotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc).split(" (see")[0]}, 404)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's shape without echoing the input back (a token or a secret could be in it).
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                  for e in exc.errors()]
        return JSONResponse({"detail": errors}, 422)

    @app.exception_handler(Exception)
    async def internal(_: Request, exc: Exception) -> JSONResponse:
        incident = uuid.uuid4().hex[:12]
        log.error("internal error %s", incident, exc_info=exc)
        return JSONResponse({"detail": "internal error", "id": incident}, 500)

    not_found_response: dict[int | str, dict[str, Any]] = {404: {"model": Error, "description": "No such run"}}

    # health (no token) --------------------------------------------------------------------

    @app.get("/healthz", response_model=Health, tags=["health"], responses={})
    async def healthz() -> dict[str, str]:
        """The process answers."""
        return {"status": "ok"}

    @app.get("/readyz", response_model=Ready, tags=["health"],
             responses={503: {"model": Ready, "description": "Not ready: starting, or no runner alive"}})
    async def readyz() -> JSONResponse:
        """Ready to take runs: the store is open and a runner is alive."""
        alive = service.workers_alive()
        ok = service.started and alive > 0
        body = {"status": "ready" if ok else ("starting" if not service.started else "degraded"),
                "workers": alive, "queued": service.store.queued_count()}
        return JSONResponse(body, 200 if ok else 503)

    @app.get("/metrics", tags=["health"], response_class=Response,
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                              "description": "Prometheus text exposition"}})
    async def metrics(_: Reader) -> Response:
        """The service's metrics in Prometheus text format (needs a read token)."""
        return Response(generate_latest(service.metrics), media_type="text/plain; version=0.0.4; charset=utf-8")

    @app.get("/v1/stats", response_model=Stats, tags=["health"])
    async def stats(_: Reader) -> Stats:
        """Runs in the database by status, the queue's depth, runners alive and open event streams."""
        counts = service.store.status_counts()
        return Stats(runs=counts, queued=counts.get("queued", 0), runners=service.workers_alive(),
                     streams=service.feed.streams)

    # workflows and runs -------------------------------------------------------------------

    @app.get("/v1/workflows", response_model=WorkflowList, tags=["workflows"])
    async def workflows(_: Reader) -> WorkflowList:
        """The workflows that can be submitted by name (the --workflows directory)."""
        return WorkflowList(workflows=[
            WorkflowView(name=e.name, file=e.path.name, description=e.description, vars=_jsonable(e.vars),
                         tasks=e.tasks) for e in service.catalog.entries()])

    @app.post("/v1/runs", status_code=202, response_model=RunAccepted, tags=["runs"],
              responses={400: {"model": Error, "description": "The body is not JSON text (not UTF-8, say)"},
                         403: {"model": Error, "description": "Forbidden by the token's scope or the inline policy"},
                         413: {"model": Error, "description": "Body too large"},
                         503: {"model": Error, "description": "Queue full; see Retry-After"}})
    async def submit(body: RunRequest, _: Submitter) -> JSONResponse:
        """Queue a run; answers before it starts, with its id and where to follow it."""
        if service.queued() >= config.max_queued and service.queued(exact=True) >= config.max_queued:
            return JSONResponse({"detail": f"{config.max_queued} runs are already queued; try again later"}, 503,
                                headers={"Retry-After": "5"})
        if body.workflow is not None:
            # Parsing is milliseconds of CPU: a workflow with inputs not seen before is parsed off the
            # event loop; a repeat comes from the catalog's cache, here.
            found = service.catalog.cached(body.workflow, body.inputs)
            spec, path = found if found is not None else await asyncio.to_thread(
                service.catalog.resolve, body.workflow, body.inputs)
        else:
            assert body.yaml is not None
            # Parsed off the event loop: an inline workflow is new text, up to 64 KiB of it.
            spec = await asyncio.to_thread(service.catalog.parse_inline, body.yaml, body.inputs)
            path = "<inline>"
        options: dict[str, Any] = {"service": True, **body.options.model_dump(exclude_none=True)}
        created = time.time()
        run_id = service.store.create_run(name=spec.name, spec_path=path, spec_text=spec.source_text,
                                          overrides=body.inputs, options=options, queued=True, created_at=created)
        service.note_submitted()
        accepted = RunAccepted(id=run_id, status="queued", workflow=spec.name, created_at=created,
                               links=Links(self=f"/v1/runs/{run_id}", events=f"/v1/runs/{run_id}/events",
                                           report=f"/v1/runs/{run_id}/report",
                                           dashboard=f"/dashboard/#/runs/{run_id}"))
        return JSONResponse(accepted.model_dump(), 202, headers={"Location": f"/v1/runs/{run_id}"})

    @app.get("/v1/runs", response_model=RunList, tags=["runs"])
    async def list_runs(
        _: Reader,
        limit: Annotated[int, Query(ge=1, le=200, description="runs per page")] = 50,
        cursor: Annotated[str | None, Query(max_length=200, description="next_cursor of the previous page")] = None,
        status: Annotated[str | None, Query(pattern=r"^(queued|running|succeeded|failed|interrupted|cancelled)$",
                                            description="only runs in this state")] = None,
    ) -> RunList:
        """Runs, newest first, a page at a time."""
        before = _decode_cursor(cursor) if cursor else None
        rows = service.store.page_runs(limit + 1, before=before, status=status)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1]) if more and rows else None
        going = service.store.task_counts([r.id for r in rows if not (r.summary or {}).get("counts")])
        return RunList(runs=[RunSummary(**service.summary(r, going)) for r in rows], next_cursor=next_cursor)

    def _row(run_id: str) -> RunRow:
        row = service.store.find_run(run_id)
        if row is None:
            raise HTTPException(404, f"no run {run_id!r}")
        return row

    @app.get("/v1/runs/{run_id}", response_model=RunDetail, tags=["runs"], responses=not_found_response)
    async def get_run(run_id: RunId, _: Reader) -> RunDetail:
        """A run's status, its tasks and their outputs."""
        row = _row(run_id)
        facts = {**row.options, **(row.summary or {})}
        records = await asyncio.to_thread(_read, config.db, lambda store: store.load_tasks(row.id))
        tasks = [TaskView(id=r.task_id, agent=r.agent, state=r.state, ready_at=r.ready_at, started_at=r.started_at,
                          ended_at=r.ended_at, attempts=r.attempts, tokens_in=r.tokens_in, tokens_out=r.tokens_out,
                          provider=r.provider, error=r.error, output=_jsonable(r.output)) for r in records]
        return RunDetail(**service.summary(row), sessions=row.sessions, max_parallel=facts.get("max_parallel"),
                         scale=facts.get("latency_scale") or facts.get("scale"), tasks=tasks)

    @app.post("/v1/runs/{run_id}/cancel", status_code=202, response_model=CancelAnswer, tags=["runs"],
              responses={**not_found_response, 409: {"model": Error, "description": "The run already ended"}})
    async def cancel(run_id: RunId, _: Submitter) -> CancelAnswer:
        """Stop a run: a queued one never starts, a running one is cancelled within a moment (resumable)."""
        row = _row(run_id)
        if not row.options.get("service") and row.status == "running" \
                and service.store.owner_alive(run_id, mine=True) is not None:
            raise HTTPException(409, f"run {run_id} is executed by an agentfleet command, not by this service; "
                                     "stop it there (Ctrl-C)")
        status = service.store.request_cancel(run_id)
        if status is None:
            raise HTTPException(409, f"run {run_id} already ended")
        return CancelAnswer(id=run_id, status=status)

    @app.get("/v1/runs/{run_id}/events", tags=["runs"], response_class=StreamingResponse,
             responses={**not_found_response,
                        200: {"content": {"text/event-stream": {"schema": _SSE_EVENT}},
                              "description": "Server-Sent Events: the run's events, then `event: end`"}})
    async def events(
        run_id: RunId,
        _: Reader,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20,
                                                    description="resume after this event")] = None,
        after: Annotated[int | None, Query(ge=0, le=2**62, description="resume after this event id")] = None,
    ) -> StreamingResponse:
        """The run's events as Server-Sent Events, stored ones first, live until the run ends."""
        _row(run_id)
        start = after or 0
        if last_event_id is not None and last_event_id.strip():
            try:
                start = int(last_event_id)
            except ValueError:
                start = -1
            if not 0 <= start < 2**62:
                raise Rejected(["header", "Last-Event-ID"], "must be an event id (a whole number from 0)")
        return StreamingResponse(service.feed.stream(run_id, start), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/v1/runs/{run_id}/report", response_model=Report, tags=["runs"], responses=not_found_response)
    async def report(run_id: RunId, _: Reader) -> JSONResponse:
        """The run's report: makespan, speedup, critical path, bottlenecks, what-if (as ``report --json``)."""
        from .._report import stored_report

        row = _row(run_id)
        # Analysis is CPU work (what-if replays): off the event loop, on a connection of its own.
        body = await asyncio.to_thread(_read, config.db, lambda store: stored_report(store, row).to_dict())
        return JSONResponse(json.loads(json.dumps(body, default=str)))

    # the dashboard ------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/dashboard/")

    app.mount("/dashboard", StaticFiles(directory=STATIC, html=True, check_dir=False), name="dashboard")
    return app


# One event of the stream (OpenAPI 3.1: the schema of an event stream describes each event); its
# data is JSON: a stored event, or for ``event: end`` the run's final status.
_SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["data"],
    "properties": {
        "id": {"type": "string", "description": "the event's id (send it back as Last-Event-ID)"},
        "event": {"type": "string", "description": "the event's kind, or 'end'"},
        "retry": {"type": "integer"},
        "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": {"oneOf": [
            {"type": "object", "required": ["id", "t", "kind", "task", "session", "data"], "properties": {
                "id": {"type": "integer"}, "t": {"type": "number"}, "kind": {"type": "string"},
                "task": {"type": ["string", "null"]}, "session": {"type": "integer"},
                "data": {"type": ["object", "null"]}}},
            {"type": "object", "required": ["status"], "additionalProperties": False,
             "properties": {"status": {"type": "string"}}},
        ]}},
    },
}


def _read(db: str, read: Callable[[RunStore], Any]) -> Any:
    """``read(store)`` on a connection of its own (for a worker thread)."""
    with RunStore(db, create=False) as store:
        return read(store)


def _encode_cursor(row: RunRow) -> str:
    return base64.urlsafe_b64encode(json.dumps([row.created_at, row.id]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        created, run_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return float(created), str(run_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise Rejected(["query", "cursor"], "not a cursor this service gave (use next_cursor as is)") from None


def _jsonable(value: Any) -> Any:
    """``value`` as plain JSON (stored outputs and vars may hold anything YAML can say)."""
    try:
        return json.loads(json.dumps(value, default=str))
    except (TypeError, ValueError):
        return str(value)
