"""``extract``: restore an archive (or part of it) into a directory, bit-exact and verified.

Every chunk is authenticated and its id (a MAC of the plaintext) recomputed before it is written.  A file
with a chunk that fails is reported and removed, never left behind as a silent wrong restore; the other
files go on.  Chunks that are all zeros become holes, so sparse files stay sparse.  Directory metadata is
applied when restore leaves the directory's subtree (its mtime would change while it is filled).

Restore works in batches of items.  For each batch, in archive order, it creates directories, links and
special files, and creates each regular file at its final size; then it asks the reader for all the
batch's chunks at once.  The reader groups them by pack and reads each pack in a few large ranged reads,
and every plaintext is written with ``pwrite`` at its file offset by the thread that decrypted it.  A file
is finished (metadata applied) by the thread that wrote its last chunk.  Batches bound the memory the plan needs, so
an archive of any size restores in constant memory.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from ..errors import PackvaultError, StorageFull, UsageError
from ..repository.reader import ChunkReader
from . import fsmeta
from . import items as it

_ZEROS = bytes(16 * 1024 * 1024)
# a batch's plan holds one small tuple per chunk: 16k chunks is a few MiB of plan and, with ~1 MiB chunks,
# up to 16 GiB of data to group by pack
BATCH_CHUNKS = 16384
BATCH_ITEMS = 8192


@dataclass
class ExtractStats:
    nfiles: int = 0
    ndirs: int = 0
    nother: int = 0
    bytes_written: int = 0
    bytes_arrived: int = 0  # live: chunk bytes written (or verified) so far, for progress
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
        self._left_dirs: list[tuple[bytes, dict]] = []  # left, metadata due at the end of the batch
        self._lock = threading.Lock()  # per-file chunk counts and totals, updated from reader threads
        self._last_parent: bytes | None = None  # see _ensure_parent

    def error(self, path: str, message: str) -> None:
        self.stats.errors.append(f"{path}: {message}")
        print(f"error: {path}: {message}", file=sys.stderr)

    def warn(self, path, message: str) -> None:
        text = path.decode("utf-8", "backslashreplace") if isinstance(path, bytes) else path  # printable
        self.stats.warnings.append(f"{text}: {message}")
        print(f"warning: {text}: {message}", file=sys.stderr)

    def run(self, items: Iterator[dict]) -> ExtractStats:
        if not self.dry_run:
            os.makedirs(self.target, exist_ok=True)
        try:
            for batch in _batches(items):
                self._restore_batch(batch)
            self._leave_dirs(b"")
            self._apply_left_dirs()
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise StorageFull(f"disk full while restoring into {os.fsdecode(self.target)}") from None
            raise
        self.stats.duration = time.monotonic() - self.stats.started
        return self.stats

    def _restore_batch(self, batch: list[dict]) -> None:
        requests: list[tuple[tuple[_OutFile, int, int], bytes]] = []
        pending: dict[bytes, _OutFile] = {}
        try:
            for item in batch:
                out = self._start(item, pending)
                if out is None:
                    continue
                offset = 0
                for chunk_id, size in item.get("c") or ():
                    requests.append(((out, offset, size), chunk_id))
                    offset += size
                out.remaining = len(item.get("c") or ())
                if out.remaining:
                    if out.path in pending:  # the same path twice in one archive: the last one wins
                        pending[out.path].superseded = True
                    pending[out.path] = out
                else:
                    self._finish_file(out)
            self.reader.scatter(requests, self._on_chunk)
        finally:
            for out in pending.values():
                if out.remaining:  # only after an error that stopped the restore
                    out.abort()
        self._apply_left_dirs()

    def _on_chunk(self, target: tuple[_OutFile, int, int], data: bytes | PackvaultError) -> None:
        """Runs in a reader thread, right after the chunk was verified (or failed): writes it, and finishes
        the file when it was the last one (through the descriptor it wrote with), so the planning thread
        never waits on a file."""
        out, offset, size = target
        fd = None
        try:
            if isinstance(data, PackvaultError):
                out.failed = out.failed or str(data)
            else:
                fd = out.write_at(offset, data, self.sparse)
            with self._lock:
                out.remaining -= 1
                if out.failed is None:
                    out.written += size
                self.stats.bytes_arrived += size
                last = out.remaining == 0
            if self.progress:  # from the reader thread: the byte count moves as the data arrives
                self.progress(self.stats, it.path_str(out.item))
            if last:
                self._finish_file(out, fd)
        finally:
            if fd is not None:
                os.close(fd)

    def _dest(self, item: dict) -> bytes:
        rel = safe_relative(item["p"])
        return os.path.join(self.target, rel) if rel else self.target

    def _leave_dirs(self, path: bytes) -> None:
        """Note the directories that ``path`` is not inside of: their subtrees are complete once the batch's
        files are written, and then their metadata is applied (innermost first)."""
        while self._dirs and not (path == self._dirs[-1][0] or path.startswith(self._dirs[-1][0] + b"/")):
            self._left_dirs.append(self._dirs.pop())

    def _apply_left_dirs(self) -> None:
        left, self._left_dirs = self._left_dirs, []
        if self.dry_run:
            return
        for dpath, item in left:
            fsmeta.apply_metadata(dpath, item, numeric_ids=self.numeric_ids, warn=self.warn)

    def _start(self, item: dict, pending: dict[bytes, _OutFile]) -> _OutFile | None:
        dest = self._dest(item)
        self._leave_dirs(dest)
        kind = item["t"]
        if self.progress:
            self.progress(self.stats, it.path_str(item))
        if kind == it.FILE:
            self.stats.nfiles += 1
            if not self.dry_run:
                self._ensure_parent(dest)
            return _OutFile(dest, item, dry_run=self.dry_run)
        if kind == it.DIR:
            self.stats.ndirs += 1
            if not self.dry_run:
                os.makedirs(dest, exist_ok=True)
                self._last_parent = dest  # its entries follow
            self._dirs.append((dest, item))
            return None
        self.stats.nother += 1
        if self.dry_run:
            return None
        self._ensure_parent(dest)
        _remove_existing(dest)
        try:
            if kind == it.SYMLINK:
                os.symlink(item["l"], dest)
            elif kind == it.HARDLINK:
                source = os.path.join(self.target, safe_relative(item["h"]))
                if source in pending:  # a reader thread creates it on its first chunk: not yet, so now
                    pending[source].create_now()
                try:
                    os.link(source, dest)
                except FileNotFoundError:
                    self.warn(dest, "hardlink target was not restored; skipped")
                    return None
                if source in pending:  # its data is still coming: if the target fails, the link goes too
                    pending[source].links.append(dest)
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

    def _finish_file(self, out: _OutFile, fd: int | None = None) -> None:
        if out.failed:
            out.abort()
            self.error(it.path_str(out.item), f"not restored: {out.failed}")
            return
        with self._lock:
            self.stats.bytes_written += out.written
        if self.dry_run or out.superseded:
            return
        own_fd = out.create_if_unwritten() if fd is None else None  # empty, or holes only
        try:
            fsmeta.apply_metadata(
                out.path, out.item, numeric_ids=self.numeric_ids, warn=self.warn, fd=fd if fd is not None else own_fd
            )
        finally:
            if own_fd is not None:
                os.close(own_fd)

    def _ensure_parent(self, path: bytes) -> None:
        """Create the directory ``path`` goes into.  Entries of one directory come one after another in an
        archive, so remembering the last parent spares a mkdir (and its EEXIST) per file."""
        parent = os.path.dirname(path)
        if parent != self._last_parent:
            os.makedirs(parent, exist_ok=True)
            self._last_parent = parent


def _batches(items: Iterator[dict]) -> Iterator[list[dict]]:
    """Consecutive items with at most BATCH_CHUNKS chunks and BATCH_ITEMS items between them (one file
    with more chunks is a batch of its own)."""
    batch: list[dict] = []
    nchunks = 0
    for item in items:
        n = len(item.get("c") or ())
        if batch and (nchunks + n > BATCH_CHUNKS or len(batch) >= BATCH_ITEMS):
            yield batch
            batch, nchunks = [], 0
        batch.append(item)
        nchunks += n
    if batch:
        yield batch


class _OutFile:
    """A regular file being restored, written with ``pwrite`` from reader threads.

    The file is created by whichever reader thread writes its first chunk (at its final size, so chunks can
    land in any order and all-zero chunks stay holes), not by the planning thread.  Creating 5,000 files
    took ~1.1 s on this benchmark's ext4, and the planning thread did it before the first byte was read;
    in the readers it overlaps the downloads, as restic does it.
    """

    def __init__(self, path: bytes, item: dict, *, dry_run: bool):
        self.path = path
        self.item = item
        self.failed: str | None = None
        self.written = 0
        self.remaining = 0
        self.links: list[bytes] = []  # hardlinks made to this file before its data arrived
        self.dry_run = dry_run
        self.superseded = False  # a later entry of the archive has the same path
        self.created = False
        self._create_lock = threading.Lock()

    def _create(self) -> int:
        flags = os.O_WRONLY | os.O_CREAT | getattr(os, "O_CLOEXEC", 0)
        try:  # the usual case, a path where nothing is yet: one call, and nothing can be followed
            fd = os.open(self.path, flags | os.O_EXCL, 0o600)
        except FileExistsError:  # restoring over something: never write through what is there
            _remove_existing(self.path)
            fd = os.open(self.path, flags | os.O_TRUNC, 0o600)
        try:
            if self.item.get("s"):
                os.ftruncate(fd, self.item["s"])
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open(self) -> int:
        """A descriptor for writing; the first one creates the file."""
        if not self.created:
            with self._create_lock:
                if not self.created:
                    fd = self._create()
                    self.created = True
                    return fd
        return os.open(self.path, os.O_WRONLY | getattr(os, "O_CLOEXEC", 0))

    def create_now(self) -> None:
        """Create the file before its data arrives (a hardlink to it is about to be made)."""
        if not self.dry_run and not self.superseded:
            os.close(self._open())

    def create_if_unwritten(self) -> int | None:
        """At the end of a file that got no write (empty, or holes only): create it; returns its descriptor."""
        if self.dry_run or self.superseded or self.created:
            return None
        return self._open()

    def write_at(self, offset: int, data: bytes, sparse: bool) -> int | None:
        """Write one chunk; returns the open descriptor (the caller closes it), or None if nothing was
        written (a dry run, a superseded entry, or an all-zero chunk left as a hole)."""
        if self.dry_run or self.superseded:
            return None
        n = len(data)
        if sparse and n <= len(_ZEROS) and memoryview(data) == memoryview(_ZEROS)[:n]:
            return None  # the file is created at full size: this stays a hole
        # opened per chunk rather than held: a batch may have thousands of files in progress
        fd = self._open()
        try:
            view = memoryview(data)
            while view:
                done = os.pwrite(fd, view, offset)
                view = view[done:]
                offset += done
        except BaseException:
            os.close(fd)
            raise
        return fd

    def abort(self) -> None:
        """Remove what this restore made: the file (only if it was created: whatever was at its path before
        stays) and the hardlinks made to it."""
        if self.dry_run:
            return
        for path in (*self.links, *((self.path,) if self.created else ())):
            with contextlib.suppress(OSError):
                os.unlink(path)


def _remove_existing(path: bytes) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISDIR(st.st_mode):
        return
    os.unlink(path)


__all__ = ["Extractor", "ExtractStats", "PackvaultError"]
