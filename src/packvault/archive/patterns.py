"""Exclude patterns (``--exclude``, ``--exclude-from``).

A pattern is a shell glob (``fnmatch``, ``*`` also matches ``/``) tested against the full path and
against the entry's base name; a pattern without glob characters also excludes everything below the
path it names.  Lines of an exclude file that are empty or start with ``#`` are ignored.
"""

from __future__ import annotations

import fnmatch
import os
import re

from ..errors import UsageError

_GLOB_CHARS = re.compile(r"[*?\[]")


class ExcludeMatcher:
    def __init__(self, patterns: list[str]):
        self._globs: list[re.Pattern] = []
        self._prefixes: list[str] = []
        for pattern in patterns:
            if not pattern:
                continue
            if _GLOB_CHARS.search(pattern):
                self._globs.append(re.compile(fnmatch.translate(pattern.rstrip("/"))))
            else:
                self._prefixes.append(os.path.normpath(os.path.abspath(pattern)) if "/" in pattern else pattern)

    @classmethod
    def from_options(cls, patterns: list[str], files: list[str]) -> ExcludeMatcher:
        all_patterns = list(patterns)
        for path in files:
            try:
                with open(path, encoding="utf-8") as f:
                    all_patterns += [line.strip() for line in f if line.strip() and not line.startswith("#")]
            except OSError as exc:
                raise UsageError(f"cannot read exclude file {path}: {exc.strerror}") from None
        return cls(all_patterns)

    def __bool__(self) -> bool:
        return bool(self._globs or self._prefixes)

    def excluded(self, abs_path: bytes) -> bool:
        path = os.fsdecode(abs_path)
        base = os.path.basename(path)
        for prefix in self._prefixes:
            if "/" in prefix:
                if path == prefix or path.startswith(prefix + "/"):
                    return True
            elif base == prefix:
                return True
        return any(g.match(path) or g.match(base) for g in self._globs)
