"""A regular file being restored (``OutFile``): created by the reader thread that writes its first chunk,
written with ``pwrite``, finished or removed as a whole."""

from __future__ import annotations

import contextlib
import os
import threading
from typing import TYPE_CHECKING

from ..writes import pwrite_all
from . import items as it

if TYPE_CHECKING:
    from .extract import Extractor

FILE_FLAGS = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC
TEMP_PREFIX = b".packvault-restore-"
ZEROS = bytes(16 * 1024 * 1024)


def is_zeros(data: bytes) -> bool:
    """Whether a chunk is all zeros (restore leaves it a hole in a file created at its full size).

    ``bytes.startswith`` compares with ``memcmp``; a ``memoryview`` comparison goes element by element, under
    the GIL the restore's other threads wait for, through every zero chunk of a sparse disk image."""
    return len(data) <= len(ZEROS) and ZEROS.startswith(data)


def temp_name() -> bytes:
    return TEMP_PREFIX + os.urandom(8).hex().encode()



class OutFile:
    """A regular file being restored, written with ``pwrite`` from reader threads.

    The file is created by whichever reader thread writes its first chunk (at its final size, so chunks can
    land in any order and all-zero chunks stay holes), not by the planning thread: file creation then
    overlaps the downloads instead of preceding the first read, as restic does it.  Where something already
    exists, the file is written under a temporary name and renamed over it when complete
    (``OverwritePolicy._put_in_place``).
    """

    def __init__(self, extractor: Extractor, dir_fd: int | None, name: bytes, rel: bytes, item: dict):
        self.extractor = extractor
        self.dir_fd = dir_fd  # None in a dry run
        self.name = name
        self.open_name = name  # where it is being written: ``name``, or a temporary name beside it
        self.rel = rel
        self.item = item
        self.failed: str | None = None
        self.written = 0
        self.remaining = 0
        self.links: list[tuple[int, bytes]] = []  # hardlinks made to this file before its data arrived
        self.superseded = False  # a later entry of the archive has the same path
        self.created = False
        self.to_worker = False  # its one chunk goes, sealed, to a restore process (``restorers.py``)
        self._create_lock = threading.Lock()

    @property
    def _inactive(self) -> bool:
        return self.dir_fd is None or self.superseded

    def _create(self) -> int:
        flags = FILE_FLAGS | os.O_CREAT | os.O_EXCL
        try:  # the usual case, a path where nothing is yet: one call, and nothing can be followed
            fd = os.open(self.name, flags, 0o600, dir_fd=self.dir_fd)
        except FileExistsError:  # restoring over something: it stays until this file is complete
            self.open_name = temp_name()
            fd = os.open(self.open_name, flags, 0o600, dir_fd=self.dir_fd)
        try:
            if self.item.get(it.SIZE):
                os.ftruncate(fd, self.item[it.SIZE])
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
        return os.open(self.open_name, FILE_FLAGS, dir_fd=self.dir_fd)

    def create_now(self) -> None:
        """Create the file before its data arrives (a hardlink to it is about to be made)."""
        if not self._inactive:
            os.close(self._open())

    def descriptor(self) -> int | None:
        """At the end of a file that got no write (empty, or holes only): a descriptor to finish it through
        (the file is created if no hardlink needed it earlier); None in a dry run or for a superseded entry."""
        if self._inactive:
            return None
        return self._open()

    def write_at(self, offset: int, data: bytes, sparse: bool) -> int | None:
        """Write one chunk; returns the open descriptor (the caller closes it), or None if nothing was
        written (a dry run, a superseded entry, or an all-zero chunk left as a hole)."""
        if self._inactive:
            return None
        if sparse and is_zeros(data):
            return None  # the file is created at full size: this stays a hole
        # opened per chunk rather than held: a batch may have thousands of files in progress
        fd = self._open()
        try:
            pwrite_all(fd, data, offset)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def abort(self) -> None:
        """Remove what this restore made: the file (only if it was created: whatever was at its path before
        stays) and the hardlinks made to it."""
        if self.dir_fd is None:
            return
        for dir_fd, name in (*self.links, *(((self.dir_fd, self.open_name),) if self.created else ())):
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dir_fd)
        self.links = []
        self.created = False
