"""A compared replay's differences in the HTML report, read from a run record's ``diffs``."""

from __future__ import annotations

import html
from collections.abc import Mapping
from typing import Any

__all__ = ["diffs_html"]


def diffs_html(entry: Mapping[str, Any]) -> str:
    """Per compared replay and endpoint: answers that differ, the noise, and each field
    that differs with its masked examples ("" when the test compared no answers)."""
    parts = []
    for diffs in entry.get("diffs") or []:
        parts.append("<h3>Replayed answers compared</h3><table><tr>")
        parts.append("<th>endpoint</th><th>differ</th><th>compared</th><th>rate</th>")
        parts.append("<th>noise</th><th>fields that differ (examples)</th></tr>")
        for endpoint, d in sorted(diffs.items()):
            css = ' class="regressed"' if d["differing"] else ""
            fields = []
            for name, n in sorted(d["fields"].items(), key=lambda x: (-x[1], x[0])):
                shown = "; ".join(
                    f"{html.escape(e['target'])}: {html.escape(e['reference'])} &rarr; "
                    f"{html.escape(e['candidate'])}"
                    for e in d["examples"].get(name, [])
                )
                fields.append(f"<b>{html.escape(name)}</b> ({n}) {shown}")
            parts.append(
                f"<tr{css}><td>{html.escape(endpoint)}</td><td>{d['differing']:,}</td>"
                f"<td>{d['compared']:,}</td><td>{d['rate']:.2%}</td>"
                f"<td>{html.escape(', '.join(d['noise'])) or '-'}</td>"
                f"<td>{'<br>'.join(fields) or '-'}</td></tr>"
            )
        parts.append("</table>")
    return "".join(parts)
