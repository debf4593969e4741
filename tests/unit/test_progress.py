"""The live progress line: drawn on a terminal, silent elsewhere."""

from __future__ import annotations

import contextlib
import io
import os
import pty
import select

from perfsuite.load import Progress
from perfsuite.load.progress import LiveLine

PROGRESS = Progress(phase="stairs-3", elapsed=42, total=600, rps=987, p95_ms=12.5, errors=3)


def _read_all(fd: int) -> str:
    """Everything written to the pty: one read may return only a first chunk."""
    chunks = []
    while select.select([fd], [], [], 0.5)[0]:  # until nothing more comes for 0.5 s
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode()


def test_draws_on_a_terminal() -> None:
    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as tty:
            line = LiveLine(tty, enabled=True)
            line(PROGRESS)
            line.close()
        text = _read_all(leader)
    finally:
        os.close(leader)
        os.close(follower)
    assert "stairs-3" in text
    assert "42/600 s" in text
    assert "987 ok/s" in text
    assert "p95   12.5 ms" in text
    assert "errors 3" in text
    assert text.count("\r\x1b[2K") == 2  # drawn in place, then cleared


def test_silent_when_not_a_terminal() -> None:
    stream = io.StringIO()
    line = LiveLine(stream, enabled=True)
    line(PROGRESS)
    line.close()
    assert stream.getvalue() == ""


def test_silent_when_disabled() -> None:
    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as tty:
            LiveLine(tty, enabled=False)(PROGRESS)
        os.set_blocking(leader, False)
        with contextlib.suppress(BlockingIOError):  # BlockingIOError: nothing written at all
            assert os.read(leader, 4096) == b""
    finally:
        os.close(leader)
        os.close(follower)
