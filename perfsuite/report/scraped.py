"""Charts of a test's scraped metrics, from its record: each expectation's judged
values against its threshold, and the pinned metrics, with the load's phases."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from perfsuite.report.svg import PALETTE, Axes, Line, VLine, chart

__all__ = ["metric_charts"]

_MAX_LINES = 12  # series per chart: the rest are left out, and the title says how many


def _name(labels: Mapping[str, str], skip: Sequence[str] = ()) -> str:
    shown = {k: v for k, v in labels.items() if k not in ("__name__", *skip)}
    inner = ", ".join(f'{k}="{v}"' for k, v in sorted(shown.items()))
    return f"{labels.get('__name__', '')}{{{inner}}}" if inner else labels.get("__name__", "value")


def _phase_lines(load: Mapping[str, Any]) -> list[VLine]:
    return [VLine(x=float(p["start"]), label=p["name"], color="#777") for p in load["phases"]]


def _lines(series: Sequence[Mapping[str, Any]], xs: Sequence[float]) -> tuple[list[Line], int]:
    lines = [
        Line(
            name=_name(s["labels"], ("job", "instance")),
            xs=xs,
            ys=s["v"],
            color=PALETTE[i % len(PALETTE)],
        )
        for i, s in enumerate(series[:_MAX_LINES])
    ]
    return lines, max(0, len(series) - _MAX_LINES)


def _expectation_chart(entry: Mapping[str, Any], loads: Sequence[Mapping[str, Any]]) -> str:
    xs = entry["t"]
    lines, more = _lines(entry["series"], xs)
    lines.append(Line(name="threshold", xs=xs, ys=entry["threshold"], color="#d62728", dashed=True))
    verdict = "held" if entry["ok"] else "BROKEN"
    title = f"{verdict}: expect {entry['text']}" + (f" (+{more} series not drawn)" if more else "")
    load = loads[entry["load"]] if entry["load"] < len(loads) else None
    return chart(
        title,
        lines,
        axes=Axes(x_title="seconds", y_title=entry.get("metric", "")),
        vlines=_phase_lines(load) if load else (),
        kind="expectation",
    )


def _pinned_charts(metrics: Mapping[str, Any], loads: Sequence[Mapping[str, Any]]) -> list[str]:
    charts = []
    for i, scraped in enumerate(metrics.get("loads", [])):
        if scraped is None:
            continue
        for name in metrics.get("pins", []):
            series = [s for s in scraped["series"] if s["labels"].get("__name__") == name]
            if not series:
                continue
            lines = [
                Line(
                    name=_name(s["labels"], ("__name__",)) if len(series) > 1 else name,
                    xs=s["t"],
                    ys=s["v"],
                    color=PALETTE[k % len(PALETTE)],
                )
                for k, s in enumerate(series[:_MAX_LINES])
            ]
            where = f", load {i + 1}" if len(metrics["loads"]) > 1 else ""
            charts.append(
                chart(
                    f"{name}{where} (scraped)",
                    lines,
                    axes=Axes(x_title="seconds", y_title="value"),
                    vlines=_phase_lines(loads[i]) if i < len(loads) else (),
                    kind="pinned",
                )
            )
    return charts


def metric_charts(entry: Mapping[str, Any]) -> list[str]:
    """The charts of one test's scraped metrics (none when nothing was scraped)."""
    metrics = entry.get("metrics")
    if not metrics:
        return []
    loads = entry.get("loads", [])
    charts = [_expectation_chart(e, loads) for e in metrics.get("expectations", []) if "t" in e]
    return charts + _pinned_charts(metrics, loads)
