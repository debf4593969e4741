"""Flame graphs as inline SVG, and the table of the hottest functions.

Drawn here for the same reason as the charts (``svg.py``): the report is one
offline file with no script. The layout is flamegraph.pl's: the root at the
bottom, each frame as wide as its share of the samples, callees above their
caller in name order, frames narrower than ``MIN_WIDTH`` pixels left out.
Every frame has a ``<title>`` (name, value, share), which browsers show on
hover. A differential graph draws the current profile's frames coloured by
how their share of the whole changed against the base (red: hotter, blue:
colder), as in Gregg's differential flame graphs.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Callable, Mapping
from typing import Any

from perfsuite.stats.flame import (
    FlameNode,
    Stacks,
    flame_tree,
    hottest,
    parse_collapsed,
    self_shift,
    shift,
)

__all__ = ["diff_flame_svg", "flame_svg", "hottest_table", "profile_html"]

WIDTH = 1200.0
ROW = 17.0
MIN_WIDTH = 0.6  # pixels: what is narrower is not drawn (flamegraph.pl's --minwidth)
_CHAR = 6.6  # pixels per character at the 11 px label font
_HEADER = 26.0


def _warm(name: str) -> str:
    """flamegraph.pl's "hot" palette, by a hash of the name (stable between reports)."""
    h = hashlib.blake2b(name.encode(), digest_size=3).digest()
    return f"rgb({205 + h[0] % 50},{h[1] % 230},{h[2] % 55})"


def _label(name: str, width: float) -> str:
    fits = int((width - 6) / _CHAR)
    if fits < 3:
        return ""
    return name if len(name) <= fits else name[: fits - 2] + ".."


def _layout(
    root: FlameNode,
) -> list[tuple[tuple[str, ...], FlameNode, float, int]]:
    """(path, node, x in pixels, depth) of every frame wide enough to draw."""
    if root.value <= 0:
        return []
    scale = WIDTH / root.value
    out: list[tuple[tuple[str, ...], FlameNode, float, int]] = []
    todo: list[tuple[tuple[str, ...], FlameNode, float, int]] = [((), root, 0.0, 0)]
    while todo:
        path, node, x, depth = todo.pop()
        out.append((path, node, x, depth))
        for name in sorted(node.children):
            child = node.children[name]
            if child.value * scale >= MIN_WIDTH:
                todo.append(((*path, name), child, x, depth + 1))
            x += child.value * scale
    return out


