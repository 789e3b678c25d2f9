"""Server-sent events: an incremental, I/O-free decoder of ``text/event-stream`` lines.

Both streaming APIs (OpenAI chat completions, Anthropic messages) speak SSE. The decoder
is fed one line at a time (as ``httpx.Response.aiter_lines()`` yields them, line endings
removed) and returns an event when a blank line completes one, following the WHATWG
rules: ``data:`` lines join with newlines, one space after the colon is dropped, lines
starting with ``:`` are comments.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["SSEDecoder", "ServerSentEvent", "decode_sse"]


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One event: its type (``message`` when unnamed) and its data."""

    event: str
    data: str
    id: str | None = None


class SSEDecoder:
    """Turns lines into events; keep one per stream."""

    __slots__ = ("_data", "_event", "_id")

    def __init__(self) -> None:
        self._event = ""
        self._data: list[str] = []
        self._id: str | None = None

    def feed(self, line: str) -> ServerSentEvent | None:
        """Take one line (without its ending); return the event a blank line completes."""
        if not line:
            return self.flush()
        if line.startswith(":"):
            return None
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        return None

    def flush(self) -> ServerSentEvent | None:
        """End the current event (at a blank line or the end of the stream)."""
        if not self._data and not self._event:
            return None
        event = ServerSentEvent(self._event or "message", "\n".join(self._data), self._id)
        self._event = ""
        self._data = []
        return event


def decode_sse(lines: Iterable[str]) -> list[ServerSentEvent]:
    """Every event in ``lines`` (splits a whole body too: pass ``body.splitlines()``)."""
    decoder = SSEDecoder()
    out = [e for line in lines if (e := decoder.feed(line)) is not None]
    last = decoder.flush()
    if last is not None:
        out.append(last)
    return out
