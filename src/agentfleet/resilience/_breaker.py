"""A circuit breaker: stop calling a provider that keeps failing, then probe it carefully.

# Design
# Closed: calls pass; failures and successes are counted over a sliding ``window`` of seconds.
# The circuit opens when the window holds at least ``failure_threshold`` failures AND they are at
# least ``failure_rate`` of its calls (as resilience4j does): a count alone would open on a
# busy, healthy provider with a steady 2% of 5xx, a rate alone on three calls out of four. Calls
# still in flight count in the rate's denominator (fast failures must not outvote slow successes).
# Open: calls are refused without touching the provider for ``cooldown`` seconds. Half-open
# (entered lazily, when the cooldown has passed): up to ``half_open_max`` probes are admitted; a
# probe's success closes the circuit, its failure reopens it for another cooldown. A probe that
# never reports back (cancelled, lost) would wedge the breaker half-open, so an admitted probe
# expires after one cooldown and another may go.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import StrEnum

from ..errors import CircuitOpen

__all__ = ["BreakerState", "CircuitBreaker", "CircuitBreakerStatistics"]


class BreakerState(StrEnum):
    """Where a breaker is: passing calls, refusing them, or admitting probes."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True, slots=True)
class CircuitBreakerStatistics:
    """The ``state`` at the time asked, ``failures`` in the window, how often it ``opened``,
    calls ``rejected`` while open, ``probes`` admitted half-open, and ``retry_at`` (the clock time
    it half-opens) while open."""

    state: BreakerState
    failures: int
    opened: int
    rejected: int
    probes: int
    retry_at: float | None


class CircuitBreaker:
    """Opens after ``failure_threshold`` failures within ``window`` seconds; half-opens ``cooldown``
    seconds later and admits ``half_open_max`` probes. ``provider`` names it in errors."""

    def __init__(
        self,
        failure_threshold: int,
        window: float,
        cooldown: float,
        half_open_max: int = 1,
        *,
        failure_rate: float = 0.0,
        provider: str = "",
    ) -> None:
        if failure_threshold < 1 or half_open_max < 1:
            raise ValueError("failure_threshold and half_open_max must be at least 1")
        if not window > 0 or cooldown < 0:
            raise ValueError("window must be positive and cooldown not negative")
        if not 0.0 <= failure_rate <= 1.0:
            raise ValueError(f"failure_rate must be in [0, 1], got {failure_rate!r}")
        self.failure_rate = failure_rate
        self._successes: deque[float] = deque()
        self.failure_threshold = failure_threshold
        self.window = window
        self.cooldown = cooldown
        self.half_open_max = half_open_max
        self.provider = provider
        self._failures: deque[float] = deque()
        self._open_until: float | None = None  # set while open or half-open
        #: True while closed: what a hot path may read before calling ``check`` at all
        self.closed = True
        self._probes: deque[float] = deque()  # admission times of probes not yet reported
        self._opened = 0
        self._rejected = 0
        self._probes_admitted = 0

    def state(self, now: float) -> BreakerState:
        """The state at ``now`` (open turns half-open once the cooldown has passed)."""
        if self._open_until is None:
            return BreakerState.CLOSED
        return BreakerState.OPEN if now < self._open_until else BreakerState.HALF_OPEN

    def allow(self, now: float) -> bool:
        """Whether a call may go now; in half-open, True admits it as a probe (report its outcome)."""
        state = self.state(now)
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN:
            while self._probes and self._probes[0] + self.cooldown <= now:
                self._probes.popleft()  # a probe that never reported back
            if len(self._probes) < self.half_open_max:
                self._probes.append(now)
                self._probes_admitted += 1
                return True
        self._rejected += 1
        return False

    def check(self, now: float) -> None:
        """``allow(now)``, raising ``CircuitOpen`` (naming the provider and when it half-opens) if not."""
        if self.allow(now):
            return
        name = self.provider or "provider"
        if self.state(now) is BreakerState.OPEN:
            assert self._open_until is not None
            retry_at = self._open_until
            message = (
                f"circuit open after repeated failures; {name} half-opens in {retry_at - now:g}s (at t={retry_at:g})"
            )
        else:
            retry_at = self._probes[0] + self.cooldown if self._probes else now
            message = (
                f"circuit half-open with {len(self._probes)} probe(s) to {name} in flight; "
                f"try again at t={retry_at:g} or after the probe reports"
            )
        raise CircuitOpen(message, provider=self.provider, retry_at=retry_at)

    def record_success(self, now: float) -> None:
        """A call succeeded; in half-open this closes the circuit."""
        state = self.state(now)
        if state is BreakerState.HALF_OPEN:
            self._close()
        elif state is BreakerState.CLOSED:
            self.note_success(now)

    def note_success(self, now: float) -> None:
        """``record_success`` for a breaker known to be closed (``closed``): the hot path's version."""
        if self.failure_rate > 0.0:
            successes = self._successes
            successes.append(now)
            horizon = now - self.window
            while successes[0] <= horizon:  # bounded: a healthy provider never calls _expire
                successes.popleft()

    def record_failure(self, now: float, pending: int = 0) -> None:
        """A call failed; may open the circuit (closed) or reopen it (half-open).

        ``pending``: calls sent and not answered yet. They count in the rate's denominator: errors
        come back faster than answers, so at the start of a burst the first few outcomes are all
        failures although most calls will succeed."""
        state = self.state(now)
        if state is BreakerState.HALF_OPEN:
            self._open(now)
        elif state is BreakerState.CLOSED:
            self._failures.append(now)
            self._expire(now)
            failures = len(self._failures)
            if failures >= self.failure_threshold and (
                    self.failure_rate <= 0.0
                    or failures >= self.failure_rate * (failures + len(self._successes) + pending)):
                self._open(now)
        # open: a call admitted before the circuit opened finished late; nothing to learn

    def _expire(self, now: float) -> None:
        horizon = now - self.window
        while self._failures and self._failures[0] <= horizon:
            self._failures.popleft()
        while self._successes and self._successes[0] <= horizon:
            self._successes.popleft()

    def _open(self, now: float) -> None:
        self._open_until = now + self.cooldown
        self.closed = False
        self._failures.clear()
        self._successes.clear()
        self._probes.clear()
        self._opened += 1

    def _close(self) -> None:
        self._open_until = None
        self.closed = True
        self._failures.clear()
        self._successes.clear()
        self._probes.clear()

    def statistics(self, now: float) -> CircuitBreakerStatistics:
        """The state and counters at ``now``."""
        state = self.state(now)
        self._expire(now)
        return CircuitBreakerStatistics(
            state=state,
            failures=len(self._failures),
            opened=self._opened,
            rejected=self._rejected,
            probes=self._probes_admitted,
            retry_at=self._open_until if state is BreakerState.OPEN else None,
        )
