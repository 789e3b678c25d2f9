"""Agents talking to each other during a run, over the run's message bus.

# Design
# While a run is going, every agent with a pool answers questions on
# ``run.<key>.agent.<name>.ask`` (a bus request/reply): the question becomes a call on a
# member of that agent's pool, with the agent's own system prompt, and the answer is the
# reply. Code running a task (a ``python`` agent, a hook, a validator) reaches its team
# through ``agentfleet.team()``: ``await team().ask("developer", "why cents, not floats?")``
# from async code, ``team().ask_sync(...)`` from a sync function (run in a worker thread),
# ``team().publish(topic, data)`` for anything else. The context is a contextvar set for
# each task, so it is the asking task's own, and costs one small object per task.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import TYPE_CHECKING, Any

from ..errors import AgentFleetError

if TYPE_CHECKING:
    from ..messaging import Bus

__all__ = ["TeamContext", "ask_topic", "team"]

# What the runner sets per task: (runner, task id, agent); the TeamContext is built on demand.
_CURRENT: contextvars.ContextVar[tuple[Any, str, str] | None] = contextvars.ContextVar("agentfleet_team",
                                                                                        default=None)


def ask_topic(run_key: str, agent: str) -> str:
    """The bus topic on which ``agent`` answers questions during run ``run_key``."""
    return f"run.{run_key}.agent.{agent}.ask"


class TeamContext:
    """The running task's view of its team: ask another agent, publish on the run's bus."""

    __slots__ = ("agent", "bus", "loop", "run_key", "task_id")

    def __init__(self, bus: Bus, run_key: str, task_id: str, agent: str, loop: asyncio.AbstractEventLoop) -> None:
        self.bus = bus
        self.run_key = run_key
        self.task_id = task_id
        self.agent = agent
        self.loop = loop

    async def ask(self, agent: str, question: str, *, timeout: float = 120.0) -> str:
        """Ask ``agent`` (any agent of the workflow) a question; its answer's text.

        Raises BusTimeout when no answer comes within ``timeout`` and BusError when the
        agent's call failed (the message says why)."""
        reply = await self.bus.request(ask_topic(self.run_key, agent),
                                       {"from": self.agent, "task": self.task_id, "question": question},
                                       timeout=timeout)
        return str(reply)

    def ask_sync(self, agent: str, question: str, *, timeout: float = 120.0) -> str:
        """``ask`` from synchronous code running in a worker thread (a sync ``python`` agent)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise AgentFleetError("ask_sync() would block the event loop; use 'await team().ask(...)' here")
        future = asyncio.run_coroutine_threadsafe(self.ask(agent, question, timeout=timeout), self.loop)
        return future.result(timeout + 5.0)

    async def publish(self, topic: str, data: Any) -> int:
        """Publish ``data`` on ``run.<key>.<topic>`` (the run's own namespace)."""
        return await self.bus.publish(f"run.{self.run_key}.{topic}", data)


def team() -> TeamContext:
    """The team of the task running now (inside a python agent, hook or validator)."""
    current = _CURRENT.get()
    if current is None:
        raise AgentFleetError("agentfleet.team() is only available while a task of a run is executing")
    runner, task_id, agent = current
    return TeamContext(runner.bus, runner.run_key, task_id, agent, runner.loop)


def enter_team(runner: Any, task_id: str, agent: str) -> None:
    """Make the running task's team known (the runner calls this per task; one tuple, nothing built)."""
    _CURRENT.set((runner, task_id, agent))
