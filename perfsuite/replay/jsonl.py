"""perfsuite's own capture format: JSON lines, written by a service's middleware.

The first line says what the file is and its version::

    {"perfsuite_capture": 1}

then one object per request, in the order they were written::

    {"t": 1764331200.123456, "method": "POST", "target": "/orders",
     "host": "127.0.0.1:8000", "headers": [["content-type", "application/json"]],
     "body": "{...}", "response": {"status": 201, "headers": [...], "body": "{...}"}}

``t`` is when the request arrived (seconds since the epoch). A body that is
not UTF-8 is written as ``body_b64`` instead of ``body``.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from perfsuite.errors import CaptureError
from perfsuite.replay.capture import Headers, ReadStats, Recorded, RecordedResponse, Stamped

__all__ = ["VERSION", "CaptureWriter", "read_jsonl"]

VERSION = 1
_KEY = "perfsuite_capture"


def _body(value: bytes) -> dict[str, str]:
    try:
        return {"body": value.decode()}
    except UnicodeDecodeError:
        return {"body_b64": base64.b64encode(value).decode()}


def _decoded(obj: dict[str, Any]) -> bytes | None:
    if "body_b64" in obj:
        return base64.b64decode(obj["body_b64"])
    body = obj.get("body")
    return None if body is None else str(body).encode()


def _headers(value: Any) -> Headers:
    return tuple((str(k), str(v)) for k, v in value or ())


class CaptureWriter:
    """Appends requests (and their responses) to a capture file; thread-safe."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        fresh = not path.exists() or path.stat().st_size == 0
        # Line-buffered: a service stopped by a signal leaves whole lines behind.
        self._file: IO[str] = path.open("a", encoding="utf-8", buffering=1)
        if fresh:
            self._file.write(json.dumps({_KEY: VERSION}) + "\n")

    def write(
        self,
        *,
        time: float,
        method: str,
        target: str,
        headers: Headers,
        body: bytes,
        host: str | None = None,
        response: RecordedResponse | None = None,
    ) -> None:
        """One request, as one line."""
        line: dict[str, Any] = {
            "t": round(time, 6),
            "method": method,
            "target": target,
            "host": host,
            "headers": [list(h) for h in headers],
            **_body(body),
        }
        if response is not None:
            answer: dict[str, Any] = {
                "status": response.status,
                "headers": [list(h) for h in response.headers],
            }
            if response.body is not None:
                answer.update(_body(response.body))
            line["response"] = answer
        text = json.dumps(line, separators=(",", ":")) + "\n"
        with self._lock:
            self._file.write(text)

    def close(self) -> None:
        """Flush and close the file."""
        with self._lock:
            self._file.close()


def _recorded(obj: Any, where: str) -> tuple[float, Recorded]:
    answer = obj.get("response")
    response = None
    if isinstance(answer, dict):
        response = RecordedResponse(
            status=int(answer["status"]),
            headers=_headers(answer.get("headers")),
            body=_decoded(answer),
        )
    return float(obj["t"]), Recorded(
        offset=0.0,
        method=str(obj["method"]).upper(),
        target=str(obj["target"]),
        headers=_headers(obj.get("headers")),
        body=_decoded(obj) or b"",
        host=obj.get("host"),
        response=response,
        where=where,
    )


def read_jsonl(stream: IO[bytes], name: str, stats: ReadStats) -> Iterator[Stamped]:
    """The requests of a perfsuite capture, in file order."""
    first = stream.readline()
    try:
        head = json.loads(first)
    except ValueError:
        head = None
    if not isinstance(head, dict) or _KEY not in head:
        raise CaptureError(f"{name}: not a perfsuite capture (no {{{_KEY!r}: ...}} first line)")
    if head[_KEY] != VERSION:
        raise CaptureError(
            f"{name}: a perfsuite capture of version {head[_KEY]!r}; this perfsuite "
            f"reads version {VERSION}"
        )
    for number, line in enumerate(stream, 2):
        where = f"{name}: line {number}"
        if not line.strip():
            continue
        try:
            time, item = _recorded(json.loads(line), where)
        except (ValueError, KeyError, TypeError, AttributeError):
            stats.skip("not a request object (t, method, target)", where)
            continue
        yield Stamped(time, number, item)
