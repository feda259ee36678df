"""Human and machine output: sizes, tables, JSON, progress on a terminal."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable


def fmt_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


def fmt_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.2f} s"
    minutes, sec = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m {sec:02d}s" if hours else f"{minutes}m {sec:02d}s"


def print_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, sort_keys=False, default=str)
    sys.stdout.write("\n")


def print_json_line(obj) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")


def print_table(rows: Iterable[tuple], headers: tuple[str, ...]) -> None:
    rows = [tuple(str(c) for c in row) for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


class Progress:
    """Live progress for engines that report a text and, where they count bytes, ``completed``/``total``
    (check): the same rich line as create and extract (``cli/progress.py``)."""

    def __init__(self, enabled: bool):
        from .progress import LiveProgress

        self._live = LiveProgress(enabled)
        self.enabled = self._live.enabled

    def update(self, text: str, *, completed: float | None = None, total: float | None = None) -> None:
        if not self.enabled:
            return
        self._live.start("")
        self._live.update(counts=text, completed=completed, total=total)

    def finish(self) -> None:
        self._live.stop()
