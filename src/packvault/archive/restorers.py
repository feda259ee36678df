"""Restore processes: small files are decrypted, verified, created, written and finished next to the
restore's own process.

Why processes: a restore of many small files is, per file, a few short system calls (create, write, chown,
chmod, utime, close) between bits of Python, and every call hands the GIL to another reader thread and
waits to get it back.  One process then keeps little more than one core busy, a good part of it in context
switches.  Here the restore's process still plans the items, makes directories and links, and reads the
packs in a few large ranged reads (one GET per pack from S3); the sealed objects of single-chunk files go,
a batch at a time, to processes that each own a GIL and do the rest.

Only the plain case goes this way: a file of one chunk, under a fresh name.  A worker creates the file
with ``O_EXCL``; when something is already there it leaves it alone and the restore's own process handles
the file as before (overwrite policy, temporary name, rename).  Files that other entries hardlink to, that a
later entry of the archive supersedes, and files of several chunks stay in the restore's process too.  A
platform that cannot start processes (no ``/dev/shm`` in AWS Lambda) or a pool that breaks makes the
restore do everything in its own process: slower, never different.

A worker resolves a file's directory the way the restore's process does (``dirtree.py``: from the target's
descriptor, component by component, ``O_NOFOLLOW``), never creates one (the restore's process made them
before it read any data), and checks that the target it opened is the directory the restore's process
opened.
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..allocator import tune_for_chunk_reads
from ..errors import PackvaultError
from ..processes import ignore_interrupts, start_server_early, worker_pool
from ..repository.objects import open_verified
from ..repository.sealing import SealingKit
from ..writes import pwrite_all
from . import fsmeta
from . import items as it
from .dirtree import DirTree
from .outfile import FILE_FLAGS, OutFile, is_zeros
from .restoring import DISK_FULL, ExtractStats, Skip, damage_note, shown_path

if TYPE_CHECKING:
    from ..repository.reader import ChunkReader

BATCH_FILES = 128  # files per task: amortizes the round trip over many small files
BATCH_BYTES = 4 * 1024 * 1024  # and bounds what one task holds in memory
MIN_FILES = 256  # a round with fewer plain files does not start processes (~0.2 s each)

# outcome of one file in a worker
RESTORED, FAILED, LEFT, DISK_WAS_FULL = range(4)


def prepare_restore_processes(processes: int) -> None:
    """Before a restore that will most likely use ``processes`` restore processes (a whole archive into a
    directory) opens its repository: start the server they fork from (``processes.start_server_early``), so
    that the reader thread that starts the pool does not wait for the server's imports."""
    if processes:
        start_server_early(__name__)


@dataclass
class _Batch:
    sealed: bytearray = field(default_factory=bytearray)
    files: list[tuple] = field(default_factory=list)  # picklable: what the worker needs of each file
    targets: list = field(default_factory=list)  # the restore's own objects, same order (not sent)


class RestorePool:
    """Worker processes for plain single-chunk files, started on first use.

    ``add`` runs in the reader threads (the sink of ``ChunkReader.scatter``); ``finish`` in the restore's
    thread, after the reading is over.  At most ``2 * processes`` batches are in flight: a reader thread
    that would exceed that waits, so sealed objects never pile up in memory."""

    def __init__(self, kit: SealingKit, processes: int, target: bytes, target_fd: int, *, numeric_ids: bool,
                 sparse: bool):
        st = os.fstat(target_fd)
        self._start_args = (kit, target, (st.st_dev, st.st_ino), numeric_ids, sparse)
        self.round = 0  # the restore's round: directories may change between rounds, never during one
        self._processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._broken = False
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(2 * processes)
        self._gathering = _Batch()
        self._running: list[tuple[Future | None, _Batch]] = []

    @property
    def usable(self) -> bool:
        return not self._broken

    def add(self, target, record: tuple, sealed: bytes) -> None:
        """Queue one file: ``record`` is (parent, name, item, chunk id, pack) as the worker needs them."""
        with self._lock:
            batch = self._gathering
            start = len(batch.sealed)
            batch.sealed += sealed
            batch.files.append((*record, start, len(sealed)))
            batch.targets.append(target)
            if len(batch.files) < BATCH_FILES and len(batch.sealed) < BATCH_BYTES:
                return
            self._gathering = _Batch()
        self._submit(batch)

    def finish(self) -> list[tuple[object, int, str | None, list[str]]]:
        """Wait for every batch; (target, outcome, message, warnings) per file, in no particular order.  Files
        of a batch whose worker failed come back as ``LEFT`` (the restore's process does them)."""
        with self._lock:
            batch, self._gathering = self._gathering, _Batch()
        if batch.files:
            self._submit(batch)
        results = []
        running, self._running = self._running, []
        for future, batch in running:
            outcomes = None
            if future is not None:
                try:
                    outcomes = future.result()
                except Exception:  # a worker died, or the pool broke: the files are done here
                    self._broken = True
            if outcomes is None:
                results.extend((target, LEFT, None, []) for target in batch.targets)
                continue
            results.extend((target, *outcome) for target, outcome in zip(batch.targets, outcomes, strict=True))
        return results

    def _submit(self, batch: _Batch) -> None:
        future: Future | None = None
        if not self._broken:
            self._slots.acquire()
            try:
                with self._lock:  # reader threads submit: one pool for all of them
                    if self._pool is None:
                        self._pool = worker_pool(self._processes, _start_worker, self._start_args)
                future = self._pool.submit(_restore_batch, self.round, bytes(batch.sealed), batch.files)
            except Exception:  # no processes here (no /dev/shm, a limit): the restore's process does it all
                self._broken = True
                self._slots.release()
            else:
                future.add_done_callback(lambda _: self._slots.release())
        # kept until the round ends only to map outcomes to targets: its bytes went with the task (a file left
        # to the restore's process is read again), and held here a round's small files piled up in memory
        batch.sealed = bytearray()
        with self._lock:
            self._running.append((future, batch))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


