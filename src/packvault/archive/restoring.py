"""What every restore shares, to a directory (``extract.py``) or to a bucket (``s3restore.py``): its
statistics, the selection of items by PATH arguments, the path an item gets under ``--strip-components``,
and the messages about damaged or unrestorable items."""

from __future__ import annotations

import errno
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from . import items as it

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@dataclass
class ExtractStats:
    nfiles: int = 0
    ndirs: int = 0
    nother: int = 0
    nskipped: int = 0  # existing entries kept by the overwrite policy (and what lies below a kept one)
    ndeleted: int = 0  # entries removed because the archive does not have them (``delete``)
    ndamaged: int = 0  # files restored with chunks that check --repair replaced by zeros
    nfiles_by_processes: int = 0  # of ``nfiles``, those a restore process wrote (``restorers.py``)
    bytes_written: int = 0
    bytes_arrived: int = 0  # live: chunk bytes written (or verified) so far, for progress
    errors: list[str] = field(default_factory=list)  # entries that could not be restored
    warnings: list[str] = field(default_factory=list)  # every problem, those above included
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0

    def as_dict(self) -> dict:
        return {
            "nfiles": self.nfiles,
            "ndirs": self.ndirs,
            "nother": self.nother,
            "skipped": self.nskipped,
            "deleted": self.ndeleted,
            "damaged": self.ndamaged,
            "files_by_processes": self.nfiles_by_processes,
            "bytes": self.bytes_written,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "duration": round(self.duration, 3),
        }


Warn = Callable[[str, str], None]  # (path, message): the CLI prints it; the engine only reports it


def strip_path(path: bytes, components: int) -> bytes | None:
    """``path`` without its first ``components`` parts (``b""`` is the target itself), or None when nothing
    is left of it (such items are not restored, like ``tar --strip-components``)."""
    if not components:
        return b"" if path == it.ROOT_PATH else path
    parts = [] if path == it.ROOT_PATH else path.split(b"/")
    if len(parts) <= components:
        return None
    return b"/".join(parts[components:])


def damage_note(item: dict) -> str | None:
    """The warning for a file restored with zeros in place of lost chunks, or None."""
    count = it.damaged_chunks(item)
    if count is None:
        return None
    return f"restored with {count} damaged chunk(s) replaced by zeros; see check"


def shown_path(item: dict) -> str:
    """The item's path for messages, whatever damage or crafting put there."""
    path = item.get(it.PATH)
    return it.path_str(item) if isinstance(path, bytes) else repr(path)


class PathSelector:
    """The items selected by PATH arguments (archive paths, leading slash optional), and which arguments
    selected nothing (a typo must not look like a successful restore)."""

    def __init__(self, paths: Iterable[str]):
        self._prefixes = [(p, p.strip("/").encode("utf-8", "surrogateescape")) for p in paths]
        self._matched: set[str] = set()

    def __call__(self, item: dict) -> bool:
        if not self._prefixes:
            return True
        path = item[it.PATH]
        hit = False
        for arg, prefix in self._prefixes:
            if not prefix or path == prefix or path.startswith(prefix + b"/"):
                self._matched.add(arg)
                hit = True
        return hit

    def unmatched(self) -> list[str]:
        return [arg for arg, _ in self._prefixes if arg not in self._matched]


class Skip(Exception):
    """An item that is not restored; the message says why (becomes a warning)."""


class Kept(Exception):
    """An existing entry that the overwrite policy keeps (not a warning)."""


