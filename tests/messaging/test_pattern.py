"""Topic patterns (``*`` one segment, trailing ``>`` one or more) and the cached router."""

from __future__ import annotations

import pytest

from agentfleet.messaging import InProcessBus
from agentfleet.messaging._pattern import Router, compile_pattern, matches, validate_topic
from agentfleet.testing import run_virtual


def _match(pattern: str, topic: str) -> bool:
    segments = compile_pattern(pattern)
    return pattern == topic if segments is None else matches(segments, topic)


class TestMatching:
    """NATS semantics: ``*`` is exactly one segment, ``>`` one or more at the end."""

    @pytest.mark.parametrize(
        ("pattern", "topic", "expected"),
        [
            ("a.b", "a.b", True),
            ("a.b", "a.b.c", False),
            ("a.*", "a.b", True),
            ("a.*", "a", False),
            ("a.*", "a.b.c", False),
            ("*.b", "x.b", True),
            ("a.*.c", "a.x.c", True),
            ("a.*.c", "a.x.d", False),
            ("a.>", "a.b", True),
            ("a.>", "a.b.c.d", True),
            ("a.>", "a", False),
            (">", "anything.at.all", True),
            ("*", "one", True),
            ("*", "one.two", False),
            ("*.*.>", "a.b", False),
            ("*.*.>", "a.b.c", True),
            ("run.*.task.>", "run.7.task.build.done", True),
            ("run.*.task.>", "run.7.tasks.build", False),
        ],
    )
    def test_matches(self, pattern: str, topic: str, expected: bool) -> None:
        """Each (pattern, topic) pair matches exactly when NATS would."""
        assert _match(pattern, topic) is expected

    def test_exact_pattern_compiles_to_none(self) -> None:
        """A pattern without wildcards is an exact topic (looked up in a dict, not matched)."""
        assert compile_pattern("a.b") is None
        assert compile_pattern("a.*") == ("a", "*")

    @pytest.mark.parametrize("pattern", ["", "a..b", ".a", "a.", "a.>.b", "a*.b", "a.b>", 5])
    def test_malformed_patterns(self, pattern: object) -> None:
        """Empty segments, a non-final ``>`` and partial-segment wildcards are rejected."""
        with pytest.raises(ValueError):
            compile_pattern(pattern)  # type: ignore[arg-type]

    @pytest.mark.parametrize("topic", ["", "a..b", "a.*", "a.>", "*"])
    def test_malformed_topics(self, topic: str) -> None:
        """A published topic has no empty segment and no wildcard."""
        with pytest.raises(ValueError):
            validate_topic(topic)


class TestRouter:
    """The router answers from its per-topic cache and forgets it when subscriptions change."""

    def test_cache_and_invalidation(self) -> None:
        """A resolved topic is cached; subscribing and closing clear the cache."""

        async def main() -> None:
            bus = InProcessBus()
            router: Router = bus._router
            a = bus.subscribe("x.*")
            assert router.match("x.y") == (a,)
            assert "x.y" in router.cache
            b = bus.subscribe("x.y")
            assert router.cache == {}
            assert router.match("x.y") == (a, b)  # subscription order, exact and wildcard merged
            a.close()
            assert router.match("x.y") == (b,)
            b.close()
            assert router.match("x.y") == ()
            await bus.aclose()

        run_virtual(main())

    def test_many_subscriptions(self) -> None:
        """With 2,000 subscriptions a topic reaches exactly the matching ones, in order."""

        async def main() -> None:
            bus = InProcessBus()
            subs = [bus.subscribe(f"agent.{i}.>") for i in range(1000)]
            subs += [bus.subscribe(f"agent.{i}.done") for i in range(1000)]
            star = bus.subscribe("agent.*.done")
            assert bus._router.match("agent.7.done") == (subs[7], subs[1007], star)
            assert bus.publish_nowait("agent.7.done", None) == 3
            await bus.aclose()

        run_virtual(main())

    def test_cache_is_bounded(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """An endless stream of distinct topics does not grow the cache without limit."""
        monkeypatch.setattr("agentfleet.messaging._pattern._CACHE_LIMIT", 10)

        async def main() -> None:
            bus = InProcessBus()
            bus.subscribe("t.>")
            for i in range(25):
                bus.publish_nowait(f"t.{i}", i)
            assert len(bus._router.cache) <= 10
            await bus.aclose()

        run_virtual(main())
