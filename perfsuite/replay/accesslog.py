"""Access logs: nginx's ``combined`` (also Apache's), or any nginx ``log_format``.

A log line has no headers but those its format names, no body, and, with
``$time_local`` or ``$time_iso8601``, one-second times. So: the requests of
one second are spread evenly within it (the log cannot say more), their
bodies are unknown (replay sends GET and HEAD; other methods need a body
and are refused unless written with one), and ``$http_<name>`` fields become
headers. With ``$msec`` the time is to the millisecond and is used as it is;
with ``$request_time`` too, the request's start is the log time less it
(nginx writes a line when the request ends).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import IO

from perfsuite.errors import CaptureError
from perfsuite.replay.capture import ReadStats, Recorded, RecordedResponse, Stamped

__all__ = ["COMBINED", "compile_format", "read_access_log", "text_lines"]

# nginx's predefined format; Apache's "combined" LogFormat writes the same line.
COMBINED = (
    '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
    '"$http_referer" "$http_user_agent"'
)
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")
_TIMES = ("msec", "time_iso8601", "time_local")
# A second is closed (its requests spread) once a line this many seconds later is read:
# lines are written when requests end, so a slow request's line comes a little late.
_SETTLE = 2


def compile_format(log_format: str) -> re.Pattern[str]:
    """A regex for the lines of an nginx ``log_format`` (each ``$variable`` a group)."""
    parts: list[str] = []
    position = 0
    names: set[str] = set()
    for match in _VAR.finditer(log_format):
        name = match.group(1) or match.group(2)
        literal = log_format[position : match.start()]
        parts.append(re.escape(literal))
        after = log_format[match.end() : match.end() + 1]
        # Up to the next separator: a quoted field ends at its quote (nginx escapes
        # quotes inside as \x22), a bracketed one at its bracket.
        stop = re.escape(after) if after else ""
        body = f"[^{stop}]*" if after in ('"', "]") else (".*?" if after else ".*")
        parts.append(f"(?P<{name}>{body})" if name not in names else f"(?:{body})")
        names.add(name)
        position = match.end()
    parts.append(re.escape(log_format[position:]))
    if not names & set(_TIMES) or "request" not in names:
        raise CaptureError(
            f"log format {log_format!r}: it needs $request and a time (${', $'.join(_TIMES)})"
        )
    return re.compile("^" + "".join(parts) + "$")


@functools.lru_cache(maxsize=64)
def _local_time(text: str) -> float:
    # strptime costs ~10 µs; the lines of one second share their text: parsed once.
    return datetime.strptime(text, "%d/%b/%Y:%H:%M:%S %z").timestamp()


def _time(fields: dict[str, str]) -> tuple[float, bool]:
    """The line's time (seconds since the epoch) and whether it is to the second only."""
    if "msec" in fields:
        return float(fields["msec"]), False
    if "time_iso8601" in fields:
        return datetime.fromisoformat(fields["time_iso8601"]).timestamp(), True
    return _local_time(fields["time_local"]), True


def _header_fields(pattern: re.Pattern[str]) -> tuple[tuple[str, str], ...]:
    """(field, header name) of the format's ``$http_*`` variables, found once per file."""
    return tuple(
        (name, name[5:].replace("_", "-"))
        for name in pattern.groupindex
        if name.startswith("http_") and name != "http_host"
    )


def _recorded(
    fields: dict[str, str], where: str, header_fields: tuple[tuple[str, str], ...]
) -> Recorded | str:
    parts = fields["request"].split(" ")
    if len(parts) != 3 or not parts[0].isalpha() or not parts[1].startswith(("/", "http")):
        return "not a request line (garbage, or a TLS handshake sent as plain HTTP)"
    method, target, _ = parts
    if target.startswith("http"):  # a proxy's absolute form
        target = "/" + target.split("/", 3)[3] if target.count("/") >= 3 else "/"
    headers = tuple(
        (header, value)
        for name, header in header_fields
        if (value := fields.get(name)) is not None and value not in ("-", "")
    )
    status = fields.get("status", "")
    return Recorded(
        offset=0.0,
        method=method.upper(),
        target=target,
        headers=headers,
        body=None,
        host=fields.get("host") or fields.get("http_host") or None,
        response=RecordedResponse(status=int(status)) if status.isdigit() else None,
        where=where,
    )


def _spread(second: float, items: list[tuple[int, Recorded]]) -> Iterator[Stamped]:
    for i, (order, item) in enumerate(items):
        yield Stamped(second + (i + 0.5) / len(items), order, item)


def read_access_log(
    lines: Iterable[str], name: str, stats: ReadStats, log_format: str = COMBINED
) -> Iterator[Stamped]:
    """The requests of an access log, with their times (spread within their second)."""
    pattern = compile_format(log_format)
    header_fields = _header_fields(pattern)
    pending: dict[float, list[tuple[int, Recorded]]] = {}
    for number, line in enumerate(lines, 1):
        where = f"{name}: line {number}"
        match = pattern.match(line.rstrip("\r\n"))
        if match is None:
            stats.skip("does not match the log format", where)
            continue
        fields = {k: v for k, v in match.groupdict().items() if v is not None}
        try:
            time, coarse = _time(fields)
            start = time - float(fields.get("request_time", 0) or 0)
        except ValueError:
            stats.skip("unreadable time", where)
            continue
        item = _recorded(fields, where, header_fields)
        if isinstance(item, str):
            stats.skip(item, where)
            continue
        if not coarse:
            yield Stamped(start, number, item)
            continue
        pending.setdefault(time, []).append((number, item))
        for second in sorted(s for s in pending if s < time - _SETTLE):
            yield from _spread(second, pending.pop(second))
    for second in sorted(pending):
        yield from _spread(second, pending[second])


def text_lines(stream: IO[bytes]) -> Iterator[str]:
    """Lines as text; bytes that are not UTF-8 (nginx logs raw bytes) kept as escapes."""
    for raw in stream:
        yield raw.decode("utf-8", errors="backslashreplace")
