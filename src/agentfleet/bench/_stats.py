"""The statistics behind ``agentfleet bench``: is the candidate slower, faster, or the same?"""

# Design
# ------
# A benchmark comparison reduces two samples of timings (baseline, candidate) to one verdict.
# Timings are skewed and carry outliers (GC pauses, a noisy neighbour), so everything here is
# rank- or median-based: the effect size is the ratio of medians, its uncertainty a bootstrap
# percentile interval of that ratio, and the test a two-sided Mann-Whitney U (scipy), which
# assumes no distribution shape. When several comparisons are judged together (a suite), their
# p-values are adjusted by Benjamini-Hochberg so that a family of 50 benchmarks does not
# produce a "regression" by chance in most CI runs.
#
# The rule. A change is called only when two independent questions both say yes:
#
#   statistical:  BH-adjusted p < alpha  AND  the CI of the ratio excludes 1.0 (on the same side
#                 as the call), so noise alone rarely produces a verdict;
#   practical:    the POINT ratio lies beyond the threshold band, i.e. ratio > 1 + threshold
#                 ("slower") or ratio < 1 / (1 + threshold) ("faster").
#
# Why the point ratio and not "the whole CI beyond 1 + threshold": requiring the CI to clear
# the threshold is an equivalence-style test that asks for proof the change is *larger than*
# the threshold. At realistic sample sizes it is nearly blind: with n=30 per side and
# lognormal noise sigma=0.1, the 95% CI of a ratio of medians is about +-6.5%, so a true 10%
# regression against a 5% threshold is caught 29% of the time (measured, 200 seeded trials;
# 56% at sigma=0.07), against 84% (97.5% at sigma=0.07, 100% at 0.05) with the point rule. False
# positives are already bounded by the statistical half of the rule (alpha, BH); the
# practical half only has to filter out changes that are real but too small to matter, and
# the point estimate is the best single guess of the size. The consequence, pinned by the
# tests, is that the threshold is the half-power point: a true change exactly at the
# threshold is called about half the time, larger ones increasingly reliably. Measured false
# positives on identical lognormal samples (n=30, sigma=0.1, 300 trials): 2% with the 5%
# threshold, 2% with no threshold at all (the statistical gate alone stays under alpha).
# Noisier benchmarks need more samples, not a looser rule: power at sigma=0.1 is below 90%.
#
# "Faster" uses 1 / (1 + threshold) rather than 1 - threshold so the band is symmetric in log
# space: swapping baseline and candidate mirrors the point ratio and the band exactly (the CI up
# to bootstrap noise), so the verdict mirrors too.
#
# Bootstrap: resampled medians are computed in chunks of (resamples x n) index matrices, which
# keeps memory bounded for large samples while staying vectorised. Randomness comes only from
# the injected numpy Generator, so a seeded run is reproducible.
#
# Degenerate inputs: identical constant samples give ratio 1, CI (1, 1) and p = 1 (scipy
# returns p = 1 for all-ties; a NaN is read as 1 too), hence "no change" without special
# cases. A baseline whose median is 0 has no ratio and is refused.

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt
from scipy.stats import mannwhitneyu  # type: ignore[import-untyped]

__all__ = [
    "Comparison",
    "benjamini_hochberg",
    "compare",
    "compare_many",
    "confirm",
    "ratio_ci",
]

MIN_SAMPLES = 3
"""Fewest timings per side: below this neither the median nor the U test means anything."""

MIN_RESAMPLES = 100
"""Fewest bootstrap resamples accepted: fewer cannot place a 95% percentile at all."""

_CHUNK_ELEMENTS = 1 << 20
"""Upper bound on the elements of one bootstrap index matrix (keeps memory at ~8 MiB)."""

