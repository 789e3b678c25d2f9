"""Topic patterns (``*`` one segment, trailing ``>`` one or more) and the topic → subscriptions router.

# Design
# Publishing must not scan every subscription. The router keeps exact patterns in a dict and
# wildcard patterns in a list, and caches the answer for each topic it has resolved: a publish
# to a known topic costs one dict lookup. Any (un)subscribe clears the cache (subscriptions
# change rarely; topics are published often). The cache is bounded so a bus that sees an
# endless stream of distinct topics (one per task, say) does not grow without limit.
# Subscriptions are returned in the order they were made, so delivery order is stable.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._subscription import Subscription

__all__ = ["Router", "compile_pattern", "matches", "validate_topic"]

_CACHE_LIMIT = 65_536


def validate_topic(topic: str) -> None:
    """Raise ``ValueError`` unless ``topic`` is non-empty dot-separated segments with no wildcard."""
    if not isinstance(topic, str) or not topic:
        raise ValueError(f"a topic is a non-empty string, got {topic!r}")
    for segment in topic.split("."):
        if not segment:
            raise ValueError(f"topic {topic!r} has an empty segment")
        if segment in ("*", ">"):
            raise ValueError(f"topic {topic!r} contains the wildcard {segment!r}; wildcards are for subscriptions")


def compile_pattern(pattern: str) -> tuple[str, ...] | None:
    """The pattern's segments, or None when it is an exact topic; ``ValueError`` when malformed."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"a pattern is a non-empty string, got {pattern!r}")
    segments = tuple(pattern.split("."))
    wild = False
    for i, segment in enumerate(segments):
        if not segment:
            raise ValueError(f"pattern {pattern!r} has an empty segment")
        if segment == ">":
            if i != len(segments) - 1:
                raise ValueError(f"pattern {pattern!r}: '>' is only allowed as the last segment")
            wild = True
        elif segment == "*":
            wild = True
        elif "*" in segment or ">" in segment:
            raise ValueError(f"pattern {pattern!r}: wildcards must be whole segments ({segment!r})")
    return segments if wild else None


def matches(segments: tuple[str, ...], topic: str) -> bool:
    """Whether a compiled wildcard pattern matches ``topic``."""
    parts = topic.split(".")
    n = len(segments)
    if segments[-1] == ">":
        n -= 1
        if len(parts) <= n:
            return False
    elif len(parts) != n:
        return False
    for i in range(n):
        want = segments[i]
        if want != "*" and want != parts[i]:
            return False
    return True


class Router:
    """Which subscriptions a topic reaches, cached per topic."""

    __slots__ = ("_exact", "_wild", "cache")

    def __init__(self) -> None:
        self.cache: dict[str, tuple[Subscription, ...]] = {}
        self._exact: dict[str, list[Subscription]] = {}
        self._wild: list[tuple[tuple[str, ...], Subscription]] = []

    def add(self, sub: Subscription, segments: tuple[str, ...] | None) -> None:
        if segments is None:
            self._exact.setdefault(sub.pattern, []).append(sub)
        else:
            self._wild.append((segments, sub))
        self.cache.clear()

    def remove(self, sub: Subscription) -> None:
        subs = self._exact.get(sub.pattern)
        if subs is not None and sub in subs:
            subs.remove(sub)
            if not subs:
                del self._exact[sub.pattern]
        else:
            self._wild = [(segs, s) for segs, s in self._wild if s is not sub]
        self.cache.clear()

    def match(self, topic: str) -> tuple[Subscription, ...]:
        """The subscriptions ``topic`` reaches, in subscription order (``ValueError`` on a bad topic)."""
        subs = self.cache.get(topic)
        if subs is None:
            subs = self.resolve(topic)
        return subs

    def resolve(self, topic: str) -> tuple[Subscription, ...]:
        """Compute and cache ``match(topic)``."""
        validate_topic(topic)
        found = list(self._exact.get(topic, ()))
        wild = [s for segs, s in self._wild if matches(segs, topic)]
        if wild:
            found.extend(wild)
            found.sort(key=_order)
        subs = tuple(found)
        if len(self.cache) >= _CACHE_LIMIT:
            self.cache.clear()
        self.cache[topic] = subs
        return subs

    def all(self) -> list[Subscription]:
        """Every registered subscription, in subscription order."""
        subs = [s for group in self._exact.values() for s in group]
        subs.extend(s for _, s in self._wild)
        subs.sort(key=_order)
        return subs


def _order(sub: Subscription) -> int:
    return sub._seq
