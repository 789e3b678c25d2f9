"""Run events as Server-Sent Events: what the store holds, then what runners write, then the end.

# Design
# Runners (other processes) write events to the run database; the API process learns of them by
# polling, once for everyone: every ``interval`` one query finds which watched runs have events past
# what was seen and one reads the watched runs' statuses, and wakes those runs' streams. Each stream
# then reads its own run's events past the last id it sent (an indexed range read), so a reconnect
# with ``Last-Event-ID`` resumes exactly after that event, and a hundred streams cost a hundred
# small reads per change, not a hundred polls. Nothing polls while nobody watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator

from ..store import TERMINAL, RunStore

__all__ = ["EventFeed", "format_event"]

SETTLE = 3.0  # seconds an 'interrupted' service run may still turn 'cancelled' or 'queued'
KEEPALIVE = 15.0  # seconds of silence before a comment line keeps proxies from closing the stream


def format_event(row: tuple[int, str, int, float, str, str | None, str | None]) -> str:
    event_id, _run, session, t, kind, task, data = row
    payload = {"id": event_id, "t": round(t, 6), "kind": kind, "task": task, "session": session,
               "data": json.loads(data) if data else None}
    return f"id: {event_id}\nevent: {kind}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"


class EventFeed:
    """Wakes each run's event streams when its events or its status change in the store."""

    def __init__(self, store: RunStore, *, interval: float = 0.1, batch: int = 2000) -> None:
        self.store = store
        self.interval = interval
        self.batch = batch
        self._watch: dict[str, set[asyncio.Event]] = {}
        self._seen: dict[str, tuple[int, str]] = {}  # run -> (last event id seen, status)
        self._poller: asyncio.Task[None] | None = None
        self.streams = 0  # open streams, for /metrics

    async def stream(self, run_id: str, after: int) -> AsyncIterator[str]:
        """The run's events after event ``after``, live until the run ends, as SSE frames."""
        wake = asyncio.Event()
        self._watch.setdefault(run_id, set()).add(wake)
        self.streams += 1
        self._ensure_polling()
        try:
            sent = after
            while True:
                wake.clear()  # before reading: a change noticed from here on wakes the wait below
                # Status before events: a run seen ended here has written all its events already.
                status = self.store.statuses([run_id]).get(run_id, "cancelled")
                rows = self.store.events_after(sent, run_id=run_id, limit=self.batch)
                while rows:
                    sent = rows[-1][0]
                    yield "".join(format_event(row) for row in rows)
                    rows = self.store.events_after(sent, run_id=run_id, limit=self.batch) \
                        if len(rows) == self.batch else []
                if status in TERMINAL and not self._settling(run_id, status):
                    yield f"event: end\ndata: {json.dumps({'status': status})}\n\n"
                    return
                try:
                    async with asyncio.timeout(SETTLE if status == "interrupted" else KEEPALIVE):
                        await wake.wait()
                except TimeoutError:
                    yield ": keep-alive\n\n"
        finally:
            self.streams -= 1
            waiting = self._watch.get(run_id)
            if waiting is not None:
                waiting.discard(wake)
                if not waiting:
                    del self._watch[run_id]
                    self._seen.pop(run_id, None)

    def _settling(self, run_id: str, status: str) -> bool:
        """A service run is 'interrupted' for a moment before its runner marks it cancelled or queues it
        again (shutdown): not its end unless it stays so for ``SETTLE`` seconds."""
        if status != "interrupted":
            return False
        ended = self.store.ended_at(run_id)
        return ended is not None and time.time() - ended < SETTLE

    def _ensure_polling(self) -> None:
        if self._poller is None or self._poller.done():
            self._poller = asyncio.get_running_loop().create_task(self._poll())

    async def _poll(self) -> None:
        while self._watch:
            await asyncio.sleep(self.interval)
            self.check()

    def check(self) -> None:
        """One poll: wake the streams of runs whose events or status changed."""
        runs = list(self._watch)
        if not runs:
            return
        latest = self.store.latest_events(runs)
        statuses = self.store.statuses(runs)
        for run in runs:
            now = (int(latest.get(run) or 0), statuses.get(run, ""))
            if self._seen.get(run) != now:
                self._seen[run] = now
                for wake in self._watch.get(run, ()):
                    wake.set()

    async def aclose(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
