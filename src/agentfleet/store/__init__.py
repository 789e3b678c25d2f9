"""Durable state in SQLite: runs, tasks, attempts, events and results; artifacts; agent memory."""

from __future__ import annotations

from ._artifacts import ArtifactKind, ArtifactRef, ArtifactStatistics, ArtifactStore
from ._memory import (
    CATEGORIES,
    MemoryEntry,
    MemoryScope,
    MemoryStatistics,
    MemoryStore,
    parse_ttl,
    render_memory,
)
from ._sqlite import DEFAULT_DB, TERMINAL, RunRow, RunStore

__all__ = [
    "CATEGORIES",
    "DEFAULT_DB",
    "TERMINAL",
    "ArtifactKind",
    "ArtifactRef",
    "ArtifactStatistics",
    "ArtifactStore",
    "MemoryEntry",
    "MemoryScope",
    "MemoryStatistics",
    "MemoryStore",
    "RunRow",
    "RunStore",
    "parse_ttl",
    "render_memory",
]
