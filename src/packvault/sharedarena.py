"""Shared memory between a command and its worker processes, for results too large for a pipe to carry well.

Why: a backup's reader processes used to send each batch's sealed objects back through the process pool's
result pipe.  A pipe moves 64 KiB per wake-up, and every wake-up needs the pool's result thread, which
needs the backup process's GIL, which its main thread holds while it walks: a batch of photos (6 MB
sealed) took 30-50 ms to arrive after a reader had sealed it in 5-12 ms, and the reader sat in ``send``
meanwhile instead of reading the next batch.  Written into shared memory, the bytes cross no pipe at
all: the worker writes them where the command can read them, and only a few numbers go through the pipe.

The arena is one anonymous memory file (``memfd``), mapped by the command and by each worker (its
descriptor travels with the worker's start-up arguments).  The command reserves a region per task, in
task order, and releases it once it has copied the result out; reservations form a ring, and a region
that does not fit is not reserved (the task then sends its result through the pipe, as before).
"""

from __future__ import annotations

import mmap
import os
import threading
from collections import deque
from multiprocessing import reduction


class SharedArena:
    """A ring of regions in one shared mapping: ``reserve`` hands out space in order, ``release`` takes it
    back in any order (the space is reused once every older region is released too)."""

    def __init__(self, size: int):
        """Raises OSError where no memory file can be made (not Linux, no ``memfd_create``)."""
        create = getattr(os, "memfd_create", None)
        if create is None:
            raise OSError("no memfd_create here")
        fd = create("packvault-results", os.MFD_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self.size = size
        self._lock = threading.Lock()  # reserve: the command's main thread; release: the pool's result thread
        self._regions: deque[list] = deque()  # [start, length, released] in reservation order

    def reserve(self, length: int) -> int | None:
        """The start of a free region of ``length`` (> 0) bytes, or None when there is no room now."""
        with self._lock:
            if self._map.closed:
                return None
            regions = self._regions
            if not regions:
                start = 0 if length <= self.size else None
            else:
                oldest, newest = regions[0][0], regions[-1][0]
                head = newest + regions[-1][1]
                if newest >= oldest:  # not wrapped: room up to the end, else from 0 up to the oldest region
                    start = head if head + length <= self.size else (0 if length <= oldest else None)
                else:  # wrapped: room between the newest region and the oldest
                    start = head if head + length <= oldest else None
            if start is not None:
                regions.append([start, length, False])
            return start

    def release(self, start: int) -> None:
        """Give back the region reserved at ``start``."""
        with self._lock:
            for region in self._regions:
                if region[0] == start and not region[2]:
                    region[2] = True
                    break
            while self._regions and self._regions[0][2]:
                self._regions.popleft()

    def read(self, start: int, length: int) -> bytes:
        """A copy of ``length`` bytes at ``start``: the region can be released right after."""
        return self._map[start : start + length]

    def for_worker(self) -> WorkerArena:
        """What a worker process is started with (pickled with its start-up arguments, the descriptor with
        them)."""
        return WorkerArena(self._fd, self.size)

    def close(self) -> None:
        with self._lock:
            if not self._map.closed:
                self._map.close()
                os.close(self._fd)
            self._regions.clear()


class WorkerArena:
    """The arena as a worker process maps it.  Pickled only as part of a worker's start-up arguments (the
    process pool passes the descriptor with them); unpickled, it is the mapping itself."""

    def __init__(self, fd: int, size: int):
        self._fd = fd
        self._size = size

    def __reduce__(self):  # noqa: ANN204 - pickle protocol
        return _map_in_worker, (reduction.DupFd(self._fd), self._size)


def _map_in_worker(dup, size: int) -> mmap.mmap:  # noqa: ANN001 - the pool's descriptor handle
    fd = dup.detach()
    try:
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


class RegionWriter:
    """A worker's output for one task: into its reserved region while it fits, then into memory of its own
    (sent through the pipe).  ``result()``: the byte count in the region, or the bytes to send."""

    __slots__ = ("_arena", "_start", "_limit", "_size", "_spill")

    def __init__(self, arena: mmap.mmap | None, start: int | None, length: int):
        self._arena = arena
        self._start = start if arena is not None else None
        self._limit = length
        self._size = 0
        self._spill: bytearray | None = None if self._start is not None else bytearray()

    def add(self, data: bytes) -> None:
        spill = self._spill
        if spill is not None:
            spill += data
            return
        size = self._size
        end = size + len(data)
        if end > self._limit:  # more than reserved: everything goes through the pipe after all
            start = self._start
            spill = self._spill = bytearray(self._arena[start : start + size])
            spill += data
            return
        start = self._start + size
        self._arena[start : start + len(data)] = data
        self._size = end

    def result(self) -> int | bytearray:
        return self._spill if self._spill is not None else self._size
