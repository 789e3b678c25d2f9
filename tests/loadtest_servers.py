"""Tiny local HTTP servers for the load generator's tests and benchmarks, on 127.0.0.1:0.

    with LocalServer("trivial") as server:              # 200 "Hello, world!", as fast as it can
        server.url, server.requests, server.connections
    with LocalServer("stall", stall_every=10, stall_for=1):   # freezes 1 s in every 10 s
        ...
    with LocalServer("sse", tokens=5, gap=0.05):          # text/event-stream, a token every 50 ms
        ...
    with spawn_server("trivial") as url:                 # the same, in a child process (benchmarks)
        ...

Kinds:

* ``trivial``: answers every request at once with a 13-byte body (keep-alive, pipelining ok).
* ``stall``: the trivial answer, except in a stall window: every ``stall_every`` seconds from
  the server's start, the last ``stall_for`` seconds of the period are a freeze; a request that
  arrives during one is answered when it ends (as a process stopped by a GC pause or a
  blocked event loop would answer it).
* ``sse``: ``text/event-stream`` over chunked encoding: ``tokens`` events ``data: tok<i>``, the
  first after ``first`` seconds (default ``gap``), then one every ``gap`` seconds.

Each is an asyncio ``Protocol`` server (no streams: it must be faster than the client it
serves) on its own event loop, in a background thread (``LocalServer``) or a child process
(``spawn_server``, ``python -m tests.loadtest_servers KIND [--uvloop] ...``, which prints
``PORT <n>`` and serves until its standard input closes). In a thread it shares the test
process's GIL, so generator figures are only meaningful against the child process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Self, cast

__all__ = ["KINDS", "LocalServer", "spawn_server"]

KINDS = ("trivial", "stall", "sse", "capacity")
BODY = b"Hello, world!"
_OK = (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: %d\r\n\r\n" % len(BODY)) + BODY
_OK_CLOSE = (b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\ncontent-length: %d\r\n\r\n"
             % len(BODY)) + BODY
_SSE_HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n" \
            b"transfer-encoding: chunked\r\n\r\n"


class _Config:
    def __init__(self, kind: str, stall_every: float, stall_for: float, tokens: int, gap: float,
                 first: float | None) -> None:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if not 0 <= stall_for < stall_every:
            raise ValueError("need 0 <= stall_for < stall_every")
        self.kind = kind
        self.stall_every = stall_every
        self.stall_for = stall_for
        self.tokens = tokens
        self.gap = gap
        self.first = gap if first is None else first
        self.origin = 0.0
        #: capacity: one request served at a time, each taking ``service`` seconds (a FIFO queue)
        self.service = 0.01
        self.busy_until = 0.0
        self.requests = 0
        self.connections = 0


class _Handler(asyncio.Protocol):
    __slots__ = ("buf", "cfg", "loop", "transport")

    def __init__(self, cfg: _Config, loop: asyncio.AbstractEventLoop) -> None:
        self.cfg = cfg
        self.loop = loop
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        self.cfg.connections += 1

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        while True:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buf[:end]
            length = 0
            lower = head.lower()
            i = lower.find(b"\r\ncontent-length:")
            if i >= 0:
                j = lower.find(b"\r\n", i + 2)
                length = int(lower[i + 17:j if j >= 0 else len(lower)])
            total = end + 4 + length
            if len(buf) < total:
                break
            buf = buf[total:]
            close = b"\r\nconnection: close" in lower or head.split(b"\r\n", 1)[0].endswith(b"HTTP/1.0")
            self.cfg.requests += 1
            self.respond(close)
            if close:
                break
        self.buf = buf

    def respond(self, close: bool) -> None:
        transport = self.transport
        assert transport is not None
        cfg = self.cfg
        if cfg.kind == "trivial":
            transport.write(_OK_CLOSE if close else _OK)
        elif cfg.kind == "capacity":
            now = self.loop.time()
            cfg.busy_until = max(now, cfg.busy_until) + cfg.service
            self.loop.call_at(cfg.busy_until, self.answer, close)
        elif cfg.kind == "stall":
            now = self.loop.time()
            phase = (now - cfg.origin) % cfg.stall_every
            if phase >= cfg.stall_every - cfg.stall_for:
                self.loop.call_later(cfg.stall_every - phase, self.answer, close)
            else:
                self.answer(close)
        else:
            transport.write(_SSE_HEAD)
            self.loop.call_later(cfg.first, self.token, 0, close)
            return
        if close:
            transport.close()

    def answer(self, close: bool) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(_OK_CLOSE if close else _OK)
            if close:
                self.transport.close()

    def token(self, i: int, close: bool) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        event = b"data: tok%d\n\n" % i
        transport.write(b"%x\r\n%s\r\n" % (len(event), event))
        if i + 1 < self.cfg.tokens:
            self.loop.call_later(self.cfg.gap, self.token, i + 1, close)
        else:
            transport.write(b"0\r\n\r\n")
            if close:
                transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def _serve(cfg: _Config, ready: threading.Event | None, stop: asyncio.Event,
                 on_port: list[int]) -> None:
    loop = asyncio.get_running_loop()
    cfg.origin = loop.time()
    server = await loop.create_server(lambda: _Handler(cfg, loop), "127.0.0.1", 0, backlog=4096)
    on_port.append(int(server.sockets[0].getsockname()[1]))
    if ready is not None:
        ready.set()
    try:
        await stop.wait()
    finally:
        server.close()


class LocalServer:
    """One of the ``KINDS`` in a background thread; ``start()`` or use it as a context manager."""

    def __init__(self, kind: str = "trivial", *, stall_every: float = 10.0, stall_for: float = 1.0,
                 tokens: int = 10, gap: float = 0.02, first: float | None = None, service: float = 0.01) -> None:
        self._cfg = _Config(kind, stall_every, stall_for, tokens, gap, first)
        self._cfg.service = service
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._port: list[int] = []

    def start(self) -> Self:
        ready = threading.Event()

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._stop = asyncio.Event()
            try:
                loop.run_until_complete(_serve(self._cfg, ready, self._stop, self._port))
            finally:
                ready.set()
                loop.close()

        self._thread = threading.Thread(target=run, name=f"loadtest-{self._cfg.kind}-server", daemon=True)
        self._thread.start()
        if not ready.wait(10) or not self._port:
            raise RuntimeError("the local server did not start")
        return self

    def stop(self) -> None:
        if self._thread is None:
            return
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stop.set)
        self._thread.join(10)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port[0]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> int:
        """Requests received so far."""
        return self._cfg.requests

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        return self._cfg.connections


@contextlib.contextmanager
def spawn_server(kind: str = "trivial", *, uvloop: bool = True, cpus: set[int] | None = None,
                 **options: float) -> Iterator[str]:
    """Run a server of ``kind`` in a child process (``uvloop`` if installed and asked for), pinned
    to ``cpus`` if given (Linux); yield its URL."""
    args = [sys.executable, "-m", "tests.loadtest_servers", kind]
    if uvloop:
        args.append("--uvloop")
    for key, value in options.items():
        args += [f"--{key.replace('_', '-')}", str(value)]
    root = Path(__file__).resolve().parent.parent
    proc = subprocess.Popen(args, cwd=root, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        if cpus:
            os.sched_setaffinity(proc.pid, cpus)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"the {kind} server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m tests.loadtest_servers")
    p.add_argument("kind", choices=KINDS)
    p.add_argument("--uvloop", action="store_true", help="use uvloop when it is installed")
    p.add_argument("--stall-every", type=float, default=10.0)
    p.add_argument("--stall-for", type=float, default=1.0)
    p.add_argument("--tokens", type=int, default=10)
    p.add_argument("--gap", type=float, default=0.02)
    p.add_argument("--first", type=float, default=None)
    args = p.parse_args(argv)
    cfg = _Config(args.kind, args.stall_every, args.stall_for, args.tokens, args.gap, args.first)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        port: list[int] = []
        serving = loop.create_task(_serve(cfg, None, stop, port))
        while not port:
            await asyncio.sleep(0.001)
        print(f"PORT {port[0]}", flush=True)
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
        stop.set()
        await serving

    if args.uvloop:
        try:
            import uvloop
        except ImportError:
            asyncio.run(main())
        else:
            uvloop.run(main())
    else:
        asyncio.run(main())


if __name__ == "__main__":
    _main()
