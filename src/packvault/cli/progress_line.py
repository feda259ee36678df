"""The rich-drawn progress line of ``cli/progress.py``: its columns, and the path shortened in the middle.

Kept apart so that a command without ``--progress`` (or not on a terminal) never imports rich (~40 ms of
start-up for every command).
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from .output import fmt_size

ELLIPSIS = "…"
MIN_PATH_CELLS = 12
RESERVED_CELLS = 75  # what the other columns of the line take, about; the path gets the rest


def shorten_middle(text: str, width: int) -> str:
    """``text`` in at most ``width`` terminal cells: its middle replaced by an ellipsis when too long.

    The end gets the larger half: it is the file name; the start says where in the tree it is.  Counted in
    cells, not characters, so wide (CJK) names fit too.
    """
    if cell_len(text) <= width:
        return text
    if width <= 1:
        return ELLIPSIS[:width]
    tail_cells = width // 2
    head_cells = width - 1 - tail_cells
    return _first_cells(text, head_cells) + ELLIPSIS + _last_cells(text, tail_cells)


def _first_cells(text: str, cells: int) -> str:
    """The longest start of ``text`` that fits in ``cells`` cells."""
    used = 0
    for end, char in enumerate(text):
        used += cell_len(char)
        if used > cells:
            return text[:end]
    return text


def _last_cells(text: str, cells: int) -> str:
    """The longest end of ``text`` that fits in ``cells`` cells."""
    used = 0
    for start in range(len(text) - 1, -1, -1):
        used += cell_len(text[start])
        if used > cells:
            return text[start + 1 :]
    return text


class PathColumn(ProgressColumn):
    """The task's ``path`` field, shortened in the middle to what the other columns leave of the line."""

    def __init__(self, console: Console, reserved: int):
        super().__init__()
        self.console = console
        self.reserved = reserved  # cells the other columns take

    def render(self, task: Task) -> Text:
        width = max(MIN_PATH_CELLS, self.console.width - self.reserved)
        return Text(shorten_middle(str(task.fields.get("path", "")), width), style="progress.description")


class _BarColumn(BarColumn):
    """A bar only once the total is known."""

    def render(self, task: Task):
        return super().render(task) if task.total is not None else Text("")


class _BytesColumn(ProgressColumn):
    """Bytes done, and of how many when the total is known (binary units, as everywhere in Packvault)."""

    def render(self, task: Task) -> Text:
        done = fmt_size(task.completed)
        return Text(f"{done} of {fmt_size(task.total)}" if task.total is not None else done, style="progress.download")


class _RateColumn(ProgressColumn):
    """Bytes per second over rich's recent window (binary units, like the sizes)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{fmt_size(speed)}/s" if speed is not None else "", style="progress.data.speed")


class _EtaColumn(TimeRemainingColumn):
    """The time left, only where the total is known."""

    def render(self, task: Task) -> Text:
        return super().render(task) if task.total is not None else Text("")



class RichLine:
    """One rich ``Progress`` line on ``console`` (stderr unless given)."""

    def __init__(self, console: Console | None = None):
        self.console = console or Console(stderr=True)
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def start(self, description: str, total: float | None) -> None:
        if self._progress is not None:
            return
        columns: list[ProgressColumn] = [
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TextColumn("{task.fields[counts]}"),
            _BarColumn(bar_width=16),
            _BytesColumn(),
            _RateColumn(),
            _EtaColumn(),
            TimeElapsedColumn(),
            PathColumn(self.console, RESERVED_CELLS),
        ]
        self._progress = Progress(*columns, console=self.console, transient=True, refresh_per_second=8)
        self._task = self._progress.add_task(description, total=total, counts="", path="")
        self._progress.start()

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self._task = None

    def update(self, *, completed, total, description, **fields) -> None:
        if self._progress is None or self._task is None:
            return
        self._progress.update(self._task, completed=completed, total=total, description=description, **fields)

    def print(self, text: str) -> bool:
        """Print above the live line; False when no line is shown (the caller prints plainly)."""
        if self._progress is None:
            return False
        self._progress.console.print(Text(text), soft_wrap=True, highlight=False)
        return True
