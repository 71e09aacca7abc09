"""Charts as inline SVG strings, written by hand: no JavaScript, no fonts or files to fetch.

Every function returns one ``<svg>`` element sized by its ``viewBox`` (it scales to the width of
its container). Colours come from the constants below so that kept and dropped look the same in
every chart. All text that reaches the SVG goes through ``esc``: labels may come from data.

Points of a scatter are drawn as zero-length round-capped path segments (``M x y h0``), one path
per colour: a dot costs about 12 bytes, so a few thousand points stay small.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

KEPT = "#2563eb"
DROPPED = "#aab4c3"
DROPPED_DARK = "#64748b"
DROPPED_POINT = "#8e9aac"
NEUTRAL = "#475569"
CUT = "#dc2626"
GRID = "#e5e7eb"
AXIS = "#94a3b8"
INK = "#1f2937"
MUTED = "#6b7280"
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'Helvetica Neue', Arial, sans-serif"


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def fmt(v: float, digits: int = 4) -> str:
    """A compact number: ``1.234``, ``0.0012``, ``1.2e+06``, ``12,345`` for large integers."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–" if v is None or math.isnan(v) else ("∞" if v > 0 else "−∞")
    v = float(v)
    if v == 0:
        return "0"
    if v.is_integer() and abs(v) < 1e9:
        return f"{int(v):,}"
    if abs(v) >= 1e5 or abs(v) < 1e-3:
        return f"{v:.{max(1, digits - 2)}e}"
    return f"{v:.{digits}g}"


def _n(v: float) -> str:
    """A coordinate with one decimal, no trailing zeros."""
    s = f"{v:.1f}"
    return s[:-2] if s.endswith(".0") else s


