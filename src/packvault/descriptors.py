"""Grow the process's table of file descriptors once, up front, while the process runs one thread.

Why: the kernel grows a process's descriptor table as it opens more files (64, 128, 256, ... entries),
and in a process that runs several threads each growth waits for an RCU grace period (``synchronize_rcu``
in ``expand_files``), about 15 ms in which the thread that opened a file stands still and, in a restore,
so does everything waiting for it.  A restore of a home directory holds a few hundred files open at once
and met two such waits (bench/README.md).  Grown before any thread starts, the table costs a few KiB of
kernel memory and never waits.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import resource

DESCRIPTORS = 1024  # the table holds this many before it grows again


def grow_descriptor_table(entries: int = DESCRIPTORS) -> None:
    """Make room for ``entries`` descriptors (fewer where the process may not open that many); a no-op where
    the table is that large already.  Never closes or moves a descriptor in use."""
    with contextlib.suppress(OSError, ValueError):
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft != resource.RLIM_INFINITY:
            entries = min(entries, soft)
        fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
        try:
            # the lowest free descriptor at or above the last entry: the table grows to hold it
            high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, entries - 1)
            os.close(high)
        finally:
            os.close(fd)
