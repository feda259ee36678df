"""Reading chunks fast: coalesced ranged reads, decrypted in parallel, bounded bytes in flight.

Two ways to read, for two kinds of caller:

- ``iter_tagged`` returns plaintext in the caller's order.  Backup writes a file's chunks one after another
  into the same pack, so an ordered stream usually finds runs of adjacent objects, and each run becomes one
  ranged read (one GET on S3).  Archive metadata, diff and restore into a bucket (which streams each
  object in order) read this way.
- ``scatter`` takes a batch of (target, chunk id) requests, groups them by pack, sorts them by offset and
  reads each pack's wanted objects in a few large ranged reads, whatever order the caller listed them in.
  A day-2 archive interleaves unchanged chunks from old packs with new ones, and an ordered stream then
  pays one GET per switch between packs; grouped by pack it pays about one GET per 4 MiB wanted (from S3,
  where each run is streamed object by object, about one GET per pack).  Each
  plaintext is handed to a ``sink`` in the worker thread that decrypted it, so restore writes it with
  ``pwrite`` right there and plaintext never piles up in memory.

Either way a chunk that fails verification comes back as an exception object in its place, so the caller
can fail just the file it belongs to and go on with the others.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TypeVar

from ..errors import IntegrityError, ObjectMissing, PackvaultError
from .index import KIND_META
from .metapacks import MetaPackCache
from .objects import open_verified
from .repository import Repository

MAX_RUN_BYTES = 16 * 1024 * 1024
MAX_GAP_BYTES = 2 * 1024 * 1024
WINDOW_BYTES = 64 * 1024 * 1024
# scatter reads hand plaintext off in the worker, so only ciphertext runs are in flight.  Larger runs save
# GETs but cost peak memory at the same speed (bench/README.md, history); memory is the scarcer resource
# where Packvault runs (small VMs, functions), and a GET costs a fraction of a cent per thousand.
SCATTER_RUN_BYTES = 4 * 1024 * 1024
SCATTER_WINDOW_BYTES = 16 * 1024 * 1024
# A remote store streams each run (one object in memory at a time, ``storage/s3/stream.py``), so a run
# may cover a whole pack: one GET per pack instead of eight, for the same memory.  The window then counts
# a streamed run as SCATTER_RUN_BYTES, which keeps four streams open.
STREAM_RUN_BYTES = 64 * 1024 * 1024
T = TypeVar("T")


@dataclass
class _Run:
    kind: int
    pack: str
    offset: int
    size: int
    ids: list[bytes]
    sizes: list[int]
    tags: list
    starts: list[int]  # offset of each chunk in the run's buffer


class ChunkReader:
    def __init__(
        self,
        repo: Repository,
        *,
        threads: int = 4,
        window_bytes: int = WINDOW_BYTES,
        scatter_window: int = SCATTER_WINDOW_BYTES,
        meta_packs: MetaPackCache | None = None,
    ):
        """``meta_packs``: read metadata packs through this local cache (compact's mark and the commands
        that read an archive's items; see ``metapacks.py``), in ordered reads (``iter_chunks``,
        ``iter_tagged``)."""
        self.repo = repo
        self.meta_packs = meta_packs
        self.scatter_window = scatter_window
        self.index = repo.index
        self.threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="pv-read")
        self.streaming = repo.streams_packs
        self.window_bytes = window_bytes
        self.stats = {"reads": 0, "bytes_read": 0, "chunks": 0}

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ChunkReader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read_chunk(self, chunk_id: bytes) -> bytes:
        result = next(self.iter_chunks([chunk_id]))
        if isinstance(result, BaseException):
            raise result
        return result

    def iter_chunks(self, ids: Iterable[bytes]) -> Iterator[bytes | PackvaultError]:
        """Plaintext of each id, in order (or the error that prevented reading it)."""
        for _, data in self.iter_tagged((None, chunk_id) for chunk_id in ids):
            yield data

    def iter_tagged(self, pairs: Iterable[tuple[T, bytes | None]]) -> Iterator[tuple[T, bytes | PackvaultError | None]]:
        """(tag, plaintext) for each (tag, chunk id) pair, in order.  A ``None`` id passes through as
        (tag, None): callers use it for items without data, which keeps all items in one ordered stream
        and lets the look-ahead window span many small files."""
        queue: deque[tuple[Future | list, int]] = deque()
        in_flight = 0
        for unit in self._runs(pairs):
            if isinstance(unit, _Run):
                queue.append((self._pool.submit(self._fetch, unit), unit.size))
                in_flight += unit.size
            else:
                queue.append(([unit], 0))
            while queue and (in_flight > self.window_bytes or not isinstance(queue[0][0], Future)):
                item, size = queue.popleft()
                in_flight -= size
                yield from self._results(item)
        while queue:
            item, _ = queue.popleft()
            yield from self._results(item)

    @staticmethod
    def _results(item: Future | list) -> Iterator[tuple]:
        if isinstance(item, Future):
            yield from item.result()
        else:
            yield from item

    def scatter(
        self,
        requests: Iterable[tuple[T, bytes]],
        sink: Callable[[T, bytes | PackvaultError], None],
        sealed: Callable[[T], bool] | None = None,
    ) -> None:
        """Read every requested chunk, pack by pack, and call ``sink(target, plaintext)`` for each request, or
        ``sink(target, error)`` when the chunk could not be read or verified.  Returns when every request
        has been handed to the sink.

        The sink runs in the worker thread that decrypted the chunk (or, for a chunk missing from the
        index, in the caller's thread), in no particular order, so it must be thread-safe.  The same chunk
        may be requested for several targets (deduplicated data): it is read and decrypted once.  An
        exception raised by the sink (a full disk) is not per-chunk: it stops the reading and propagates.
        A target for which ``sealed(target)`` is true gets the object as stored instead of its plaintext (the
        restore's worker processes open it, ``open_verified``); only a truncated object fails here.

        Runs are submitted as workers free up, in completion order rather than in request order: one slow
        read then holds back only itself, and the caller's thread (which only plans and submits) never
        waits on a particular read while workers sit idle.
        """
        # grouped by pack number, straight from the table: this runs before the round's first read, once per
        # chunk, in the thread that plans (a Location per chunk was a visible part of it)
        by_pack: dict[int, list[tuple[int, int, bytes, T]]] = {}
        table = self.index.table
        for target, chunk_id in requests:
            entry = table.get(chunk_id)
            if entry is None:
                sink(target, ObjectMissing(f"chunk {chunk_id.hex()} is not in the index"))
                continue
            wanted = by_pack.get(entry.pack)
            if wanted is None:
                wanted = by_pack[entry.pack] = []
            wanted.append((entry.offset, entry.size, chunk_id, target))
        running: dict[Future, int] = {}
        in_flight = 0
        max_run = STREAM_RUN_BYTES if self.streaming else SCATTER_RUN_BYTES
        stop = threading.Event()  # set when this call ends early: workers stop at the next object
        try:
            runs = []  # packs in order of first request, each pack's runs by offset
            packs = self.index.packs
            for pack_no, wanted in by_pack.items():
                kind, pack = packs.kinds[pack_no], packs.names[pack_no]
                wanted.sort(key=lambda entry: entry[0])
                runs.extend(_scatter_runs(kind, pack, wanted, max_run))
            del by_pack
            if self.streaming and len(runs) < self.threads:
                runs = _split_runs(runs, self.threads, SCATTER_RUN_BYTES)
            for run in _spread(runs, self.threads):
                cost = min(run.size, SCATTER_RUN_BYTES) if self.streaming else run.size  # bytes held
                while running and in_flight + cost > self.scatter_window:
                    in_flight -= self._reap(running, FIRST_COMPLETED)
                running[self._pool.submit(self._fetch_into, run, sink, stop, sealed)] = cost
                in_flight += cost
            self._reap(running, ALL_COMPLETED)
        finally:
            stop.set()  # after a failing sink or an interrupt, a long streamed run is not read to its end
            for future in running:
                future.cancel()
            wait(running)  # a sink must not run after the caller was told the reading is over

    @staticmethod
    def _reap(running: dict[Future, int], return_when: str) -> int:
        """Wait for some (or all) running reads; re-raise a sink's exception; return the bytes released."""
        done, _ = wait(running, return_when=return_when)
        released = 0
        for future in done:
            released += running.pop(future)
            future.result()
        return released

    def _fetch_into(self, run: _Run, sink: Callable, stop: threading.Event, sealed: Callable | None) -> None:
        results = self._open_streamed(run, sealed) if self.streaming else self._open_run(run, sealed)
        try:
            for target, data in results:
                if stop.is_set():
                    return
                try:
                    sink(target, data)
                except BaseException:
                    # the other workers stop at their next object now, not when the caller's thread gets
                    # to run again (on a loaded machine that is many objects later)
                    stop.set()
                    raise
        finally:
            results.close()  # a stream given up early releases its connection now

    def _runs(self, pairs: Iterable[tuple[T, bytes | None]]) -> Iterator[_Run | tuple]:
        run: _Run | None = None
        for tag, chunk_id in pairs:
            loc = None if chunk_id is None else self.index.get(chunk_id)
            if loc is None:
                if run is not None:
                    yield run
                    run = None
                if chunk_id is None:
                    yield (tag, None)
                else:
                    yield (tag, ObjectMissing(f"chunk {chunk_id.hex()} is not in the index"))
                continue
            if (
                run is not None
                and run.pack == loc.pack
                and 0 <= loc.offset - (run.offset + run.size) <= MAX_GAP_BYTES
                and loc.offset + loc.size - run.offset <= MAX_RUN_BYTES
            ):
                # adjacent, or a small gap ahead (objects another archive needs): reading the gap is cheaper
                # than another request
                run.starts.append(loc.offset - run.offset)
                run.size = loc.offset + loc.size - run.offset
                run.ids.append(chunk_id)
                run.sizes.append(loc.size)
                run.tags.append(tag)
                continue
            if run is not None:
                yield run
            run = _Run(loc.kind, loc.pack, loc.offset, loc.size, [chunk_id], [loc.size], [tag], [0])
        if run is not None:
            yield run

    def _fetch(self, run: _Run) -> list[tuple]:
        return list(self._open_run(run))

    def _open_run(self, run: _Run, sealed: Callable | None = None) -> Iterator[tuple]:
        """Read a run with one ranged read and yield (tag, plaintext or error) per requested object, one at a
        time.  Consecutive requests for the same object share one decryption."""
        try:
            if self.meta_packs is not None and run.kind == KIND_META:
                buf = self.meta_packs.read_range(run.pack, run.offset, run.size)
            else:
                buf = self.repo.load_pack_range(run.kind, run.pack, run.offset, run.size)
        except PackvaultError as exc:
            for tag in run.tags:
                yield tag, exc
            return
        self.stats["reads"] += 1
        self.stats["bytes_read"] += len(buf)
        view = memoryview(buf)
        previous: tuple[tuple[int, bool], bytes | PackvaultError] | None = None
        for chunk_id, size, tag, start in zip(run.ids, run.sizes, run.tags, run.starts, strict=True):
            as_stored = sealed is not None and sealed(tag)
            if previous is not None and previous[0] == (start, as_stored):
                yield tag, previous[1]
                continue
            result = self._open_object(run.pack, chunk_id, view[start : start + size], size, as_stored)
            previous = ((start, as_stored), result)
            self.stats["chunks"] += 1
            yield tag, result

    def _open_streamed(self, run: _Run, sealed: Callable | None = None) -> Iterator[tuple]:
        """Like ``_open_run``, reading the run as a stream: only the object being opened is in memory.  A
        read that fails (after the store's retries) fails the rest of the run."""
        stream = self.repo.open_pack_stream(run.kind, run.pack, run.offset, run.size)
        self.stats["reads"] += 1
        position = 0  # in the run
        previous: tuple[tuple[int, bool], bytes | PackvaultError] | None = None
        failed: PackvaultError | None = None
        part, part_start = b"", -1  # the object last read (wanted again, opened or as stored, by the next target)
        try:
            for chunk_id, size, tag, start in zip(run.ids, run.sizes, run.tags, run.starts, strict=True):
                as_stored = sealed is not None and sealed(tag)
                if previous is not None and previous[0] == (start, as_stored):
                    yield tag, previous[1]
                    continue
                if failed is None and start != part_start:
                    try:
                        stream.skip(start - position)
                        part, part_start = stream.read(size), start
                        self.stats["bytes_read"] += start - position + len(part)
                        position = start + len(part)
                    except PackvaultError as exc:
                        failed = exc
                if failed is not None:
                    yield tag, failed
                    continue
                result = self._open_object(run.pack, chunk_id, memoryview(part), size, as_stored)
                previous = ((start, as_stored), result)
                self.stats["chunks"] += 1
                yield tag, result
        finally:
            stream.close()

    def _open_object(self, pack: str, chunk_id: bytes, part: memoryview, size: int, sealed: bool = False
                     ) -> bytes | PackvaultError:
        if sealed:  # handed on as it is stored: whoever takes it opens and verifies it (``open_verified``)
            if len(part) < size:
                return IntegrityError(f"chunk {chunk_id.hex()} is truncated in pack {pack}")
            return bytes(part)
        return open_verified(self.repo.codec, self.repo.chunk_id, pack, chunk_id, part, size)


def _spread(runs: list[T], ways: int) -> list[T]:
    """``runs`` (in order of first request) reordered so that the ones read at the same time lie far apart.

    Why: consecutive runs usually hold consecutive parts of the same large file, and ``ways`` workers
    writing into one file queue on its inode lock (a buffered write holds it while it copies into the page
    cache), so a large file was written by one core at a time.  Cut into ``ways`` segments and taken in
    turn from each, neighbouring submissions come from parts of the archive ``len/ways`` runs apart.
    """
    if ways < 2 or len(runs) <= ways:
        return runs
    step = -(-len(runs) // ways)  # segment length, rounded up
    segments = [runs[i : i + step] for i in range(0, len(runs), step)]
    return [seg[i] for i in range(step) for seg in segments if i < len(seg)]


def _split_runs(runs: list[_Run], ways: int, min_bytes: int) -> list[_Run]:
    """``runs`` cut at object boundaries into about ``ways`` pieces of at least ``min_bytes``.

    Why: a streamed run is read by one worker, object after object.  When a batch's chunks lie in fewer
    packs than there are workers (a restore round of small files often needs two), the other workers sit
    idle and the round takes as long as the slowest stream; a few more GETs, each a part of a pack, let every
    worker read.  Runs are only cut when there are fewer than ``ways`` of them.
    """
    total = sum(run.size for run in runs)
    target = max(min_bytes, -(-total // ways))
    pieces: list[_Run] = []
    for run in runs:
        begin = 0  # index of the first object of the current piece
        for i in range(1, len(run.ids)):
            if run.starts[i] - run.starts[begin] >= target and run.starts[i] != run.starts[i - 1]:
                pieces.append(_run_part(run, begin, i))
                begin = i
        pieces.append(_run_part(run, begin, len(run.ids)))
    return pieces


def _run_part(run: _Run, begin: int, end: int) -> _Run:
    base = run.starts[begin]
    size = max(start + size for start, size in zip(run.starts[begin:end], run.sizes[begin:end], strict=True)) - base
    return _Run(
        run.kind, run.pack, run.offset + base, size, run.ids[begin:end], run.sizes[begin:end], run.tags[begin:end],
        [start - base for start in run.starts[begin:end]],
    )


def _scatter_runs(kind: int, pack: str, wanted: list[tuple[int, int, bytes, T]], max_run: int) -> Iterator[_Run]:
    """Runs over one pack's wanted objects (sorted by offset): neighbours and small gaps share a read."""
    run: _Run | None = None
    for offset, size, chunk_id, target in wanted:
        # sorted by offset, so a gap is never negative except for a repeat of the previous object
        if (
            run is not None
            and offset - (run.offset + run.size) <= MAX_GAP_BYTES
            and offset + size - run.offset <= max_run
        ):
            run.starts.append(offset - run.offset)
            run.size = max(run.size, offset + size - run.offset)
            run.ids.append(chunk_id)
            run.sizes.append(size)
            run.tags.append(target)
            continue
        if run is not None:
            yield run
        run = _Run(kind, pack, offset, size, [chunk_id], [size], [target], [0])
    if run is not None:
        yield run
