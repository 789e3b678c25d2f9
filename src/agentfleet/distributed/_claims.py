"""Task claims in Redis: several runner processes share one run's tasks, each executed once.

# Design
# Every runner that works on a run schedules the whole run (the plan is cheap) but executes a task
# only if it claims it: ``SET claim NX PX ttl`` with its own id, kept alive by a heartbeat every
# ttl/3. The claimant publishes the task's outcome under a ``done`` key before it drops the claim;
# a runner that lost the race waits for that outcome and adopts it (output, tokens, state) instead
# of executing. If the claimant dies mid-task its claim expires and the next runner to look claims
# the task and runs it. A finished task is never run again: ``done`` is checked in the same script
# that claims. Outcomes live a day (a run that long is resumed from the store, not from Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
from collections.abc import Callable
from typing import Any

__all__ = ["TaskClaims"]

_ACQUIRE = """
local done = redis.call('GET', KEYS[2])
if done then return {'done', done} end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'owned', ''} end
return {'busy', redis.call('GET', KEYS[1]) or ''}
"""
_COMPLETE = """
local won = redis.call('SET', KEYS[2], ARGV[2], 'NX', 'EX', ARGV[3])
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if won then return 1 end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_RENEW = """
local n = 0
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('PEXPIRE', key, ARGV[2]); n = n + 1 end
end
return n
"""
DONE_TTL = 86_400  # seconds an outcome stays for runners still working on the run


class TaskClaims:
    """One runner's claims on the tasks of run ``run_id`` (``redis.asyncio`` client given or made from ``url``)."""

    def __init__(self, url: str, run_id: str, *, ttl: float = 10.0, poll: float = 0.05, owner: str | None = None,
                 client: Any = None) -> None:
        import redis.asyncio as aioredis

        self.url = url
        self.run_id = run_id
        self.ttl = ttl
        self.poll = poll
        self.owner = owner or secrets.token_hex(8)
        self.redis = client if client is not None else aioredis.Redis.from_url(url)
        self._held: set[str] = set()
        self._heartbeat: asyncio.Task[None] | None = None
        self._scripts: dict[str, Any] = {}
        #: tasks this runner executed / adopted from another runner
        self.executed = 0
        self.adopted = 0

    def _key(self, kind: str, task_id: str) -> str:
        return f"agentfleet:run:{self.run_id}:{kind}:{task_id}"

    def _script(self, name: str, text: str) -> Any:
        script = self._scripts.get(name)
        if script is None:
            script = self._scripts[name] = self.redis.register_script(text)
        return script

    async def acquire(self, task_id: str) -> tuple[str, dict[str, Any] | None]:
        """('owned', None): run it; ('done', outcome): another runner did; ('busy', None): another runner has it."""
        state, value = await self._script("acquire", _ACQUIRE)(
            keys=[self._key("claim", task_id), self._key("done", task_id)],
            args=[self.owner, int(self.ttl * 1000)])
        state = state.decode() if isinstance(state, bytes) else state
        if state == "owned":
            self._held.add(task_id)
            self._ensure_heartbeat()
            return "owned", None
        if state == "done":
            return "done", json.loads(value)
        return "busy", None

    async def complete(self, task_id: str, outcome: dict[str, Any]) -> bool:
        """Publish this runner's outcome of a claimed task and drop the claim; False if another
        runner's outcome was there first (the claim had expired and the task ran twice)."""
        self._held.discard(task_id)
        won = await self._script("complete", _COMPLETE)(
            keys=[self._key("claim", task_id), self._key("done", task_id)],
            args=[self.owner, json.dumps(outcome, default=str), DONE_TTL])
        self.executed += 1
        return bool(won)

    async def release(self, task_id: str) -> None:
        """Give a claimed task up unfinished (interrupted): another runner may take it at once."""
        self._held.discard(task_id)
        with contextlib.suppress(Exception):
            await self._script("release", _RELEASE)(keys=[self._key("claim", task_id)], args=[self.owner])

    async def wait(self, task_id: str, *, cancelled: Callable[[], bool] | None = None) -> dict[str, Any] | None:
        """The outcome another runner publishes for ``task_id``, or None when its claim lapsed
        without one (that runner died): then claim it again."""
        claim, done = self._key("claim", task_id), self._key("done", task_id)
        while True:
            pipe = self.redis.pipeline(transaction=False)
            pipe.get(done)
            pipe.exists(claim)
            outcome, held = await pipe.execute()
            if outcome is not None:
                self.adopted += 1
                result: dict[str, Any] = json.loads(outcome)
                return result
            if not held:
                return None
            await asyncio.sleep(self.poll)

    def _ensure_heartbeat(self) -> None:
        if self._heartbeat is None or self._heartbeat.done():
            self._heartbeat = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        while self._held:
            await asyncio.sleep(self.ttl / 3)
            held = [self._key("claim", t) for t in list(self._held)]
            if held:
                await self._script("renew", _RENEW)(keys=held, args=[self.owner, int(self.ttl * 1000)])

    async def aclose(self) -> None:
        for task_id in list(self._held):
            await self.release(task_id)
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._heartbeat
        with contextlib.suppress(Exception):
            await self.redis.aclose()
