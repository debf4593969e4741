"""Charts of one run, from its record: the percentile curve, per-second
timelines with phase boundaries and the knee, the pool and resource series,
the scraped metrics (expectations, pins)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from perfsuite.report.scraped import metric_charts
from perfsuite.report.svg import PALETTE, Axes, Line, VLine, chart
from perfsuite.stats.hdr import decode, merge
from perfsuite.stats.knee import Knee, find_knee

__all__ = ["load_charts", "pair_charts", "percentile_curve", "test_charts"]

_NINES = 5  # the curve goes to 99.999 % when there are enough requests
# second -> (requests, errors, p99) of one endpoint
Timeline = dict[int, tuple[int, int, float | None]]


def _color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def percentile_curve(histogram_texts: Sequence[str]) -> tuple[list[float], list[float]]:
    """(x, latency ms) of the HDR percentile curve; x = -log10(1 - q), so 2 is 99 %."""
    hist = merge(decode(t) for t in histogram_texts)
    total = hist.get_total_count()
    if total == 0:
        return [], []
    top = min(_NINES, math.log10(total))
    xs = [float(x) for x in np.linspace(0.0, top, 121)]
    return xs, [hist.get_value_at_percentile(100.0 * (1.0 - 10.0**-x)) / 1000.0 for x in xs]


def _curve_chart(load: Mapping[str, Any], endpoints: list[str], measured: set[str]) -> str:
    lines = []
    for i, endpoint in enumerate(endpoints):
        texts = [
            c["latency"]
            for c in load["cells"]
            if c["endpoint"] == endpoint and c["phase"] in measured
        ]
        xs, ys = percentile_curve(texts)
        if xs:
            lines.append(Line(name=endpoint, xs=xs, ys=list(ys), color=_color(i)))
    top = max((max(line.xs) for line in lines), default=0.0)
    labels = [(float(n), f"{100 * (1 - 10**-n):g}%") for n in range(_NINES + 1) if n <= top]
    return chart(
        "latency by percentile (measured phases)",
        lines,
        axes=Axes(x_title="percentile", y_title="ms", x_labels=labels),
        kind="percentiles",
    )


def _timeline(load: Mapping[str, Any], endpoint: str) -> Timeline:
    """second -> (requests, errors, p99) of one endpoint over all phases."""
    out: Timeline = {}
    for cell in load["cells"]:
        if cell["endpoint"] != endpoint or "series" not in cell:
            continue
        s = cell["series"]
        for t, req, err, p99 in zip(s["t"], s["requests"], s["errors"], s["p99"], strict=True):
            old = out.get(t, (0, 0, None))
            worst = max((v for v in (old[2], p99) if v is not None), default=None)
            out[t] = (old[0] + req, old[1] + err, worst)
    return out


def _phase_lines(load: Mapping[str, Any]) -> list[VLine]:
    return [
        VLine(
            x=float(p["start"]),
            label=p["name"]
            if p["role"] in ("measure", p["name"])
            else f"{p['name']} ({p['role']})",
            tip=f"{p['name']}: {p['description']} from {p['start']:.0f} s",
            color="#777",
        )
        for p in load["phases"]
    ]


def _total_per_second(timelines: dict[str, Timeline]) -> dict[int, int]:
    """second -> requests of all endpoints."""
    total: dict[int, int] = {}
    for tl in timelines.values():
        for t, (req, _, _) in tl.items():
            total[t] = total.get(t, 0) + req
    return total


def _knee(
    load: Mapping[str, Any],
    timelines: dict[str, Timeline],
    total: dict[int, int],
) -> dict[str, tuple[Knee, list[float], list[float]]]:
    """Per endpoint: its knee against the total rate, and the points it was fitted to."""
    measured = [p for p in load["phases"] if p["role"] == "measure"]
    seconds = {
        t
        for p in measured
        for t in range(math.ceil(p["start"]), math.floor(p["start"] + p["duration"]))
    }
    found = {}
    for endpoint, tl in timelines.items():
        ts = sorted(t for t in tl if t in seconds and tl[t][2] is not None)
        rates = [float(total[t]) for t in ts]
        p99 = [float(tl[t][2] or 0.0) for t in ts]
        knee = find_knee(rates, p99)
        if knee is not None:
            found[endpoint] = (knee, rates, p99)
    return found


def _knee_charts(
    knees: dict[str, tuple[Knee, list[float], list[float]]],
    timelines: dict[str, Timeline],
    total: dict[int, int],
) -> tuple[list[VLine], list[str], list[str]]:
    """(marks for the p99 timeline, scatter charts, notes) of the knees found."""
    marks, charts, notes = [], [], []
    for i, (endpoint, (knee, rates, p99)) in enumerate(knees.items()):
        label = f"knee {knee.rate:,.0f}/s"
        notes.append(
            f"Knee of {endpoint}: p99 is flat at {knee.flat:.2f} ms up to about "
            f"{knee.rate:,.0f} req/s, then climbs {knee.rise:.1f}x by the highest rate."
        )
        reached = [t for t in sorted(timelines[endpoint]) if total[t] >= knee.rate]
        if reached:
            marks.append(VLine(x=float(reached[0]), label=label, color="#d62728"))
        scatter = Line(
            name=f"{endpoint} (each second)",
            xs=rates,
            ys=list(p99),
            color=_color(i),
            dots=True,
            connect=False,
        )
        charts.append(
            chart(
                f"p99 of {endpoint} against the rate",
                [scatter],
                axes=Axes(x_title="req/s (all endpoints)", y_title="ms"),
                vlines=[VLine(x=knee.rate, label=label, color="#d62728")],
                kind="knee",
            )
        )
    return marks, charts, notes


def load_charts(load: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(SVG charts, notes) of one load of a run."""
    endpoints = list(dict.fromkeys(c["endpoint"] for c in load["cells"]))
    measured = {p["name"] for p in load["phases"] if p["role"] == "measure"}
    timelines = {e: _timeline(load, e) for e in endpoints}
    # The total rate counts requests: a journey's own endpoint would count its steps twice.
    journeys = {c["endpoint"] for c in load["cells"] if c.get("journey")}
    total = _total_per_second({e: tl for e, tl in timelines.items() if e not in journeys})
    phases = _phase_lines(load)
    knee_marks, knee_charts, notes = _knee_charts(_knee(load, timelines, total), timelines, total)
    rps_lines, p99_lines = [], []
    for i, (endpoint, tl) in enumerate(timelines.items()):
        ts = sorted(tl)
        rps_lines.append(
            Line(name=endpoint, xs=ts, ys=[float(tl[t][0]) for t in ts], color=_color(i))
        )
        p99_lines.append(Line(name=endpoint, xs=ts, ys=[tl[t][2] for t in ts], color=_color(i)))
    charts = [
        _curve_chart(load, endpoints, measured),
        chart(
            "requests per second",
            rps_lines,
            axes=Axes(x_title="seconds since the start", y_title="req/s"),
            vlines=phases,
            kind="rps",
        ),
        chart(
            "p99 latency per second",
            p99_lines,
            axes=Axes(x_title="seconds since the start", y_title="ms"),
            vlines=phases + knee_marks,
            kind="p99-timeline",
        ),
    ]
    return charts + knee_charts, notes


