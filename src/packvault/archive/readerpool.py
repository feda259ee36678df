"""The backup's reader processes as a pool (``filereaders.py`` says why processes): started from a thread of
their own, with the shared arena their sealed objects cross in (``sharedarena.py``)."""

from __future__ import annotations

import sys
from concurrent.futures import Future, ProcessPoolExecutor

from ..processes import interrupts_ignored, start_workers_meanwhile, worker_pool
from ..repository.sealing import SealingKit
from ..sharedarena import SharedArena
from . import readerprocess

# While reader processes run, the backup's main thread (walk, files cache, packs, item stream) is what the others
# wait for; a thread of this process that holds the GIL when it wants it (the pool's result thread copying a batch
# out of the arena, the spool and sealing threads) keeps it up to the switch interval, 5 ms by default.
MAIN_THREAD_SWITCH_INTERVAL = 0.001
# Shared memory the readers write their sealed objects into (``sharedarena.py``): room for a few batches of the
# largest kind; a batch that finds none sends its objects through the pool's pipe instead.
ARENA_BYTES = 32 * 1024 * 1024


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

    def submit(self, batch: list[tuple]) -> Future:
        """Read ``batch`` ((path, size when listed) pairs, or (path, size, offset) for a region of a file) in
        a reader process; raises when no process can be started (the caller then reads the batch itself)."""
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

    def let_go(self) -> None:
        """No more batches come: the processes may exit now, while the caller goes on (``close`` waits for
        them).  A backup's last steps (the item stream's end, the commit) then overlap the processes' exit,
        which took ~15-20 ms of its main thread when it came after them."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)

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


def _room_for(batch: list[tuple]) -> int:
    """Arena bytes to reserve for a batch's sealed objects: its files' sizes, plus headers and tags, plus what
    compression may add to data it cannot shrink (a batch that needs more sends the rest through the pipe)."""
    size = sum(job[1] for job in batch)
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