class ProcessHandoff:
    """The part of ``Extractor`` that hands plain files to a ``RestorePool`` and takes back what it did."""

    reader: ChunkReader
    stats: ExtractStats
    progress: Callable[[ExtractStats, str], None] | None
    _pool: RestorePool | None
    _lock: threading.Lock

    def _pool_for(self, requests: list) -> RestorePool | None:
        """The restore processes, with the round's plain files marked for them (``restorers.py``); None when
        this round does it all in this process."""
        pool = self._pool
        if pool is None or not pool.usable:
            return None
        plain = [
            out
            for (out, _, _), _ in requests
            if out.remaining == 1 and not out.superseded and not out.links and not out.created
            and len(out.item[it.CHUNKS]) == 1
        ]
        if len(plain) < MIN_FILES:
            return None
        pool.round += 1
        for out in plain:
            out.to_worker = True
        return pool

    def _to_process(self, out: OutFile, data: bytes) -> None:
        """Reader thread: hand a plain file's sealed chunk to the restore processes."""
        assert self._pool is not None
        chunk_id = out.item[it.CHUNKS][0][0]
        pack = self.reader.index.pack_name(chunk_id)  # for the worker's messages
        item = out.item.copy()  # a C-level copy: a comprehension was ~7x slower, with the GIL held
        del item[it.CHUNKS]
        self._pool.add(out, (out.rel.rpartition(b"/")[0], out.name, item, chunk_id, pack or "?"), data)

    def _take_results(self, pool: RestorePool) -> list:
        """Account for what the restore processes did; returns the requests of the files left to this
        process.

        Runs once per round over every file the processes restored, in the restore's own process, whose GIL
        the reader threads need meanwhile: the totals are added up here and go into the statistics once, and
        a file's path is turned into text only for a message about it."""
        left = []
        disk_full = None
        arrived = written = restored = 0
        progress = self.progress
        for out, outcome, message, warnings in pool.finish():
            out.to_worker = False
            item = out.item
            size = item[it.CHUNKS][0][1]
            if outcome == LEFT:
                left.append(((out, 0, size), item[it.CHUNKS][0][0]))
                continue
            out.remaining = 0
            if outcome == DISK_WAS_FULL:
                disk_full = message
                continue
            arrived += size
            if outcome == FAILED:
                self._not_restored(shown_path(item), message or "failed")
                continue
            assert outcome == RESTORED
            written += size
            restored += 1
            note = damage_note(item)
            if warnings or note is not None or progress:
                self._count_restored(arrived, written, restored, damaged=note is not None)
                arrived = written = restored = 0
                self._report_restored(item, warnings, note)
        self._count_restored(arrived, written, restored)
        if disk_full is not None:
            raise OSError(errno.ENOSPC, disk_full)
        return left

    def _count_restored(self, arrived: int, written: int, restored: int, *, damaged: bool = False) -> None:
        with self._lock:
            self.stats.bytes_arrived += arrived
            self.stats.bytes_written += written
            self.stats.nfiles_by_processes += restored
            self.stats.ndamaged += damaged

    def _report_restored(self, item: dict, warnings: list[str], note: str | None) -> None:
        """A restored file someone is told about (its totals are in the statistics, so a progress line shows
        them)."""
        shown = shown_path(item)
        for warning in warnings:
            self.warn(shown, warning)
        if note is not None:
            self.warn(shown, note)
        if self.progress:
            self.progress(self.stats, shown)



