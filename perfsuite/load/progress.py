"""The live line during long phases: phase, elapsed / total, successful req/s, p95, errors."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TextIO

from rich.console import Console
from rich.text import Text

from perfsuite.load.engine import Progress

__all__ = ["LiveLine", "format_progress"]


def format_progress(p: Progress) -> Text:
    """One styled line for a progress report."""
    p95 = "-" if math.isnan(p.p95_ms) else f"{p.p95_ms:.1f} ms"
    text = Text()
    text.append("perfsuite ", style="bold cyan")
    text.append(f"{p.phase} ", style="bold")
    text.append(f"{p.elapsed:>5.0f}/{p.total:.0f} s  {p.rps:>8.0f} ok/s  p95 {p95:>9}  ")
    text.append(f"errors {p.errors}", style="red" if p.errors else "green")
    return text


class LiveLine:
    """Redraws one terminal line in place; silent when not a terminal.

    ``wrap`` lets pytest suspend its output capture around each redraw.
    """

    def __init__(
        self,
        stream: TextIO,
        *,
        enabled: bool,
        wrap: Callable[[Callable[[], None]], None] | None = None,
    ) -> None:
        self.enabled = enabled and stream.isatty()
        self._console = Console(file=stream, force_terminal=True, highlight=False)
        self._wrap = wrap or (lambda draw: draw())
        self._drawn = False

    def __call__(self, progress: Progress) -> None:
        if not self.enabled:
            return
        line = format_progress(progress)

        def draw() -> None:
            self._console.file.write("\r\x1b[2K")
            self._console.print(line, end="")
            self._console.file.flush()

        self._wrap(draw)
        self._drawn = True

    def close(self) -> None:
        """Clear the line so that what follows starts clean."""
        if self.enabled and self._drawn:

            def clear() -> None:
                self._console.file.write("\r\x1b[2K")
                self._console.file.flush()

            self._wrap(clear)
