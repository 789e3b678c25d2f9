"""A load test as one self-contained HTML page: throughput, latency and errors per second, phases
shaded, thresholds and the summary. Inline SVG and CSS, no script and no URL. Pure."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from ._recorder import WindowRow

__all__ = ["ms", "render_loadtest_html"]

_W, _H, _L, _R, _T, _B = 900, 200, 56, 16, 12, 26


def ms(v: float | None) -> str:
    """A latency as the report and the terminal show it: 12.3 ms, 1.25 s, - when not measured."""
    if v is None:
        return "-"
    return f"{v * 1000:.1f} ms" if v < 1 else f"{v:.2f} s"


def _chart(chart_id: str, title: str, rows: Sequence[WindowRow], lines: Sequence[tuple[str, str, str]],
           phases: Sequence[Any], unit: str) -> str:
    """``lines``: (field of WindowRow, label, colour); values in seconds for unit 's'."""
    if not rows:
        return f'<p class="muted">{html.escape(title)}: no data.</p>'
    t_end = max(max(r.t for r in rows) + 1.0, max((p.end for p in phases), default=0.0))
    values = [float(getattr(r, f) or 0.0) for r in rows for f, _, _ in lines]
    top = max(values) * 1.1 or 1.0

    def x(t: float) -> float:
        return _L + t / t_end * (_W - _L - _R)

    def y(v: float) -> float:
        return _T + (1 - v / top) * (_H - _T - _B)

    parts = []
    for i, phase in enumerate(phases):
        if i % 2:
            parts.append(f'<rect x="{x(phase.start):.1f}" y="{_T}" width="{x(phase.end) - x(phase.start):.1f}" '
                         f'height="{_H - _T - _B}" class="phase"><title>{html.escape(phase.name)}</title></rect>')
    for k in range(5):
        v = top * k / 4
        label = ms(v) if unit == "s" else (f"{v:,.0f}" if top >= 20 else f"{v:.2g}")
        parts.append(f'<line x1="{_L}" x2="{_W - _R}" y1="{y(v):.1f}" y2="{y(v):.1f}" class="grid"/>'
                     f'<text x="{_L - 6}" y="{y(v) + 4:.1f}" text-anchor="end" class="tick">{label}</text>')
    for k in range(6):
        t = t_end * k / 5
        parts.append(f'<text x="{x(t):.1f}" y="{_H - 8}" text-anchor="middle" class="tick">{t:.3g}s</text>')
    for fld, label, colour in lines:
        points = " ".join(f"{x(r.t + 0.5):.1f},{y(float(getattr(r, fld) or 0.0)):.1f}" for r in rows)
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.8">'
                     f"<title>{html.escape(label)}</title></polyline>")
    legend = " ".join(f'<span><i style="background:{c}"></i>{html.escape(lab)}</span>' for _, lab, c in lines)
    return (f'<h2>{html.escape(title)}</h2><div class="legend">{legend}</div>'
            f'<svg id="{chart_id}" viewBox="0 0 {_W} {_H}" width="100%">{"".join(parts)}</svg>')


def render_loadtest_html(result: Any) -> str:
    """``result``: a ``LoadTestResult``."""
    s = result.summary
    spec = result.spec
    verdict_rows = "".join(
        f'<tr><td><code>{html.escape(v.expression)}</code></td><td>{html.escape(str(v.message))}</td>'
        f'<td class="{"ok" if v.passed else "bad"}">{"pass" if v.passed else "FAIL"}</td></tr>'
        for v in result.verdicts)
    errors = ", ".join(f"{html.escape(k)} {n}" for k, n in sorted(s.errors_by_kind.items())) or "none"
    figures = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(str(v))}</td></tr>"
                      for k, v in result.figures.items())
    banner = ""
    if result.aborted:
        banner += f'<div class="banner bad">{html.escape(result.aborted)}</div>'
    if result.saturation:
        banner += f'<div class="banner warn">{html.escape(result.saturation)}</div>'
    ttft = ""
    if result.ttft is not None:
        ttft = (f"<tr><td>time to first token</td><td>p50 {ms(result.ttft.p50)} · p95 {ms(result.ttft.p95)} · "
                f"p99 {ms(result.ttft.p99)}</td></tr><tr><td>inter-token gap</td><td>p50 {ms(result.itl_p50)} · "
                f"p99 {ms(result.itl_p99)}</td></tr>")
    target = spec.target.url or f"workflow {spec.target.workflow}"
    summary = (f"<table><tr><td>requests</td><td>{s.requests:,} ({s.ok:,} ok, {s.errors:,} errors: {errors}; "
               f"{s.dropped:,} dropped, {s.late:,} sent late)</td></tr>"
               f"<tr><td>throughput</td><td>{(s.rps or 0):,.1f} req/s over {s.span:.1f} s</td></tr>"
               f"<tr><td>latency (from the intended start)</td><td>p50 {ms(s.p50)} · p95 {ms(s.p95)} · p99 "
               f"{ms(s.p99)} · p99.9 {ms(s.p999)} · max {ms(s.max)}</td></tr>{ttft}</table>")
    charts = (_chart("throughput", "Throughput per second", result.series, [("rps", "completed/s", "#4a7cf0")],
                     result.phases, "n")
              + _chart("latency", "Latency per second", result.series,
                       [("p50", "p50", "#12a594"), ("p99", "p99", "#e5484d"), ("max", "max", "#a6acb8")],
                       result.phases, "s")
              + _chart("errors", "Errors per second", result.series, [("errors", "errors", "#e5484d")],
                       result.phases, "n"))
    status = "passed" if result.passed else "failed"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">"
            f"<title>{html.escape(spec.name)} load test</title><style>{_CSS}</style></head><body><main>"
            f'<h1>{html.escape(spec.name)} <span class="status {"ok" if result.passed else "bad"}">{status}</span></h1>'
            f'<p class="muted">{html.escape(type(spec.scenario).__name__)} · {html.escape(spec.mode)} loop · '
            f"{html.escape(target)}</p>{banner}<section>{summary}</section>"
            f"<section>{charts}</section>"
            + (f"<section><h2>Thresholds</h2><table>{verdict_rows}</table></section>" if verdict_rows else "")
            + (f"<section><h2>Scenario figures</h2><table>{figures}</table></section>" if figures else "")
            + "<footer class=\"muted\">Generated by agentfleet loadtest · latency measured from each request's "
              "intended start (no coordinated omission)</footer></main></body></html>\n")


_CSS = """
body{margin:0;background:#f4f5f7;color:#1c2030;font:14px/1.5 -apple-system,"Segoe UI",Roboto,Arial,sans-serif}
main{max-width:960px;margin:0 auto;padding:24px 20px}h1{font-size:22px;margin:0}h2{font-size:15px;margin:14px 0 4px}
section{background:#fff;border:1px solid #e4e7ec;border-radius:10px;padding:12px 16px;margin:14px 0}
table{border-collapse:collapse;width:100%}td{padding:4px 8px;border-bottom:1px solid #eef0f3;vertical-align:top}
.muted{color:#6b7280}.ok{color:#18794e}.bad{color:#c62a2f}.status{font-size:12px;text-transform:uppercase;
padding:2px 8px;border-radius:999px;background:#eef0f3}.banner{padding:8px 12px;border-radius:8px;margin:10px 0}
.banner.bad{background:#fdecec;color:#c62a2f}.banner.warn{background:#fff4e5;color:#a35200}
.grid{stroke:#eceef2}.tick{font-size:10.5px;fill:#6b7280}.phase{fill:#f0b429;fill-opacity:.08}
.legend span{margin-right:12px;font-size:12px}.legend i{display:inline-block;width:10px;height:3px;margin-right:4px;
vertical-align:middle}footer{margin-top:16px;font-size:12px}
"""
