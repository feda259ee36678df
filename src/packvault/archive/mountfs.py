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
import functools
import hashlib
import os
import stat
import tempfile
import threading
from array import array
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import msgpack
from borghash import HashTable

from ..errors import PackvaultError
from ..repository.reader import ChunkReader
from ..repository.repository import ArchiveEntry
from . import items as it
from .archive import iter_archive_items, load_archive

Warn = Callable[[str, str], None]

CACHE_BYTES = 64 * 1024 * 1024
READAHEAD_BYTES = 8 * 1024 * 1024
RECORD_CACHE = 4096
TREES = 8
ID_SIZE = 32

ROOT = 0  # item number of an archive's root directory
_NONE = -1
_INO_SHIFT = 32  # inode = archive number << 32 | (item number + 1); the mount root of a repository is 1
_MOUNT_ROOT_INO = 1
# readdir offsets: 0 start, 1 after ".", 2 after "..", 3 + n: resume at item n, _END: done
_AFTER_DOT, _AFTER_DOTDOT, _ITEM_BASE = 1, 2, 3
_END = 1 << 62
_READ_GUESS = 512  # bytes read for a record whose length is not known yet (most are shorter)

_TYPE_BITS = {
    it.FILE: stat.S_IFREG,
    it.HARDLINK: stat.S_IFREG,
    it.DIR: stat.S_IFDIR,
    it.SYMLINK: stat.S_IFLNK,
    it.FIFO: stat.S_IFIFO,
    it.CHARDEV: stat.S_IFCHR,
    it.BLOCKDEV: stat.S_IFBLK,
}
_DIR = ord(it.DIR)
_FILE = ord(it.FILE)
_HARDLINK = ord(it.HARDLINK)
_SYMLINK = ord(it.SYMLINK)
# the attributes a record keeps: everything but the path (the name is kept apart) and the chunk lists
_DROPPED_KEYS = ("p", "c", "ch")


@dataclass
class MountOptions:
    cache_bytes: int = CACHE_BYTES
    readahead_bytes: int = READAHEAD_BYTES
    trees: int = TREES
    spool_dir: Path | None = None  # where tree spool files live (anonymous files; default: the system's tmp)
    uid: int = field(default_factory=os.getuid)  # owner of directories that have no item of their own
    gid: int = field(default_factory=os.getgid)


def _error(code: int, path: bytes | str = b"") -> OSError:
    return OSError(code, os.strerror(code), os.fsdecode(path) if isinstance(path, bytes) else path)


def _iso_ns(text: str) -> int:
    try:
        return int(datetime.fromisoformat(text).timestamp() * 1_000_000_000)
    except (TypeError, ValueError):
        return 0


def _name_key(parent: int, name: bytes) -> bytes:
    return hashlib.blake2b(parent.to_bytes(4, "little") + name, digest_size=16).digest()


