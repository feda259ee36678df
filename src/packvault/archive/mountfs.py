"""Archives as a read-only directory tree: the file system behind ``packvault mount``, without FUSE.

Mounting a repository shows one directory per archive, named after it; mounting ``REPO::ARCHIVE`` shows
that archive's tree at the root.  Paths below an archive are its item paths (the backed-up absolute paths
without their leading slash); directories that have no item of their own (the parents of a backed-up
path) appear with mode 0755, the mounting user as owner and the archive's time.  ``fuse.py`` maps FUSE
callbacks onto the methods of ``RepositoryFS``; everything here speaks paths as bytes and fails with
``OSError(errno)``, which is what a FUSE callback returns.

**Memory.**  An archive's tree is built the first time a path inside it is looked up or its directory is
listed; listing the mount's root reads no item stream.  Building streams the items once (never all of them
in memory) and keeps, per item:

- on disk, in an anonymous spool file (``tempfile.TemporaryFile``: no name, gone when closed or when the
  process dies): one record with the item's name and attributes (msgpack) and its chunk list (32-byte ids
  and 8-byte end offsets, packed);
- in memory: 8 bytes of record offset, 4 of first child, 4 of next sibling, 4 of subdirectory count and
  1 of type (``array``/``bytearray``), and one entry of a ``borghash`` table (a 16-byte hash of parent and
  name -> 4-byte item number; with the table's slack about 33 bytes): about 60 bytes per item (measured:
  26 + 33 for 100,000 items), and no Python object per item.  A hardlinked file adds two dict entries per
  name.  (libfuse's high-level API adds its own node, about 150 bytes, for each path the kernel looked up
  and has not forgotten yet: see bench/README.md.)

At most ``MountOptions.trees`` trees (default 8) are kept; the least recently used one is dropped and
rebuilt when visited again (inode numbers are (archive number, item number), so they do not change).
Decoded records of each tree are kept in an LRU of ``RECORD_CACHE`` entries.

**File data** is read through ``ChunkReader`` (coalesced ranged reads, one GET per run on S3) into one LRU
cache of decrypted chunks shared by every open file, bounded at ``MountOptions.cache_bytes`` (64 MiB by
default) in total.  A sequential reader that misses fetches up to ``READAHEAD_BYTES`` (8 MiB, at most a
quarter of the cache) of the following chunks in the same ranged read.  Beyond the cache, a read holds only
the chunks it returns (at most the read size plus the read-ahead per FUSE thread), and an open file holds
its chunk list (40 bytes per chunk).

Permissions are shown as archived but not enforced: whoever can mount the repository holds its key and can
read every file anyway.  Hardlinks share the inode number of their first name and report the group's size
as ``st_nlink``; a directory's ``st_nlink`` is 2 plus its subdirectories (1, "unknown", for an archive's
directory in a repository mount until its tree is built).
"""

from __future__ import annotations

import bisect
import errno
import os
import stat
import threading
from array import array
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import PackvaultError
from ..repository.reader import ChunkReader
from ..repository.repository import ArchiveEntry
from . import items as it
from .archive import iter_archive_items, load_archive
from .chunkcache import ChunkCache
from .mounttree import (
    _AFTER_DOT,
    _AFTER_DOTDOT,
    _END,
    _INO_SHIFT,
    _ITEM_BASE,
    _MOUNT_ROOT_INO,
    CACHE_BYTES,
    ID_SIZE,
    READAHEAD_BYTES,
    ROOT,
    TREES,
    ArchiveTree,
    Warn,
    _error,
    _iso_ns,
)


@dataclass
class MountOptions:
    cache_bytes: int = CACHE_BYTES
    readahead_bytes: int = READAHEAD_BYTES
    trees: int = TREES
    spool_dir: Path | None = None  # where tree spool files live (anonymous files; default: the system's tmp)
    uid: int = field(default_factory=os.getuid)  # owner of directories that have no item of their own
    gid: int = field(default_factory=os.getgid)


@dataclass
class _OpenFile:
    path: bytes
    ids: bytes
    ends: array
    position: int = 0  # where the previous read ended: a read starting there is sequential

    @property
    def size(self) -> int:
        return self.ends[-1] if self.ends else 0


@dataclass
class MountReport:
    archives: int = 0
    trees_built: int = 0
    items_skipped: int = 0
    read_errors: int = 0
    warnings: int = 0
    first_warnings: list[str] = field(default_factory=list)  # the first KEPT_WARNINGS of them

    KEPT_WARNINGS = 100  # a program retrying a damaged file must not grow the report without bound


