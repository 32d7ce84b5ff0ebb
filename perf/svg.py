"""Inline SVG charts for the dashboard, drawn in Python: no script library, nothing fetched, works offline.

Every chart is an <svg class="chart" data-kind=...> whose data points are <circle class="pt"> (bars:
<rect class="bar">) with a <title> tooltip, so a test (or a person) can count what was drawn.
"""

from __future__ import annotations

import math
from html import escape

W, H = 640, 260
PAD_L, PAD_R, PAD_T, PAD_B = 64, 16, 28, 44


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1000 or a < 0.01:
        return f"{v:.2g}"
    return f"{v:.3g}"


class _Axis:
    """Maps data values to pixels, linear or log10."""

    def __init__(self, lo: float, hi: float, p0: float, p1: float, log: bool = False):
        if log:
            lo, hi = math.log10(lo), math.log10(hi)
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        self.lo, self.hi, self.p0, self.p1, self.log = lo, hi, p0, p1, log

    def __call__(self, v: float) -> float:
        x = math.log10(v) if self.log else v
        return self.p0 + (x - self.lo) / (self.hi - self.lo) * (self.p1 - self.p0)

    def ticks(self) -> list:
        if self.log:
            return [10.0 ** e for e in range(math.floor(self.lo), math.ceil(self.hi) + 1)
                    if self.lo - 1e-9 <= e <= self.hi + 1e-9]
        step = 10 ** math.floor(math.log10((self.hi - self.lo) / 4 or 1))
        for m in (1, 2, 5, 10):
            if (self.hi - self.lo) / (step * m) <= 6:
                step *= m
                break
        first = math.ceil(self.lo / step) * step
        return [first + i * step for i in range(int((self.hi - first) / step) + 1)]


def _frame(kind: str, title: str, xlabel: str, ylabel: str, x: _Axis, y: _Axis, xticks=None, w=W, h=H) -> list:
    out = [f'<svg class="chart" data-kind="{kind}" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'viewBox="0 0 {w} {h}" role="img"><title>{escape(title)}</title>',
           f'<text x="{w / 2}" y="16" class="ct">{escape(title)}</text>',
           f'<rect x="{PAD_L}" y="{PAD_T}" width="{w - PAD_L - PAD_R}" height="{h - PAD_T - PAD_B}" class="plot"/>']
    for t in y.ticks():
        py = y(t)
        out.append(f'<line x1="{PAD_L}" x2="{w - PAD_R}" y1="{py:.1f}" y2="{py:.1f}" class="grid"/>'
                   f'<text x="{PAD_L - 4}" y="{py + 4:.1f}" class="yt">{_fmt(t)}</text>')
    for t, label in (xticks if xticks is not None else [(t, _fmt(t)) for t in x.ticks()]):
        px = x(t)
        out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{PAD_T}" y2="{h - PAD_B}" class="grid"/>'
                   f'<text x="{px:.1f}" y="{h - PAD_B + 14}" class="xt">{escape(label)}</text>')
    out.append(f'<text x="{w / 2}" y="{h - 6}" class="al">{escape(xlabel)}</text>'
               f'<text x="14" y="{h / 2}" class="al" transform="rotate(-90 14 {h / 2})">{escape(ylabel)}</text>')
    return out


