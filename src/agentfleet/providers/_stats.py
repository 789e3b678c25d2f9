"""Per-provider call counters and the frozen snapshot every provider's ``statistics()`` returns."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ProviderTimeout, RateLimited

__all__ = ["CallCounters", "ProviderStatistics"]


@dataclass(frozen=True, slots=True)
class ProviderStatistics:
    """What one provider instance has done so far.

    ``calls`` counts every ``complete()`` started; ``succeeded`` those that returned;
    ``rate_limited`` and ``timeouts`` their own failures; ``errors`` every other failure.
    Calls still running or cancelled are in ``calls`` only.
    """

    calls: int = 0
    succeeded: int = 0
    errors: int = 0
    rate_limited: int = 0
    timeouts: int = 0

    @property
    def failed(self) -> int:
        return self.errors + self.rate_limited + self.timeouts


class CallCounters:
    """The mutable counters behind ``ProviderStatistics`` (plain ints: cheap on the hot path)."""

    __slots__ = ("calls", "errors", "rate_limited", "succeeded", "timeouts")

    def __init__(self) -> None:
        self.calls = 0
        self.succeeded = 0
        self.errors = 0
        self.rate_limited = 0
        self.timeouts = 0

    def failed(self, exc: BaseException) -> None:
        """Count a failed call by the kind of error it raised."""
        if isinstance(exc, RateLimited):
            self.rate_limited += 1
        elif isinstance(exc, ProviderTimeout):
            self.timeouts += 1
        else:
            self.errors += 1

    def snapshot(self) -> ProviderStatistics:
        return ProviderStatistics(
            calls=self.calls,
            succeeded=self.succeeded,
            errors=self.errors,
            rate_limited=self.rate_limited,
            timeouts=self.timeouts,
        )
