"""Collapsed stacks: the common form of every profile perfsuite reads.

A profile is a mapping from a stack (root first, one name per frame) to a
value: samples for py-spy, nanoseconds of CPU for a Go CPU profile,
goroutines for a goroutine profile. The text form is Brendan Gregg's
(``root;caller;leaf 12``, one stack a line), which py-spy's ``--format raw``,
async-profiler's ``-o collapsed`` and ``stackcollapse-*.pl`` write.

Pure: the tree a flame graph draws, the functions with the most self time,
and the differential against a baseline (each frame's share of the whole,
now against then, as in Gregg's differential flame graphs, normalised so
that profiles of different lengths compare).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "FlameNode",
    "FrameShare",
    "Stacks",
    "flame_tree",
    "format_collapsed",
    "hottest",
    "merge",
    "parse_collapsed",
    "prune",
    "self_shift",
    "shift",
    "total",
]

Stacks = Mapping[tuple[str, ...], float]


def parse_collapsed(text: str) -> dict[tuple[str, ...], float]:
    """Collapsed stacks from their text form; a bad line is a ``ValueError`` naming it.
    A line of a count alone (samples with no frame: py-spy writes them) is left out."""
    stacks: dict[tuple[str, ...], float] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        path, _, count = line.rpartition(" ")
        try:
            value = float(count)
        except ValueError:
            raise ValueError(
                f"collapsed stacks, line {number}: no count at the end: {raw!r}"
            ) from None
        if value < 0 or (not path and raw == line):
            raise ValueError(f"collapsed stacks, line {number}: expected 'a;b;c COUNT': {raw!r}")
        if not path:  # ' 12': samples with no frame (py-spy: a thread outside Python)
            continue
        key = tuple(path.split(";"))
        stacks[key] = stacks.get(key, 0.0) + value
    return stacks


def format_collapsed(stacks: Stacks) -> str:
    """The text form, heaviest stack first (integers written without a fraction; a stack
    of no frames has no text form and is left out)."""
    lines = []
    for path, value in sorted(stacks.items(), key=lambda kv: (-kv[1], kv[0])):
        if not path:
            continue
        count = f"{value:.0f}" if float(value).is_integer() else f"{value:g}"
        lines.append(f"{';'.join(path)} {count}")
    return "\n".join(lines) + ("\n" if lines else "")


def total(stacks: Stacks) -> float:
    """The sum of all values (samples, nanoseconds, goroutines)."""
    return float(sum(stacks.values()))


@dataclass
class FlameNode:
    """One frame in its context: ``value`` includes its callees'."""

    name: str
    value: float = 0.0
    children: dict[str, FlameNode] = field(default_factory=dict)

    def self_value(self) -> float:
        """What this frame spent itself, not in its callees."""
        return self.value - sum(c.value for c in self.children.values())


def flame_tree(stacks: Stacks) -> FlameNode:
    """The call tree a flame graph draws; the root is the whole profile."""
    root = FlameNode(name="all")
    for path, value in stacks.items():
        root.value += value
        node = root
        for name in path:
            node = node.children.setdefault(name, FlameNode(name=name))
            node.value += value
    return root


@dataclass(frozen=True, kw_only=True)
class FrameShare:
    """One function: its self and total values, as shares of the profile (0..1)."""

    name: str
    self_share: float
    total_share: float


def hottest(stacks: Stacks, limit: int = 20) -> list[FrameShare]:
    """The functions with the most self time (a function counts once per stack
    in its total, however often it recurs)."""
    whole = total(stacks)
    if whole <= 0:
        return []
    own: dict[str, float] = {}
    inclusive: dict[str, float] = {}
    for path, value in stacks.items():
        if not path:
            continue
        own[path[-1]] = own.get(path[-1], 0.0) + value
        for name in set(path):
            inclusive[name] = inclusive.get(name, 0.0) + value
    ranked = sorted(inclusive, key=lambda n: (-own.get(n, 0.0), -inclusive[n], n))
    return [
        FrameShare(name=n, self_share=own.get(n, 0.0) / whole, total_share=inclusive[n] / whole)
        for n in ranked[:limit]
    ]


def shift(base: Stacks, current: Stacks) -> dict[tuple[str, ...], float]:
    """Each stack (a frame in its context): its self share of the current profile
    less its self share of the base. Positive: hotter now.

    Self, not inclusive: a caller's inclusive share grows with its callee's, so an
    inclusive differential reddens the whole chain down to the hot frame, and which
    of them is reddest is noise. As flamegraph.pl's differential does, the change
    belongs to the frame that spent the time.
    """
    out: dict[tuple[str, ...], float] = {}
    for stacks, sign in ((current, 1.0), (base, -1.0)):
        whole = total(stacks)
        if whole <= 0:
            continue
        for path, value in stacks.items():
            out[path] = out.get(path, 0.0) + sign * value / whole
    return out


def self_shift(base: Stacks, current: Stacks, limit: int = 10) -> list[tuple[str, float]]:
    """The functions whose self share grew most (name, growth in share of the whole)."""
    shares = {f.name: f.self_share for f in hottest(current, limit=1_000_000)}
    before = {f.name: f.self_share for f in hottest(base, limit=1_000_000)}
    change = {n: shares.get(n, 0.0) - before.get(n, 0.0) for n in set(shares) | set(before)}
    return sorted(change.items(), key=lambda kv: (-kv[1], kv[0]))[:limit]


def merge(profiles: Iterable[Stacks]) -> dict[tuple[str, ...], float]:
    """The sum of several profiles."""
    out: dict[tuple[str, ...], float] = {}
    for stacks in profiles:
        for path, value in stacks.items():
            out[path] = out.get(path, 0.0) + value
    return out


def prune(stacks: Stacks, limit: int = 1500) -> dict[tuple[str, ...], float]:
    """The ``limit`` heaviest stacks (a record keeps these; the file keeps them all)."""
    ranked = sorted(stacks.items(), key=lambda kv: (-kv[1], kv[0]))
    return dict(ranked[:limit])