def history_chart(title: str, labels: list, values: list, flags: list | None = None, ylabel: str = "ms",
                  band: list | None = None) -> str:
    """One benchmark over runs: x = run (labelled by short commit), y = median; flags[i] in {"", "regression",
    "improvement"} colours a point; band[i] = (q1, q3) draws the interquartile range as a whisker."""
    n = len(values)
    lo = min(min(values), min((b[0] for b in band), default=min(values)))
    hi = max(max(values), max((b[1] for b in band), default=max(values)))
    margin = (hi - lo) * 0.1 or abs(hi) * 0.1 or 1.0
    y = _Axis(max(0.0, lo - margin), hi + margin, H - PAD_B, PAD_T)
    x = _Axis(-0.5, n - 0.5, PAD_L, W - PAD_R)
    every = max(1, n // 8)
    out = _frame("history", title, "run (commit)", ylabel, x, y,
                 xticks=[(i, labels[i]) for i in range(0, n, every)])
    pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
    out.append(f'<polyline points="{pts}" class="line"/>')
    for i, v in enumerate(values):
        if band:
            out.append(f'<line x1="{x(i):.1f}" x2="{x(i):.1f}" y1="{y(band[i][0]):.1f}" y2="{y(band[i][1]):.1f}" '
                       f'class="iqr"/>')
        flag = (flags or [""] * n)[i]
        out.append(f'<circle class="pt {flag}" cx="{x(i):.1f}" cy="{y(v):.1f}" r="{5 if flag else 3.5}">'
                   f'<title>{escape(labels[i])}: {_fmt(v)} {escape(ylabel)}{" " + flag if flag else ""}</title>'
                   f'</circle>')
    out.append("</svg>")
    return "".join(out)


def roofline_chart(title: str, points: list, peak_gflops: float, peak_gbps: float) -> str:
    """Achieved GFLOP/s against arithmetic intensity (FLOP/byte), log-log, under the measured ceilings:
    bandwidth (GFLOP/s = GB/s x intensity) and compute (GFLOP/s = peak). points: [(name, intensity, gflops)]."""
    ais = [p[1] for p in points if p[1] and p[1] > 0] or [1.0]
    gfs = [p[2] for p in points if p[2] and p[2] > 0] or [1.0]
    ridge = peak_gflops / peak_gbps
    xlo, xhi = min(min(ais), ridge) / 4, max(max(ais), ridge) * 4
    ylo, yhi = min(min(gfs), peak_gbps * xlo) / 2, peak_gflops * 3
    x = _Axis(xlo, xhi, PAD_L, W - PAD_R, log=True)
    y = _Axis(ylo, yhi, H - PAD_B, PAD_T, log=True)
    out = _frame("roofline", title, "arithmetic intensity (FLOP / byte)", "GFLOP/s", x, y)
    # the roof: bandwidth slope up to the ridge point, then flat at peak compute
    out.append(f'<polyline class="roof" points="{x(xlo):.1f},{y(max(ylo, peak_gbps * xlo)):.1f} '
               f'{x(ridge):.1f},{y(peak_gflops):.1f} {x(xhi):.1f},{y(peak_gflops):.1f}">'
               f'<title>measured peak: {_fmt(peak_gflops)} GFLOP/s, {_fmt(peak_gbps)} GB/s</title></polyline>')
    out.append(f'<text x="{x(xhi) - 4:.1f}" y="{y(peak_gflops) - 5:.1f}" class="rl" text-anchor="end">'
               f'{_fmt(peak_gflops)} GFLOP/s (FMA kernel)</text>'
               f'<text x="{x(ridge) - 4:.1f}" y="{y(peak_gflops) + 14:.1f}" class="rl" text-anchor="end">'
               f'{_fmt(peak_gbps)} GB/s (copy kernel)</text>')
    for name, ai, gf in points:
        if ai and ai > 0 and gf and gf > 0:
            out.append(f'<circle class="pt" cx="{x(ai):.1f}" cy="{y(gf):.1f}" r="4"><title>{escape(name)}: '
                       f'{_fmt(gf)} GFLOP/s at {_fmt(ai)} FLOP/B</title></circle>')
    out.append("</svg>")
    return "".join(out)


def ratio_chart(title: str, items: list) -> str:
    """Horizontal bars of ours / torch on a log scale around 1 (left of 1: faster than torch). items: [(name, r)]."""
    items = [(n, r) for n, r in items if r and r > 0]
    row = 18
    h = PAD_T + PAD_B + row * max(1, len(items))
    lo = min([r for _, r in items] + [0.5]) / 1.5
    hi = max([r for _, r in items] + [2.0]) * 1.5
    left = 300
    x = _Axis(lo, hi, left, W - PAD_R, log=True)
    out = [f'<svg class="chart" data-kind="ratio" xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" '
           f'viewBox="0 0 {W} {h}" role="img"><title>{escape(title)}</title>',
           f'<text x="{W / 2}" y="16" class="ct">{escape(title)}</text>']
    for t in x.ticks():
        out.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{PAD_T}" y2="{h - PAD_B}" class="grid"/>'
                   f'<text x="{x(t):.1f}" y="{h - PAD_B + 14}" class="xt">{_fmt(t)}x</text>')
    one = x(1.0)
    for i, (name, r) in enumerate(items):
        top = PAD_T + i * row + 3
        a, b = sorted((one, x(r)))
        cls = "bar slower" if r > 1 else "bar faster"
        short = name if len(name) <= 44 else name[:43] + "\u2026"
        out.append(f'<text x="{left - 6}" y="{top + 11}" class="yt">{escape(short)}</text>'
                   f'<rect class="{cls}" x="{a:.1f}" y="{top}" width="{max(b - a, 1):.1f}" height="{row - 6}">'
                   f'<title>{escape(name)}: ours / torch = {_fmt(r)}</title></rect>')
    out.append(f'<line x1="{one:.1f}" x2="{one:.1f}" y1="{PAD_T}" y2="{h - PAD_B}" class="one"/>'
               f'<text x="{W / 2}" y="{h - 6}" class="al">ours / torch (wall time; &lt; 1: faster than torch)</text>'
               "</svg>")
    return "".join(out)
