"""One archive's directory tree for ``packvault mount`` (``mountfs.py``): built lazily from the item stream,
held compactly (see ``mountfs.py`` for what it keeps per item and why)."""

from __future__ import annotations

import errno
import functools
import hashlib
import os
import stat
import tempfile
from array import array
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path

import msgpack
from borghash import HashTable

from ..errors import PackvaultError
from . import items as it

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
_DROPPED_KEYS = (it.PATH, it.CHUNKS, it.ORIGINAL_CHUNKS)


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
            warn(
                it.path_str(item) if isinstance(item.get(it.PATH), bytes) else repr(item.get(it.PATH)),
                f"not shown: {why}",
            )

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
            kind = ord(item[it.TYPE])
            path = item[it.PATH]
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
                target = self._find(item[it.HARDLINK_TARGET])
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
        chunks = (item.get(it.CHUNKS) or []) if item[it.TYPE] == it.FILE else []
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
        elif item[it.TYPE] == it.FILE:
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
