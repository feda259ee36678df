"""Reader processes: small files are opened, read, cut, hashed, compressed and sealed next to the backup.

Why processes and not threads: on a tree of small files the per-file path (open, read, fstat, close, cut,
hash, seal) is mostly Python-level work between short system calls, and every one of those calls hands
the GIL over and waits to get it back from the sealing threads.  One process then keeps about one core
busy however many threads it has.  Worker processes each own a GIL, so the cut-to-sealed part runs on the
other cores while the backup's process walks the tree, consults the files cache, appends sealed objects to
packs and writes the item stream, in archive order.

What crosses the process boundary is small: a batch of (path, expected size) goes out, and for each file
its chunk ids and sizes, and its extended attributes (read through the open file, the walk leaves them to
the read), or the error that reading met, come back.  The sealed objects themselves do not cross the
pipe: the reader writes them into a region of shared memory the backup reserved for the batch
(``sharedarena.py``; the pool is ``readerpool.py``, the reader's side ``readerprocess.py``).  Each worker seals with
a writer session of its own (``SealingKit.codec``), so nonces never repeat across processes.  A worker
cannot know what the repository has already; a chunk it seals that turns out to be known is dropped by the
writer (``put_sealed_objects``) at the cost of the sealing, which on a first backup or a day's changes is rare.

Regular files up to ``READER_MAX_FILE`` go this way, read whole in one step and cut in memory (the cut
points are those of the stream chunker).  Larger files stream through the backup's own process, where
holding them whole would cost their size in memory, and where sealing threads use the cores; they wait in
the queue until it is full, so that the readers have the small files behind them meanwhile.  Taking files
up to 16 MiB (photos, logs) as well was measured: the first backup of the 25,000-file tree was no faster,
and a day-2 backup, whose changed files are mostly grown logs, was ~0.1 s slower (the sealed logs crossed
the pipe and were unpickled on the backup's side).  The exception is a sparse file (a disk image): its data
regions are cut one by one anyway, so when each fits a reader (and all of them ``QUEUED_BYTES``) they go to
the readers as jobs of their own, (path, size, offset), as soon as the walk lists the file; the backup's
process puts the chunks of its holes and the regions' objects when its turn comes (``sparsefiles.py``).
Last in a home directory's walk, a disk image was read by the backup's process alone while the readers had
nothing left to do.
A platform that cannot start processes (no ``/dev/shm`` in AWS Lambda) or a pool that breaks makes the
backup read in its own process: slower, never different.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field

from ..chunking.chunker import Chunker
from ..repository.sealing import SealingKit
from . import items as it
from .readerpool import ReaderPool
from .readerprocess import CHUNK_RECORD
from .walker import Entry

BATCH_FILES = 64  # files per task: amortizes the round trip (~100 us) over many small files
BATCH_BYTES = 4 * 1024 * 1024  # and bounds what one task holds in memory
READER_MAX_FILE = 4 * 1024 * 1024  # one maximum chunk; larger files stream through the backup's process
# Bytes of files handed to readers and not yet in the item stream: their reads (sealed objects) wait in the
# backup's memory until their turn, so this bounds that memory, not only the number of entries.
QUEUED_BYTES = 32 * 1024 * 1024
# Batches' worth of entries queued per reader process before the walk waits for the head of the queue.  While
# the backup's process reads a large file, the readers live on the small files queued behind it: with 4
# batches' worth each they ran dry during every large file of a home directory's tree.
QUEUED_BATCHES = 16
# Batches whose turn comes before a reader process is up are read by the backup's process (``ReaderPool.warm``);
# tests that need every batch to go to the readers turn this off.
READ_WHILE_STARTING = True


@dataclass
class FileRead:
    """What a reader process made of one file."""

    chunks: list[tuple[bytes, int]]  # (chunk id, plaintext size)
    size_after: int | None = None  # fstat after reading; None when the read failed
    mtime_after: int | None = None
    error: OSError | None = None  # open/read failed (the file is not stored; the backup warns)
    grown: bool = False  # the file holds more than it did when listed: read it in the backup's process
    xattrs: dict[bytes, bytes] | None = None  # its extended attributes, read through the open file
    # With the first file of a batch: the sealed objects of the whole batch, back to back, and their (chunk id,
    # plaintext size, sealed size), for ``RepositoryWriter.put_sealed_objects`` in one go.
    objects: tuple[bytes | bytearray, list[tuple[bytes, int, int]]] | None = None


# A batch's reads travel as three objects, not thousands: the sealed objects back to back in one buffer (or
# their byte count in the arena), one packed record per chunk, and one small tuple per file.  Unpickling
# small objects one by one took about a second of the backup process's GIL per 25,000 files, time its main
# thread waited for.
BatchReads = tuple[bytes | bytearray, bytearray, list[tuple]]  # (sealed objects, chunk records, per-file tuples)


def _region_batches(path: bytes, regions: list[tuple[int, int]], opened_at: int) -> list[_Batch]:
    """The data regions of one sparse file as reader jobs, in batches of the usual bounds."""
    batches = [_Batch(opened_at=opened_at)]
    for start, end in regions:
        batch = batches[-1]
        if batch.jobs and (len(batch.jobs) >= BATCH_FILES or batch.nbytes + end - start > BATCH_BYTES):
            batch = _Batch(opened_at=opened_at)
            batches.append(batch)
        batch.jobs.append((path, end - start, start))
        batch.nbytes += end - start
    return batches


@dataclass
class _Batch:
    """Small files handed to one reader process together; their reads come back in the same order."""

    jobs: list[tuple] = field(default_factory=list)  # (path, size), or (path, size, offset) for a region
    nbytes: int = 0
    future: Future | None = None
    reads: BatchReads | None = None
    taken: int = 0
    opened_at: int = 0  # entries queued before its first file (``ReadQueue.add``)
    failed: bool = False  # read by the backup process from here on (see ``take``)
    _records: list[tuple[bytes, int, int]] | None = None  # reads[1] decoded, once the first file is taken
    _chunk_at: int = 0  # the next file's first record in ``_records``

    def take(self) -> FileRead | None:
        """The next file's read, in order (waits for the reader); None when no reader read it."""
        if self.reads is None and self.future is not None:
            try:
                self.reads = self.future.result()
            except Exception:  # a reader process died, or the pool was shut down
                self.failed = True
        if self.future is None:
            # Never handed to a reader (no pool yet, or none at all): this file is read by the backup process,
            # and so is the rest of the batch.  Handing the rest over later would pair the reader's results,
            # which start at the batch's first file, with the wrong files.
            self.failed = True
        index = self.taken
        self.taken += 1
        if self.reads is None or self.failed:
            return None
        sealed, records, files = self.reads
        objects = None
        if self._records is None:
            self._records = list(CHUNK_RECORD.iter_unpack(records))
            objects = (sealed, self._records)
        nchunks, size_after, mtime_after, error, grown, xattrs = files[index]
        at = self._chunk_at
        self._chunk_at = at + nchunks
        chunks = [(chunk_id, size) for chunk_id, size, _ in self._records[at : at + nchunks]]
        return FileRead(chunks, size_after, mtime_after, error, grown, xattrs, objects)