class ArchiveTree:
    """One archive's items as a directory tree, built by streaming them once (see the module docstring)."""

    def __init__(self, items: Iterable[dict], *, number: int, root_attrs: dict, spool_dir: Path | None, warn: Warn):
        self.number = number
        self._root_attrs = root_attrs
        if spool_dir is not None:
            Path(spool_dir).mkdir(parents=True, exist_ok=True)
        self._spool = tempfile.TemporaryFile(dir=spool_dir, prefix="pv-mount-")  # noqa: SIM115 - lives with the tree
        self._end = 0
        self._records = array("q", [_NONE])
        self._first = array("i", [_NONE])
        self._next = array("i", [_NONE])
        self._subdirs = array("I", [0])
        self._kinds = bytearray([_DIR])
        self._names = HashTable(key_size=16, value_size=4)
        self._links: dict[int, int] = {}  # hardlink item -> the file item it names
        self._nlinks: dict[int, int] = {}  # file item with hardlinks -> number of names
        self.skipped = 0
        self._build(items, warn)
        self._spool.flush()
        self._fd = self._spool.fileno()
        self.record = functools.lru_cache(maxsize=RECORD_CACHE)(self._read_record)

    def __len__(self) -> int:
        return len(self._kinds)

    # --- building -----------------------------------------------------------------------------------------

    def _build(self, items: Iterable[dict], warn: Warn) -> None:
        last = array("i", [_NONE])  # last child of each item, only while building (children keep their order)
        recent: dict[bytes, int] = {b"": ROOT}  # directory path -> item number, for the next items' parents
        made_up: set[int] = set()  # directories shown without an item of their own (so far)

        def skip(item: dict, why: str) -> None:
            self.skipped += 1
            warn(it.path_str(item) if isinstance(item.get("p"), bytes) else repr(item.get("p")), f"not shown: {why}")

        def add(parent: int, name: bytes, kind: int, item: dict | None) -> int:
            number = len(self._kinds)
            if number >= 0x7FFFFFFF:
                raise PackvaultError("the archive has more items than a mount can show (2**31)")
            record = self._write_record(name, self._root_attrs if item is None else item)  # may refuse the item
            self._names[_name_key(parent, name)] = number.to_bytes(4, "little")
            if item is None:
                made_up.add(number)
            self._records.append(record)
            self._first.append(_NONE)
            self._next.append(_NONE)
            self._subdirs.append(0)
            self._kinds.append(kind)
            last.append(_NONE)
            if last[parent] == _NONE:
                self._first[parent] = number
            else:
                self._next[last[parent]] = number
            last[parent] = number
            if kind == _DIR:
                self._subdirs[parent] += 1
            return number

        def directory(path: bytes) -> int | None:
            """The item number of directory ``path``, made up (with default attributes) when the archive
            has no item for it; None when something that is not a directory is in the way."""
            number = recent.get(path)
            if number is not None:
                return number
            known, missing = path, []  # the longest known prefix, then down (a loop: paths may be deep)
            while (number := recent.get(known)) is None:
                known, _, name = known.rpartition(b"/")
                missing.append(name)
            for name in reversed(missing):
                found = self._names.get(_name_key(number, name))
                if found is None:
                    number = add(number, name, _DIR, None)
                else:
                    number = int.from_bytes(found, "little")
                    if self._kinds[number] != _DIR:
                        return None
            if len(recent) > 1024:
                recent.clear()
                recent[b""] = ROOT
            recent[path] = number
            return number

        def place(item: dict) -> None:
            kind = ord(item["t"])
            path = item["p"]
            if path == it.ROOT_PATH:
                if self._records[ROOT] == _NONE:
                    self._records[ROOT] = self._write_record(b"", item)
                else:
                    skip(item, "a second entry of the archive's root")
                return
            parent_path, _, name = path.rpartition(b"/")
            parent = directory(parent_path)
            if parent is None:
                skip(item, "its parent in the archive is not a directory")
                return
            found = self._names.get(_name_key(parent, name))
            if found is not None:
                number = int.from_bytes(found, "little")
                if kind == _DIR and number in made_up:
                    made_up.discard(number)
                    self._records[number] = self._write_record(name, item)  # a directory listed after its contents
                else:
                    skip(item, "a second entry of the same path")
                return
            target = None
            if kind == _HARDLINK:
                target = self._find(item["h"])
                if target is None or self._kinds[target] != _FILE:
                    skip(item, "hardlink to a file that is not in the archive")
                    return
            number = add(parent, name, kind, item)
            if target is not None:
                self._links[number] = target
                self._nlinks[target] = self._nlinks.get(target, 1) + 1

        for item in items:
            reason = it.unsafe_item_reason(item)
            if reason is not None:
                skip(item, reason)
                continue
            try:
                place(item)
            except (TypeError, ValueError, KeyError, AttributeError) as exc:  # a field of the wrong shape
                skip(item, f"malformed item ({exc!r})")

    def _write_record(self, name: bytes, item: dict) -> int:
        attrs = {key: value for key, value in item.items() if key not in _DROPPED_KEYS}
        chunks = (item.get("c") or []) if item["t"] == it.FILE else []
        chunk_offset = self._end
        if chunks:
            ids = b"".join(chunk_id for chunk_id, _ in chunks)
            ends = array("Q", [0] * len(chunks))
            total = 0
            for number, (chunk_id, size) in enumerate(chunks):
                if len(chunk_id) != ID_SIZE or size < 0:
                    raise ValueError(f"chunk {number + 1} has a malformed id or size")
                total += size
                ends[number] = total
            attrs["s"] = total  # what reading the file gives, whatever size the backup recorded
            self._spool.write(ids)
            self._spool.write(ends.tobytes())
            self._end += len(ids) + 8 * len(chunks)
        elif item["t"] == it.FILE:
            attrs["s"] = 0
        body = msgpack.packb([name, attrs, chunk_offset, len(chunks)])
        offset = self._end
        self._spool.write(len(body).to_bytes(4, "little"))
        self._spool.write(body)
        self._end += 4 + len(body)
        return offset

    # --- reading ------------------------------------------------------------------------------------------

    def _read_record(self, number: int) -> tuple[bytes, dict, int, int]:
        """(name, attributes, chunk list offset, number of chunks) of an item."""
        offset = self._records[number]
        if offset == _NONE:  # the root of an archive that has no item for it
            return b"", self._root_attrs, 0, 0
        head = os.pread(self._fd, _READ_GUESS, offset)
        length = int.from_bytes(head[:4], "little")
        body = head[4 : 4 + length]
        if len(body) < length:
            body = os.pread(self._fd, length, offset + 4)
        name, attrs, chunk_offset, count = msgpack.unpackb(body, raw=False, strict_map_key=False)
        return name, attrs, chunk_offset, count

    def _find(self, path: bytes) -> int | None:
        number = ROOT
        for name in path.split(b"/") if path else ():
            if self._kinds[number] != _DIR:
                return None
            found = self._names.get(_name_key(number, name))
            if found is None:
                return None
            number = int.from_bytes(found, "little")
        return number

    def lookup(self, path: bytes) -> int:
        """The item number at ``path`` (relative to the archive's root, no leading slash)."""
        number = self._find(path)
        if number is None:
            raise _error(errno.ENOENT, path)
        return number

    def ino(self, number: int) -> int:
        return (self.number << _INO_SHIFT) | (self._links.get(number, number) + 1)

    def is_dir(self, number: int) -> bool:
        return self._kinds[number] == _DIR

    def attributes(self, number: int) -> dict:
        target = self._links.get(number, number)
        kind = chr(self._kinds[target])
        attrs = self.record(target)[1]
        mode = _TYPE_BITS[kind] | stat.S_IMODE(attrs.get("m", 0o755 if kind == it.DIR else 0o644))
        mtime = attrs.get("mt", 0)
        if kind == it.DIR:
            nlink, size = 2 + self._subdirs[target], 0
        elif kind == it.SYMLINK:
            nlink, size = 1, len(attrs.get("l") or b"")
        else:
            nlink, size = self._nlinks.get(target, 1), attrs.get("s", 0)
        result = {
            "st_mode": mode,
            "st_ino": self.ino(target),
            "st_nlink": nlink,
            "st_uid": attrs.get("u", 0),
            "st_gid": attrs.get("g", 0),
            "st_size": size,
            "st_blocks": (size + 511) // 512,
            "st_mtime": mtime,
            "st_atime": attrs.get("at", mtime),
            "st_ctime": attrs.get("ct", mtime),
        }
        if kind in (it.CHARDEV, it.BLOCKDEV):
            result["st_rdev"] = attrs.get("r", 0)
        return result

    def children(self, number: int, start: int | None = None) -> Iterator[tuple[bytes, int, int, int | None]]:
        """(name, mode type bits, inode, next child) of each child, from ``start`` (a child) or the first."""
        child = self._first[number] if start is None else start
        while child != _NONE:
            following = self._next[child]
            kind = chr(self._kinds[self._links.get(child, child)])
            yield self.record(child)[0], _TYPE_BITS[kind], self.ino(child), None if following == _NONE else following
            child = following

    def readlink(self, number: int) -> bytes:
        if self._kinds[number] != _SYMLINK:
            raise _error(errno.EINVAL)
        return self.record(number)[1].get("l") or b""

    def xattrs(self, number: int) -> dict[bytes, bytes]:
        xattrs = self.record(self._links.get(number, number))[1].get("x") or {}
        return {os.fsencode(key) if isinstance(key, str) else key: value for key, value in xattrs.items()}

    def chunks(self, number: int) -> tuple[bytes, array]:
        """(ids, ends) of a file: the concatenated 32-byte chunk ids and each chunk's end offset in the file."""
        target = self._links.get(number, number)
        if self._kinds[target] != _FILE:
            raise _error(errno.EISDIR if self._kinds[target] == _DIR else errno.EINVAL)
        _, _, offset, count = self.record(target)
        if not count:
            return b"", array("Q")
        data = os.pread(self._fd, count * (ID_SIZE + 8), offset)
        ends = array("Q")
        ends.frombytes(data[count * ID_SIZE :])
        return data[: count * ID_SIZE], ends