def _series_chart(title: str, data: Mapping[str, Any], keys: Sequence[str], unit: str) -> str:
    xs = data.get("seconds", [])
    lines = [
        Line(name=key.replace("_", " "), xs=xs, ys=data[key], color=_color(i))
        for i, key in enumerate(keys)
        if key in data and any(v is not None for v in data[key])
    ]
    return chart(title, lines, axes=Axes(x_title="seconds", y_title=unit), kind="series")


def pair_charts(ab: Mapping[str, Any]) -> list[str]:
    """A/B: each pair of rounds, base beside candidate, per endpoint and per replica's
    lag (p50 and p95)."""
    charts = []
    for i, load in enumerate(ab["loads"]):
        prefix = "" if len(ab["loads"]) == 1 else f"load {i + 1}, "
        for endpoint, metrics in load["endpoints"].items():
            for metric in ("p50", "p95"):
                title = f"A/B pairs: {metric} of {prefix}{endpoint}"
                charts.append(_pair_chart(title, metrics[metric], ab["base"]))
        for replica, metrics in load.get("lag", {}).items():  # older records have none
            for metric in ("p50", "p95"):
                title = f"A/B pairs: {metric} lag of {prefix}{replica}"
                charts.append(_pair_chart(title, metrics[metric], ab["base"]))
    return charts


def _pair_chart(title: str, sides: Mapping[str, Sequence[float | None]], base: str) -> str:
    lines = [
        Line(
            name=f"{side} ({base})" if side == "base" else side,
            xs=[float(n + 1) for n in range(len(sides[side]))],
            ys=list(sides[side]),
            color=_color(k),
            dots=True,
        )
        for k, side in enumerate(("base", "candidate"))
    ]
    return chart(title, lines, axes=Axes(x_title="pair", y_title="ms"), kind="ab-pairs")


def test_charts(entry: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """(SVG charts, notes) of one test of a run: its loads, pool and resources.

    An A/B test: its pairs, and the candidate's last round.
    """
    charts: list[str] = []
    notes: list[str] = []
    ab = entry.get("ab")
    if ab:
        charts += pair_charts(ab)
        notes.append(
            f"A/B against {ab['base']}: {ab['pairs']} pairs of rounds; "
            "the charts below are of the candidate's last round"
        )
    for load in entry["loads"][-1:] if ab else entry["loads"]:
        c, n = load_charts(load)
        charts += c
        notes += n
    pool = entry.get("pool")
    if pool and pool.get("series", {}).get("seconds"):
        charts.append(
            _series_chart(
                "pool: database connections and pool gauges",
                pool["series"],
                ("threads_connected", "in_use", "waiting"),
                "connections",
            )
        )
    for res in entry.get("resources", []):
        charts.append(_series_chart("service CPU", res, ("cpu_percent",), "% of one core"))
        charts.append(_series_chart("service memory (RSS)", res, ("rss_mib",), "MiB"))
    return charts + metric_charts(entry), notes
