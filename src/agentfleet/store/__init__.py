"""Durable state in SQLite: runs, tasks, attempts, events and results; artifacts; agent memory; retention."""

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
from ._retention import (
    ARCHIVE_FORMAT,
    RUN_TABLES,
    GcPlan,
    GcResult,
    RestoreResult,
    StoreInfo,
    archive_name,
    compact,
    export_runs,
    gc_runs,
    parse_age,
    plan_gc,
    restore_runs,
    store_files,
    store_info,
)
from ._sqlite import DEFAULT_DB, TERMINAL, RunRow, RunStore

__all__ = [
    "ARCHIVE_FORMAT",
    "CATEGORIES",
    "DEFAULT_DB",
    "RUN_TABLES",
    "TERMINAL",
    "ArtifactKind",
    "ArtifactRef",
    "ArtifactStatistics",
    "ArtifactStore",
    "GcPlan",
    "GcResult",
    "MemoryEntry",
    "MemoryScope",
    "MemoryStatistics",
    "MemoryStore",
    "RestoreResult",
    "RunRow",
    "RunStore",
    "StoreInfo",
    "archive_name",
    "compact",
    "export_runs",
    "gc_runs",
    "parse_age",
    "parse_ttl",
    "plan_gc",
    "render_memory",
    "restore_runs",
    "store_files",
    "store_info",
]
