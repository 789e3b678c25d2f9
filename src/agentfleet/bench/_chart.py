"""The distributions of a benchmark run (and its baseline) as one self-contained HTML page.

# Design
# One row per benchmark, one horizontal strip per side (baseline, current; or A, B): every raw
# sample as a dot (jittered vertically, deterministic), the box of the quartiles, the median as a
# bar, on a shared axis per benchmark, with the verdict and the ratio's confidence interval beside
# it. Inline SVG and CSS only, no script and no URL: it opens offline and can be attached to a
# pull request. Pure: samples in, a string out.
"""

from __future__ import annotations

import html
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

from .._subcli import seconds

__all__ = ["render_bench_html"]

_W, _LEFT, _RIGHT, _STRIP = 860, 120, 20, 34
_COLOURS = ("#8a94a6", "#4a7cf0")


def _quartiles(samples: Sequence[float]) -> tuple[float, float, float]:
    if len(samples) < 2:
        return samples[0], samples[0], samples[0]
    q1, q2, q3 = statistics.quantiles(samples, n=4, method="inclusive")
    return q1, q2, q3


def _strip(label: str, samples: Sequence[float], lo: float, hi: float, y: float, colour: str) -> str:
    span = hi - lo or 1.0

    def x(v: float) -> float:
        return _LEFT + (v - lo) / span * (_W - _LEFT - _RIGHT)

    q1, q2, q3 = _quartiles(samples)
    parts = [f'<text x="{_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end" class="lab">{html.escape(label)}</text>',
             f'<rect x="{x(q1):.1f}" y="{y - 9:.1f}" width="{max(1.0, x(q3) - x(q1)):.1f}" height="18" rx="3" '
             f'fill="{colour}" fill-opacity=".18" stroke="{colour}"/>',
             f'<line x1="{x(q2):.1f}" x2="{x(q2):.1f}" y1="{y - 11:.1f}" y2="{y + 11:.1f}" stroke="{colour}" '
             f'stroke-width="3"><title>median {seconds(q2)}</title></line>']
    for i, v in enumerate(samples):
        jitter = ((i * 37) % 11 - 5) * 1.3  # deterministic spread so equal values stay visible
        parts.append(f'<circle cx="{x(v):.1f}" cy="{y + jitter:.1f}" r="2.4" fill="{colour}" fill-opacity=".75">'
                     f"<title>{seconds(v)}</title></circle>")
    return "".join(parts)


def _axis(lo: float, hi: float, y: float) -> str:
    ticks = []
    for i in range(5):
        v = lo + (hi - lo) * i / 4
        xv = _LEFT + i / 4 * (_W - _LEFT - _RIGHT)
        ticks.append(f'<line x1="{xv:.1f}" x2="{xv:.1f}" y1="8" y2="{y:.1f}" class="grid"/>'
                     f'<text x="{xv:.1f}" y="{y + 14:.1f}" text-anchor="middle" class="tick">{seconds(v)}</text>')
    return "".join(ticks)


def render_bench_html(title: str, benchmarks: Mapping[str, Sequence[tuple[str, Sequence[float]]]],
                      verdicts: Mapping[str, Mapping[str, Any]] | None = None, subtitle: str = "") -> str:
    """``benchmarks``: name -> [(side label, samples), ...] (one or two sides); ``verdicts``: name ->
    {"verdict", "ratio", "ci": [low, high], "reason"} when compared."""
    verdicts = verdicts or {}
    cards = []
    for name, sides in benchmarks.items():
        sides = [(label, list(s)) for label, s in sides if s]
        if not sides:
            continue
        values = [v for _, s in sides for v in s]
        lo, hi = min(values), max(values)
        pad = (hi - lo) * 0.05 or hi * 0.05 or 1e-9
        lo, hi = max(0.0, lo - pad), hi + pad
        height = 20 + _STRIP * len(sides) + 24
        strips = "".join(_strip(label, s, lo, hi, 24 + _STRIP * i, _COLOURS[-len(sides) + i])
                         for i, (label, s) in enumerate(sides))
        svg = (f'<svg class="dist" viewBox="0 0 {_W} {height}" width="100%" role="img" '
               f'aria-label="{html.escape(name)}">{_axis(lo, hi, height - 18)}{strips}</svg>')
        v = verdicts.get(name)
        badge = ""
        if v:
            cls = {"slower": "bad", "faster": "ok"}.get(str(v.get("verdict")), "muted")
            ci = v.get("ci") or [None, None]
            reason = html.escape(str(v.get("reason", "")))
            badge = (f'<span class="badge {cls}">{html.escape(str(v.get("verdict")))}</span> '
                     f'<b>{float(v["ratio"]):.3f}x</b> <span class="muted">95% CI {float(ci[0]):.3f}-'
                     f'{float(ci[1]):.3f}</span><div class="muted reason">{reason}</div>')
        medians = " · ".join(f"{html.escape(label)} {seconds(statistics.median(s))} (n={len(s)})" for label, s in sides)
        cards.append(f'<section class="card"><h2>{html.escape(name)}</h2><div class="meta">{medians}</div>'
                     f"{badge}{svg}</section>")
    body = "".join(cards) or '<p class="muted">No samples.</p>'
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body><main>"
            f"<h1>{html.escape(title)}</h1><p class=\"muted\">{html.escape(subtitle)}</p>{body}"
            "<footer class=\"muted\">Generated by agentfleet bench · every raw sample shown · "
            "box: quartiles, bar: median</footer></main></body></html>\n")


_CSS = """
body{margin:0;background:#f4f5f7;color:#1c2030;font:14px/1.5 -apple-system,"Segoe UI",Roboto,Arial,sans-serif}
main{max-width:940px;margin:0 auto;padding:24px 20px}h1{font-size:22px;margin:0}h2{font-size:15px;margin:0}
.card{background:#fff;border:1px solid #e4e7ec;border-radius:10px;padding:14px 16px;margin:14px 0}
.meta,.muted{color:#6b7280;font-size:12.5px}.reason{margin-top:2px}
.badge{font-size:11.5px;font-weight:650;text-transform:uppercase;padding:2px 8px;border-radius:999px}
.badge.bad{color:#c62a2f;background:#fdecec}.badge.ok{color:#18794e;background:#e9f7ef}
.badge.muted{background:#eef0f3}.lab{font-size:12px;fill:#1c2030}.tick{font-size:10.5px;fill:#6b7280}
.grid{stroke:#eceef2}footer{margin-top:18px}
"""