class RepositoryFS:
    """Paths of the mount -> archives, items and chunk reads.  Thread-safe: FUSE calls from several threads."""

    def __init__(
        self,
        reader: ChunkReader,
        archives: list[ArchiveEntry],
        *,
        single: bool = False,
        options: MountOptions | None = None,
        on_warning: Warn | None = None,
    ):
        """``archives``: the archives to show, one directory each; ``single``: exactly one, shown at the root."""
        if single and len(archives) != 1:
            raise ValueError("a single-archive mount needs exactly one archive")
        self.reader = reader
        self.options = options or MountOptions()
        self.single = single
        self.report = MountReport()
        self._on_warning = on_warning
        self._archives: dict[bytes, tuple[int, ArchiveEntry]] = {}
        for number, entry in enumerate(archives, 1):
            name = entry.name.encode("utf-8", "surrogateescape")
            if not name or b"/" in name or b"\0" in name or name in (b".", b".."):
                self._warn(entry.name, "archive not shown: its name cannot be a directory name")
                continue
            if name in self._archives:
                self._warn(entry.name, "archive not shown: an older archive has the same name")
                continue
            self._archives[name] = (number, entry)
        self.report.archives = len(self._archives)
        self._order = list(self._archives)
        self._trees: OrderedDict[int, ArchiveTree] = OrderedDict()
        self._building: dict[int, threading.Lock] = {}
        self._lock = threading.Lock()
        self.cache = ChunkCache(reader, self.options.cache_bytes)
        self._files: dict[int, _OpenFile] = {}
        self._next_fh = 1
        self._mount_time = max((_iso_ns(entry.time) for entry in archives), default=0)

    def _warn(self, path: str, message: str) -> None:
        with self._lock:
            self.report.warnings += 1
            if len(self.report.first_warnings) < MountReport.KEPT_WARNINGS:
                self.report.first_warnings.append(f"{path}: {message}")
        if self._on_warning is not None:
            self._on_warning(path, message)

    # --- trees --------------------------------------------------------------------------------------------

    def tree(self, number: int, entry: ArchiveEntry) -> ArchiveTree:
        """The archive's tree, built on first use (one builder per archive; the others wait for it)."""
        with self._lock:
            tree = self._trees.get(number)
            if tree is not None:
                self._trees.move_to_end(number)
                return tree
            building = self._building.setdefault(number, threading.Lock())
        with building:
            with self._lock:
                tree = self._trees.get(number)
            if tree is not None:
                return tree
            try:
                meta = load_archive(self.reader, entry)
                root_attrs = {
                    "t": it.DIR,
                    "m": stat.S_IFDIR | 0o755,
                    "u": self.options.uid,
                    "g": self.options.gid,
                    "mt": _iso_ns(entry.time),
                }
                tree = ArchiveTree(
                    iter_archive_items(self.reader, meta),
                    number=number,
                    root_attrs=root_attrs,
                    spool_dir=self.options.spool_dir,
                    warn=lambda path, message: self._warn(f"{entry.name}::{path}", message),
                )
            except PackvaultError as exc:
                self._warn(entry.name, f"cannot show the archive: {exc.one_line()}")
                raise _error(errno.EIO, entry.name) from None
            with self._lock:
                self._trees[number] = tree
                self.report.trees_built += 1
                self.report.items_skipped += tree.skipped
                while len(self._trees) > max(1, self.options.trees):
                    self._trees.popitem(last=False)  # its spool file closes once no reader holds the tree
            return tree

    def prepare(self) -> None:
        """Build the tree of a single-archive mount now, so that an archive that cannot be read fails the
        command before anything is mounted."""
        if self.single:
            number, entry = next(iter(self._archives.values()))
            self.tree(number, entry)

    def _resolve(self, path: bytes) -> tuple[ArchiveTree | None, int, tuple[int, ArchiveEntry] | None]:
        """(tree, item number, archive) of a mount path; (None, 0, archive) for an archive directory whose
        tree is not needed yet, (None, 0, None) for the root of a repository mount."""
        rest = path.strip(b"/")
        if self.single:
            archive = next(iter(self._archives.values()))
            tree = self.tree(*archive)
            return tree, tree.lookup(rest), archive
        if not rest:
            return None, 0, None
        name, _, rest = rest.partition(b"/")
        archive = self._archives.get(name)
        if archive is None:
            raise _error(errno.ENOENT, path)
        if not rest:
            with self._lock:
                tree = self._trees.get(archive[0])
            return tree, ROOT, archive
        tree = self.tree(*archive)
        return tree, tree.lookup(rest), archive

    # --- the operations -----------------------------------------------------------------------------------

    def getattr(self, path: bytes) -> dict:
        tree, number, archive = self._resolve(path)
        if tree is not None:
            return tree.attributes(number)
        if archive is None:
            return self._dir_attrs(_MOUNT_ROOT_INO, 2 + len(self._archives), self._mount_time)
        archive_number, entry = archive
        return self._dir_attrs((archive_number << _INO_SHIFT) | (ROOT + 1), 1, _iso_ns(entry.time))

    def _dir_attrs(self, ino: int, nlink: int, mtime: int) -> dict:
        return {
            "st_mode": stat.S_IFDIR | 0o755,
            "st_ino": ino,
            "st_nlink": nlink,
            "st_uid": self.options.uid,
            "st_gid": self.options.gid,
            "st_size": 0,
            "st_mtime": mtime,
            "st_atime": mtime,
            "st_ctime": mtime,
        }

    def readdir(self, path: bytes, offset: int = 0) -> Iterator[tuple[bytes, int, int, int]]:
        """(name, type bits, inode, offset of the next entry) for each entry from ``offset`` (0: the start;
        else an offset this method returned), so a huge directory is listed a buffer at a time, each resumed
        where the last stopped, without holding its list."""
        attrs = self.getattr(path)
        if not stat.S_ISDIR(attrs["st_mode"]):
            raise _error(errno.ENOTDIR, path)
        if offset == _END:
            return
        if offset < _AFTER_DOT:
            yield b".", stat.S_IFDIR, attrs["st_ino"], _AFTER_DOT
        if offset < _AFTER_DOTDOT:
            parent = path.rstrip(b"/").rpartition(b"/")[0]
            yield b"..", stat.S_IFDIR, self.getattr(parent)["st_ino"], _AFTER_DOTDOT
        tree, number, archive = self._resolve(path)
        if tree is None and archive is None:
            names = self._order
            start = 0 if offset <= _AFTER_DOTDOT else offset - _ITEM_BASE
            for position in range(start, len(names)):
                archive_number = self._archives[names[position]][0]
                ino = (archive_number << _INO_SHIFT) | (ROOT + 1)
                following = _ITEM_BASE + position + 1 if position + 1 < len(names) else _END
                yield names[position], stat.S_IFDIR, ino, following
            return
        if tree is None:
            tree = self.tree(*archive)
        start = None if offset <= _AFTER_DOTDOT else offset - _ITEM_BASE
        for name, kind, ino, following in tree.children(number, start):
            yield name, kind, ino, _END if following is None else _ITEM_BASE + following

    def readlink(self, path: bytes) -> bytes:
        tree, number, _ = self._resolve(path)
        if tree is None:
            raise _error(errno.EINVAL, path)
        return tree.readlink(number)

    def listxattr(self, path: bytes) -> list[bytes]:
        tree, number, _ = self._resolve(path)
        return [] if tree is None else sorted(tree.xattrs(number))

    def getxattr(self, path: bytes, name: bytes) -> bytes:
        tree, number, _ = self._resolve(path)
        value = None if tree is None else tree.xattrs(number).get(name)
        if value is None:
            raise _error(errno.ENODATA, path)
        return value

    def open(self, path: bytes, flags: int = os.O_RDONLY) -> int:
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_TRUNC | os.O_APPEND):
            raise _error(errno.EROFS, path)
        tree, number, _ = self._resolve(path)
        if tree is None:
            raise _error(errno.EISDIR, path)
        ids, ends = tree.chunks(number)
        with self._lock:
            fh = self._next_fh
            self._next_fh += 1
            self._files[fh] = _OpenFile(path, ids, ends)
        return fh

    def release(self, fh: int) -> None:
        with self._lock:
            self._files.pop(fh, None)

    def read(self, fh: int, size: int, offset: int) -> bytes:
        with self._lock:
            handle = self._files.get(fh)
        if handle is None:
            raise _error(errno.EBADF)
        end = min(offset + size, handle.size)
        if offset >= end:
            return b""
        ends = handle.ends
        first = bisect.bisect_right(ends, offset)
        last = bisect.bisect_left(ends, end)  # the chunk holding byte end - 1
        wanted = last - first + 1
        stop = last + 1
        if offset == handle.position:  # sequential: what follows is likely next
            # a quarter of the cache at most, so that what is read ahead is still there when it is wanted
            limit = ends[last] + min(self.options.readahead_bytes, self.options.cache_bytes // 4)
            while stop < len(ends) and ends[stop] <= limit:
                stop += 1
        ids = [handle.ids[n * ID_SIZE : (n + 1) * ID_SIZE] for n in range(first, stop)]
        datas = self.cache.get_many(ids, wanted=wanted)
        handle.position = end
        parts = []
        for n, data in zip(range(first, last + 1), datas, strict=True):
            if isinstance(data, BaseException):
                with self._lock:
                    self.report.read_errors += 1
                self._warn(os.fsdecode(handle.path), f"chunk {n + 1} of {len(ends)} unreadable: {data}")
                raise _error(errno.EIO, handle.path)
            chunk_start = ends[n - 1] if n else 0
            view = memoryview(data)
            parts.append(view[max(offset - chunk_start, 0) : end - chunk_start])
        return b"".join(parts)

    def statfs(self) -> dict:
        return {"f_bsize": 4096, "f_frsize": 4096, "f_namemax": 255}
