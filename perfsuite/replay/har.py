"""HAR 1.2 (browsers' and proxies' exports), read entry by entry with ijson.

A HAR is one JSON document, often hundreds of megabytes with its response
bodies: ``json.load`` would hold it all. ijson's C parser streams
``log.entries`` one entry at a time instead (a library where it serves).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from datetime import datetime
from typing import IO, Any
from urllib.parse import urlencode, urlsplit

import ijson

from perfsuite.errors import CaptureError
from perfsuite.replay.capture import Headers, ReadStats, Recorded, RecordedResponse, Stamped

__all__ = ["read_har"]


def _headers(entries: Any) -> Headers:
    # HTTP/2 and HTTP/3 captures list pseudo-headers (":authority"): not headers on HTTP/1.1.
    return tuple(
        (str(h["name"]), str(h["value"]))
        for h in entries or ()
        if isinstance(h, dict) and not str(h.get("name", ":")).startswith(":")
    )


def _text(content: Any) -> bytes | None:
    """A postData or response content's bytes (None: not kept by the exporter)."""
    if not isinstance(content, dict):
        return None
    text = content.get("text")
    if text is None:
        params = content.get("params")
        if params:  # a form listed as parameters only
            return urlencode([(p.get("name", ""), p.get("value", "")) for p in params]).encode()
        return None
    if content.get("encoding") == "base64":
        return base64.b64decode(str(text), validate=False)
    return str(text).encode()


def _entry(entry: Any, where: str) -> tuple[float, Recorded] | str:
    """The entry's start time and request, or why it is left out."""
    try:
        request = entry["request"]
        method = str(request["method"]).upper()
        url = urlsplit(str(request["url"]))
        started = datetime.fromisoformat(str(entry["startedDateTime"])).timestamp()
    except (KeyError, TypeError, ValueError):
        return "not a HAR 1.2 entry (request.method, request.url, startedDateTime)"
    if url.scheme not in ("http", "https"):
        return f"not an http(s) URL ({url.scheme or 'none'})"
    response = entry.get("response")
    recorded = None
    # Status 0: the exporter saw no answer (blocked, aborted); there is nothing to compare.
    if isinstance(response, dict) and int(response.get("status") or 0) > 0:
        recorded = RecordedResponse(
            status=int(response["status"]),
            headers=_headers(response.get("headers")),
            body=_text(response.get("content")),
        )
    body = _text(request.get("postData"))
    return started, Recorded(
        offset=0.0,
        method=method,
        target=(url.path or "/") + (f"?{url.query}" if url.query else ""),
        headers=_headers(request.get("headers")),
        body=b"" if body is None else body,
        host=url.netloc,
        response=recorded,
        where=where,
    )


def read_har(stream: IO[bytes], name: str, stats: ReadStats) -> Iterator[Stamped]:
    """The requests of a HAR file, in file order, with their start times."""
    try:
        for i, entry in enumerate(ijson.items(stream, "log.entries.item", use_float=True)):
            where = f"{name}: entry {i + 1}"
            found = _entry(entry, where)
            if isinstance(found, str):
                stats.skip(found, where)
                continue
            yield Stamped(found[0], i, found[1])
    except (ijson.JSONError, binascii.Error) as exc:
        raise CaptureError(f"{name}: not a readable HAR file: {exc}") from None