SLOWER = "slower"
FASTER = "faster"
NO_CHANGE = "no change"

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Comparison:
    """The verdict on one benchmark: effect size, its uncertainty, the test, and why."""

    name: str
    baseline_median: float
    candidate_median: float
    ratio: float
    """Candidate median / baseline median; for timings, > 1 is slower."""
    ci_low: float
    """Lower bound of the bootstrap confidence interval of the ratio of medians."""
    ci_high: float
    p_value: float
    """Two-sided Mann-Whitney U p-value."""
    p_adjusted: float
    """Benjamini-Hochberg adjusted across the comparisons judged together (== p_value alone)."""
    verdict: str
    """"slower", "faster" or "no change"."""
    reason: str
    """One line saying why, for people reading CI output."""


# --- validation ---------------------------------------------------------------------------


def _samples(values: Sequence[float] | FloatArray, side: str, name: str | None = None) -> FloatArray:
    """Check one side's timings and return them as a float array."""
    where = f"{name!r} {side}" if name is not None else side
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{where}: timings must be a flat sequence of numbers, got shape {arr.shape}")
    if arr.size < MIN_SAMPLES:
        raise ValueError(f"{where}: need at least {MIN_SAMPLES} timings, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{where}: timings must be finite, found {int(np.sum(~np.isfinite(arr)))} NaN/inf")
    if np.any(arr < 0):
        raise ValueError(f"{where}: timings must be non-negative, found min {float(arr.min())!r}")
    if float(np.median(arr)) == 0.0 and side == "baseline":
        raise ValueError(f"{where}: median is 0, so a ratio to it is undefined (clock too coarse?)")
    return arr


def _check_unit(value: float, what: str, *, low_open: bool = True) -> None:
    """Require ``value`` in (0, 1) (or [0, 1) when ``low_open`` is False)."""
    ok = (0.0 < value < 1.0) if low_open else (0.0 <= value < 1.0)
    if not (math.isfinite(value) and ok):
        interval = "(0, 1)" if low_open else "[0, 1)"
        raise ValueError(f"{what} must be in {interval}, got {value!r}")


def _check_options(*, threshold: float, alpha: float, confidence: float, resamples: int) -> None:
    """Refuse options that would make the verdict meaningless (e.g. threshold=5 meant as 5%)."""
    _check_unit(threshold, "threshold (a fraction: 0.05 means 5%)", low_open=False)
    _check_unit(alpha, "alpha")
    _check_unit(confidence, "confidence")
    if resamples < MIN_RESAMPLES:
        raise ValueError(f"resamples must be at least {MIN_RESAMPLES}, got {resamples!r}")


# --- the pieces ---------------------------------------------------------------------------


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values, in input order: monotone in p, capped at 1."""
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim != 1:
        raise ValueError(f"p-values must be a flat sequence, got shape {p.shape}")
    if p.size == 0:
        return []
    if not np.all(np.isfinite(p)) or np.any((p < 0) | (p > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {p.tolist()!r}")
    m = p.size
    order = np.argsort(p, kind="stable")
    scaled = p[order] * m / np.arange(1, m + 1)
    # Each adjusted value is the smallest scaled value at or above its rank (step-up procedure).
    adjusted_sorted = np.minimum.accumulate(scaled[::-1])[::-1]
    adjusted = np.empty(m, dtype=np.float64)
    adjusted[order] = np.minimum(adjusted_sorted, 1.0)
    return [float(x) for x in adjusted]


def _bootstrap_medians(x: FloatArray, resamples: int, rng: np.random.Generator) -> FloatArray:
    """Medians of ``resamples`` with-replacement resamples of ``x``, computed in bounded chunks.

    ``x`` is sorted once, so a resample's median is read off its sorted indices: sorting a small
    integer matrix row-wise is several times faster than ``np.median(..., axis=1)`` on the values.
    """
    n = x.size
    ordered = np.sort(x)
    low, high = (n - 1) // 2, n // 2
    out = np.empty(resamples, dtype=np.float64)
    chunk = max(1, _CHUNK_ELEMENTS // n)
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        idx = np.sort(rng.integers(0, n, size=(stop - start, n)), axis=1)
        out[start:stop] = (ordered[idx[:, low]] + ordered[idx[:, high]]) / 2.0
    return out


def _ratio_ci(
    baseline: FloatArray, candidate: FloatArray, confidence: float, resamples: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile bootstrap interval of median(candidate) / median(baseline) on validated arrays."""
    base = _bootstrap_medians(baseline, resamples, rng)
    cand = _bootstrap_medians(candidate, resamples, rng)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratios = cand / base
    ratios[np.isnan(ratios)] = 1.0  # 0/0: both resampled medians are zero, no difference
    tail = (1.0 - confidence) / 2.0
    # "inverted_cdf" picks order statistics without interpolating, so an inf ratio (x/0) stays inf
    # instead of turning into NaN through inf - inf.
    low, high = np.quantile(ratios, [tail, 1.0 - tail], method="inverted_cdf")
    return float(low), float(high)