def mix(c1: str, c2: str, t: float) -> str:
    """The colour ``t`` of the way from ``c1`` to ``c2`` (hex ``#rrggbb``)."""
    t = min(1.0, max(0.0, float(t)))
    a = [int(c1[i:i + 2], 16) for i in (1, 3, 5)]
    b = [int(c2[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(x + (y - x) * t):02x}" for x, y in zip(a, b))


# ----------------------------------------------------------------------------------------- axes


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round tick values (steps of 1, 2 or 5 times a power of ten) covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return []
    if hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step - 1e-9) * step
    ticks = []
    v = start
    while v <= hi + step * 1e-9:
        ticks.append(0.0 if abs(v) < step * 1e-9 else v)
        v += step
    return ticks


def robust_range(values: np.ndarray, q: float = 0.005) -> tuple[float, float]:
    """[q, 1-q] quantiles of the finite values, widened when they coincide; (nan, nan) if none."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return math.nan, math.nan
    lo, hi = ((float(x) for x in np.quantile(v, [q, 1 - q])) if v.size > 50
              else (float(v.min()), float(v.max())))
    if hi <= lo:
        pad = abs(lo) * 0.05 or 0.5
        lo, hi = lo - pad, hi + pad
    return lo, hi


@dataclass
class Scale:
    """Maps data values in [lo, hi] to pixels in [p0, p1], linearly or on log10."""

    lo: float
    hi: float
    p0: float
    p1: float
    log: bool = False

    def _t(self, v: np.ndarray | float) -> np.ndarray | float:
        return np.log10(v) if self.log else v

    def __call__(self, v: np.ndarray | float) -> np.ndarray | float:
        lo, hi = self._t(self.lo), self._t(self.hi)
        return self.p0 + (self._t(v) - lo) / (hi - lo) * (self.p1 - self.p0)

    def ticks(self, n: int = 5) -> list[float]:
        if not self.log:
            return nice_ticks(self.lo, self.hi, n)
        a, b = math.floor(math.log10(self.lo)), math.ceil(math.log10(self.hi))
        out = []
        for e in range(a, b + 1):
            for m in ((1, 2, 5) if b - a <= 2 else (1,)):
                v = m * 10.0 ** e
                if self.lo <= v <= self.hi:
                    out.append(v)
        return out


class Frame:
    """A plot area inside an SVG of ``width`` x ``height`` with margins for axes and titles."""

    def __init__(self, width: int = 560, height: int = 300, *, left: int = 58, right: int = 18,
                 top: int = 34, bottom: int = 46) -> None:
        self.w, self.h = width, height
        self.x0, self.x1 = left, width - right
        self.y0, self.y1 = height - bottom, top  # y grows upwards in data space
        self.parts: list[str] = []

    def add(self, s: str) -> None:
        self.parts.append(s)

    def title(self, text: str) -> None:
        self.add(f'<text x="{self.x0}" y="18" font-size="13" font-weight="600" fill="{INK}">'
                 f'{esc(text)}</text>')

    def x_axis(self, scale: Scale, label: str, ticks: Sequence[float] | None = None,
               labels: Sequence[str] | None = None) -> None:
        ticks = list(scale.ticks(6) if ticks is None else ticks)
        for k, t in enumerate(ticks):
            x = _n(scale(t))
            self.add(f'<line x1="{x}" x2="{x}" y1="{self.y1}" y2="{self.y0}" stroke="{GRID}"/>')
            text = labels[k] if labels is not None else fmt(t, 3)
            self.add(f'<text x="{x}" y="{self.y0 + 15}" font-size="10.5" fill="{MUTED}" '
                     f'text-anchor="middle">{esc(text)}</text>')
        self.add(f'<line x1="{self.x0}" x2="{self.x1}" y1="{self.y0}" y2="{self.y0}" stroke="{AXIS}"/>')
        self.add(f'<text x="{(self.x0 + self.x1) / 2:.0f}" y="{self.h - 8}" font-size="11.5" fill="{INK}" '
                 f'text-anchor="middle">{esc(label)}</text>')

    def y_axis(self, scale: Scale, label: str, *, right: bool = False, grid: bool = True,
               tick_format: "callable | None" = None) -> None:
        x = self.x1 if right else self.x0
        for t in scale.ticks(5):
            y = _n(scale(t))
            if grid:
                self.add(f'<line x1="{self.x0}" x2="{self.x1}" y1="{y}" y2="{y}" stroke="{GRID}"/>')
            text = tick_format(t) if tick_format else fmt(t, 3)
            anchor, dx = ("start", 5) if right else ("end", -5)
            self.add(f'<text x="{x + dx}" y="{y}" dy="3.5" font-size="10.5" fill="{MUTED}" '
                     f'text-anchor="{anchor}">{esc(text)}</text>')
        self.add(f'<line x1="{x}" x2="{x}" y1="{self.y0}" y2="{self.y1}" stroke="{AXIS}"/>')
        cy = (self.y0 + self.y1) / 2
        lx = self.w - 16 if right else 13
        rot = 90 if right else -90
        self.add(f'<text transform="translate({lx} {cy:.0f}) rotate({rot})" font-size="11.5" fill="{INK}" '
                 f'text-anchor="middle">{esc(label)}</text>')

    def legend(self, items: Sequence[tuple[str, ...]], *, line: bool = False) -> None:
        """Swatches at the top right: ``items`` is [(colour, label)] or, for lines,
        [(colour, label, dasharray)]."""
        x = self.x1
        for colour, label, *dash in reversed(items):
            width = 7 * len(label) + 26
            x -= width
            if line:
                pattern = f' stroke-dasharray="{dash[0]}"' if dash and dash[0] else ""
                self.add(f'<line x1="{x}" x2="{x + 18}" y1="14" y2="14" stroke="{colour}" '
                         f'stroke-width="3"{pattern}/>')
                self.add(f'<text x="{x + 22}" y="18" font-size="11" fill="{INK}">{esc(label)}</text>')
            else:
                self.add(f'<rect x="{x}" y="8" width="12" height="12" rx="2" fill="{colour}"/>')
                self.add(f'<text x="{x + 17}" y="18" font-size="11" fill="{INK}">{esc(label)}</text>')

    def svg(self, aria: str) -> str:
        body = "".join(self.parts)
        return (f'<svg viewBox="0 0 {self.w} {self.h}" role="img" aria-label="{esc(aria)}" '
                f'font-family="{esc(FONT)}">{body}</svg>')


def no_data(message: str, width: int = 560, height: int = 120) -> str:
    return (f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{esc(message)}" '
            f'font-family="{esc(FONT)}">'
            f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" rx="6" fill="#f9fafb" '
            f'stroke="{GRID}"/><text x="{width / 2}" y="{height / 2}" text-anchor="middle" font-size="12" '
            f'fill="{MUTED}">{esc(message)}</text></svg>')


# ------------------------------------------------------------------------------------- charts


def histogram(values: np.ndarray, state: np.ndarray | None, *, title: str, xlabel: str,
              cut: float | None = None, bins: int = 40) -> tuple[str, str]:
    """A histogram of ``values``, stacked kept (bottom) over dropped when ``state`` is given.

    values: float (n,); NaN/inf rows are left out and counted in the caption.
    state:  int8 (n,): 1 kept, 0 dropped, -1 not in the selection; None: one neutral series.
    cut:    an x value to mark as the selection's threshold (dashed red line).
    Returns (svg, caption). The x range is the 0.5-99.5 % quantile range; rows outside it are
    counted in the caption, not drawn.
    """
    finite = np.isfinite(values)
    n_missing = int((~finite).sum())
    lo, hi = robust_range(values)
    if not math.isfinite(lo):
        return no_data(f"{title}: no finite values"), f"all {len(values):,} values are missing"
    inside = finite & (values >= lo) & (values <= hi)
    n_outside = int((finite & ~inside).sum())
    edges = np.linspace(lo, hi, bins + 1)
    v = values[inside]

    def counts(mask: np.ndarray | None) -> np.ndarray:
        return np.histogram(v if mask is None else v[mask[inside]], bins=edges)[0]

    if state is None:
        series = [(NEUTRAL, "all", counts(None))]
    else:
        series = [(KEPT, "kept", counts(state == 1)), (DROPPED, "dropped", counts(state != 1))]
    total = np.sum([s[2] for s in series], axis=0)
    top = max(1, int(total.max()))
    f = Frame()
    xs = Scale(lo, hi, f.x0, f.x1)
    ys = Scale(0, top * 1.08, f.y0, f.y1)
    f.title(title)
    f.y_axis(ys, "examples")
    base = np.zeros(bins)
    for colour, name, c in series:
        for b in range(bins):
            if c[b] == 0:
                continue
            x0, x1 = xs(edges[b]), xs(edges[b + 1])
            y_top, y_bot = ys(base[b] + c[b]), ys(base[b])
            f.add(f'<rect x="{_n(x0 + 0.5)}" y="{_n(y_top)}" width="{_n(max(0.5, x1 - x0 - 1))}" '
                  f'height="{_n(y_bot - y_top)}" fill="{colour}"><title>{esc(name)} '
                  f'{esc(fmt(edges[b], 3))}–{esc(fmt(edges[b + 1], 3))}: {int(c[b]):,}</title></rect>')
        base = base + c
    f.x_axis(xs, xlabel)
    if cut is not None and lo <= cut <= hi:
        x = _n(xs(cut))
        f.add(f'<line x1="{x}" x2="{x}" y1="{f.y1 - 4}" y2="{f.y0}" stroke="{CUT}" stroke-width="1.6" '
              f'stroke-dasharray="5 3"/>')
        anchor = "end" if xs(cut) > (f.x0 + f.x1) / 2 else "start"
        dx = -4 if anchor == "end" else 4
        f.add(f'<text x="{x}" dx="{dx}" y="{f.y1 + 8}" font-size="10.5" fill="{CUT}" '
              f'text-anchor="{anchor}">cut {esc(fmt(cut, 3))}</text>')
    if state is not None:
        f.legend([(KEPT, "kept"), (DROPPED, "dropped")])
    notes = []
    if n_missing:
        notes.append(f"{n_missing:,} missing (NaN/inf)")
    if n_outside:
        notes.append(f"{n_outside:,} outside the 0.5–99.5 % range not drawn")
    return f.svg(title), "; ".join(notes)


def scatter(x: np.ndarray, y: np.ndarray, state: np.ndarray | None, *, title: str, xlabel: str,
            ylabel: str, logx: bool = False, width: int = 560, height: int = 360) -> tuple[str, str]:
    """A scatter of (x, y), dropped drawn first and kept on top. NaN rows are left out.

    The axes span the 0.5-99.5 % quantiles; points beyond are clamped onto the frame edge.
    Returns (svg, caption).
    """
    ok = np.isfinite(x) & np.isfinite(y)
    if logx:
        ok &= x > 0
    if not ok.any():
        return no_data(f"{title}: no finite points", width), ""
    xv = np.log10(x[ok]) if logx else x[ok]
    xlo, xhi = robust_range(xv)
    if logx:
        xlo, xhi = 10 ** xlo, 10 ** xhi
    ylo, yhi = robust_range(y[ok])
    ypad = (yhi - ylo) * 0.04
    f = Frame(width, height)
    xs = Scale(xlo, xhi, f.x0 + 4, f.x1 - 4, log=logx)
    ys = Scale(ylo - ypad, yhi + ypad, f.y0 - 4, f.y1 + 4)
    f.title(title)
    f.y_axis(ys, ylabel)
    f.x_axis(xs, xlabel)
    px = np.clip(xs(x[ok]), f.x0, f.x1)
    py = np.clip(ys(y[ok]), f.y1, f.y0)
    st = state[ok] if state is not None else np.full(int(ok.sum()), -2, dtype=np.int8)
    layers = ([(DROPPED_POINT, 0.6, st != 1), (KEPT, 0.85, st == 1)] if state is not None
              else [(NEUTRAL, 0.6, np.ones(len(st), dtype=bool))])
    for colour, opacity, mask in layers:
        if not mask.any():
            continue
        d = "".join(f"M{_n(a)} {_n(b)}h0" for a, b in zip(px[mask].tolist(), py[mask].tolist()))
        f.add(f'<path d="{d}" stroke="{colour}" stroke-opacity="{opacity}" stroke-width="4.2" '
              f'stroke-linecap="round" fill="none"/>')
    if state is not None:
        f.legend([(KEPT, "kept"), (DROPPED, "dropped")])
    outside = int(((px <= f.x0) | (px >= f.x1) | (py <= f.y1) | (py >= f.y0)).sum())
    caption = f"{int(ok.sum()):,} points"
    if outside:
        caption += f"; {outside:,} beyond the 0.5–99.5 % range drawn on the frame edge"
    return f.svg(title), caption


@dataclass
class Line:
    ys: np.ndarray
    colour: str
    width: float = 1.2
    opacity: float = 0.7
    label: str = ""
    dash: str = ""


def lines(series: Sequence[Line], *, title: str, xlabel: str, ylabel: str, x_labels: Sequence[str],
          legend: Sequence[tuple[str, ...]] = (), width: int = 560, height: int = 320) -> str:
    """Line series over the same x positions 0..len(x_labels)-1 (NaN points break a line)."""
    allv = np.concatenate([np.asarray(s.ys, dtype=float) for s in series]) if series else np.array([])
    allv = allv[np.isfinite(allv)]
    if allv.size == 0:
        return no_data(f"{title}: no finite values", width)
    lo, hi = float(allv.min()), float(allv.max())
    pad = (hi - lo) * 0.06 or 0.5
    f = Frame(width, height)
    m = len(x_labels)
    xs = Scale(0, max(1, m - 1), f.x0 + 8, f.x1 - 8)
    ys = Scale(lo - pad, hi + pad, f.y0, f.y1)
    f.title(title)
    f.y_axis(ys, ylabel)
    step = max(1, math.ceil(m / 12))
    ticks = list(range(0, m, step))
    f.x_axis(xs, xlabel, ticks=ticks, labels=[x_labels[t] for t in ticks])
    for s in series:
        ysv = np.asarray(s.ys, dtype=float)
        d, pen = [], False
        for i, v in enumerate(ysv.tolist()):
            if not math.isfinite(v):
                pen = False
                continue
            d.append(f"{'L' if pen else 'M'}{_n(xs(i))} {_n(ys(v))}")
            pen = True
        if not d:
            continue
        dash = f' stroke-dasharray="{s.dash}"' if s.dash else ""
        tip = f"<title>{esc(s.label)}</title>" if s.label else ""
        f.add(f'<path d="{"".join(d)}" stroke="{s.colour}" stroke-width="{s.width}" '
              f'stroke-opacity="{s.opacity}" fill="none" stroke-linejoin="round"{dash}>{tip}</path>')
    if legend:
        f.legend(legend, line=True)
    return f.svg(title)


def cluster_bars(sizes: np.ndarray, kept: np.ndarray | None, labels: Sequence[str], *, title: str,
                 width: int = 1100, height: int = 300) -> str:
    """One bar per cluster, largest first. With ``kept`` (no selection: None) the bars are stacked
    (kept at the bottom) and the keep rate of each cluster is marked on a right-hand 0-100 % axis."""
    order = np.argsort(-sizes, kind="stable")
    sizes = sizes[order]
    kept = None if kept is None else kept[order]
    labels = [labels[i] for i in order]
    m = len(sizes)
    f = Frame(width, height, left=58, right=58)
    ys = Scale(0, max(1, int(sizes.max())) * 1.08, f.y0, f.y1)
    f.title(title)
    f.y_axis(ys, "examples")
    band = (f.x1 - f.x0) / max(1, m)
    gap = min(2.0, band * 0.2)
    for i in range(m):
        x, w = _n(f.x0 + i * band + gap / 2), _n(max(0.6, band - gap))
        y_all = ys(sizes[i])
        if kept is None:
            f.add(f'<rect x="{x}" y="{_n(y_all)}" width="{w}" height="{_n(f.y0 - y_all)}" fill="{NEUTRAL}">'
                  f'<title>cluster {esc(labels[i])}: {int(sizes[i]):,} examples</title></rect>')
            continue
        rate = kept[i] / sizes[i] if sizes[i] else 0.0
        y_kept = ys(kept[i])
        f.add(f'<g><title>cluster {esc(labels[i])}: {int(kept[i]):,} of {int(sizes[i]):,} kept '
              f'({rate:.0%})</title>'
              f'<rect x="{x}" y="{_n(y_all)}" width="{w}" height="{_n(y_kept - y_all)}" fill="{DROPPED}"/>'
              f'<rect x="{x}" y="{_n(y_kept)}" width="{w}" height="{_n(f.y0 - y_kept)}" fill="{KEPT}"/></g>')
    if kept is not None:
        rs = Scale(0, 1, f.y0, f.y1)
        rate = np.divide(kept, sizes, out=np.zeros(m), where=sizes > 0)
        tick = max(3.0, min(band * 0.7, 26.0))
        d = "".join(f"M{_n(f.x0 + (i + 0.5) * band - tick / 2)} {_n(rs(rate[i]))}h{_n(tick)}"
                    for i in range(m))
        f.add(f'<path d="{d}" stroke="{INK}" stroke-width="3" stroke-linecap="round" fill="none"/>')
        f.y_axis(rs, "keep rate", right=True, grid=False, tick_format=lambda t: f"{t:.0%}")
        f.legend([(KEPT, "kept"), (DROPPED, "dropped"), (INK, "keep rate")])
    step = max(1, math.ceil(m / 25))
    for i in range(0, m, step):
        f.add(f'<text x="{_n(f.x0 + (i + 0.5) * band)}" y="{f.y0 + 14}" font-size="10" fill="{MUTED}" '
              f'text-anchor="middle">{esc(labels[i])}</text>')
    f.add(f'<line x1="{f.x0}" x2="{f.x1}" y1="{f.y0}" y2="{f.y0}" stroke="{AXIS}"/>')
    f.add(f'<text x="{(f.x0 + f.x1) / 2:.0f}" y="{f.h - 8}" font-size="11.5" fill="{INK}" '
          f'text-anchor="middle">cluster (largest first)</text>')
    return f.svg(title)


def rate_bars(labels: Sequence[str], kept: np.ndarray, total: np.ndarray, *, title: str,
              overall: float | None = None, width: int = 560) -> str:
    """Horizontal bars, one per group: the kept share in the kept colour, counts on the right.

    ``overall`` (the keep rate of the whole pool) is drawn as a dashed reference line.
    """
    m = len(labels)
    row = 24
    height = 46 + row * m + 22
    f = Frame(width, height, left=170, right=118, top=40, bottom=26)
    xs = Scale(0, 1, f.x0, f.x1)
    f.title(title)
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        x = _n(xs(t))
        f.add(f'<line x1="{x}" x2="{x}" y1="{f.y1 - 6}" y2="{f.y0 + 4}" stroke="{GRID}"/>')
        f.add(f'<text x="{x}" y="{f.y0 + 17}" font-size="10.5" fill="{MUTED}" text-anchor="middle">'
              f'{t:.0%}</text>')
    for i in range(m):
        y = f.y1 + i * row
        rate = kept[i] / total[i] if total[i] else 0.0
        label = labels[i] if len(labels[i]) <= 26 else labels[i][:25] + "…"
        f.add(f'<text x="{f.x0 - 8}" y="{y + 15}" font-size="11.5" fill="{INK}" text-anchor="end">'
              f'<title>{esc(labels[i])}</title>{esc(label)}</text>')
        f.add(f'<rect x="{f.x0}" y="{y + 4}" width="{_n(f.x1 - f.x0)}" height="{row - 8}" rx="2" '
              f'fill="{DROPPED}" fill-opacity="0.45"/>')
        if rate > 0:
            f.add(f'<rect x="{f.x0}" y="{y + 4}" width="{_n(xs(rate) - f.x0)}" height="{row - 8}" rx="2" '
                  f'fill="{KEPT}"><title>{esc(labels[i])}: {int(kept[i]):,} of {int(total[i]):,} kept'
                  '</title></rect>')
        f.add(f'<text x="{f.x1 + 8}" y="{y + 15}" font-size="11" fill="{INK}">{rate:.0%} '
              f'<tspan fill="{MUTED}">({int(kept[i]):,}/{int(total[i]):,})</tspan></text>')
    if overall is not None:
        x = _n(xs(overall))
        f.add(f'<line x1="{x}" x2="{x}" y1="{f.y1 - 6}" y2="{f.y0 + 4}" stroke="{INK}" stroke-width="1.2" '
              f'stroke-dasharray="4 3"/>')
        f.add(f'<text x="{x}" y="{f.y1 - 9}" font-size="10" fill="{INK}" text-anchor="middle">'
              f'overall {overall:.0%}</text>')
    return f.svg(title)
