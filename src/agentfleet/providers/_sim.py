"""``sim``: a simulated LLM with a seeded latency and token model and fault injection.

It exists to demo and benchmark the runtime itself, so every response says it is
simulated (``meta["simulated"]``, provider name ``sim``, text starting ``[sim]``).

# Design
# Every random decision for a request comes from one ``random.Random`` seeded by a hash
# of (run seed, ``options.seed``, task id, attempt). So the outcome of a task does not
# depend on which tasks ran before it or concurrently with it, a retry (next attempt)
# draws afresh and can succeed, and two runs with the same seed are identical.
# ``plan()`` is synchronous and holds all the logic (what happens and after how long);
# ``complete()`` only sleeps on the injected ``Clock`` and returns or raises what the plan
# says. Under ``agentfleet.testing.run_virtual`` the sleep costs no wall time and the
# elapsed virtual time equals the drawn latency exactly.
# Latency is lognormal around the profile's median (``median * exp(sigma * N(0,1))``),
# the usual shape of LLM response times; all latencies are multiplied by ``latency_scale``.
# A failed call (``error_rate``) costs its drawn latency; a rate-limited one is answered
# at once; a timed-out one waits for the request's timeout (or 10x the median).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import struct
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from .._tokens import estimate_tokens
from .._types import Clock, LoopClock, ProviderRequest, ProviderResponse
from ..errors import ProviderConfigError, ProviderError, ProviderTimeout, RateLimited
from ._options import OptionReader
from ._stats import CallCounters, ProviderStatistics
from ._structured import example_from_schema

if TYPE_CHECKING:
    from ..spec import AgentSpec

__all__ = ["SIM_PROFILES", "SimPlan", "SimProfile", "SimProvider", "estimate_tokens"]


@dataclass(frozen=True, slots=True)
class SimProfile:
    """A simulated model: lognormal latency (median seconds, sigma) and output length range."""

    median: float
    sigma: float
    tokens_out: tuple[int, int]

    @property
    def mean(self) -> float:
        """The expected latency (lognormal mean), what a planner should assume."""
        return self.median * math.exp(self.sigma * self.sigma / 2)


SIM_PROFILES: MappingProxyType[str, SimProfile] = MappingProxyType(
    {
        "sim-instant": SimProfile(0.0, 0.0, (5, 20)),
        "sim-fast": SimProfile(0.3, 0.3, (20, 120)),
        "sim-default": SimProfile(1.0, 0.4, (50, 300)),
        "sim-gpt": SimProfile(2.0, 0.5, (100, 600)),
        "sim-large": SimProfile(5.0, 0.6, (200, 1200)),
    }
)
_DEFAULT_PROFILE = "sim-default"


@dataclass(frozen=True, slots=True)
class SimPlan:
    """What the sim will do for one request: wait ``delay`` seconds, then return or raise.

    ``latency`` is the drawn service time (equal to ``delay`` for a success).
    """

    delay: float
    latency: float
    response: ProviderResponse | None = None
    error: ProviderError | None = None


_WORD = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{3,}")
_STOP = frozenset({
    "about", "above", "after", "again", "against", "also", "and", "any", "are", "because",
    "been", "before", "being", "below", "between", "both", "but", "can", "could", "did", "does",
    "doing", "down", "during", "each", "few", "for", "from", "further", "had", "has", "have",
    "having", "here", "into", "its", "itself", "just", "more", "most", "must", "need", "needs",
    "only", "other", "ought", "our", "ours", "out", "over", "own", "same", "shall", "should",
    "some", "such", "than", "that", "the", "their", "theirs", "them", "then", "there", "these",
    "they", "this", "those", "through", "too", "under", "until", "upon", "very", "was", "were",
    "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would",
    "you", "your", "yours", "please", "task", "tasks", "using", "given", "make", "sure",
    "every", "based",
})
_VOCAB = (
    "the", "plan", "covers", "and", "we", "should", "review", "each", "step", "with", "care",
    "then", "measure", "results", "against", "a", "baseline", "before", "shipping", "changes",
    "risks", "are", "noted", "below", "next", "actions", "follow", "from", "this", "analysis",
)


def _keywords(text: str, limit: int = 8) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for word in _WORD.findall(text[:1500].lower()):
        if word not in _STOP and word not in seen:
            seen[word] = None
            if len(seen) >= limit:
                break
    return tuple(seen)


_UNIT = struct.Struct(">5Q")
_TWO_64 = float(2**64)


def _uniforms(*parts: object) -> tuple[float, ...]:
    """Five independent uniforms in [0, 1) for a request, straight from one keyed hash.

    Cheaper than seeding a ``random.Random`` per request (~1 us instead of ~5), which
    matters because the sim is used to measure the runtime's own overhead.
    """
    key = "\x1f".join(map(str, parts)).encode()
    a, b, c, d, e = _UNIT.unpack(hashlib.blake2b(key, digest_size=40).digest())
    return (a / _TWO_64, b / _TWO_64, c / _TWO_64, d / _TWO_64, e / _TWO_64)


def _make_corpus(size: int = 1 << 16) -> str:
    """A fixed pseudo-text the sim slices its answers from (built once, same on every run)."""
    rng = random.Random(0x5EED)
    words = rng.choices(_VOCAB, k=size // 5)
    for n in range(11, len(words), 12):
        words[n] += "."
    return " ".join(words)


_CORPUS = _make_corpus()


def _render_text(task_id: str, keywords: tuple[str, ...], tokens: int, where: float) -> str:
    """A plausible response of ``tokens`` tokens (4 chars each) that echoes ``keywords``.

    The body is a slice of a fixed corpus at a seeded offset: deterministic per request,
    and cheap enough (a few microseconds) not to distort runtime benchmarks.
    """
    head = f"[sim] Response for {task_id}."
    if keywords:
        head += " Key points: " + ", ".join(keywords[:4]) + "."
    target = tokens * 4 - len(head) - 1
    if target <= 0:
        return head
    while target > len(_CORPUS) - 1:
        head += " " + _CORPUS
        target -= len(_CORPUS) + 1
    start = int(where * (len(_CORPUS) - target))
    space = _CORPUS.find(" ", start)
    start = space + 1 if space != -1 and space < start + 20 else start
    body = _CORPUS[start : start + target].rstrip()
    text = f"{head} {body}" if body else head
    return text if text.endswith(".") else text + "."


class SimProvider:
    """A simulated LLM; see the module docstring for the model it follows."""

    name = "sim"

    def __init__(
        self,
        *,
        model: str = _DEFAULT_PROFILE,
        profile: SimProfile | None = None,
        clock: Clock | None = None,
        latency_scale: float = 1.0,
        seed: int = 0,
        agent_seed: object = None,
        error_rate: float = 0.0,
        rate_limit_rate: float = 0.0,
        timeout_rate: float = 0.0,
        retry_after: float = 1.0,
        fail_attempts: int = 0,
    ) -> None:
        if profile is None:
            profile = SIM_PROFILES.get(model, SIM_PROFILES[_DEFAULT_PROFILE])
        if latency_scale < 0:
            raise ProviderConfigError("latency_scale must be >= 0", provider=self.name)
        for label, rate in (
            ("error_rate", error_rate),
            ("rate_limit_rate", rate_limit_rate),
            ("timeout_rate", timeout_rate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ProviderConfigError(f"{label} must be between 0 and 1", provider=self.name)
        if error_rate + rate_limit_rate + timeout_rate > 1.0 + 1e-9:
            raise ProviderConfigError("fault rates add up to more than 1", provider=self.name)
        self.model = model
        self.profile = profile
        self.clock: Clock = clock if clock is not None else LoopClock()
        self.latency_scale = latency_scale
        self.seed = seed
        self.agent_seed = agent_seed
        self._error_to = error_rate
        self._rate_limit_to = error_rate + rate_limit_rate
        self._timeout_to = error_rate + rate_limit_rate + timeout_rate
        self.retry_after = retry_after
        self.fail_attempts = fail_attempts
        self._counters = CallCounters()

    @classmethod
    def from_agent(
        cls,
        agent: AgentSpec,
        *,
        clock: Clock | None = None,
        latency_scale: float = 1.0,
        seed: int = 0,
    ) -> SimProvider:
        """Build from an agent spec, validating ``agent.options``."""
        opts = OptionReader(agent.name, "sim", agent.options)
        model = agent.model or _DEFAULT_PROFILE
        base = SIM_PROFILES.get(model)
        if base is None:
            if model.startswith("sim"):
                raise ProviderConfigError(
                    f"agent {agent.name!r}: unknown sim model {model!r}; "
                    f"known: {', '.join(SIM_PROFILES)}",
                    provider="sim",
                )
            base = SIM_PROFILES[_DEFAULT_PROFILE]  # a real model name run on the sim
        median, sigma = base.median, base.sigma
        latency = opts.raw("latency")
        if latency is not None:
            if isinstance(latency, (int, float)) and not isinstance(latency, bool):
                median, sigma = opts.check_number("latency", latency, minimum=0), 0.0
            elif isinstance(latency, dict):
                unknown = set(latency) - {"median", "sigma", "fixed"}
                if unknown:
                    raise opts.error("latency", f"has unknown keys {sorted(unknown)}; "
                                     "use {median: s, sigma: x} or {fixed: s}")
                if "fixed" in latency:
                    if "median" in latency or "sigma" in latency:
                        raise opts.error("latency", "takes either 'fixed' or 'median'/'sigma'")
                    median = opts.check_number("latency.fixed", latency["fixed"], minimum=0)
                    sigma = 0.0
                else:
                    if "median" in latency:
                        median = opts.check_number("latency.median", latency["median"], minimum=0)
                    if "sigma" in latency:
                        sigma = opts.check_number("latency.sigma", latency["sigma"],
                                                  minimum=0, maximum=5)
            else:
                raise opts.error("latency", "must be seconds, {median: s, sigma: x} or {fixed: s}")
        tokens = base.tokens_out
        raw_tokens = opts.raw("tokens_out")
        if raw_tokens is not None:
            tokens = _token_range(opts, raw_tokens)
        agent_seed = opts.raw("seed")
        if agent_seed is not None and (
            isinstance(agent_seed, bool) or not isinstance(agent_seed, (int, str))
        ):
            raise opts.error("seed", f"must be an integer or a string, got {agent_seed!r}")
        rates = {
            key: opts.number(key, 0.0, minimum=0.0, maximum=1.0)
            for key in ("error_rate", "rate_limit_rate", "timeout_rate")
        }
        if sum(rates.values()) > 1.0 + 1e-9:
            raise opts.error("error_rate", "plus rate_limit_rate plus timeout_rate exceeds 1")
        return cls(
            model=model,
            profile=SimProfile(median, sigma, tokens),
            clock=clock,
            latency_scale=latency_scale,
            seed=seed,
            agent_seed=agent_seed,
            retry_after=opts.number("retry_after", 1.0, minimum=0.0),
            fail_attempts=opts.integer("fail_attempts", 0, minimum=0),
            **rates,
        )

    @property
    def expected_latency(self) -> float:
        """The mean latency of a successful call, scaled (for planners and reports)."""
        return self.profile.mean * self.latency_scale

    def plan(self, request: ProviderRequest) -> SimPlan:
        """Decide, without waiting, what ``request`` gets: the delay and the response or error."""
        attempt = request.options.get("attempt", 1)
        u = _uniforms(self.seed, self.agent_seed, request.task_id, attempt)
        fault = u[0]
        profile = self.profile
        if profile.sigma:
            # Box-Muller: a standard normal from two uniforms (1 - u keeps the log finite).
            normal = math.sqrt(-2.0 * math.log(1.0 - u[1])) * math.cos(2.0 * math.pi * u[2])
            latency = profile.median * math.exp(profile.sigma * normal)
        else:
            latency = profile.median
        latency *= self.latency_scale
        timeout = request.timeout
        if isinstance(attempt, int) and attempt <= self.fail_attempts:
            return SimPlan(latency, latency, error=ProviderError(
                f"simulated failure of attempt {attempt} (fail_attempts={self.fail_attempts})",
                provider=self.name, retryable=True))
        if fault < self._error_to:
            if timeout is not None and latency > timeout:
                return self._timed_out(timeout, latency)
            return SimPlan(latency, latency, error=ProviderError(
                "simulated server error (error_rate)", provider=self.name, retryable=True))
        if fault < self._rate_limit_to:
            retry_after = self.retry_after * self.latency_scale
            return SimPlan(0.0, 0.0, error=RateLimited(
                f"simulated rate limit; retry after {retry_after:g}s",
                provider=self.name, retry_after=retry_after))
        if fault < self._timeout_to:
            wait = timeout if timeout is not None else 10 * profile.median * self.latency_scale
            return self._timed_out(wait, wait)
        if timeout is not None and latency > timeout:
            return self._timed_out(timeout, latency)
        return SimPlan(latency, latency, response=self._respond(request, u, latency, attempt))

    def _timed_out(self, wait: float, latency: float) -> SimPlan:
        return SimPlan(wait, latency, error=ProviderTimeout(
            f"no answer within {wait:g}s (simulated)", provider=self.name))

    def _respond(
        self, request: ProviderRequest, u: tuple[float, ...], latency: float, attempt: Any
    ) -> ProviderResponse:
        low, high = self.profile.tokens_out
        tokens = low + int(u[3] * (high - low + 1))
        if request.max_tokens is not None:
            tokens = max(1, min(tokens, request.max_tokens))
        keywords = _keywords(request.prompt)
        data: Any = None
        if request.output_schema is not None:
            rng = random.Random(int(u[4] * _TWO_64))  # schemas need many draws: a real generator
            data = example_from_schema(request.output_schema, rng, keywords)
            text = json.dumps(data)
            tokens = estimate_tokens(text)
        else:
            text = _render_text(request.task_id, keywords, tokens, u[4])
        return ProviderResponse(
            text=text,
            provider=self.name,
            model=request.model or self.model,
            tokens_in=estimate_tokens(request.system) + estimate_tokens(request.prompt),
            tokens_out=tokens,
            data=data,
            latency=latency,
            meta={"simulated": True, "model": self.model, "attempt": attempt},
        )

    async def complete(self, request: ProviderRequest) -> ProviderResponse:
        """Wait the drawn latency on the clock, then return the response or raise the fault."""
        self._counters.calls += 1
        plan = self.plan(request)
        if plan.delay > 0:
            await self.clock.sleep(plan.delay)
        if plan.error is not None:
            self._counters.failed(plan.error)
            raise plan.error
        self._counters.succeeded += 1
        assert plan.response is not None
        return plan.response

    async def warm(self) -> bool:
        """Nothing to open; present so every provider can be warmed the same way."""
        return True

    def statistics(self) -> ProviderStatistics:
        return self._counters.snapshot()

    async def aclose(self) -> None:
        return None

    def __repr__(self) -> str:
        p = self.profile
        return (f"SimProvider(model={self.model!r}, median={p.median:g}, sigma={p.sigma:g}, "
                f"latency_scale={self.latency_scale:g}, seed={self.seed})")


def _token_range(opts: OptionReader, raw: Any) -> tuple[int, int]:
    if isinstance(raw, int) and not isinstance(raw, bool) and raw >= 1:
        return (raw, raw)
    if (
        isinstance(raw, (list, tuple))
        and len(raw) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in raw)
        and 1 <= raw[0] <= raw[1]
    ):
        return (int(raw[0]), int(raw[1]))
    raise opts.error("tokens_out", f"must be a positive integer or [min, max], got {raw!r}")
