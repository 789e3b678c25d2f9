"""Bearer tokens with scopes, and a per-token request rate limit.

# Design
# Tokens are compared with ``hmac.compare_digest`` against *every* configured token, so how long a
# check takes says nothing about which token (or how much of one) matched. The rate limit is a token
# bucket per bearer token, pure (its clock is a parameter) so tests are exact; buckets idle for a
# minute are dropped, so a flood of made-up tokens (which fail auth first anyway) cannot grow memory.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from ..errors import AgentFleetError

__all__ = ["SCOPES", "RateLimiter", "TokenError", "Tokens", "generate_token"]

#: what each scope may do; ``submit`` includes ``read``
SCOPES: dict[str, frozenset[str]] = {"read": frozenset({"read"}), "submit": frozenset({"read", "submit"})}
ENV = "AGENTFLEET_TOKENS"


class TokenError(AgentFleetError):
    """The configured tokens are unusable (a bad scope, an empty file): a user error."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class Token:
    secret: bytes
    scope: str
    label: str  # what logs and metrics may show: the scope and the token's first characters
    key: str  # the token's own rate-limit bucket (a digest: two tokens never share one)


class Tokens:
    """The service's bearer tokens (from ``AGENTFLEET_TOKENS`` and/or a file)."""

    def __init__(self, entries: Iterable[tuple[str, str]]) -> None:
        self._tokens: list[Token] = []
        for secret, scope in entries:
            if scope not in SCOPES:
                raise TokenError(f"token scope {scope!r} is not one of: {', '.join(SCOPES)}")
            if len(secret) < 8:
                raise TokenError(f"a token must be at least 8 characters (got one of {len(secret)} for scope {scope})")
            digest = hashlib.sha256(secret.encode()).hexdigest()[:16]
            self._tokens.append(Token(secret.encode(), scope, f"{scope}:{secret[:4]}…", digest))

    def __len__(self) -> int:
        return len(self._tokens)

    @classmethod
    def parse(cls, env: str | None = None, file: str | os.PathLike[str] | None = None) -> Tokens:
        """Tokens from ``env`` (``token[:scope],...``) and ``file`` (``token [scope]`` per line, ``#`` comments)."""
        entries: list[tuple[str, str]] = []
        for item in (env or "").split(","):
            item = item.strip()
            if item:
                secret, _, scope = item.rpartition(":") if ":" in item else (item, "", "submit")
                entries.append((secret.strip(), scope.strip() or "submit"))
        if file is not None:
            try:
                text = Path(file).read_text(encoding="utf-8")
            except OSError as exc:
                raise TokenError(f"--tokens-file {file}: cannot read: {exc.strerror or exc}") from None
            for n, line in enumerate(text.splitlines(), 1):
                line = re.split(r"(?:^|\s)#", line, maxsplit=1)[0].strip()  # a comment; '#' inside a token stays
                if not line:
                    continue
                parts = line.split()
                if len(parts) > 2:
                    raise TokenError(f"--tokens-file {file}:{n}: expected 'token [scope]', got {len(parts)} words")
                entries.append((parts[0], parts[1] if len(parts) == 2 else "submit"))
            if not entries:
                raise TokenError(f"--tokens-file {file}: no tokens in it")
        return cls(entries)

    def check(self, presented: str) -> Token | None:
        """The token matching ``presented``, or None; the time taken does not depend on which matched."""
        given = presented.encode()
        found: Token | None = None
        for token in self._tokens:
            if hmac.compare_digest(token.secret, given):
                found = token
        return found


def generate_token() -> str:
    return secrets.token_urlsafe(24)


class RateLimiter:
    """A token bucket per key: ``rate`` requests a second, bursts up to ``burst``."""

    def __init__(self, rate: float, burst: float, *, clock: Callable[[], float]) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._swept = clock()

    def acquire(self, key: str) -> float:
        """Take one request for ``key``: 0.0 if allowed, else the seconds until one would be."""
        now = self._clock()
        tokens, at = self._buckets.get(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if now - self._swept > 60.0:
            self._sweep(now)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _sweep(self, now: float) -> None:
        self._swept = now
        full = self.burst / self.rate
        for key in [k for k, (_, at) in self._buckets.items() if now - at > max(60.0, full)]:
            del self._buckets[key]


def retry_after(seconds: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))
