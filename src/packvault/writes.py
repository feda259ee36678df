"""Writing into the page cache: never more than ``WRITE_PIECE`` bytes in one system call.

Why: Linux sizes the page-cache folios of a buffered write by the length of the write.  A write of 2 MiB or
more at an aligned offset gets folios of 2 MiB, which the page allocator cuts from its largest free blocks.
Under a hypervisor that takes back the memory a guest frees (virtio-balloon free page reporting, which
reports free blocks of 2 MiB and more; the benchmark's VM has it on) those are exactly the blocks the guest
has handed back, so every page of such a folio faults into the host on its first touch.  Smaller folios come
from the guest's fragmented free memory, which stays backed.  A backup writing packs and a restore writing
files paid for this in system time on both cores, at random.

The piece is small enough that such blocks are not drawn on even over gigabytes of writes, and large enough
that the extra system calls don't show; the measurements are in bench/README.md (sixteenth round).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence

WRITE_PIECE = 256 * 1024
try:
    _IOV_MAX = max(16, os.sysconf("SC_IOV_MAX"))  # buffers one writev takes (Linux: 1024)
except (ValueError, OSError):
    _IOV_MAX = 16


def pwrite_all(fd: int, data: bytes | memoryview, offset: int) -> int:
    """Write all of ``data`` at ``offset`` of ``fd``; returns the offset after it."""
    view = memoryview(data)
    while view:
        done = os.pwrite(fd, view[:WRITE_PIECE], offset)
        if not done:
            raise OSError(errno.EIO, "a positioned write made no progress")
        view = view[done:]
        offset += done
    return offset


def write_gathered(fd: int, buffers: Sequence[bytes | memoryview]) -> None:
    """Write ``buffers`` back to back at ``fd``'s offset, each call a gathered write (``writev``) of up to
    ``WRITE_PIECE`` bytes in at most the system's limit of buffers, going on after a short write (a full
    disk raises on the call after it)."""
    views = [memoryview(buffer) for buffer in buffers]
    first = 0
    while first < len(views):
        call: list[memoryview] = []
        size = 0
        for view in views[first : first + _IOV_MAX]:
            if size >= WRITE_PIECE:
                break
            call.append(view[: WRITE_PIECE - size])
            size += len(call[-1])
        written = os.writev(fd, call)
        if not written and size:
            raise OSError(errno.EIO, "a gathered write made no progress")
        while first < len(views) and written >= len(views[first]):
            written -= len(views[first])
            first += 1
        if written:
            views[first] = views[first][written:]