class ChunkCache:
    """Decrypted chunks by id, the least recently used dropped first: at most ``max_bytes`` in total.

    Two readers wanting the same chunk at once share one read.  Errors are not cached, so a read that
    failed (a store that was briefly down) is tried again next time."""

    def __init__(self, reader: ChunkReader, max_bytes: int):
        self.reader = reader
        self.max_bytes = max_bytes
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._chunks: OrderedDict[bytes, bytes] = OrderedDict()
        self._loading: dict[bytes, Future] = {}
        self._lock = threading.Lock()

    def get_many(self, ids: list[bytes], *, wanted: int | None = None) -> list[bytes | PackvaultError]:
        """Plaintext (or the error) of each id.  Only the first ``wanted`` ids (default: all) are returned;
        the others are read ahead into the cache when they have to be read anyway."""
        wanted = len(ids) if wanted is None else wanted
        results: list = [None] * wanted
        waiting: list[tuple[int, Future]] = []
        mine: dict[bytes, Future] = {}
        with self._lock:
            for position, chunk_id in enumerate(ids):
                data = self._chunks.get(chunk_id)
                if data is not None:
                    self._chunks.move_to_end(chunk_id)
                    if position < wanted:
                        results[position] = data
                        self.hits += 1
                    continue
                future = self._loading.get(chunk_id)
                if future is None:
                    future = mine.get(chunk_id)
                    if future is None and (position < wanted or mine):
                        future = mine[chunk_id] = Future()
                        self._loading[chunk_id] = future
                if position < wanted and future is not None:
                    waiting.append((position, future))
            self.misses += len(mine)
        if mine:
            self._load(mine)
        for position, future in waiting:
            results[position] = future.result()
        return results

    def _load(self, futures: dict[bytes, Future]) -> None:
        ids = list(futures)
        try:
            for chunk_id, data in zip(ids, self.reader.iter_chunks(ids), strict=True):
                if not isinstance(data, BaseException):
                    self._put(chunk_id, data)
                with self._lock:
                    self._loading.pop(chunk_id, None)
                futures[chunk_id].set_result(data)
        except BaseException as exc:
            with self._lock:
                for chunk_id, future in futures.items():
                    if not future.done():
                        self._loading.pop(chunk_id, None)
                        future.set_result(exc if isinstance(exc, PackvaultError) else PackvaultError(str(exc)))
            if not isinstance(exc, PackvaultError):
                raise

    def _put(self, chunk_id: bytes, data: bytes) -> None:
        if len(data) > self.max_bytes:
            return
        with self._lock:
            if chunk_id in self._chunks:
                return
            self._chunks[chunk_id] = data
            self.size += len(data)
            while self.size > self.max_bytes:
                _, dropped = self._chunks.popitem(last=False)
                self.size -= len(dropped)


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
