"""Small inline SVG charts: lines, bands, vertical markers, tooltips.

Written here rather than taken from a plotting library: the report must be
one offline file that renders with no script, and the charts are a few
polylines each. matplotlib could write SVG but costs ~1 s per chart and
50 MB of install; a JavaScript library would have to be vendored and run.
Every point carries a ``<title>``, which browsers show on hover.
"""

from __future__ import annotations

import html
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

__all__ = ["Area", "Line", "VLine", "chart", "nice_ticks"]

PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b")


@dataclass(frozen=True, kw_only=True)
class Line:
    """A series; ``None`` values break the line."""

    name: str
    xs: Sequence[float]
    ys: Sequence[float | None]
    color: str = PALETTE[0]
    dots: bool = False
    tips: Sequence[str] | None = None  # one tooltip per point (dots only)
    dashed: bool = False
    connect: bool = True  # False: dots only (a scatter)


@dataclass(frozen=True, kw_only=True)
class Area:
    """A shaded band between ``low`` and ``high``."""

    name: str
    xs: Sequence[float]
    low: Sequence[float | None]
    high: Sequence[float | None]
    color: str = "#1f77b4"


@dataclass(frozen=True, kw_only=True)
class VLine:
    """A vertical marker (a phase boundary, a change point, a knee)."""

    x: float
    label: str
    color: str = "#555"
    dashed: bool = True
    tip: str = ""


