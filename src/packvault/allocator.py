"""Tune glibc's allocator for the read paths, where every chunk or file is a fresh buffer of up to some MiB.

Restore and ``check --verify-data`` allocate and free one ciphertext run and one plaintext per chunk, a few
MiB each, from several threads; a backup's reader processes allocate one buffer per file read whole.  With
glibc's defaults each of those frees hands its pages back to the kernel (the buffer was mmap'd, or it sat at
the top of a thread's heap above the trim threshold), so the next buffer faults in fresh zeroed pages, and
a restore spends a good part of its system time zeroing memory it had just returned.  Serving MiB-sized
blocks from the heap, keeping freed heap memory, and using two arenas instead of one per thread avoids most
of those faults at the same peak RSS (bench/README.md).

The backup's own process is not given these settings on purpose: its peak RSS is the scarcer resource
there, and holding on to freed pack buffers raised it in the same measurement.  It only keeps blocks of up
to two maximum chunks once it cuts a large file (``keep_blocks_up_to``), what glibc's own thresholds used to
give it then.  A backup's reader process holds one batch (at most ``filereaders.BATCH_BYTES`` plus its
sealed objects), and a restore process one batch of small files (``restorers.BATCH_BYTES``), so keeping
their freed memory costs little.

Other C libraries (musl, macOS) have no ``mallopt`` with these parameters; there this does nothing.
"""

from __future__ import annotations

import ctypes
import sys

# glibc's malloc.h parameter numbers
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's maximum: blocks up to this size come from the heap
_TRIM_THRESHOLD = 256 * 1024 * 1024
_ARENAS = 2


# What this process set glibc's mmap threshold to (0: nothing, glibc's own dynamic threshold applies).
_mmap_threshold_set = 0


def tune_for_chunk_reads() -> bool:
    """Apply the settings above to this process (before its reader threads start); True when applied."""
    global _mmap_threshold_set
    applied = _mallopt([
        (_M_MMAP_THRESHOLD, _MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, _TRIM_THRESHOLD),
        (_M_ARENA_MAX, _ARENAS),
    ])
    if applied:
        _mmap_threshold_set = _MMAP_THRESHOLD
    return applied


def keep_blocks_up_to(size: int) -> bool:
    """Serve blocks up to ``size`` from the heap, and keep up to twice that of freed heap memory, unless this
    process already keeps more (``tune_for_chunk_reads``); True when applied.

    Why: glibc does this by itself once a block it had mmap'd is freed (its mmap threshold follows the
    largest such block), and the backup's process used to free one with every file it cut as a stream (the
    stream chunker's 8 MiB buffer): the chunk-sized copies after it came from the heap.  A chunker that keeps
    its buffer frees none, and every 1 MiB chunk copy was a fresh mmap again, its pages faulted in and handed
    back: 0.1-0.16 s more system time per GiB of large files (bench/README.md)."""
    global _mmap_threshold_set
    if _mmap_threshold_set >= size:
        return True
    applied = _mallopt([(_M_MMAP_THRESHOLD, size), (_M_TRIM_THRESHOLD, 2 * size)])
    if applied:
        _mmap_threshold_set = size
    return applied


def _mallopt(settings: list[tuple[int, int]]) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        # the C library the interpreter is linked with, by the process's own symbols: ``ctypes.util`` would
        # find it by name, but importing it (shutil, subprocess) took ~10 ms of every reader server's start
        libc = ctypes.CDLL(None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return all([mallopt(parameter, value) for parameter, value in settings])
