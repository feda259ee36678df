"""Worker processes for ``check --verify-data``: data packs downloaded and verified on every core.

Why processes and not threads: a data pack holds thousands of objects of a few KiB, and opening one
(authenticate, decrypt, decompress, recompute the keyed id) is a few short calls into C libraries with
Python in between.  Every such call hands the GIL over and waits to get it back, so one process keeps about
one core busy however many threads it has.  Packs are independent of each other, so a worker per core
downloads a whole pack itself, verifies it (``verify.verify_pack``) and sends back only what it found
(``PackFindings``: counts, damaged ranges, one small record per intact object, and the requests it made,
which the checker adds to the run's accounting).  While one worker waits for its download, the other
verifies: that is the overlap of downloading and verifying on S3.

Memory stays bounded: a worker holds one pack at a time (a pack handed out and waiting for a worker holds
no bytes yet), and the findings waiting for the checker are bounded by ``VerifyPool.limit``.

A platform that cannot start processes (no ``/dev/shm`` in AWS Lambda) or a pool that breaks makes the
checker verify in its own process, pack by pack, with the same function: slower, never different.
"""

from __future__ import annotations

from concurrent.futures import Future, ProcessPoolExecutor

from ...processes import interrupts_ignored, start_workers_meanwhile, worker_pool
from ...repository.objects import ObjectCodec
from ...repository.packreading import PackReader, PackReadingKit
from ...repository.sealing import SealingKit
from .verify import ChunkIdHasher, PackFindings, read_and_verify, verify_pack


class VerifyPool:
    """A pool of worker processes that verify whole data packs.

    ``start`` may be called before the repository's key is unlocked (the CLI does, so the workers' start-up
    overlaps the key derivation): each pack is handed out with the key material (``submit``)."""

    def __init__(self, kit: PackReadingKit, processes: int):
        self._kit = kit
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None
        self._failed = False

    @property
    def limit(self) -> int:
        """Packs handed out at once.  A worker takes one pack at a time and a pack waiting for a worker holds
        no bytes, so this bounds only the findings waiting for the checker, which applies them in order:
        room for one more per worker, and one, lets the other workers go on while one verifies a slow
        pack (many small objects) that the checker waits for."""
        return 2 * self.processes + 1

    def start(self) -> None:
        """Start the processes now, without waiting for them (they start up while the caller works on);
        where none can start, ``submit`` raises."""
        if self._pool is not None or self._failed:
            return
        try:
            with interrupts_ignored():
                self._start()
        except Exception:  # no processes here (no /dev/shm in AWS Lambda, a limit)
            self._failed = True
            self.close()

    def _start(self) -> None:
        self._pool = worker_pool(self.processes, _start_worker, (self._kit,), preload=self._kit.backend_modules())
        start_workers_meanwhile(self._pool, self.processes)  # the command opens the repository meanwhile

    def submit(self, sealing: SealingKit, kind: int, name: str, size: int) -> Future:
        """Verify pack ``name`` (``size`` bytes as listed) in a worker, opening its objects with ``sealing``'s
        key; the future's result is its ``PackFindings``.  Raises when no process can be started (the caller
        then verifies itself)."""
        self.start()
        if self._pool is None:
            raise RuntimeError("no worker processes")
        return self._pool.submit(_verify, sealing, kind, name, size)

    def close(self, *, wait: bool = True) -> None:
        """End the processes: packs not begun are cancelled, the ones being verified finish; with ``wait``,
        return when the processes have ended."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            pool.shutdown(wait=wait, cancel_futures=True)


# --- in the worker process ---------------------------------------------------------------------------------

_worker: _Worker | None = None


class _Worker:
    def __init__(self, kit: PackReadingKit):
        self.kit = kit
        self.reader: PackReader | None = None
        self.reported: dict[str, int] = {}
        self.sealing: SealingKit | None = None
        self.codec: ObjectCodec | None = None
        self.chunk_id: ChunkIdHasher | None = None
        # The store is opened while the process starts (on S3: boto3, a client, a HEAD), before any pack is
        # handed out; its requests are reported with the first pack's findings.  A store that does not open
        # here is opened again for the first pack, where a lasting failure is that pack's error, as it would
        # be in the checker's process (an initializer that raises would break the pool with a traceback).
        try:
            self.reader = kit.open_reader()
        except Exception:
            self.reader = None

    def verify(self, sealing: SealingKit, kind: int, name: str, size: int) -> PackFindings:
        if self.reader is None:
            self.reader = self.kit.open_reader()
        if sealing != self.sealing:
            self.sealing = sealing
            self.codec = sealing.codec()
            self.chunk_id = sealing.chunk_id_hasher()
        findings = read_and_verify(
            self.reader.load_pack_range,
            kind,
            name,
            size,
            lambda buf: verify_pack(name, buf, codec=self.codec, chunk_id=self.chunk_id, decrypt=True),
        )
        stats = self.reader.request_stats()
        findings.requests = {k: v - self.reported.get(k, 0) for k, v in stats.items()}
        self.reported = stats
        return findings


def _start_worker(kit: PackReadingKit) -> None:
    global _worker
    _worker = _Worker(kit)


def _verify(sealing: SealingKit, kind: int, name: str, size: int) -> PackFindings:
    assert _worker is not None
    return _worker.verify(sealing, kind, name, size)
