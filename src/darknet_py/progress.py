"""Progress that fits where it runs: a tqdm bar where someone watches, plain lines in logs.

- A terminal on stderr: tqdm's bar, redrawn in place.
- A Jupyter / Colab notebook: tqdm.auto's widget.
- Anything else (a log file, a pipe, CI): whole lines, never `\\r`.
- `enabled=False`: nothing at all.
"""
from __future__ import annotations

import sys
from typing import Literal, Optional, TextIO

Mode = Literal["off", "bar", "lines"]
LINES_PER_RUN = 10  # in lines mode, a counter line at every tenth of the work
LINE_EVERY_UNKNOWN = 1000  # ... or every this many steps when the total is not known


def is_terminal(stream: Optional[TextIO]) -> bool:
    """True when `stream` is an interactive terminal (a bar would otherwise fill a log with `\\r`)."""
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False


def in_notebook() -> bool:
    """True inside a Jupyter or Colab kernel (where tqdm.auto draws a widget)."""
    ipython = sys.modules.get("IPython")  # never imported here: a kernel has already loaded it
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


def progress_mode(enabled: bool, stream: Optional[TextIO] = None) -> Mode:
    """How progress shows: 'bar' (a terminal or a notebook), 'lines' (logs, pipes) or 'off'."""
    if not enabled:
        return "off"
    if in_notebook() or is_terminal(stream if stream is not None else sys.stderr):
        return "bar"
    return "lines"


class Progress:
    """Progress over `total` steps (None: not known in advance), labelled `desc` (see the module
    docstring for where it goes).

    update(done, postfix, line): the bar shows `done`/`total` and `postfix`; in lines mode
    `line` is printed when given (every update: training prints darknet's line per iteration),
    otherwise `desc: done/total unit` at every tenth of the work and at the end (every 1000
    steps when the total is unknown).
    """

    def __init__(self, total: Optional[int], desc: str, *, enabled: bool = True, unit: str = "it",
                 stream: Optional[TextIO] = None) -> None:
        self.total = None if total is None else max(int(total), 0)
        self.desc = desc
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.mode: Mode = progress_mode(enabled, self.stream)
        self._next_line = 0
        self._bar = None
        if self.mode == "bar":
            options = dict(total=self.total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True, leave=True)
            try:
                from tqdm.auto import tqdm
                self._bar = tqdm(**options)
            except ImportError:  # a notebook without ipywidgets: tqdm.auto's widget cannot draw, text can
                from tqdm.std import tqdm
                self._bar = tqdm(**options)

    def update(self, done: int, postfix: str = "", line: Optional[str] = None) -> None:
        if self.mode == "bar":
            self._bar.n = min(int(done), self.total) if self.total else int(done)
            if postfix:
                self._bar.set_postfix_str(postfix, refresh=False)
            self._bar.refresh()
        elif self.mode == "lines":
            if line is not None:
                self.print(line)
            elif done >= self._next_line or (self.total is not None and done >= self.total):
                of = "" if self.total is None else f"/{self.total}"
                self.print(f"{self.desc}: {done}{of} {self.unit}" + (f" {postfix}" if postfix else ""))
                step = LINE_EVERY_UNKNOWN if self.total is None else max(self.total // LINES_PER_RUN, 1)
                self._next_line = done + step

    def print(self, text: str) -> None:
        """A whole line, also while a bar is shown (it is redrawn below the text)."""
        if self.mode == "off":
            return
        if self._bar is not None:
            self._bar.write(text, file=self.stream)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def close(self) -> None:
        """End the bar (safe to call twice)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self.mode = "lines" if self.mode == "bar" else self.mode

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