def to_worker(target: tuple) -> bool:
    """``ChunkReader.scatter``'s ``sealed``: the targets whose chunk goes to the restore processes as stored."""
    return target[0].to_worker


# --- in the worker process ---------------------------------------------------------------------------------

_worker: _Worker | None = None
# this restore process keeps the memory it frees (``allocator.tune_for_chunk_reads``): every batch it takes is
# a buffer of up to BATCH_BYTES, and with glibc's defaults each one was fresh zeroed pages (a quarter of a
# restore's page faults)
allocator_tuned = False
DIR_DESCRIPTORS = 256  # a worker's open directories; beyond this it starts over from the target


class _Worker:
    def __init__(self, kit: SealingKit, target: bytes, identity: tuple[int, int], numeric_ids: bool, sparse: bool):
        self.codec = kit.codec()
        self.chunk_id = kit.chunk_id_hasher()
        self.target_fd = os.open(target, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        st = os.fstat(self.target_fd)
        if (st.st_dev, st.st_ino) != identity:  # replaced since the restore opened it: do nothing there
            raise FileNotFoundError(errno.ENOENT, "the restore target was replaced", os.fsdecode(target))
        self.numeric_ids = numeric_ids
        self.sparse = sparse
        self.round = -1
        self.tree: DirTree | None = None

    def restore(self, round_id: int, sealed: bytes, files: list[tuple]) -> list[tuple[int, str | None, list[str]]]:
        if round_id != self.round or self.tree is None:
            # a new round: the restore's process may have replaced directories in between
            if self.tree is not None:
                self.tree.close()
            self.tree, self.round = DirTree(os.dup(self.target_fd)), round_id
        tree = self.tree
        view = memoryview(sealed)
        outcomes: list[tuple[int, str | None, list[str]]] = []
        for parent, name, item, chunk_id, pack, start, length in files:
            if len(tree) > DIR_DESCRIPTORS:
                tree.prune(parent)
            outcome = self._restore_file(tree, parent, name, item, chunk_id, pack, view[start : start + length])
            outcomes.append(outcome)
            if outcome[0] == DISK_WAS_FULL:
                break
        outcomes.extend((DISK_WAS_FULL, None, []) for _ in range(len(files) - len(outcomes)))
        return outcomes

    def _restore_file(self, tree: DirTree, parent: bytes, name: bytes, item: dict, chunk_id: bytes, pack: str,
                      sealed: memoryview) -> tuple[int, str | None, list[str]]:
        data = open_verified(self.codec, self.chunk_id, pack, chunk_id, sealed, len(sealed))
        if isinstance(data, PackvaultError):
            return FAILED, str(data), []
        try:
            dir_fd = tree.get(parent, create=False)
        except Skip as exc:
            return FAILED, str(exc), []
        except FileNotFoundError:
            return LEFT, None, []  # the restore's process knows why: it decides there
        except OSError as exc:
            return FAILED, exc.strerror or str(exc), []
        try:
            fd = os.open(name, FILE_FLAGS | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=dir_fd)
        except FileExistsError:
            return LEFT, None, []  # something is there: the overwrite policy is decided in the restore's process
        except OSError as exc:
            return (DISK_WAS_FULL if exc.errno in DISK_FULL else FAILED), exc.strerror or str(exc), []
        warnings: list[str] = []
        try:
            size = item.get(it.SIZE, 0)
            written = 0 if self.sparse and is_zeros(data) else pwrite_all(fd, data, 0)
            if written != size:
                os.ftruncate(fd, size)
            fsmeta.apply_metadata(b"", item, fd=fd, numeric_ids=self.numeric_ids,
                                  warn=lambda _path, message: warnings.append(message))
        except OSError as exc:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=dir_fd)
            return (DISK_WAS_FULL if exc.errno in DISK_FULL else FAILED), exc.strerror or str(exc), []
        os.close(fd)
        return RESTORED, None, warnings


def _start_worker(kit: SealingKit, target: bytes, identity: tuple[int, int], numeric_ids: bool,
                  sparse: bool) -> None:
    global _worker, allocator_tuned
    ignore_interrupts()  # started from a reader thread, where the handler cannot be changed around the spawn
    allocator_tuned = tune_for_chunk_reads()
    _worker = _Worker(kit, target, identity, numeric_ids, sparse)


def _restore_batch(round_id: int, sealed: bytes, files: list[tuple]) -> list[tuple[int, str | None, list[str]]]:
    assert _worker is not None
    return _worker.restore(round_id, sealed, files)
