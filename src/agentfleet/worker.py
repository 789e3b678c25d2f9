"""Write a worker for the ``command`` provider's ``mode: worker`` in a few lines.

    from agentfleet.worker import serve

    def handle(task: dict) -> str | dict:
        return task["prompt"].upper()

    if __name__ == "__main__":
        serve(handle)

``serve`` reads one JSON request per line on stdin until it closes, answers pings
itself, calls ``handler(task)`` for each task (``task`` is the request: ``prompt``,
``system``, ``task_id``, ``agent``, ``model``, ``max_tokens``, ``temperature``,
``output_schema``, ``timeout``, ``options``) and writes one JSON reply per line on
stdout, flushed. The handler returns a str (the text), a ``Reply`` (text, data and
token usage), None (empty text) or any other JSON value (the data). Raising
``TaskError`` fails the task with its message; any other exception fails it as
retryable and prints the traceback on stderr. An ``async def`` handler runs on one
event loop kept for the worker's life.

stdout belongs to the protocol: while ``serve`` runs, ``print()`` and anything the
handler starts write to stderr instead, so logging cannot corrupt a reply. The
protocol is described in docs/command-workers.md. Standard library only.
"""

from __future__ import annotations

import inspect
import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import asyncio

__all__ = ["Reply", "TaskError", "serve"]

Handler = Callable[[dict[str, Any]], Any]


class TaskError(Exception):
    """Raise from a handler to fail the task with this message.

    ``retryable`` (default False) tells the runtime whether another attempt may succeed.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


@dataclass(frozen=True, slots=True)
class Reply:
    """A handler's full answer: text and/or JSON data, and the tokens the task used."""

    text: str | None = None
    data: Any = None
    input_tokens: int = 0
    output_tokens: int = 0


def serve(handler: Handler, *, stdin: IO[bytes] | None = None, stdout: IO[bytes] | None = None) -> None:
    """Answer requests from ``stdin`` with ``handler`` until stdin closes.

    ``stdin`` and ``stdout`` default to the process's own (binary) streams; passing
    streams (tests) leaves the process's file descriptors alone.
    """
    source = stdin if stdin is not None else sys.stdin.buffer
    if stdout is not None:
        _serve(handler, source, stdout)
        return
    # Keep the real stdout for replies and point fd 1 at stderr, so print() and child
    # processes cannot write into the protocol stream.
    sys.stdout.flush()
    protocol_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        with os.fdopen(protocol_fd, "wb", closefd=False) as sink:
            _serve(handler, source, sink)
    finally:
        sys.stdout.flush()
        os.dup2(protocol_fd, 1)
        os.close(protocol_fd)


def _serve(handler: Handler, source: IO[bytes], sink: IO[bytes]) -> None:
    runner: asyncio.Runner | None = None
    try:
        for line in iter(source.readline, b""):
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except ValueError:
                message = None
            if not isinstance(message, dict):
                print(f"agentfleet.worker: ignoring a line that is not a JSON object: {line[:200]!r}",
                      file=sys.stderr, flush=True)
                continue
            reply, runner = _answer(handler, message, runner)
            try:
                sink.write(_encode(reply))
                sink.flush()
            except BrokenPipeError:  # the provider is gone
                return
    finally:
        if runner is not None:
            runner.close()


def _answer(
    handler: Handler, message: dict[str, Any], runner: asyncio.Runner | None
) -> tuple[dict[str, Any], asyncio.Runner | None]:
    """The reply to one request (and the event loop runner, created on first need)."""
    request_id = message.get("id")
    kind = message.get("type", "task")
    if kind == "ping":
        return {"id": request_id, "type": "pong"}, runner
    if kind != "task":
        return {"id": request_id, "error": f"unknown request type {kind!r}", "retryable": False}, runner
    try:
        result = handler(message)
        if inspect.isawaitable(result):
            if runner is None:
                import asyncio  # only workers with async handlers pay for it

                runner = asyncio.Runner()
            result = runner.run(_awaited(result))
    except TaskError as exc:
        return {"id": request_id, "error": exc.message, "retryable": exc.retryable}, runner
    except Exception as exc:  # noqa: BLE001 - a failing handler fails its task, not the worker
        traceback.print_exc(file=sys.stderr)
        sys.stderr.flush()
        return {"id": request_id, "error": f"{type(exc).__name__}: {exc}", "retryable": True}, runner
    return _result_reply(request_id, result), runner


async def _awaited(awaitable: Any) -> Any:
    return await awaitable


def _result_reply(request_id: Any, result: Any) -> dict[str, Any]:
    if isinstance(result, str):
        return {"id": request_id, "text": result}
    if result is None:
        return {"id": request_id, "text": ""}
    if isinstance(result, Reply):
        reply: dict[str, Any] = {"id": request_id}
        if result.text is not None:
            reply["text"] = result.text
        if result.data is not None or result.text is None:
            reply["data"] = result.data
        if result.input_tokens or result.output_tokens:
            reply["usage"] = {"input_tokens": result.input_tokens, "output_tokens": result.output_tokens}
        return reply
    return {"id": request_id, "data": result}


def _encode(reply: dict[str, Any]) -> bytes:
    """One reply line; a result that cannot be JSON becomes an error reply."""
    try:
        text = json.dumps(reply, ensure_ascii=False, separators=(",", ":"), default=str)
    except ValueError as exc:  # e.g. a circular structure
        text = json.dumps({"id": reply.get("id"), "error": f"the handler's result is not JSON: {exc}",
                           "retryable": False}, default=str)
    try:
        return text.encode() + b"\n"
    except UnicodeEncodeError:  # a lone surrogate: let JSON escape it
        return json.dumps(json.loads(text)).encode() + b"\n"
