"""``extract``: restore an archive (or part of it) into a directory, bit-exact and verified.

Every chunk is authenticated and its id (a MAC of the plaintext) recomputed before it is written.  A file
with a chunk that fails is reported and removed, never left behind as a silent wrong restore; the other
files go on.  Chunks that are all zeros become holes, so sparse files stay sparse.  Directory metadata is
applied when restore leaves the directory's subtree (its mtime would change while it is filled).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..errors import PackvaultError, StorageFull, UsageError
from ..repository.reader import ChunkReader
from . import fsmeta
from . import items as it

_ZEROS = bytes(16 * 1024 * 1024)


@dataclass
class ExtractStats:
    nfiles: int = 0
    ndirs: int = 0
    nother: int = 0
    bytes_written: int = 0
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0

    def as_dict(self) -> dict:
        return {
            "nfiles": self.nfiles,
            "ndirs": self.ndirs,
            "nother": self.nother,
            "bytes": self.bytes_written,
            "errors": len(self.errors),
            "warnings": len(self.warnings),
            "duration": round(self.duration, 3),
        }


def safe_relative(path: bytes) -> bytes:
    parts = [p for p in path.split(b"/") if p and p != b"."]
    if any(p == b".." for p in parts):
        raise UsageError(f"refusing to restore a path with '..': {path!r}")
    return b"/".join(parts)


class Extractor:
    def __init__(
        self,
        reader: ChunkReader,
        target: str,
        *,
        dry_run: bool = False,
        sparse: bool = True,
        numeric_ids: bool = False,
        progress: Callable[[ExtractStats, str], None] | None = None,
    ):
        self.reader = reader
        self.target = os.fsencode(os.path.abspath(target))
        self.dry_run = dry_run
        self.sparse = sparse
        self.numeric_ids = numeric_ids
        self.progress = progress
        self.stats = ExtractStats()
        self._dirs: list[tuple[bytes, dict]] = []  # directories whose metadata is applied on leaving them

    def error(self, path: str, message: str) -> None:
        self.stats.errors.append(f"{path}: {message}")
        print(f"error: {path}: {message}", file=sys.stderr)

    def warn(self, path, message: str) -> None:
        text = os.fsdecode(path) if isinstance(path, bytes) else path
        self.stats.warnings.append(f"{text}: {message}")
        print(f"warning: {text}: {message}", file=sys.stderr)

    def run(self, items: Iterator[dict]) -> ExtractStats:
        if not self.dry_run:
            os.makedirs(self.target, exist_ok=True)
        current: dict | None = None
        out: _OutFile | None = None
        try:
            for item, data in self.reader.iter_tagged(it.chunk_pairs(items)):
                if item is not current:
                    if out is not None:
                        self._finish_file(current, out)
                        out = None
                    current = item
                    out = self._start(item)
                if data is None or out is None:
                    continue
                if isinstance(data, BaseException):
                    out.failed = out.failed or str(data)
                    continue
                out.write(data, self.sparse)
            if out is not None:
                self._finish_file(current, out)
                out = None
            self._leave_dirs(b"")
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull(f"disk full while restoring into {os.fsdecode(self.target)}") from None
            raise
        finally:
            if out is not None:
                out.abort()
        self.stats.duration = time.monotonic() - self.stats.started
        return self.stats

    def _dest(self, item: dict) -> bytes:
        rel = safe_relative(item["p"])
        return os.path.join(self.target, rel) if rel else self.target

    def _leave_dirs(self, path: bytes) -> None:
        """Apply metadata of directories that ``path`` is not inside of."""
        while self._dirs and not (path == self._dirs[-1][0] or path.startswith(self._dirs[-1][0] + b"/")):
            dpath, item = self._dirs.pop()
            if not self.dry_run:
                fsmeta.apply_metadata(dpath, item, numeric_ids=self.numeric_ids, warn=self.warn)

    def _start(self, item: dict) -> _OutFile | None:
        dest = self._dest(item)
        self._leave_dirs(dest)
        kind = item["t"]
        if self.progress:
            self.progress(self.stats, it.path_str(item))
        if kind == it.FILE:
            self.stats.nfiles += 1
            return _OutFile(dest, item, dry_run=self.dry_run)
        if kind == it.DIR:
            self.stats.ndirs += 1
            if not self.dry_run:
                os.makedirs(dest, exist_ok=True)
            self._dirs.append((dest, item))
            return None
        self.stats.nother += 1
        if self.dry_run:
            return None
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        _remove_existing(dest)
        try:
            if kind == it.SYMLINK:
                os.symlink(item["l"], dest)
            elif kind == it.HARDLINK:
                source = os.path.join(self.target, safe_relative(item["h"]))
                try:
                    os.link(source, dest)
                except FileNotFoundError:
                    self.warn(dest, "hardlink target was not restored; skipped")
                    return None
                return None  # shares the inode (and metadata) of its target
            elif kind == it.FIFO:
                os.mkfifo(dest, stat.S_IMODE(item["m"]))
            elif kind in (it.CHARDEV, it.BLOCKDEV):
                os.mknod(dest, item["m"], item.get("r", 0))
        except PermissionError as exc:
            self.warn(dest, f"cannot create: {exc.strerror}")
            return None
        fsmeta.apply_metadata(dest, item, numeric_ids=self.numeric_ids, warn=self.warn)
        return None

    def _finish_file(self, item: dict, out: _OutFile) -> None:
        if out.failed:
            out.abort()
            self.error(it.path_str(item), f"not restored: {out.failed}")
            return
        out.close(item["s"])
        self.stats.bytes_written += out.written
        if not self.dry_run:
            fsmeta.apply_metadata(out.path, item, numeric_ids=self.numeric_ids, warn=self.warn)


class _OutFile:
    def __init__(self, path: bytes, item: dict, *, dry_run: bool):
        self.path = path
        self.failed: str | None = None
        self.written = 0
        self.dry_run = dry_run
        self.fd = -1
        if dry_run:
            return
        os.makedirs(os.path.dirname(path), exist_ok=True)
        _remove_existing(path)
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0), 0o600)

    def write(self, data: bytes, sparse: bool) -> None:
        n = len(data)
        self.written += n
        if self.dry_run or self.failed:
            return
        if sparse and n <= len(_ZEROS) and memoryview(data) == memoryview(_ZEROS)[:n]:
            os.lseek(self.fd, n, os.SEEK_CUR)
            return
        view = memoryview(data)
        while view:
            done = os.write(self.fd, view)
            view = view[done:]

    def close(self, size: int) -> None:
        if self.fd >= 0:
            os.ftruncate(self.fd, size)  # trailing holes
            os.close(self.fd)
            self.fd = -1

    def abort(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
            with contextlib.suppress(OSError):
                os.unlink(self.path)


def _remove_existing(path: bytes) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        return
    os.unlink(path)


__all__ = ["Extractor", "ExtractStats", "PackvaultError"]
