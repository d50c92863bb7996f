"""A one-line progress bar redrawn in place on a terminal stream (stderr by default)."""
from __future__ import annotations

import sys
from typing import Optional, TextIO


def is_terminal(stream: Optional[TextIO]) -> bool:
    """True when `stream` is an interactive terminal (a bar would otherwise fill a log with `\\r`)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


class ProgressBar:
    """`prefix [=========           ] done/total suffix`, redrawn on each update().

    The bar is drawn with a carriage return, so the stream should be a terminal; callers that
    write to files or pipes print whole lines instead (see is_terminal). `width` is the bar's
    length in characters.
    """

    def __init__(self, total: int, *, prefix: str = "", stream: Optional[TextIO] = None, width: int = 30):
        self.total = max(int(total), 1)
        self.prefix = prefix
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._drawn = 0  # characters of the last line, so a shorter line can blank the rest
        self._open = False

    def update(self, done: int, suffix: str = "") -> None:
        done = min(max(int(done), 0), self.total)
        filled = self.width * done // self.total
        bar = "=" * filled + " " * (self.width - filled)
        line = f"{self.prefix}[{bar}] {done}/{self.total}" + (f" {suffix}" if suffix else "")
        padding = " " * max(self._drawn - len(line), 0)
        self.stream.write(f"\r{line}{padding}")
        self.stream.flush()
        self._drawn = len(line)
        self._open = True

    def close(self) -> None:
        """End the line (safe to call twice, or without any update)."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
