"""Redis URLs in messages: the password replaced, whoever prints them (the bus, the Redis cache
level, the shared rate limiter). Kept out of those packages so none imports another for it."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

__all__ = ["redact"]


def redact(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***`` (for error messages)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:  # a malformed URL (a bad port): shown as given, it holds no parsable password
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
