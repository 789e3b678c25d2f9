"""The tag graph: which tags are derived from which, so invalidation can follow derivations.

An edge ``source -> derived`` says entries tagged ``derived`` were computed from something
tagged ``source``; invalidating ``source`` must also invalidate ``derived`` (and so on,
transitively; cycles are harmless). ``TagGraph`` keeps the edges in memory; ``SqliteCache``
has the same two methods and keeps them in the run database, shared and persistent.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

__all__ = ["TagGraph", "TagGraphStore"]


class TagGraphStore(Protocol):
    """Where the tiered cache records and follows tag derivations."""

    def add_edges(self, edges: Iterable[tuple[str, str]]) -> None: ...

    def closure(self, tags: Iterable[str]) -> set[str]: ...


class TagGraph:
    """Tag derivations in memory (for a cache without a SQLite level)."""

    def __init__(self) -> None:
        self._derived: dict[str, set[str]] = {}

    def add_edges(self, edges: Iterable[tuple[str, str]]) -> None:
        """Record ``(source, derived)`` pairs: invalidating ``source`` will invalidate ``derived``."""
        for source, derived in edges:
            if source != derived:
                self._derived.setdefault(source, set()).add(derived)

    def closure(self, tags: Iterable[str]) -> set[str]:
        """``tags`` and every tag derived from them, transitively."""
        seen = set(tags)
        stack = list(seen)
        while stack:
            for derived in self._derived.get(stack.pop(), ()):
                if derived not in seen:
                    seen.add(derived)
                    stack.append(derived)
        return seen