@dataclass
class Queued:
    """An entry waiting for its turn in the item stream.

    ``waits``: a reader process was asked to read it; once the entry comes out of ``ReadQueue.ready``,
    ``read`` holds what it made of the file (None: no reader did, read it here).  ``later``: a file the
    backup's process reads itself when its turn comes (``ReadQueue.add_for_later``).  Otherwise ``chunks``
    are the file's chunks (None for entries without data), and ``skip`` says it could not be read at all."""

    entry: Entry
    chunks: list[tuple[bytes, int]] | None = None
    skip: bool = False
    batch: _Batch | None = None
    read: FileRead | None = None
    queued_bytes: int = 0  # the size it counts for in ``ReadQueue.full`` until it is out of the queue
    later: bool = False
    read_ahead: bool = False  # a later file read before its turn (``ReadQueue.ready``'s ``meanwhile``)
    # a later sparse file whose data regions the readers read: the regions, and the batches holding them
    regions: list[tuple[int, int]] | None = None
    region_batches: list[_Batch] = field(default_factory=list)

    @property
    def waits(self) -> bool:
        return self.batch is not None

    def region_reads(self) -> tuple[list[tuple[int, int]], list[FileRead]] | None:
        """The data regions of a sparse file and what the readers made of each, in order (waits for them);
        None when they were not given to the readers, or any was not read as listed (then the file is read
        here, whole)."""
        if self.regions is None or not self.region_batches:
            return None
        reads = [batch.take() for batch in self.region_batches for _ in batch.jobs]
        if any(read is None or read.error is not None or read.grown for read in reads):
            return None
        return self.regions, reads  # type: ignore[return-value]

    @property
    def regions_done(self) -> bool:
        return all(batch.future is not None and batch.future.done() for batch in self.region_batches)


