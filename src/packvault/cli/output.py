"""Human and machine output: sizes, tables, JSON, progress on a terminal, names made safe to print."""

from __future__ import annotations

import base64
import json
import re
import sys
from collections.abc import Iterable


def _escape_table() -> dict[int, str]:
    table: dict[int, str] = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}
    table.update({ord("\\"): "\\\\", ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
    # C1 controls and the characters that reorder or break lines on a terminal, as \uXXXX (a raw byte
    # 0x80 that is not UTF-8 prints as \x80: the two must not look alike)
    for c in (*range(0x80, 0xA0), 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x2028, 0x2029):
        table[c] = f"\\u{c:04x}"
    # bytes that are not UTF-8 arrive as surrogates (surrogateescape): print the byte
    table.update({0xDC80 + i: f"\\x{0x80 + i:02x}" for i in range(128)})
    return table


_ESCAPES = _escape_table()
_UNSAFE = re.compile("[" + "".join(re.escape(chr(c)) for c in _ESCAPES if c != ord("\\")) + "]")


def has_control_characters(text: str) -> bool:
    """True if ``text`` holds anything ``escape_name`` would escape other than a backslash."""
    return _UNSAFE.search(text) is not None


def escape_name(name: str | bytes) -> str:
    """A file or archive name that is safe to print on a terminal and says exactly what the name is.

    Control characters (newlines, ESC, ...) print as ``\\n``, ``\\x1b``; bytes that are not UTF-8 as
    ``\\xNN``; C1 controls and bidirectional overrides as ``\\uXXXX``; a backslash as ``\\\\``.  So a name
    can neither move the cursor, recolour the terminal or fake a second line, nor be confused with another
    name.  ``str.translate`` does the work in C.
    """
    text = name.decode("utf-8", "surrogateescape") if isinstance(name, bytes) else name
    if text.isprintable() and "\\" not in text:
        return text
    return text.translate(_ESCAPES)


def name_fields(key: str, raw: bytes) -> dict[str, str]:
    """A name for JSON: ``{key: text}``, plus ``{key}_bytes`` (base64 of the exact bytes) when the name is not
    UTF-8; the text then shows the undecodable bytes as ``\\xNN``, so nothing is lost and nothing is guessed."""
    try:
        return {key: raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {
            key: raw.decode("utf-8", "backslashreplace"),
            f"{key}_bytes": base64.b64encode(raw).decode("ascii"),
        }


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
