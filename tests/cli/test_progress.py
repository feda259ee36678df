"""The progress line's parts that are logic, not drawing: paths shortened in the middle, silence off a tty."""

from __future__ import annotations

import io

from rich.cells import cell_len
from rich.console import Console

from packvault.cli.progress import LiveProgress
from packvault.cli.progress_line import PathColumn, shorten_middle

LONG = "home/me/projects/packvault/src/packvault/archive/some/deeply/nested/dir/the-file-we-want.txt"


def test_short_paths_are_unchanged():
    assert shorten_middle("etc/hosts", 40) == "etc/hosts"
    assert shorten_middle("", 10) == ""


def test_long_paths_lose_their_middle_and_keep_the_file_name():
    for width in (20, 33, 40, 61):
        short = shorten_middle(LONG, width)
        assert cell_len(short) <= width
        assert width - 1 <= cell_len(short)  # the room is used
        assert short.startswith("home/") and "…" in short
        head, tail = short.split("…")
        assert LONG.startswith(head) and LONG.endswith(tail)
        assert len(tail) >= len(head)  # the end (the file name) gets the larger share
    assert shorten_middle(LONG, 40).endswith("the-file-we-want.txt")


def test_wide_characters_are_counted_in_cells():
    name = "写真/二〇二六年/旅行/とても長いファイルの名前.jpg"
    short = shorten_middle(name, 21)
    assert cell_len(short) <= 21 and short.endswith(".jpg") and "…" in short


def test_tiny_widths():
    assert shorten_middle(LONG, 1) == "…"
    assert shorten_middle(LONG, 0) == ""
    assert cell_len(shorten_middle(LONG, 2)) <= 2


def test_path_column_fits_what_the_terminal_leaves():
    console = Console(file=io.StringIO(), width=140, force_terminal=True)
    column = PathColumn(console, reserved=100)

    class Task:
        fields = {"path": LONG}

    text = column.render(Task()).plain
    assert cell_len(text) <= 40 and text.endswith("-we-want.txt")


def test_silent_off_a_terminal():
    out = io.StringIO()
    live = LiveProgress(True, console=Console(file=out, force_terminal=False))
    assert not live.enabled
    live.start("create")
    live.update(completed=10, counts="1 file", path=LONG)
    live.stop()
    assert out.getvalue() == ""
