"""Durable runs: SQLite schema and queries for runs, tasks, attempts, events and results."""

from __future__ import annotations

from ._sqlite import DEFAULT_DB, RunRow, RunStore

__all__ = ["DEFAULT_DB", "RunRow", "RunStore"]
