"""A real local HTTP server speaking the OpenAI chat-completions and Anthropic messages wire
protocols (JSON and SSE streaming), for testing the HTTP providers end to end.

It runs a ``ThreadingHTTPServer`` (HTTP/1.1, keep-alive, chunked streaming) on an ephemeral
port of 127.0.0.1 in a background thread, records every request it receives (headers,
JSON body, which TCP connection carried it) and can be told to answer the next requests
with an error status (429 + Retry-After, 500, 529, 401...), to stall, to pause between
stream chunks, or to put an error event into a stream.

    server = WireServer().start()
    ... http://127.0.0.1:{server.port}/v1/chat/completions ...
    server.stop()
"""

from __future__ import annotations

import json
import socket
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = ["Recorded", "WireServer", "unused_port"]

MODEL = "wire-model"


@dataclass
class Recorded:
    """One request as the server saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    connection: int  # serial number of the TCP connection that carried it
    peer: tuple[str, int]


@dataclass
class _Fault:
    status: int
    message: str
    headers: dict[str, str] = field(default_factory=dict)
    kind: str = ""


def unused_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


_ERROR_KINDS = {
    400: ("invalid_request_error", "invalid_request_error"),
    401: ("invalid_api_key", "authentication_error"),
    403: ("permission_denied", "permission_error"),
    404: ("model_not_found", "not_found_error"),
    429: ("rate_limit_exceeded", "rate_limit_error"),
    500: ("server_error", "api_error"),
    529: ("overloaded", "overloaded_error"),
}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 10  # an idle keep-alive connection is dropped after this
    server: _Server

    # -- plumbing --

    def setup(self) -> None:
        super().setup()
        self.wire = self.server.wire
        self.conn_id = self.wire._connection_opened(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.wire._connection_closed(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        except (BrokenPipeError, ConnectionResetError, TimeoutError, OSError):
            self.close_connection = True

    def _record(self, body: Any) -> Recorded:
        record = Recorded(
            method=self.command,
            path=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            connection=self.conn_id,
            peer=(self.client_address[0], self.client_address[1]),
        )
        with self.wire._lock:
            self.wire.requests.append(record)
        return record

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()
        if self.wire.chunk_delay:
            self.wire._release.wait(self.wire.chunk_delay)

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- routes --

    def do_GET(self) -> None:
        self._record(None)
        if self.path.rstrip("/").endswith("/models"):
            self._send_json(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
        else:
            self._send_json(404, {"error": {"message": f"no route {self.path}"}})

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        self._record(body)
        anthropic = self.path.startswith("/v1/messages")
        openai = self.path.endswith("/chat/completions")
        if self.wire.stall:
            self.wire._release.wait(self.wire.stall)
        fault = self.wire._next_fault()
        if fault is not None:
            self._send_fault(fault, anthropic=anthropic)
            return
        if not isinstance(body, dict) or not (anthropic or openai):
            self._send_json(404, {"error": {"message": f"no route POST {self.path}"}})
            return
        if anthropic:
            self._anthropic(body)
        else:
            self._openai(body)

    def _send_fault(self, fault: _Fault, *, anthropic: bool) -> None:
        codes = _ERROR_KINDS.get(fault.status, ("error", "api_error"))
        if anthropic:
            payload: dict[str, Any] = {
                "type": "error",
                "error": {"type": fault.kind or codes[1], "message": fault.message},
            }
        else:
            payload = {
                "error": {
                    "message": fault.message,
                    "type": "error",
                    "code": fault.kind or codes[0],
                }
            }
        self._send_json(fault.status, payload, fault.headers)

    def _reply_text(self, prompt: str) -> str:
        return self.wire.reply if self.wire.reply is not None else f"echo: {prompt}"

    # OpenAI chat completions

    def _openai(self, body: dict[str, Any]) -> None:
        messages = body.get("messages") or []
        prompt = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        text = self._reply_text(prompt)
        usage = {
            "prompt_tokens": sum(len(str(m.get("content", "")).split()) for m in messages),
            "completion_tokens": len(text.split()),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        model = body.get("model", MODEL)
        if not body.get("stream"):
            self._send_json(200, {
                "id": "chatcmpl-wire",
                "object": "chat.completion",
                "created": 0,
                "model": model,
                "choices": [{
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "finish_reason": "stop",
                }],
                "usage": usage,
            })
            return
        base = {"id": "chatcmpl-wire", "object": "chat.completion.chunk", "created": 0, "model": model}

        def event(choices: list[dict[str, Any]], **extra: Any) -> str:
            return f"data: {json.dumps({**base, 'choices': choices, **extra})}\n\n"

        self._start_stream()
        self._chunk(event([{"index": 0, "delta": {"role": "assistant", "content": ""},
                            "finish_reason": None}]))
        for i, piece in enumerate(_pieces(text)):
            if self.wire.stream_error and i == 1:
                self._chunk(f"data: {json.dumps({'error': {'message': self.wire.stream_error}})}\n\n")
                self._end_stream()
                return
            self._chunk(event([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
        self._chunk(event([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
        if (body.get("stream_options") or {}).get("include_usage"):
            self._chunk(event([], usage=usage))
        self._chunk("data: [DONE]\n\n")
        self._end_stream()

    # Anthropic messages

    def _anthropic(self, body: dict[str, Any]) -> None:
        messages = body.get("messages") or []
        prompt = next((m["content"] for m in reversed(messages) if m.get("role") == "user"), "")
        text = self._reply_text(str(prompt))
        input_tokens = len(str(body.get("system", "")).split()) + len(str(prompt).split())
        output_tokens = len(text.split())
        model = body.get("model", MODEL)
        if not body.get("stream"):
            self._send_json(200, {
                "id": "msg_wire",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [{"type": "text", "text": text}],
                "stop_reason": "end_turn",
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            })
            return

        def event(name: str, payload: dict[str, Any]) -> str:
            return f"event: {name}\ndata: {json.dumps({'type': name, **payload})}\n\n"

        self._start_stream()
        self._chunk(event("message_start", {"message": {
            "id": "msg_wire", "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        }}))
        self._chunk(event("content_block_start", {
            "index": 0, "content_block": {"type": "text", "text": ""}}))
        self._chunk(event("ping", {}))
        for i, piece in enumerate(_pieces(text)):
            if self.wire.stream_error and i == 1:
                self._chunk(event("error", {"error": {"type": self.wire.stream_error,
                                                      "message": "stream failed"}}))
                self._end_stream()
                return
            self._chunk(event("content_block_delta", {
                "index": 0, "delta": {"type": "text_delta", "text": piece}}))
        self._chunk(event("content_block_stop", {"index": 0}))
        self._chunk(event("message_delta", {
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": output_tokens}}))
        self._chunk(event("message_stop", {}))
        self._end_stream()


def _pieces(text: str) -> list[str]:
    """Split ``text`` into stream deltas of one word each (spaces kept)."""
    words = text.split(" ")
    return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)] or [""]


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the handler threads
    wire: WireServer


class WireServer:
    """The fake API server; attributes set between requests change how it answers."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.reply: str | None = None  # the text every answer carries (default: echo)
        self.stall: float = 0.0  # seconds to wait before answering a POST
        self.chunk_delay: float = 0.0  # seconds to wait after each stream chunk
        self.stream_error: str | None = None  # an error event after the first delta
        self._faults: deque[_Fault] = deque()
        self._lock = threading.Lock()
        self._release = threading.Event()  # set on stop: ends every stall at once
        self._sockets: dict[int, socket.socket] = {}
        self._connections = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --

    def start(self) -> Self:
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.wire = self
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="wire-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._release.set()
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        with self._lock:
            sockets = list(self._sockets.values())
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        httpd.server_close()  # joins the handler threads
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- behaviour --

    def fail(
        self,
        status: int,
        message: str = "",
        *,
        retry_after: float | str | None = None,
        headers: dict[str, str] | None = None,
        kind: str = "",
        times: int = 1,
    ) -> None:
        """Answer the next ``times`` POSTs with ``status`` and an API-shaped error body."""
        extra = dict(headers or {})
        if retry_after is not None:
            extra["Retry-After"] = str(retry_after)
        text = message or f"simulated {status}"
        with self._lock:
            for _ in range(times):
                self._faults.append(_Fault(status, text, extra, kind))

    # -- what was seen --

    @property
    def posts(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST"]

    @property
    def connections(self) -> int:
        """TCP connections accepted so far."""
        return self._connections

    # -- internals (handler threads) --

    def _next_fault(self) -> _Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    def _connection_opened(self, sock: socket.socket) -> int:
        with self._lock:
            self._connections += 1
            self._sockets[self._connections] = sock
            return self._connections

    def _connection_closed(self, sock: socket.socket) -> None:
        with self._lock:
            for key, value in list(self._sockets.items()):
                if value is sock:
                    del self._sockets[key]
