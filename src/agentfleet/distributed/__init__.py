"""Scale-out: the Ray executor (agent pools as Ray actors) and, with Redis, task claims shared by
several runner processes.

    RayProvider            an agent's provider as a pool of Ray actors (least-loaded dispatch)
    ray_provider_factory   what ``Runner(executor="ray")`` builds providers with
    ensure_ray             connect to a Ray cluster, or start a local one
    TaskClaims             a run's tasks claimed in Redis: several runners, each task executed once

Ray is imported only when the ray executor is used.
"""

from __future__ import annotations

from ._claims import TaskClaims
from ._ray import RayProvider, ensure_ray, ray_provider_factory

__all__ = ["RayProvider", "TaskClaims", "ensure_ray", "ray_provider_factory"]
