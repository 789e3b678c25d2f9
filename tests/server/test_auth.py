"""Bearer tokens (parsing, scopes, matching) and the per-token rate limit, on an injected clock."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from agentfleet.server import RateLimiter, TokenError, Tokens
from agentfleet.server._auth import retry_after

from .conftest import FakeClock


class TestTokens:
    def test_env_entries_with_and_without_scope(self) -> None:
        """``token[:scope]`` entries, comma-separated; no scope means submit."""
        tokens = Tokens.parse("alpha-token-1:read, beta-token-22 ,gamma-token-3:submit")
        assert len(tokens) == 3
        assert tokens.check("alpha-token-1").scope == "read"  # type: ignore[union-attr]
        assert tokens.check("beta-token-22").scope == "submit"  # type: ignore[union-attr]
        assert tokens.check("gamma-token-3").scope == "submit"  # type: ignore[union-attr]

    def test_unknown_or_partial_tokens_do_not_match(self) -> None:
        """Only the whole token matches: not a prefix, not a longer string, not the empty string."""
        tokens = Tokens.parse("alpha-token-1")
        for presented in ("", "alpha", "alpha-token-", "alpha-token-12", "ALPHA-TOKEN-1"):
            assert tokens.check(presented) is None

    def test_file_with_comments_and_scopes(self, tmp_path: Path) -> None:
        """One 'token [scope]' per line; blank lines and # comments are ignored; env and file add up."""
        file = tmp_path / "tokens"
        file.write_text("# the team\nreader-token-1 read  # dashboards\n\nwriter-token-1\n", encoding="utf-8")
        tokens = Tokens.parse("env-token-0001", file)
        assert len(tokens) == 3
        assert tokens.check("reader-token-1").scope == "read"  # type: ignore[union-attr]
        assert tokens.check("writer-token-1").scope == "submit"  # type: ignore[union-attr]

    @pytest.mark.parametrize(("env", "text", "message"), [
        ("some-token-1:admin", None, "scope 'admin'"),
        ("short", None, "at least 8 characters"),
        (None, "a-token-111 read extra\n", ":1: expected 'token [scope]'"),
        (None, "# nothing\n", "no tokens in it"),
    ])
    def test_bad_configuration_is_a_user_error(self, tmp_path: Path, env: str | None, text: str | None,
                                               message: str) -> None:
        """A bad scope, a short token, a malformed or empty file: one message, exit code 2."""
        file = None
        if text is not None:
            file = tmp_path / "tokens"
            file.write_text(text, encoding="utf-8")
        with pytest.raises(TokenError, match=re.escape(message)) as info:
            Tokens.parse(env, file)
        assert info.value.exit_code == 2

    def test_a_hash_inside_a_token_is_kept(self, tmp_path: Path) -> None:
        """Only '#' at a line's start or after a space starts a comment: a token may contain one."""
        file = tmp_path / "tokens"
        file.write_text("abc#defgh1234 read # the reader\n", encoding="utf-8")
        tokens = Tokens.parse(None, file)
        assert tokens.check("abc#defgh1234") is not None and tokens.check("abc") is None

    def test_tokens_sharing_a_prefix_have_their_own_buckets(self) -> None:
        """The rate-limit key is the token's digest, not its displayed prefix."""
        tokens = Tokens.parse("submittok1,submittok2")
        one, two = tokens.check("submittok1"), tokens.check("submittok2")
        assert one is not None and two is not None
        assert one.label == two.label and one.key != two.key

    def test_missing_file_is_named(self, tmp_path: Path) -> None:
        """A tokens file that cannot be read names itself."""
        with pytest.raises(TokenError, match=r"nope\.txt: cannot read"):
            Tokens.parse(None, tmp_path / "nope.txt")


class TestRateLimiter:
    def test_burst_then_refill_at_the_rate(self) -> None:
        """``burst`` requests at once, then one per 1/rate seconds; the wait says when the next fits."""
        clock = FakeClock()
        limiter = RateLimiter(2.0, 3, clock=clock)
        assert [limiter.acquire("k") for _ in range(3)] == [0.0, 0.0, 0.0]
        assert limiter.acquire("k") == pytest.approx(0.5)
        clock.now += 0.5
        assert limiter.acquire("k") == 0.0
        assert limiter.acquire("k") == pytest.approx(0.5)

    def test_keys_are_independent(self) -> None:
        """One token's flood does not limit another token."""
        limiter = RateLimiter(1.0, 1, clock=FakeClock())
        assert limiter.acquire("a") == 0.0
        assert limiter.acquire("a") > 0
        assert limiter.acquire("b") == 0.0

    def test_idle_buckets_are_dropped(self) -> None:
        """Buckets idle for over a minute are forgotten (memory stays bounded)."""
        clock = FakeClock()
        limiter = RateLimiter(10.0, 10, clock=clock)
        for n in range(100):
            limiter.acquire(f"key-{n}")
        clock.now += 120
        limiter.acquire("fresh")
        assert len(limiter._buckets) == 1

    def test_retry_after_is_whole_seconds_at_least_one(self) -> None:
        """Retry-After rounds up and is never 0."""
        assert retry_after(0.01) == "1"
        assert retry_after(1.2) == "2"
        assert retry_after(3.0) == "3"

    def test_bad_parameters(self) -> None:
        """A rate of zero or a burst under one is refused."""
        with pytest.raises(ValueError):
            RateLimiter(0, 1, clock=FakeClock())
        with pytest.raises(ValueError):
            RateLimiter(1, 0.5, clock=FakeClock())
