"""The agentfleet service: an HTTP API (FastAPI) over the run database, runner processes that
execute submitted runs, Server-Sent Events of each run's progress, and a live dashboard.

    create_app(config)   the ASGI app (``agentfleet serve`` runs it under uvicorn)
    ServiceConfig        what the service is told: database, tokens, limits, runners
    Tokens               bearer tokens with scopes (read, submit)
    Executor             claims queued runs from the database and runs them
"""

from __future__ import annotations

from ._app import ServiceConfig, create_app
from ._auth import RateLimiter, TokenError, Tokens, generate_token
from ._executor import Executor

__all__ = ["Executor", "RateLimiter", "ServiceConfig", "TokenError", "Tokens", "create_app", "generate_token"]
