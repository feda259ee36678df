"""Streaming an archive out: as a tar stream (``export-tar``, ``dump`` of a directory) or one file's bytes
(``dump`` of a file), to any writable binary stream -- a pipe, standard output, a file.

Everything streams: items come from the item stream as it is decoded, file data from the reader's ordered
look-ahead (``ChunkReader.iter_tagged``), and each chunk is written as soon as it is verified, so memory
stays at the reader's window whatever the size of the archive or of one file.  The tar stream is POSIX
(PAX) format, which GNU tar, bsdtar and Python's ``tarfile`` read: long and non-UTF-8 names (kept byte for
byte through surrogate escapes), sub-second mtimes, large files, owners by id and name, extended
attributes (``SCHILY.xattr.*``), symlinks, hardlinks, fifos and devices.

A chunk that cannot be read (damage found since the backup) is written as zeros of its size, and reported
through ``on_warning``: a tar member's size is in its header, written before its data, so a stream cannot
skip it any more, and zeros in place are what ``check --repair`` would give that file too.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from ..errors import PackvaultError
from ..repository.reader import ChunkReader
from . import items as it

Warn = Callable[[str, str], None]

_TAR_TYPES = {
    it.DIR: tarfile.DIRTYPE,
    it.SYMLINK: tarfile.SYMTYPE,
    it.HARDLINK: tarfile.LNKTYPE,
    it.FIFO: tarfile.FIFOTYPE,
    it.CHARDEV: tarfile.CHRTYPE,
    it.BLOCKDEV: tarfile.BLKTYPE,
    it.FILE: tarfile.REGTYPE,
}


@dataclass
class ExportStats:
    items: int = 0
    files: int = 0
    bytes_written: int = 0  # file data (not tar headers)
    warnings: list[str] = field(default_factory=list)


class _Warner:
    def __init__(self, stats: ExportStats, on_warning: Warn | None):
        self.stats = stats
        self.on_warning = on_warning

    def __call__(self, path: str, message: str) -> None:
        self.stats.warnings.append(f"{path}: {message}")
        if self.on_warning is not None:
            self.on_warning(path, message)


def _name(path: bytes, strip: bytes) -> str:
    """The member name: the archive path below ``strip`` (a directory being dumped keeps its own name)."""
    return os.fsdecode(path[len(strip) :] if strip else path)


def _tarinfo(item: dict, name: str, hardlink_name: str | None) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = _TAR_TYPES[item[it.TYPE]]
    info.mode = stat.S_IMODE(item.get(it.MODE, 0o644))
    info.uid, info.gid = item.get(it.UID, 0), item.get(it.GID, 0)
    info.uname, info.gname = item.get(it.USER) or "", item.get(it.GROUP) or ""
    seconds, nanos = divmod(item.get(it.MTIME, 0), 1_000_000_000)
    info.mtime = seconds
    if nanos:  # exact to the nanosecond (a float of seconds is not), for readers that keep it (GNU tar)
        info.pax_headers["mtime"] = f"{seconds}.{nanos:09d}"
    if item[it.TYPE] == it.FILE:
        info.size = item.get(it.SIZE, 0)
    elif item[it.TYPE] == it.SYMLINK:
        info.linkname = os.fsdecode(item[it.SYMLINK_TARGET])
    elif item[it.TYPE] == it.HARDLINK:
        info.linkname = hardlink_name or ""
    elif item[it.TYPE] in (it.CHARDEV, it.BLOCKDEV):
        rdev = item.get(it.RDEV, 0)
        info.devmajor, info.devminor = os.major(rdev), os.minor(rdev)
    xattrs = item.get(it.XATTRS) or {}
    for key, value in xattrs.items():
        key_text = key if isinstance(key, str) else os.fsdecode(key)
        info.pax_headers[f"SCHILY.xattr.{key_text}"] = os.fsdecode(value) if isinstance(value, bytes) else value
    return info


class _FileBody(io.RawIOBase):
    """A file's data as a readable stream, pulled from the shared ordered (item, data) stream.

    Reading stops at the first pair of another item, which is kept in ``after`` for the caller."""

    def __init__(self, item: dict, first, pairs: Iterator, warn: Warn, path: str):
        super().__init__()
        self.item = item
        self._pairs = pairs
        self._warn = warn
        self._path = path
        self._sizes = [size for _, size in item.get(it.CHUNKS) or ()]
        self._index = 0
        self._buffer = memoryview(b"")
        self.after = None
        self.done = False
        self._take(first)

    def _take(self, data) -> None:
        size = self._sizes[self._index] if self._index < len(self._sizes) else 0
        self._index += 1
        if isinstance(data, BaseException):
            self._warn(self._path, f"chunk {self._index} of {len(self._sizes)} unreadable ({data}); written as zeros")
            data = bytes(size)
        self._buffer = memoryview(data)

    def readable(self) -> bool:
        return True

    def readinto(self, target) -> int:
        while not self._buffer and not self.done:
            pair = next(self._pairs, None)
            if pair is None or pair[0] is not self.item:
                self.after, self.done = pair, True
                break
            self._take(pair[1])
        n = min(len(target), len(self._buffer))
        target[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def drain(self) -> None:
        """Consume what tarfile did not read (a file whose chunks add up to more than its recorded size)."""
        while self.readinto(bytearray(1 << 16)):
            pass


def write_tar(
    reader: ChunkReader,
    items: Iterable[dict],
    out: BinaryIO,
    *,
    strip: bytes = b"",
    on_warning: Warn | None = None,
) -> ExportStats:
    """Write ``items`` (in archive order) and their data as one PAX tar stream to ``out``.

    ``strip``: a leading part of every path to drop (``dump`` of a directory keeps the directory's own
    name).  A hardlink whose target is not among ``items`` becomes a regular file with the target's data
    when that file came first in the stream, else it is skipped with a warning."""
    stats = ExportStats()
    warn = _Warner(stats, on_warning)
    names: dict[bytes, str] = {}  # archive path of every file written -> its member name (hardlink targets)
    tar = tarfile.open(  # noqa: SIM115 - closed in the finally below, after the loop that fills it
        fileobj=out, mode="w|", format=tarfile.PAX_FORMAT, encoding="utf-8", errors="surrogateescape"
    )
    try:
        pairs = iter(reader.iter_tagged(it.chunk_pairs(items)))
        pending = next(pairs, None)
        while pending is not None:
            item, data = pending
            path = item[it.PATH]
            name = _name(path, strip)
            shown = it.path_str(item)
            if item[it.TYPE] not in _TAR_TYPES:
                warn(shown, f"unknown item type {item[it.TYPE]!r}; skipped")
                pending = next(pairs, None)
                continue
            target = None
            if item[it.TYPE] == it.HARDLINK:
                target = names.get(item[it.HARDLINK_TARGET])
                if target is None:
                    warn(shown, "hardlink to a file outside the selection; skipped")
                    pending = next(pairs, None)
                    continue
            info = _tarinfo(item, name, target)
            stats.items += 1
            if item[it.TYPE] == it.FILE and data is not None:
                body = _FileBody(item, data, pairs, warn, shown)
                tar.addfile(info, io.BufferedReader(body, 1 << 16))  # tarfile wants whole reads
                body.drain()
                pending = body.after
                stats.files += 1
                stats.bytes_written += info.size
            else:
                if item[it.TYPE] == it.FILE:
                    info.size = 0 if not item.get(it.CHUNKS) else info.size
                    stats.files += 1
                tar.addfile(info)
                pending = next(pairs, None)
            if item[it.TYPE] == it.FILE:
                names[path] = name
    finally:
        tar.close()
    return stats


def write_file(reader: ChunkReader, item: dict, out: BinaryIO, *, on_warning: Warn | None = None) -> ExportStats:
    """Write one file's bytes to ``out`` (``dump`` of a file)."""
    stats = ExportStats(items=1, files=1)
    warn = _Warner(stats, on_warning)
    chunks = item.get(it.CHUNKS) or []
    shown = it.path_str(item)
    datas = reader.iter_chunks(cid for cid, _ in chunks)
    for number, ((_, size), data) in enumerate(zip(chunks, datas, strict=True), 1):
        if isinstance(data, BaseException):
            warn(shown, f"chunk {number} of {len(chunks)} unreadable ({data}); written as zeros")
            data = bytes(size)
        out.write(data)
        stats.bytes_written += len(data)
    return stats


class NotInArchive(PackvaultError):
    """The PATH given to ``dump`` is not in the archive."""
