"""Traffic captures: read HAR, access logs, GoReplay files and perfsuite's own JSON lines.

``read_capture(path)`` gives a :class:`Capture`: iterating it reads the file
lazily (again on each iteration), yielding :class:`Recorded` requests in time
order with their offsets from the first one; ``capture.stats`` says what the
last reading left out, and why. Gzipped files (``.gz``) are read as they are.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Literal, cast, get_args

from perfsuite.errors import CaptureError
from perfsuite.replay.accesslog import COMBINED, compile_format, read_access_log, text_lines
from perfsuite.replay.capture import ReadStats, Recorded, RecordedResponse, Stamped, in_time_order
from perfsuite.replay.gor import SEPARATOR, read_gor
from perfsuite.replay.har import read_har
from perfsuite.replay.jsonl import CaptureWriter, read_jsonl

__all__ = [
    "COMBINED",
    "Capture",
    "CaptureFormat",
    "CaptureWriter",
    "ReadStats",
    "Recorded",
    "RecordedResponse",
    "read_capture",
]

CaptureFormat = Literal["har", "access-log", "gor", "jsonl"]
_BY_SUFFIX: dict[str, CaptureFormat] = {
    ".har": "har",
    ".gor": "gor",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".log": "access-log",
}


def _open(path: Path) -> IO[bytes]:
    if path.suffix == ".gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    return path.open("rb")


def _sniff(path: Path) -> CaptureFormat:
    """The format, from the name (less a .gz), or else from the first bytes."""
    name = path.with_suffix("") if path.suffix == ".gz" else path
    if name.suffix in _BY_SUFFIX:
        return _BY_SUFFIX[name.suffix]
    try:
        with _open(path) as stream:
            head = stream.read(65536)
    except (OSError, EOFError) as exc:
        raise CaptureError(f"{path}: cannot be read: {exc}") from None
    start = head.lstrip()
    if start.startswith(b"{") and b"perfsuite_capture" in start.split(b"\n", 1)[0]:
        return "jsonl"
    if start.startswith(b"{"):
        return "har"
    if SEPARATOR in head or head[:2] in (b"1 ", b"2 "):
        return "gor"
    return "access-log"


class Capture:
    """A capture file, read lazily each time it is iterated."""

    def __init__(
        self,
        path: Path,
        format: CaptureFormat,
        *,
        log_format: str = COMBINED,
        depth: int = 10_000,
    ) -> None:
        self.path = path
        self.format = format
        self.log_format = log_format
        self.depth = depth
        self.stats = ReadStats()

    def __repr__(self) -> str:
        return f"Capture({str(self.path)!r}, format={self.format!r})"

    def _stamped(self, stream: IO[bytes]) -> Iterator[Stamped]:
        name = self.path.name
        if self.format == "har":
            return read_har(stream, name, self.stats)
        if self.format == "gor":
            return read_gor(stream, name, self.stats, self.depth)
        if self.format == "jsonl":
            return read_jsonl(stream, name, self.stats)
        return read_access_log(text_lines(stream), name, self.stats, self.log_format)

    def __iter__(self) -> Iterator[Recorded]:
        self.stats = ReadStats()
        with ExitStack() as stack:
            try:
                stream = stack.enter_context(_open(self.path))
            except OSError as exc:
                raise CaptureError(f"{self.path}: cannot be read: {exc}") from None
            try:
                yield from in_time_order(self._stamped(stream), self.stats, depth=self.depth)
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise CaptureError(f"{self.path}: cannot be read: {exc}") from None


def read_capture(
    path: str | Path,
    format: CaptureFormat | Literal["auto"] = "auto",
    *,
    log_format: str = COMBINED,
    depth: int = 10_000,
) -> Capture:
    """A capture file (the format from its name or first bytes unless given).

    ``log_format`` is an nginx ``log_format`` for access logs (default: combined);
    ``depth`` how many requests are held to put a file back in time order.
    """
    path = Path(path)
    if not path.is_file():
        raise CaptureError(f"{path}: no such capture file")
    if format != "auto" and format not in get_args(CaptureFormat):
        known = ", ".join(get_args(CaptureFormat))
        raise CaptureError(f"capture format {format!r}: expected auto, {known}")
    if depth < 1:
        raise CaptureError(f"depth: expected at least 1, got {depth}")
    chosen = _sniff(path) if format == "auto" else format
    if chosen == "access-log":
        compile_format(log_format)  # a bad format fails here, before any reading
    return Capture(path, chosen, log_format=log_format, depth=depth)