def ratio_ci(
    baseline: Sequence[float] | FloatArray,
    candidate: Sequence[float] | FloatArray,
    *,
    confidence: float = 0.95,
    resamples: int = 2000,
    rng: np.random.Generator,
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of median(candidate) / median(baseline)."""
    _check_unit(confidence, "confidence")
    if resamples < MIN_RESAMPLES:
        raise ValueError(f"resamples must be at least {MIN_RESAMPLES}, got {resamples!r}")
    return _ratio_ci(_samples(baseline, "baseline"), _samples(candidate, "candidate"), confidence, resamples, rng)


def _mann_whitney_p(baseline: FloatArray, candidate: FloatArray) -> float:
    """Two-sided Mann-Whitney U p-value; all-ties (no information) reads as p = 1."""
    result = mannwhitneyu(baseline, candidate, alternative="two-sided")
    p = float(result.pvalue)
    return 1.0 if math.isnan(p) else min(max(p, 0.0), 1.0)


@dataclass(frozen=True, slots=True)
class _Measured:
    """Everything about one comparison that does not depend on the rest of the family."""

    name: str
    baseline_median: float
    candidate_median: float
    ratio: float
    ci_low: float
    ci_high: float
    p_value: float


def _measure(
    name: str,
    baseline: Sequence[float] | FloatArray,
    candidate: Sequence[float] | FloatArray,
    confidence: float,
    resamples: int,
    rng: np.random.Generator,
) -> _Measured:
    base = _samples(baseline, "baseline", name)
    cand = _samples(candidate, "candidate", name)
    base_median = float(np.median(base))
    cand_median = float(np.median(cand))
    low, high = _ratio_ci(base, cand, confidence, resamples, rng)
    return _Measured(
        name=name,
        baseline_median=base_median,
        candidate_median=cand_median,
        ratio=cand_median / base_median,
        ci_low=low,
        ci_high=high,
        p_value=_mann_whitney_p(base, cand),
    )


# --- the verdict --------------------------------------------------------------------------


def _fmt_p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


def _fmt_size(ratio: float) -> str:
    """'1.10x slower' / '1.11x faster' / '1.00x' for a candidate/baseline ratio."""
    if ratio > 1.0:
        return f"{ratio:.2f}x slower"
    if ratio < 1.0:
        return f"{1.0 / ratio:.2f}x faster" if ratio > 0.0 else "infinitely faster"
    return "1.00x (same median)"


def _fmt_ci(low: float, high: float) -> str:
    """'1.07-1.13', with more digits when two decimals would hide a narrow interval's width."""
    digits = 2
    while digits < 5 and low != high and f"{low:.{digits}f}" == f"{high:.{digits}f}":
        digits += 1
    return f"{low:.{digits}f}-{high:.{digits}f}"


def _decide(m: _Measured, p_adjusted: float, *, threshold: float, alpha: float, confidence: float) -> Comparison:
    """Apply the two-part rule of the module comment to one measured comparison."""
    upper, lower = 1.0 + threshold, 1.0 / (1.0 + threshold)
    significant = p_adjusted < alpha
    ci_above, ci_below = m.ci_low > 1.0, m.ci_high < 1.0
    band = f"the {threshold * 100:g}% threshold"
    evidence = (
        f"{_fmt_size(m.ratio)}, {confidence * 100:g}% CI {_fmt_ci(m.ci_low, m.ci_high)}, "
        f"p={_fmt_p(m.p_value)} (adj {_fmt_p(p_adjusted)})"
    )
    if significant and ci_above and m.ratio > upper:
        verdict, why = SLOWER, f"beyond {band}"
    elif significant and ci_below and m.ratio < lower:
        verdict, why = FASTER, f"beyond {band}"
    elif not significant:
        verdict, why = NO_CHANGE, f"not significant (adj p >= alpha {alpha:g})"
    elif not (ci_above or ci_below):
        verdict, why = NO_CHANGE, "not significant (the CI includes 1.0)"
    elif (ci_above and m.ratio < 1.0) or (ci_below and m.ratio > 1.0):
        verdict, why = NO_CHANGE, "the CI and the point estimate disagree on the direction"
    else:
        verdict, why = NO_CHANGE, f"significant but within {band}"
    return Comparison(
        name=m.name,
        baseline_median=m.baseline_median,
        candidate_median=m.candidate_median,
        ratio=m.ratio,
        ci_low=m.ci_low,
        ci_high=m.ci_high,
        p_value=m.p_value,
        p_adjusted=p_adjusted,
        verdict=verdict,
        reason=f"{evidence}: {why}",
    )


def compare_many(
    pairs: Mapping[str, tuple[Sequence[float] | FloatArray, Sequence[float] | FloatArray]],
    *,
    threshold: float = 0.05,
    alpha: float = 0.05,
    confidence: float = 0.95,
    resamples: int = 2000,
    rng: np.random.Generator,
) -> dict[str, Comparison]:
    """Judge a family of (baseline, candidate) pairs together, BH-adjusting p across the family."""
    _check_options(threshold=threshold, alpha=alpha, confidence=confidence, resamples=resamples)
    measured = [_measure(name, b, c, confidence, resamples, rng) for name, (b, c) in pairs.items()]
    adjusted = benjamini_hochberg([m.p_value for m in measured])
    return {
        m.name: _decide(m, p_adj, threshold=threshold, alpha=alpha, confidence=confidence)
        for m, p_adj in zip(measured, adjusted, strict=True)
    }


def compare(
    name: str,
    baseline: Sequence[float] | FloatArray,
    candidate: Sequence[float] | FloatArray,
    *,
    threshold: float = 0.05,
    alpha: float = 0.05,
    confidence: float = 0.95,
    resamples: int = 2000,
    rng: np.random.Generator,
) -> Comparison:
    """Judge one benchmark alone (a family of one: p_adjusted == p_value)."""
    result = compare_many(
        {name: (baseline, candidate)},
        threshold=threshold,
        alpha=alpha,
        confidence=confidence,
        resamples=resamples,
        rng=rng,
    )
    return result[name]


def confirm(first: Comparison, rerun: Comparison) -> Comparison:
    """A "slower" verdict stands only if an independent rerun also says "slower".

    Other verdicts pass through unchanged: the rerun exists to keep flaky regressions out of CI.
    """
    if first.name != rerun.name:
        raise ValueError(f"confirm: comparing {first.name!r} with a rerun of {rerun.name!r}")
    if first.verdict != SLOWER:
        return first
    if rerun.verdict == SLOWER:
        return replace(first, reason=f"{first.reason}; reproduced on rerun ({_fmt_size(rerun.ratio)})")
    return replace(
        first,
        verdict=NO_CHANGE,
        reason=f"{first.reason}; did not reproduce on rerun ({_fmt_size(rerun.ratio)}, {rerun.verdict})",
    )