def _svg(
    title: str,
    stacks: Stacks,
    unit: str,
    color: Callable[[tuple[str, ...], str], str],
    note: Callable[[tuple[str, ...]], str],
    kind: str,
) -> str:
    root = flame_tree(stacks)
    frames = _layout(root)
    depth = max((d for *_, d in frames), default=0) + 1
    height = _HEADER + depth * ROW + 4
    scale = WIDTH / root.value if root.value > 0 else 0.0
    esc = html.escape
    out = [
        f'<svg class="flame" data-kind="{esc(kind)}" viewBox="0 0 {WIDTH:.0f} {height:.0f}" '
        f'role="img" aria-label="{esc(title)}" font-size="11">',
        f'<text class="title" x="4" y="16">{esc(title)}</text>',
    ]
    if not frames:
        out.append('<text x="4" y="40">no samples</text></svg>')
        return "".join(out)
    for path, node, x, d in frames:
        w = node.value * scale
        y = height - 4 - (d + 1) * ROW
        name = node.name if path else f"all ({node.value:,.0f} {unit})"
        share = node.value / root.value * 100
        tip = f"{name}: {node.value:,.0f} {unit} ({share:.2f} %){note(path)}"
        fill = "rgb(230,230,230)" if not path else color(path, node.name)
        out.append(
            f'<g class="frame"><title>{esc(tip)}</title>'
            f'<rect x="{x:.2f}" y="{y:.1f}" width="{max(w - 0.4, 0.2):.2f}" '
            f'height="{ROW - 1:.0f}" fill="{fill}" rx="1"/>'
        )
        label = _label(name, w)
        if label:
            out.append(f'<text x="{x + 3:.2f}" y="{y + ROW - 5:.1f}">{esc(label)}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


def flame_svg(title: str, stacks: Stacks, *, unit: str = "samples") -> str:
    """A flame graph of one profile."""
    return _svg(title, stacks, unit, lambda _p, name: _warm(name), lambda _p: "", "flame")


def diff_flame_svg(title: str, base: Stacks, current: Stacks, *, unit: str = "samples") -> str:
    """The current profile's flame graph coloured by each frame's change in self
    share against ``base``: red hotter, blue colder, white unchanged (a caller that
    is hotter only through its callees stays white)."""
    change = shift(base, current)
    # Saturate at the largest change, so that the hottest increase is the reddest.
    top = max((abs(v) for v in change.values()), default=0.0) or 1.0

    def color(path: tuple[str, ...], _name: str) -> str:
        v = change.get(path, 0.0) / top
        fade = int(255 * (1 - min(1.0, abs(v))))
        return f"rgb(255,{fade},{fade})" if v > 0 else f"rgb({fade},{fade},255)"

    def note(path: tuple[str, ...]) -> str:
        v = change.get(path)
        return "" if v is None else f"; self {v * 100:+.2f} points of the whole against the base"

    return _svg(title, current, unit, color, note, "flame-diff")


def hottest_table(
    stacks: Stacks, *, base: Mapping[tuple[str, ...], float] | None = None, limit: int = 15
) -> str:
    """An HTML table of the functions with the most self time (and, with ``base``,
    the change of each one's self share)."""
    esc = html.escape
    rows = hottest(stacks, limit=limit)
    if not rows:
        return ""
    change = dict(self_shift(base, stacks, limit=1_000_000)) if base is not None else {}
    head = "<tr><th>function</th><th>self</th><th>total</th>"
    head += "<th>self, change against the base</th></tr>" if base is not None else "</tr>"
    body = []
    for row in rows:
        cells = (
            f"<td><code>{esc(row.name)}</code></td><td>{row.self_share * 100:.1f} %</td>"
            f"<td>{row.total_share * 100:.1f} %</td>"
        )
        if base is not None:
            cells += f"<td>{change.get(row.name, 0.0) * 100:+.1f} points</td>"
        body.append(f"<tr>{cells}</tr>")
    return f'<table class="hottest">{head}{"".join(body)}</table>'


def profile_html(entry: Mapping[str, Any]) -> str:
    """A test's kept CPU profiles (flame graph, hottest functions, the differential
    against the baseline's profile) and its growth verdicts, from its record."""
    esc = html.escape
    parts = []
    leaks = [c for c in entry.get("counts", []) if c["verdict"] == "leak"]
    if leaks:
        text = "\n".join(c["text"] for c in leaks)
        parts.append(f'<h3>Growth</h3><pre class="LEAK">{esc(text)}</pre>')
    for p in entry.get("profiles", []):
        stacks = parse_collapsed(p.get("stacks", ""))
        unit = p.get("unit", "samples")
        where = (
            f"{p['profiler']}, {p['seconds']:g} s from {p['start']:g} s into load "
            f"{p['load'] + 1}; {p['samples']:,.0f} {unit}; file {p['file']}"
        )
        parts.append(f"<h3>CPU profile of the service</h3><p class=meta>{esc(where)}</p>")
        parts.append(
            flame_svg("flame graph (root at the bottom; hover for numbers)", stacks, unit=unit)
        )
        base = parse_collapsed(p["base_stacks"]) if p.get("base_stacks") else None
        parts.append(hottest_table(stacks, base=base))
        if base is not None:
            parts.append(
                diff_flame_svg(
                    "against the baseline's profile: red hotter, blue colder (share of the whole)",
                    base,
                    stacks,
                    unit=unit,
                )
            )
    return "".join(parts)
