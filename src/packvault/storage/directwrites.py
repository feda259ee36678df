"""Writing a file past the page cache (``O_DIRECT``), for the spool files that become a local repository's packs.

Why: each pack is ``fsync``ed before it is linked in, so caching its pages buys nothing while it is written,
and copying it into the page cache was the spool thread's whole cost.  On a VM whose host takes back the
memory the guest frees (free page reporting, ``writes.py``), those page-cache pages are also fresh memory to
fault in, and the spool thread's copy became a backup's slowest part at random (bench/README.md, twentieth
round).  The hashes that name the pack are fed here too, as the bytes go out, so the upload thread no longer
reads the pack back.  The packs are not in the page cache afterwards, as after any reboot, and the files a
user has cached are not pushed out by them.

Direct writes need aligned offsets, lengths and memory: bytes are staged in a page-aligned buffer of
``DIRECT_BUFFER`` bytes, written whole when full; ``complete`` writes what is staged padded to
``DIRECT_ALIGN`` and truncates the file to its length, and the staged bytes stay, to be written again with
those that follow.  Only local disks' file systems are written so (``DIRECT_FILE_SYSTEMS``), and one that
refuses a direct write makes the file buffered from there on (the same positioned writes, through the page
cache).
"""

from __future__ import annotations

import errno
import fcntl
import mmap
import os
import threading

from ..writes import pwrite_all

DIRECT_BUFFER = 1024 * 1024  # the staging buffer each direct write is made from
DIRECT_ALIGN = 4096  # offsets and lengths of direct writes: every common disk's logical block size is at most this

_O_DIRECT = getattr(os, "O_DIRECT", 0)  # 0 where the platform has no direct I/O


def _set_direct(fd: int, on: bool) -> None:
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags | _O_DIRECT if on else flags & ~_O_DIRECT)


class DirectWriter:
    """One file written past the page cache, from one thread at a time (a spool file's, in the spool thread),
    hashing what it writes."""

    def __init__(self, fd: int, hashes: list, buffer: mmap.mmap):
        self._fd = fd
        self._hashes = hashes
        self._buffer = buffer
        self._view = memoryview(buffer)
        self._offset = 0  # file offset of the buffer's first byte
        self._fill = 0  # bytes staged in the buffer
        self._hashed = 0  # staged bytes already fed to the hashes
        self._completed = -1  # the length ``complete`` last made the file

    @classmethod
    def for_file(cls, fd: int, hashes: list) -> DirectWriter | None:
        """A direct writer for ``fd``, or None where this file is not written directly: a file system that is
        not a local disk's (``DIRECT_FILE_SYSTEMS``), or one that cannot open it for direct I/O."""
        if not _O_DIRECT or file_system_type(fd) not in DIRECT_FILE_SYSTEMS:
            return None
        try:
            _set_direct(fd, True)
        except OSError:  # EINVAL: the file system has no direct I/O (tmpfs, some FUSE file systems)
            return None
        return cls(fd, hashes, _staging_buffer())

    def write(self, block: list[bytes | memoryview]) -> None:
        """Stage ``block`` after what is staged, writing every buffer that fills."""
        size = DIRECT_BUFFER
        for piece in block:
            view = memoryview(piece)
            if view.format != "B":
                view = view.cast("B")
            while view:
                n = min(len(view), size - self._fill)
                self._view[self._fill : self._fill + n] = view[:n]
                self._fill += n
                view = view[n:]
                if self._fill == size:
                    self._hash_staged()
                    self._pwrite(self._view, self._offset)
                    self._offset += size
                    self._fill = self._hashed = 0

    def complete(self, size: int) -> None:
        """Write what is staged and make the file ``size`` bytes long (all that was handed over)."""
        if size == self._completed:
            return
        self._hash_staged()
        if self._fill:
            padded = -(-self._fill // DIRECT_ALIGN) * DIRECT_ALIGN
            self._pwrite(self._view[:padded], self._offset)
        os.ftruncate(self._fd, size)
        self._completed = size

    def end(self, size: int) -> None:
        """Make the descriptor an ordinary one again, positioned at ``size`` (after ``complete``)."""
        _set_direct(self._fd, False)
        os.lseek(self._fd, size, os.SEEK_SET)
        self.release()

    def release(self) -> None:
        """Give the staging buffer back for the next spool file (a buffer used before is memory already
        faulted in); the writer is done."""
        if self._buffer is not None:
            self._view.release()
            _give_back_staging_buffer(self._buffer)
            self._buffer = None

    def _hash_staged(self) -> None:
        if self._hashed < self._fill:
            staged = self._view[self._hashed : self._fill]
            for h in self._hashes:
                h.update(staged)
            self._hashed = self._fill

    def _pwrite(self, view: memoryview, offset: int) -> None:
        """Write ``view`` at ``offset`` in as few calls as the kernel takes: not ``writes.pwrite_all``, whose
        256 KiB pieces are for page-cache folios and cost direct writes of 300 MiB ~15 % more device time."""
        try:
            while view:
                done = os.pwrite(self._fd, view, offset)
                if not done:
                    raise OSError(errno.EIO, "a direct write made no progress")
                view, offset = view[done:], offset + done
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            # the file system took the flag and refuses the write (an alignment it needs larger than ours):
            # write buffered from here on, the same bytes at the same offset
            _set_direct(self._fd, False)
            pwrite_all(self._fd, view, offset)


# File systems on local disks, where a direct write goes to the device at the device's speed.  Elsewhere a file
# is written through the page cache: over NFS or a FUSE file system each direct write would wait for the
# server, and a file system outside this list may take the flag without doing direct I/O well.
DIRECT_FILE_SYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs"})
_file_system_types: dict[int, str] = {}


def file_system_type(fd: int) -> str:
    """The type of the file system ``fd`` is on, as ``/proc/self/mountinfo`` names it ("" when unknown)."""
    device = os.fstat(fd).st_dev
    known = _file_system_types.get(device)
    if known is not None:
        return known
    wanted = f"{os.major(device)}:{os.minor(device)}"
    found = ""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mounts:
            for line in mounts:
                fields, _, described = line.partition(" - ")
                ids = fields.split()
                if len(ids) > 2 and ids[2] == wanted and described:
                    found = described.split()[0]
                    break
    except OSError:  # no /proc: not Linux, or a sandbox without it
        pass
    _file_system_types[device] = found
    return found


_staging_buffers: list[mmap.mmap] = []
_staging_lock = threading.Lock()
_STAGING_BUFFERS_KEPT = 4


def _staging_buffer() -> mmap.mmap:
    with _staging_lock:
        if _staging_buffers:
            return _staging_buffers.pop()
    return mmap.mmap(-1, DIRECT_BUFFER)


def _give_back_staging_buffer(buffer: mmap.mmap) -> None:
    with _staging_lock:
        if len(_staging_buffers) < _STAGING_BUFFERS_KEPT:
            _staging_buffers.append(buffer)
            return
    buffer.close()
