"""The Ray executor: each agent's pool is a set of Ray actors that hold its provider.

# Design
# The scheduler, the runner, the store and the gateway (limits, breakers, cache) stay in the
# driver: only the provider call crosses to Ray. An agent gets ``pool.size`` async actors (at least
# one), each building the agent's real provider from its spec (the same ``build_provider`` with the
# same seed and latency scale, so the sim gives the same outputs as locally), created when the pool
# is built and pinged at once (pre-warmed like local pools). A call goes to the actor with the fewest
# calls in flight. An actor that dies mid-call is replaced and the call fails with ``WorkerLost``,
# which the runner retries once at once on the replacement. Requests, responses and provider errors
# cross as pickles (dataclasses and exceptions).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
from typing import Any

from .._types import ProviderRequest, ProviderResponse
from ..errors import ProviderConfigError, WorkerLost
from ..spec import AgentSpec

__all__ = ["RayProvider", "ensure_ray", "ray_provider_factory"]

_ACTOR: Any = None


def ensure_ray(address: str | None = None) -> Any:
    """``ray``, connected: to ``address`` (``auto``, ``ray://host:10001``, ``host:6379``) or to a local
    Ray started here (the machine's CPUs). A missing ray is one clear error."""
    try:
        import ray
    except ImportError:
        raise ProviderConfigError("the ray executor needs Ray: pip install 'agentfleet[ray]' (or pip install ray)",
                                  provider="ray") from None
    if not ray.is_initialized():
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True,
                     configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ProviderConfigError(f"cannot connect to Ray at {address or 'a new local cluster'}: {exc}",
                                      provider="ray") from None
    return ray


def _actor_class(ray: Any) -> Any:
    global _ACTOR
    if _ACTOR is None:

        class AgentActor:
            """One member of an agent's pool, in a Ray worker process."""

            def __init__(self, agent: dict[str, Any], latency_scale: float, seed: int) -> None:
                from agentfleet.providers import build_provider
                from agentfleet.spec import AgentSpec

                self.provider = build_provider(AgentSpec.model_validate(agent), latency_scale=latency_scale,
                                               seed=seed)

            async def ready(self) -> int:
                return os.getpid()

            async def complete(self, request: ProviderRequest) -> ProviderResponse:
                return await self.provider.complete(request)

            async def close(self) -> None:
                await self.provider.aclose()

        _ACTOR = ray.remote(AgentActor)
    return _ACTOR


class RayProvider:
    """An agent's provider as a pool of Ray actors (``Provider`` protocol), least-loaded dispatch."""

    def __init__(self, agent: AgentSpec, *, latency_scale: float = 1.0, seed: int = 0, size: int | None = None,
                 concurrency: int | None = None, address: str | None = None) -> None:
        self.ray = ensure_ray(address)
        self.agent = agent
        self.name = agent.provider.strip().lower()
        self._spec = agent.model_dump(mode="json")
        self._scale = latency_scale
        self._seed = seed
        members = max(1, size if size is not None else agent.pool.size)
        limit = concurrency or agent.max_concurrency or 1000
        self._per_actor = max(1, math.ceil(limit / members))
        self._actors = [self._spawn() for _ in range(members)]
        self._inflight = [0] * members
        self.replaced = 0
        self.calls = 0
        # pre-warm: every actor starts (a process, an import, a provider) now, not at its first call
        self._warming = [actor.ready.remote() for actor in self._actors]

    def _spawn(self) -> Any:
        cls = _actor_class(self.ray)
        return cls.options(max_concurrency=self._per_actor, num_cpus=0).remote(self._spec, self._scale, self._seed)

    async def warm(self) -> list[int]:
        """Wait until every actor is up; their process ids."""
        return list(await asyncio.gather(*self._warming))

    @property
    def actors(self) -> list[Any]:
        return list(self._actors)

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        i = min(range(len(self._actors)), key=self._inflight.__getitem__)
        actor = self._actors[i]
        self._inflight[i] += 1
        self.calls += 1
        try:
            answer: ProviderResponse = await actor.complete.remote(request)
            return answer
        except self.ray.exceptions.RayActorError as exc:
            if self._actors[i] is actor:  # the first call to notice replaces it
                self._actors[i] = self._spawn()
                self._warming.append(self._actors[i].ready.remote())
                self.replaced += 1
            raise WorkerLost(f"ray actor of agent {self.agent.name!r} died mid-call ({type(exc).__name__})",
                             provider=self.name) from None
        finally:
            self._inflight[i] -= 1

    async def aclose(self) -> None:
        for actor in self._actors:
            with contextlib.suppress(Exception):
                await actor.close.remote()
            with contextlib.suppress(Exception):
                self.ray.kill(actor)
        self._actors = []


def ray_provider_factory(address: str | None = None) -> Any:
    """A ``Runner(provider_factory=...)`` building each agent's provider as Ray actors."""

    def build(agent: AgentSpec, *, clock: Any = None, latency_scale: float = 1.0, seed: int = 0) -> RayProvider:
        return RayProvider(agent, latency_scale=latency_scale, seed=seed, address=address)

    return build
