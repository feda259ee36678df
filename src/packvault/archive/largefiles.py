"""The thread that reads a backup's large files, beside the walk.

A file too large for a reader process (``filereaders.READER_MAX_FILE``) streams through the backup's own
process.  Read by the main thread when its turn came in the queue, it stopped the walk for the whole file:
the readers ran out of small files meanwhile (a 48 MiB database dump early in a home directory's walk left
them idle for ~0.15 s), and at the end of the walk only the main thread read while the cores had room.  Here
one thread reads, cuts, hashes and puts each large file as soon as the walk lists it, in walk order, while
the main thread walks on and hands the files behind it to the readers; the file's item goes into the
archive in its place once the main thread gets to it.  Reading, cutting, hashing and sealing release the
GIL, so the thread costs the walk little of it.

The thread owns a chunker of its own (a chunker keeps its stream buffer) and shares the repository writer,
whose puts take turns.  What it made of a file (``LargeRead``) is only looked at by the main thread, which
keeps the files cache, the statistics and the warnings, so those stay single-threaded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field


class Stopped(Exception):
    """The backup is stopping (a failure, an interrupt, the deadline): the file being read is abandoned."""


@dataclass
class LargeRead:
    """A large file's read, filled in by the reading thread.  ``bytes_read`` grows as it reads (progress for
    the main thread while it waits); the rest is set once the read is done."""

    bytes_read: int = 0
    chunks: list[tuple[bytes, int]] = field(default_factory=list)
    after: tuple[int | None, int | None] | None = None  # (size, mtime) by fstat after reading
    future: Future | None = None


class LargeFileReader:
    """One thread, reading the files it is given in the order given."""

    def __init__(self) -> None:
        self._pool: ThreadPoolExecutor | None = None
        self._stopping = threading.Event()

    def submit(self, read: Callable[[LargeRead], None]) -> LargeRead:
        """Start ``read`` (which fills in the ``LargeRead`` it is handed) after the files submitted before."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="pv-large")
        large = LargeRead()
        large.future = self._pool.submit(read, large)
        return large

    def check(self) -> None:
        """Raise ``Stopped`` once ``close`` was called: the reading thread asks between chunks."""
        if self._stopping.is_set():
            raise Stopped

    def close(self) -> None:
        """Stop: the file being read is abandoned at its next chunk, those not begun are never read; returns
        once the thread puts nothing more into the writer."""
        self._stopping.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
