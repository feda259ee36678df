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
(``sharedarena.py``; the reader's side is ``readerprocess.py``).  Each worker seals with
a writer session of its own (``SealingKit.codec``), so nonces never repeat across processes.  A worker
cannot know what the repository has already; a chunk it seals that turns out to be known is dropped by the
writer (``put_sealed_objects``) at the cost of the sealing, which on a first backup or a day's changes is rare.

Regular files up to ``READER_MAX_FILE`` go this way, read whole in one step and cut in memory (the cut
points are those of the stream chunker).  Larger files stream through the backup's own process, where
holding them whole would cost their size in memory, and where sealing threads use the cores; they wait in
the queue until it is full, so that the readers have the small files behind them meanwhile.  Taking files
up to 16 MiB (photos, logs) as well was measured: the first backup of the 25,000-file tree was no faster,
and a day-2 backup, whose changed files are mostly grown logs, was ~0.1 s slower (the sealed logs crossed
the pipe and were unpickled on the backup's side).
A platform that cannot start processes (no ``/dev/shm`` in AWS Lambda) or a pool that breaks makes the
backup read in its own process: slower, never different.
"""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field

from ..processes import interrupts_ignored, start_workers_meanwhile, worker_pool
from ..repository.sealing import SealingKit
from ..sharedarena import SharedArena
from . import items as it
from . import readerprocess
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
# While reader processes run, the backup's main thread (walk, files cache, packs, item stream) is what the others
# wait for; a thread of this process that holds the GIL when it wants it (the pool's result thread copying a batch
# out of the arena, the spool and sealing threads) keeps it up to the switch interval, 5 ms by default.
MAIN_THREAD_SWITCH_INTERVAL = 0.001
# Shared memory the readers write their sealed objects into (``sharedarena.py``): room for a few batches of the
# largest kind; a batch that finds none sends its objects through the pool's pipe instead.
ARENA_BYTES = 32 * 1024 * 1024


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


class ReaderPool:
    """A pool of reader processes, started on first use (a backup of few files starts none; only their server
    runs, started as the command began, ``cli/early_readers.py``).

    Starting one takes a while (the server's imports, the key material), so the processes start from a thread
    of their own and the pool says when one is up (``warm``): until then the backup's process reads the
    batches whose turn comes itself instead of waiting for the start-up."""

    def __init__(self, kit: SealingKit, processes: int):
        self._kit = kit
        self._processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._arena: SharedArena | None = None
        self._starting: list[Future] = []
        self._warm = False
        self._switch_interval: float | None = None  # the process's own, while the pool runs

    def start(self) -> None:
        """Start the processes from a thread of their own, without waiting for them (``warm`` says when one is
        up); raises when no pool can be made here."""
        if self._pool is not None:
            return
        try:
            self._arena = SharedArena(ARENA_BYTES)
        except OSError:  # no shared memory file here: the objects come through the pipe
            self._arena = None
        arena = self._arena.for_worker() if self._arena is not None else None
        self._pool = worker_pool(self._processes, readerprocess.start_reader, (self._kit, arena))
        self._starting = start_workers_meanwhile(self._pool, self._processes)
        self._switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(min(self._switch_interval, MAIN_THREAD_SWITCH_INTERVAL))

    @property
    def warm(self) -> bool:
        """A reader process has started (or failed to: then the batches sent fail, and are read here)."""
        if not self._warm and self._pool is not None:
            self._warm = any(future.done() for future in self._starting)
        return self._warm

    def submit(self, batch: list[tuple[bytes, int]]) -> Future:
        """Read ``batch`` ((path, size when listed) pairs) in a reader process; raises when no process can
        be started (the caller then reads the batch itself)."""
        self.start()
        assert self._pool is not None
        arena = self._arena
        length = _room_for(batch)
        start = arena.reserve(length) if arena is not None else None
        try:
            with interrupts_ignored():  # a submit may start a worker process
                task = self._pool.submit(readerprocess.read_batch, batch, start, length)
        except BaseException:
            if start is not None:
                arena.release(start)
            raise
        if start is None:
            return task
        reads: Future = Future()
        task.add_done_callback(lambda done: _copy_out(done, arena, start, reads))
        return reads

    @property
    def started(self) -> bool:
        return self._pool is not None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self._arena is not None:
            self._arena.close()
            self._arena = None
        if self._switch_interval is not None:
            sys.setswitchinterval(self._switch_interval)
            self._switch_interval = None


def _room_for(batch: list[tuple[bytes, int]]) -> int:
    """Arena bytes to reserve for a batch's sealed objects: its files' sizes, plus headers and tags, plus what
    compression may add to data it cannot shrink (a batch that needs more sends the rest through the pipe)."""
    size = sum(size for _, size in batch)
    return size + size // 64 + 1024 * len(batch) + 4096


def _copy_out(task: Future, arena: SharedArena, start: int, reads: Future) -> None:
    """In the pool's result thread, once a reader is done with a batch: copy its sealed objects out of the
    arena and give the region back at once (the batch may wait a while for its turn in the item stream)."""
    try:
        sealed, records, files = task.result()
        if isinstance(sealed, int):
            sealed = arena.read(start, sealed)
    except BaseException as exc:  # noqa: BLE001 - handed to whoever takes the batch
        reads.set_exception(exc if isinstance(exc, Exception) else RuntimeError("reader task cancelled"))
        return
    finally:
        arena.release(start)
    reads.set_result((sealed, records, files))


@dataclass
class _Batch:
    """Small files handed to one reader process together; their reads come back in the same order."""

    jobs: list[tuple[bytes, int]] = field(default_factory=list)
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

    @property
    def waits(self) -> bool:
        return self.batch is not None


class ReadQueue:
    """The entries of a backup in archive order, the small files among them read by reader processes.

    The item stream must list entries in walk order, but reads finish out of order, so entries queue here
    until everything before them is done.  The queue is bounded (``full``): a backup that outruns its
    readers waits for them instead of holding the tree in memory."""

    def __init__(self, kit: SealingKit, processes: int):
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
        self._queue.append(queued)
        self._later.append(queued)
        self._count_added()
        return True

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
        the queue is half empty; with ``last`` all of them.

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
                self._queued_bytes -= head.queued_bytes
            elif self._later and self._later[0] is head:
                self._later.popleft()
            queue.popleft()
            wait = wait and (len(queue) > self._limit // 2 or self._queued_bytes > QUEUED_BYTES // 2)
            yield head

    def _read_ahead(self, batch: _Batch, meanwhile: Callable[[Queued], None]) -> None:
        """Hand ``meanwhile`` the next later files while a reader is still on ``batch``."""
        future = batch.future
        while future is not None and self._later and not future.done():
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