@dataclass(frozen=True, kw_only=True)
class _Frame:
    x0: float
    x1: float
    y0: float
    y1: float
    left: float = 58.0
    right: float = 12.0
    top: float = 38.0
    bottom: float = 40.0
    width: float = 560.0
    height: float = 230.0

    def sx(self, x: float) -> float:
        span = self.x1 - self.x0 or 1.0
        return self.left + (x - self.x0) / span * (self.width - self.left - self.right)

    def sy(self, y: float) -> float:
        span = self.y1 - self.y0 or 1.0
        return (
            self.height
            - self.bottom
            - (y - self.y0) / span * (self.height - self.top - self.bottom)
        )


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi]."""
    if not math.isfinite(lo) or not math.isfinite(hi):
        return [0.0]
    if hi <= lo:
        hi = lo + (abs(lo) or 1.0)
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * step:
            step *= m
            break
    first = math.floor(lo / step) * step
    ticks, t = [], first
    while t <= hi + step * 0.5:
        ticks.append(round(t, 12))
        t += step
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if abs(v) >= 10:
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.1f}".rstrip("0").rstrip(".")
    return f"{v:.3g}"


def _path(frame: _Frame, xs: Sequence[float], ys: Sequence[float | None]) -> str:
    parts, pen = [], "M"
    for x, y in zip(xs, ys, strict=True):
        if y is None or not math.isfinite(y):
            pen = "M"
            continue
        parts.append(f"{pen}{frame.sx(x):.1f},{frame.sy(y):.1f}")
        pen = "L"
    return " ".join(parts)


def _bounds(
    lines: Sequence[Line], areas: Sequence[Area], vlines: Sequence[VLine]
) -> tuple[float, float, float, float]:
    xs = [x for line in lines for x in line.xs] + [x for a in areas for x in a.xs]
    xs += [v.x for v in vlines]
    ys = [y for s in lines for y in s.ys if y is not None and math.isfinite(y)]
    band = [y for a in areas for y in [*a.low, *a.high] if y is not None and math.isfinite(y)]
    if band and ys:
        # A wide band must not flatten the data: show it up to twice the data's top.
        ys.append(min(max(band), 2.0 * max(ys)))
    elif band:
        ys = band
    if not xs:
        xs = [0.0, 1.0]
    if not ys:
        ys = [0.0, 1.0]
    x0, x1 = min(xs), max(xs)
    if x0 == x1:  # one run: put it in the middle
        x0, x1 = x0 - 0.5, x1 + 0.5
    return x0, x1, min(0.0, min(ys)), max(ys) * 1.08 or 1.0


@dataclass(frozen=True, kw_only=True)
class Axes:
    """Axis titles and how x values are labelled."""

    x_title: str = ""
    y_title: str = ""
    x_labels: Sequence[tuple[float, str]] | None = None  # fixed ticks, e.g. commits
    x_format: Callable[[float], str] = field(default=_fmt)


def chart(
    title: str,
    lines: Sequence[Line],
    *,
    axes: Axes | None = None,
    areas: Sequence[Area] = (),
    vlines: Sequence[VLine] = (),
    kind: str = "chart",
) -> str:
    """An SVG chart as a string (class ``chart``, ``data-kind`` = ``kind``)."""
    axes = axes or Axes()
    x0, x1, y0, y1 = _bounds(lines, areas, vlines)
    y_ticks = nice_ticks(y0, y1)
    frame = _Frame(x0=x0, x1=x1, y0=y_ticks[0], y1=max(y_ticks[-1], y1))
    esc = html.escape
    out = [
        f'<svg class="chart" data-kind="{esc(kind)}" viewBox="0 0 {frame.width:.0f} '
        f'{frame.height:.0f}" role="img" aria-label="{esc(title)}">',
        f'<text class="title" x="{frame.left}" y="14">{esc(title)}</text>',
    ]
    for y in y_ticks:
        py = frame.sy(y)
        out.append(
            f'<line class="grid" x1="{frame.left}" x2="{frame.width - frame.right}" '
            f'y1="{py:.1f}" y2="{py:.1f}"/><text class="tick" x="{frame.left - 4}" '
            f'y="{py + 3:.1f}" text-anchor="end">{_fmt(y)}</text>'
        )
    if axes.x_labels is not None:
        labels = list(axes.x_labels)
        stride = max(1, math.ceil(len(labels) / 8))  # no more than ~8 labels fit
        x_ticks = labels[::stride]
    else:
        x_ticks = [(x, axes.x_format(x)) for x in nice_ticks(x0, x1, 6) if x0 <= x <= x1]
    base = frame.height - frame.bottom
    for x, label in x_ticks:
        anchor = "end" if frame.sx(x) > frame.width - frame.right - 20 else "middle"
        out.append(
            f'<text class="tick" x="{frame.sx(x):.1f}" y="{base + 13:.1f}" '
            f'text-anchor="{anchor}">{esc(label)}</text>'
        )
    out.append(
        f'<line class="axis" x1="{frame.left}" x2="{frame.width - frame.right}" '
        f'y1="{base:.1f}" y2="{base:.1f}"/>'
        f'<text class="axis-title" x="{(frame.left + frame.width) / 2:.0f}" '
        f'y="{frame.height - 6:.0f}" text-anchor="middle">{esc(axes.x_title)}</text>'
        f'<text class="axis-title" transform="translate(12 {(frame.top + base) / 2:.0f}) '
        f'rotate(-90)" text-anchor="middle">{esc(axes.y_title)}</text>'
    )
    clip = f"clip-{uuid.uuid4().hex[:12]}"  # unique in the page, which holds many charts
    out.append(
        f'<clipPath id="{clip}"><rect x="{frame.left}" y="{frame.top}" '
        f'width="{frame.width - frame.left - frame.right}" height="{base - frame.top:.1f}"/>'
        f"</clipPath>"
    )
    for area in areas:
        top = _path(frame, area.xs, area.high)
        bottom = _path(frame, list(reversed(area.xs)), list(reversed(area.low)))
        if top and bottom:
            out.append(
                f'<path class="band" clip-path="url(#{clip})" '
                f'd="{top} {bottom.replace("M", "L", 1)} Z" '
                f'fill="{area.color}" fill-opacity="0.15" stroke="none">'
                f"<title>{esc(area.name)}</title></path>"
            )
    for n, v in enumerate(vlines):
        px = frame.sx(v.x)
        label_y = frame.top + 9 + 11 * (n % 2)  # alternate rows: close markers stay legible
        dash = ' stroke-dasharray="4 3"' if v.dashed else ""
        out.append(
            f'<g class="marker"><line x1="{px:.1f}" x2="{px:.1f}" y1="{frame.top}" '
            f'y2="{base:.1f}" stroke="{v.color}"{dash}/><text x="{px + 3:.1f}" '
            f'y="{label_y:.1f}" fill="{v.color}" class="mark">{esc(v.label)}</text>'
            f"<title>{esc(v.tip or v.label)}</title></g>"
        )
    for line in lines:
        d = _path(frame, line.xs, line.ys)
        dash = ' stroke-dasharray="5 3"' if line.dashed else ""
        if line.connect:
            out.append(
                f'<path class="series" d="{d}" stroke="{line.color}" fill="none"{dash}>'
                f"<title>{esc(line.name)}</title></path>"
            )
        if line.dots:
            tips = line.tips or [line.name] * len(line.xs)
            for x, value, tip in zip(line.xs, line.ys, tips, strict=True):
                if value is not None and math.isfinite(value):
                    out.append(
                        f'<circle cx="{frame.sx(x):.1f}" cy="{frame.sy(value):.1f}" r="2.6" '
                        f'fill="{line.color}"><title>{esc(tip)}</title></circle>'
                    )
    items: list[Line | Area] = [*lines, *areas]
    names = " ".join(
        f'<tspan fill="{item.color}">\u25a0 {esc(item.name)}</tspan>' for item in items
    )
    out.append(f'<text class="legend" x="{frame.left}" y="29">{names}</text>')
    out.append("</svg>")
    return "".join(out)