class ReadQueue:
    """The entries of a backup in archive order, the small files among them read by reader processes.

    The item stream must list entries in walk order, but reads finish out of order, so entries queue here
    until everything before them is done.  The queue is bounded (``full``): a backup that outruns its
    readers waits for them instead of holding the tree in memory."""

    def __init__(self, kit: SealingKit, processes: int):
        self._kit = kit
        self._chunker: Chunker | None = None  # finds the data regions of sparse files (``add_for_later``)
        self._readers = ReaderPool(kit, processes) if processes else None
        self._limit = processes * QUEUED_BATCHES * BATCH_FILES
        self._part_batch_after = processes * BATCH_FILES  # entries behind a batch that is not full yet
        self._queue: deque[Queued] = deque()
        self._later: deque[Queued] = deque()  # the later files in the queue not read yet, in queue order
        self._gathering: _Batch | None = None
        self._unsent: deque[_Batch] = deque()  # complete batches waiting for a reader process to be up
        self._queued_bytes = 0  # sizes of the files queued for readers, not yet out of ``ready``
        self._added = 0  # entries queued so far

    @property
    def full(self) -> bool:
        return len(self._queue) > self._limit or self._queued_bytes > QUEUED_BYTES

    @staticmethod
    def takes(entry: Entry) -> bool:
        """Whether a reader process may read this file (a regular file on the local file system, not too
        large to hold whole)."""
        return entry.local_file and entry.item.get(it.SIZE, 0) <= READER_MAX_FILE

    def add(self, entry: Entry, chunks: list[tuple[bytes, int]] | None = None) -> None:
        """Queue an entry whose data is dealt with: its ``chunks``; None for an entry without data, or for a
        file that could not be read (warned, left out)."""
        self._queue.append(Queued(entry, chunks, skip=chunks is None and entry.opener is not None))
        self._count_added()

    def _count_added(self) -> None:
        self._added += 1
        gathering = self._gathering
        if gathering is not None and self._added - gathering.opened_at > self._part_batch_after:
            # A batch that fills slowly (day 2: changed files among unchanged ones) is read while the walk
            # goes on; held back until it reached the head of a full queue, the backup's process would wait
            # for all of its read.
            self._submit(gathering)

    def add_for_later(self, entry: Entry) -> bool:
        """Queue a file too large for a reader, to be read by the backup's process once the queue is full
        (or at the end, or while it waits for a reader's batch ahead of it: ``ready``), not now; False when
        there are no readers (read it now).

        Read at once, a large file kept the backup's process from walking on for its whole read, and the
        readers ran out of small files meanwhile.  Left in the queue, the walk goes on and hands the files
        behind it to the readers first, so they are busy while the backup's process reads it."""
        if self._readers is None or not entry.local_file:
            return False
        queued = Queued(entry, later=True)
        regions = self._sparse_regions(entry)
        if regions is not None:
            # a sparse file (a disk image): its data regions are cut one by one anyway, so the readers read
            # them now, side by side, and the backup's process only puts their objects when its turn comes
            queued.regions = regions
            queued.region_batches = _region_batches(entry.source_path, regions, self._added)
            queued.queued_bytes = sum(end - start for start, end in regions)
            self._queued_bytes += queued.queued_bytes
        self._queue.append(queued)
        self._later.append(queued)
        self._count_added()
        for batch in queued.region_batches:
            self._submit(batch)
        return True

    def _sparse_regions(self, entry: Entry) -> list[tuple[int, int]] | None:
        """The data regions of a sparse file, when each is small enough for a reader and all of them within
        ``QUEUED_BYTES`` (their sealed objects wait in memory until the file's turn: a disk image with GiBs
        of data streams through this process as before); None otherwise, and where the file cannot be
        opened now (its read meets that again and warns)."""
        if self._chunker is None:
            self._chunker = self._kit.chunker()
        try:
            with entry.opener() as f:
                regions = self._chunker.sparse_regions(f, entry.item.get(it.SIZE, 0))
        except OSError:
            return None
        if not regions or any(end - start > READER_MAX_FILE for start, end in regions):
            return None
        if sum(end - start for start, end in regions) > QUEUED_BYTES:
            return None
        return regions

    def add_for_reader(self, entry: Entry) -> bool:
        """Queue a small regular file for a reader process; False when there is none (read it here)."""
        if self._readers is None:
            return False
        batch = self._gathering
        if batch is None:
            batch = self._gathering = _Batch(opened_at=self._added)
        self._added += 1
        size = entry.item.get(it.SIZE, 0)
        batch.jobs.append((entry.source_path, size))
        batch.nbytes += size
        self._queued_bytes += size
        self._queue.append(Queued(entry, batch=batch, queued_bytes=size))
        if len(batch.jobs) >= BATCH_FILES or batch.nbytes >= BATCH_BYTES:
            self._submit(batch)
        return True

    def ready(
        self, *, wait: bool, last: bool = False, meanwhile: Callable[[Queued], None] | None = None
    ) -> Iterator[Queued]:
        """Entries whose turn it is, in order: up to the first whose read is not done; with ``wait`` until
        the queue is half empty; with ``last`` all of them, and then the reader processes may exit while the
        caller goes on (its last steps, a commit, overlap their exit; ``close`` still waits for them).

        ``meanwhile`` reads a later file (as the caller does once one's turn comes).  Where the queue would
        wait for a reader's batch at its head, it is handed the later files further back, one at a time while
        the batch is not done: the backup's process reads them then instead of idling, and each still goes
        into the item stream in its place, marked ``read_ahead``."""
        self._send()
        queue = self._queue
        while queue:
            head = queue[0]
            if head.later and not head.read_ahead and not (wait or last):
                return  # read once the queue is full: the readers have the files behind it meanwhile
            batch = head.batch
            if batch is not None:
                if not (wait or last) and (batch.future is None or not batch.future.done()):
                    return  # still gathering, or being read
                if batch.future is None and not batch.failed:
                    self._submit(batch)
                if meanwhile is not None:
                    self._read_ahead(batch, meanwhile)
                head.read = batch.take()
            elif self._later and self._later[0] is head:
                self._later.popleft()
            self._queued_bytes -= head.queued_bytes
            queue.popleft()
            wait = wait and (len(queue) > self._limit // 2 or self._queued_bytes > QUEUED_BYTES // 2)
            yield head
        if last and self._readers is not None:
            self._readers.let_go()

    def _read_ahead(self, batch: _Batch, meanwhile: Callable[[Queued], None]) -> None:
        """Hand ``meanwhile`` the next later files while a reader is still on ``batch``."""
        future = batch.future
        while future is not None and self._later and not future.done():
            if self._later[0].region_batches and not self._later[0].regions_done:
                return  # its regions are still with the readers, behind this batch
            queued = self._later.popleft()
            meanwhile(queued)
            queued.read_ahead = True

    def close(self) -> None:
        if self._readers is not None:
            self._readers.close()
            self._readers = None

    def _submit(self, batch: _Batch) -> None:
        if batch is self._gathering:
            self._gathering = None
        if self._readers is None or batch.future is not None or batch.failed or batch.taken:
            return  # no pool (any more), or begun here: the files are read in the backup's process
        if not self._readers.started and len(batch.jobs) < BATCH_FILES and batch.nbytes < BATCH_BYTES:
            return  # a handful of files: not worth starting processes for (~0.1 s each)
        try:
            self._readers.start()
        except Exception:  # no processes here (no /dev/shm, a limit): read in the backup's process from now on
            self.close()
            return
        self._unsent.append(batch)
        self._send()

    def _send(self) -> None:
        """Hand the complete batches to the readers, in order, once a reader process is up.  Until then a batch
        whose turn comes is read by the backup's process (``_Batch.take``: never handed over), which
        would otherwise sit idle for the processes' start-up."""
        if not self._unsent or self._readers is None or (READ_WHILE_STARTING and not self._readers.warm):
            return
        while self._unsent:
            batch = self._unsent.popleft()
            if batch.future is not None or batch.failed or batch.taken:
                continue  # begun here meanwhile: the whole batch is read here
            try:
                batch.future = self._readers.submit(batch.jobs)
            except Exception:  # the pool broke: read in the backup's process from now on
                self.close()
                return
