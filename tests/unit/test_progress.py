"""The live progress line: drawn on a terminal, silent elsewhere."""

from __future__ import annotations

import contextlib
import io
import os
import pty

from perfsuite.load import Progress
from perfsuite.load.progress import LiveLine

PROGRESS = Progress(phase="stairs-3", elapsed=42, total=600, rps=987, p95_ms=12.5, errors=3)


def test_draws_on_a_terminal() -> None:
    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "w", closefd=False) as tty:
            line = LiveLine(tty, enabled=True)
            line(PROGRESS)
            line.close()
        text = os.read(leader, 4096).decode()
    finally:
        os.close(leader)
        os.close(follower)
    assert "stairs-3" in text
    assert "42/600 s" in text
    assert "987 req/s" in text
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
