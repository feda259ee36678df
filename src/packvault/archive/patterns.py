"""The one pattern grammar (docs/patterns.md): ``create --exclude``, ``extract``/``list --exclude`` and ``find``.

A pattern is matched against an absolute path (``/home/me/docs/a.txt``; an archive path is read with a
leading ``/``, so the same pattern works before the backup and after it):

- with a glob character (``*``, ``?``, ``[``): a shell glob (``fnmatch``; ``*`` also matches ``/``) tested
  against the full path and against the base name, so ``*.tmp`` matches at any depth and
  ``/home/*/.cache`` only there;
- without one, and with a ``/``: that path and everything below it (relative patterns are taken from the
  current directory at ``create``, from the archive root elsewhere);
- without one and without a ``/``: that base name, at any depth (``node_modules``).

A trailing ``/`` is ignored.  Lines of a pattern file (``--exclude-from``) that are empty or start with
``#`` are ignored.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Callable, Iterable

from ..errors import UsageError
from . import items as it

_GLOB_CHARS = re.compile(r"[*?\[]")


class PatternSet:
    """Patterns of the grammar above; ``anchor`` turns a relative path pattern into an absolute one."""

    def __init__(self, patterns: Iterable[str], anchor: Callable[[str], str]):
        self.patterns = [p for p in patterns if p]
        self._globs: list[re.Pattern] = []
        self._paths: list[str] = []
        self._names: set[str] = set()
        for pattern in self.patterns:
            if _GLOB_CHARS.search(pattern):
                self._globs.append(re.compile(fnmatch.translate(pattern.rstrip("/") or "/")))
            elif "/" in pattern:
                self._paths.append(anchor(pattern))
            else:
                self._names.add(pattern)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, path: str) -> bool:
        """Whether the absolute ``path`` is matched (a path pattern matches everything below it too)."""
        base = path.rpartition("/")[2]
        if base in self._names:
            return True
        for prefix in self._paths:
            if path == prefix or path.startswith(prefix.rstrip("/") + "/"):
                return True
        return any(g.match(path) or g.match(base) for g in self._globs)


def read_pattern_files(files: Iterable[str]) -> list[str]:
    patterns: list[str] = []
    for path in files:
        try:
            with open(path, encoding="utf-8", errors="surrogateescape") as f:
                patterns += [line.strip() for line in f if line.strip() and not line.startswith("#")]
        except OSError as exc:
            raise UsageError(f"cannot read pattern file {path}: {exc.strerror}") from None
    return patterns


class ExcludeMatcher(PatternSet):
    """``create --exclude``: patterns against the absolute paths being backed up (relative ones from the
    current directory)."""

    def __init__(self, patterns: list[str]):
        super().__init__(patterns, lambda p: os.path.normpath(os.path.abspath(p)))

    @classmethod
    def from_options(cls, patterns: list[str], files: list[str]) -> ExcludeMatcher:
        return cls(list(patterns) + read_pattern_files(files))

    def excluded(self, abs_path: bytes) -> bool:
        return self.matches(os.fsdecode(abs_path))


class ArchivePatterns(PatternSet):
    """Patterns against archive paths (``extract``/``list --exclude``, ``find``): an item's path is read with
    a leading ``/``, and a relative path pattern is taken from the archive root."""

    def __init__(self, patterns: Iterable[str]):
        super().__init__(patterns, lambda p: "/" + os.path.normpath(p).lstrip("/"))

    def item_matches(self, item: dict) -> bool:
        """Whether the item or a directory above it matches: at ``create`` a matching directory is not
        walked into, so here too everything below a matching directory is selected with it."""
        path = "/" + os.fsdecode(item[it.PATH])
        while path:
            if self.matches(path):
                return True
            path = path.rpartition("/")[0]
        return False
