"""Live progress on the terminal for create, extract and check, drawn with ``rich.progress``.

The engine only counts (``CreateStats``, ``ExtractStats``, check's pack counter) and calls back; this module
turns those calls into one live line on stderr: counts, bytes, a rate, an ETA where the total is known,
and the current path shortened *in the middle*, so that the file name at its end stays visible.

Rich refreshes the line from its own thread a few times a second; an update from the engine only stores
numbers, so calling it per chunk costs next to nothing.  Warnings printed while the line is live go through
``LiveProgress.print``, above the line instead of through it.  When disabled (no ``--progress``, or stderr
is not a terminal) every method is a no-op, and ``print`` writes plain lines to stderr.
"""

from __future__ import annotations

import sys
from types import TracebackType


class LiveProgress:
    """One live progress line on stderr (a context manager); silent unless enabled and stderr is a tty.

    The line: what runs, a count text (files, new bytes, packs), a bar, bytes done [of total], the rate,
    the time left (bar and time left only once a total is given), the time spent, and the current path.
    rich is imported only when the line is shown (``progress_line.py``).
    """

    def __init__(self, enabled: bool, *, console=None):
        self._line = None
        if enabled and (console is not None or sys.stderr.isatty()):
            from .progress_line import RichLine

            line = RichLine(console)
            if line.console.is_terminal:
                self._line = line
        self.enabled = self._line is not None

    def start(self, description: str, *, total: float | None = None) -> LiveProgress:
        if self._line is not None:
            self._line.start(description, total)
        return self

    def stop(self) -> None:
        if self._line is not None:
            self._line.stop()

    def __enter__(self) -> LiveProgress:
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def update(
        self,
        *,
        completed: float | None = None,
        total: float | None = None,
        counts: str | None = None,
        path: str | None = None,
        description: str | None = None,
    ) -> None:
        """Set what is shown; cheap (rich draws from its own thread) and thread-safe (rich locks the task)."""
        if self._line is None:
            return
        fields: dict = {}
        if counts is not None:
            fields["counts"] = counts
        if path is not None:
            fields["path"] = path
        self._line.update(completed=completed, total=total, description=description, **fields)

    def print(self, text: str) -> None:
        """A line on stderr (a warning, a note), above the live line when it is shown."""
        if self._line is None or not self._line.print(text):
            print(text, file=sys.stderr)
