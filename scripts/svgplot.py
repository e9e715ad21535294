"""Line charts as a standalone SVG file, for the benchmark pages.

Written out by hand rather than with matplotlib so `scripts/bench` needs nothing beyond
Python's standard library (the same reason the bench talks to Redis with redis-cli).
A figure is a grid of panels; each panel has its own axes (linear or log 10) and one or
more series of (x, y) points.
"""

import math
from html import escape

PANEL_W, PANEL_H = 440, 350
# The bottom margin holds the x label and the legend (up to 3 series).
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 70, 20, 40, 110
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b"]


def _ticks(lo, hi, log):
    """Tick values covering [lo, hi]: powers of ten on a log axis, 5 steps on a linear one."""
    if log:
        return [10.0 ** e for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)]
    if hi == lo:
        hi = lo + 1
    raw = (hi - lo) / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=raw)
    start = math.floor(lo / step) * step
    return [start + i * step for i in range(int(math.ceil((hi - start) / step)) + 1)]


def _label(v):
    if v == 0:
        return "0"
    if abs(v) >= 1e6:
        return f"{v / 1e6:g}M"
    if abs(v) >= 1e3:
        return f"{v / 1e3:g}k"
    return f"{v:g}"


def _panel(p, ox, oy):
    """One panel's SVG elements, its top-left corner at (ox, oy)."""
    logx, logy = p.get("logx", False), p.get("logy", False)
    xs = [x for _, pts in p["series"] for x, _ in pts]
    ys = [y for _, pts in p["series"] for _, y in pts]
    xt = _ticks(min(xs), max(xs), logx)
    yt = _ticks(0 if not logy else min(ys), max(ys), logy)
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]
    w, h = PANEL_W - MARGIN_L - MARGIN_R, PANEL_H - MARGIN_T - MARGIN_B

    def fx(x):
        f = (math.log10(x) - math.log10(x0)) / (math.log10(x1) - math.log10(x0)) if logx else (x - x0) / (x1 - x0)
        return ox + MARGIN_L + f * w

    def fy(y):
        f = (math.log10(y) - math.log10(y0)) / (math.log10(y1) - math.log10(y0)) if logy else (y - y0) / (y1 - y0)
        return oy + MARGIN_T + h - f * h

    out = [f'<text x="{ox + PANEL_W / 2}" y="{oy + 22}" text-anchor="middle" font-weight="bold">'
           f'{escape(p["title"])}</text>',
           f'<rect x="{ox + MARGIN_L}" y="{oy + MARGIN_T}" width="{w}" height="{h}" fill="none" stroke="#999"/>']
    for t in xt:
        out.append(f'<line x1="{fx(t):.1f}" y1="{oy + MARGIN_T}" x2="{fx(t):.1f}" y2="{oy + MARGIN_T + h}" stroke="#eee"/>')
        out.append(f'<text x="{fx(t):.1f}" y="{oy + MARGIN_T + h + 16}" text-anchor="middle">{_label(t)}</text>')
    for t in yt:
        out.append(f'<line x1="{ox + MARGIN_L}" y1="{fy(t):.1f}" x2="{ox + MARGIN_L + w}" y2="{fy(t):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{ox + MARGIN_L - 6}" y="{fy(t) + 4:.1f}" text-anchor="end">{_label(t)}</text>')
    out.append(f'<text x="{ox + MARGIN_L + w / 2}" y="{oy + MARGIN_T + h + 34}" text-anchor="middle">'
               f'{escape(p["xlabel"])}</text>')
    out.append(f'<text transform="translate({ox + 16},{oy + MARGIN_T + h / 2}) rotate(-90)" '
               f'text-anchor="middle">{escape(p["ylabel"])}</text>')
    for i, (name, pts) in enumerate(p["series"]):
        colour = COLOURS[i % len(COLOURS)]
        path = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        out.extend(f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="3" fill="{colour}"/>' for x, y in pts)
        if len(p["series"]) > 1:
            ly = oy + MARGIN_T + h + 58 + 16 * i
            out.append(f'<rect x="{ox + MARGIN_L + 8}" y="{ly - 9}" width="10" height="10" fill="{colour}"/>')
            out.append(f'<text x="{ox + MARGIN_L + 22}" y="{ly}">{escape(name)}</text>')
    return out


def write(path, panels, columns=2, title=""):
    """Writes `panels` (dicts: title, xlabel, ylabel, series [(name, [(x, y)])], logx,
    logy) as a grid to `path`."""
    rows = math.ceil(len(panels) / columns)
    top = 30 if title else 0
    width, height = PANEL_W * columns, PANEL_H * rows + top
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
           f'<rect width="{width}" height="{height}" fill="white"/>']
    if title:
        out.append(f'<text x="{width / 2}" y="20" text-anchor="middle" font-size="15" '
                   f'font-weight="bold">{escape(title)}</text>')
    for i, p in enumerate(panels):
        out.extend(_panel(p, (i % columns) * PANEL_W, top + (i // columns) * PANEL_H))
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
