"""Reading chunks in order, fast: coalesced ranged reads, decrypted in parallel, bounded look-ahead.

Backup writes a file's chunks one after another into the same pack, so restore usually finds runs of
adjacent objects.  Each run becomes one ranged read (one GET on S3) instead of one per chunk.  Reads and
decryption run in a thread pool with a bounded window of bytes in flight, and results come back in the
caller's order.  A chunk that fails verification comes back as an exception object in its place, so the
caller can fail just the file it belongs to and go on with the others.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from ..errors import IntegrityError, ObjectMissing, PackvaultError
from .repository import Repository

MAX_RUN_BYTES = 16 * 1024 * 1024
MAX_GAP_BYTES = 2 * 1024 * 1024
WINDOW_BYTES = 64 * 1024 * 1024
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
    def __init__(self, repo: Repository, *, threads: int = 4, window_bytes: int = WINDOW_BYTES):
        self.repo = repo
        self.index = repo.index
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="pv-read")
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
        try:
            buf = self.repo.load_pack_range(run.kind, run.pack, run.offset, run.size)
        except PackvaultError as exc:
            return [(tag, exc) for tag in run.tags]
        self.stats["reads"] += 1
        self.stats["bytes_read"] += len(buf)
        results: list[tuple] = []
        view = memoryview(buf)
        for chunk_id, size, tag, start in zip(run.ids, run.sizes, run.tags, run.starts, strict=True):
            part = view[start : start + size]
            if len(part) < size:
                results.append((tag, IntegrityError(f"chunk {chunk_id.hex()} is truncated in pack {run.pack}")))
                continue
            try:
                data = self.repo.codec.open(part, expected_id=chunk_id)[2]
                if self.repo.chunk_id(data) != chunk_id:
                    raise IntegrityError("plaintext does not match its id (MAC)")
                results.append((tag, data))
            except IntegrityError as exc:
                results.append((tag, IntegrityError(f"chunk {chunk_id.hex()} in pack {run.pack}: {exc}")))
        self.stats["chunks"] += len(run.ids)
        return results
