"""GoReplay's ``.gor`` files (``--output-file``), read payload by payload.

The format, from GoReplay's ``protocol.go`` and ``input_file.go``: payloads
separated by ``"\\n🐵🙈🙉\\n"``; each starts with a line ``<type> <id>
<timestamp ns> [<latency ns>]`` (type 1 a request, 2 its original response,
3 a response to a replay) followed by the raw HTTP/1.x message. A response
is paired with its request by id; a request waits for its response at most
``depth`` payloads, then goes on without it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import replace
from typing import IO

from perfsuite.replay.capture import Headers, ReadStats, Recorded, RecordedResponse, Stamped

__all__ = ["SEPARATOR", "read_gor"]

SEPARATOR = "\n🐵🙈🙉\n".encode()


def _payloads(stream: IO[bytes]) -> Iterator[tuple[int, bytes]]:
    """Each payload (without its separator), with the line it starts on."""
    mark = SEPARATOR[1:]
    buffer: list[bytes] = []
    start = number = 1
    for number, line in enumerate(stream, 1):
        if line == mark:
            yield start, b"".join(buffer)[:-1]  # its last newline is the separator's
            buffer = []
            start = number + 1
        else:
            buffer.append(line)
    if buffer and b"".join(buffer).strip():
        yield start, b"".join(buffer)


def _message(raw: bytes) -> tuple[str, Headers, bytes] | None:
    """The start line, headers and body of a raw HTTP/1.x message."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        head, sep, body = raw.partition(b"\n\n")
    lines = head.decode("latin-1").splitlines()
    if not lines:
        return None
    headers = tuple(
        (name.strip(), value.strip())
        for name, colon, value in (line.partition(":") for line in lines[1:])
        if colon
    )
    if any(k.lower() == "transfer-encoding" and "chunked" in v.lower() for k, v in headers):
        body = _unchunk(body)
        headers = tuple((k, v) for k, v in headers if k.lower() != "transfer-encoding")
    return lines[0], headers, body


def _unchunk(body: bytes) -> bytes:
    out, rest = [], body
    while rest:
        size_line, _, rest = rest.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out.append(rest[:size])
        rest = rest[size + 2 :]
    return b"".join(out)


def _request(raw: bytes, where: str) -> Recorded | None:
    message = _message(raw)
    if message is None:
        return None
    line, headers, body = message
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/"):
        return None
    host = next((v for k, v in headers if k.lower() == "host"), None)
    return Recorded(
        offset=0.0,
        method=parts[0].upper(),
        target=parts[1],
        headers=headers,
        body=body,
        host=host,
        where=where,
    )


def _response(raw: bytes) -> RecordedResponse | None:
    message = _message(raw)
    if message is None:
        return None
    line, headers, body = message
    parts = line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit():
        return None
    return RecordedResponse(status=int(parts[1]), headers=headers, body=body)


def read_gor(stream: IO[bytes], name: str, stats: ReadStats, depth: int) -> Iterator[Stamped]:
    """The requests of a .gor file, with their recorded responses, in file order."""
    pending: OrderedDict[bytes, tuple[float, int, Recorded, RecordedResponse | None]] = (
        OrderedDict()
    )

    def ready(flush: bool) -> Iterator[Stamped]:
        while pending:
            key, (time, order, item, response) = next(iter(pending.items()))
            if response is None and not flush and len(pending) <= depth:
                return
            del pending[key]
            if response is not None:
                item = replace(item, response=response)
            yield Stamped(time, order, item)

    for number, payload in _payloads(stream):
        where = f"{name}: line {number}"
        meta, _, raw = payload.partition(b"\n")
        fields = meta.split(b" ")
        if len(fields) < 3 or fields[0] not in (b"1", b"2", b"3") or not fields[2].isdigit():
            stats.skip("not a GoReplay payload header (<type> <id> <timestamp>)", where)
            continue
        kind, key, stamp = fields[0], fields[1], int(fields[2]) / 1e9
        if kind == b"1":
            request = _request(raw, where)
            if request is None:
                stats.skip("not an HTTP request", where)
                continue
            pending[key] = (stamp, number, request, None)
        elif kind == b"2":
            response = _response(raw)
            if key in pending and response is not None:
                time, order, request, _ = pending[key]
                pending[key] = (time, order, request, response)
            else:
                stats.skip("a response without its request", where)
        else:
            stats.skip("a replayed response (type 3)", where)
        yield from ready(flush=False)
    yield from ready(flush=True)
