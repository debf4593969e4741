"""What a test's replicas did, from its run record: the lag (``replica_lag``) as
lines for the terminal and per second a chart beside the load, and the stale
reads of the endpoints that judge them."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any

from perfsuite.report.rows import stale_rows
from perfsuite.report.svg import PALETTE, Axes, Line, VLine, chart

__all__ = ["lag_html", "lag_ms", "lag_text", "stale_html"]


def lag_ms(value: float | None) -> str:
    """A lag (milliseconds) in ms, or in seconds from one second on."""
    if value is None:
        return "-"
    return f"{value / 1000:,.2f} s" if value >= 1000 else f"{value:,.1f} ms"


def lag_text(lag: Mapping[str, Any]) -> str:
    """Per replica and phase: heartbeats, the lag's percentiles, those not applied."""
    lines = []
    for row in lag["phases"]:
        if not row["heartbeats"]:
            continue
        pending = (
            f"; {row['pending']} not applied by the end (counted with their wait so far)"
            if row["pending"]
            else ""
        )
        lines.append(
            f"{row['replica']}, {row['phase']} ({row['role']}): {row['heartbeats']} heartbeats, "
            f"lag p50 {lag_ms(row['p50'])}, p95 {lag_ms(row['p95'])}, p99 {lag_ms(row['p99'])}, "
            f"max {lag_ms(row['max'])}{pending}"
        )
    lines += [f"stopped: {error}" for error in lag.get("errors", [])]
    lines.append(
        "lag: from a heartbeat's write on the primary to its apply on the replica "
        "(each replica evaluates the heartbeat's SYSDATE when it applies it)"
    )
    return "\n".join(lines)


def _chart(lag: Mapping[str, Any], load: Mapping[str, Any] | None, title: str) -> str:
    by_replica: dict[str, list[Mapping[str, Any]]] = {}
    for second in lag["seconds"]:
        by_replica.setdefault(second["replica"], []).append(second)
    lines = []
    for i, (replica, seconds) in enumerate(by_replica.items()):
        xs = [float(s["t"]) for s in seconds]
        color = PALETTE[i % len(PALETTE)]
        lines.append(
            Line(name=f"{replica} p99", xs=xs, ys=[s["p99"] for s in seconds], color=color)
        )
        lines.append(
            Line(
                name=f"{replica} max",
                xs=xs,
                ys=[s["max"] for s in seconds],
                color=color,
                dashed=True,
            )
        )
    phases: Sequence[Mapping[str, Any]] = load["phases"] if load else ()
    return chart(
        title,
        lines,
        axes=Axes(x_title="seconds", y_title="lag (ms)"),
        vlines=[VLine(x=float(p["start"]), label=p["name"], color="#777") for p in phases],
        kind="replica-lag",
    )


def lag_html(entry: Mapping[str, Any]) -> str:
    """Each load's lag per second (a chart) and its lines ("" without replicas)."""
    lags = entry.get("replica_lag") or []
    loads = entry.get("loads", [])
    parts = []
    for i, lag in enumerate(lags):
        if lag is None:
            continue
        which = f", load {i + 1}" if len(lags) > 1 else ""
        parts.append(f"<h3>Replica lag{which}</h3>")
        parts.append(_chart(lag, loads[i] if i < len(loads) else None, f"replica lag{which}"))
        parts.append(f"<pre>{html.escape(lag_text(lag))}</pre>")
    return "".join(parts)


def stale_html(entry: Mapping[str, Any]) -> str:
    """The stale reads of each endpoint with a ``stale=`` predicate ("" without)."""
    body = [
        f"<tr><td>{html.escape(r.endpoint)}</td><td class=n>{r.stale:,}</td>"
        f"<td class=n>{r.ok:,}</td><td class=n>{r.rate:.2%}</td></tr>"
        for r in stale_rows([entry])
    ]
    if not body:
        return ""
    head = "<tr><th>endpoint</th><th>stale</th><th>of successes</th><th>rate</th></tr>"
    return (
        "<h3>Stale reads (measured phases)</h3>"
        "<p>Successes that did not hold the write made before them (a read-your-writes "
        "violation, by the request's <code>stale=</code> predicate).</p>"
        f"<table>{head}{''.join(body)}</table>"
    )
