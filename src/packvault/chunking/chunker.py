"""Content-defined chunking with FastCDC, seeded from the repository key.

Average chunk size about 1 MiB (pyfastcdc's effective average is avg + min): big enough that a GiB is
about a thousand objects (few index entries, few requests), small enough that an edit in a large file
re-uploads only a few MiB.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pyfastcdc import FastCDC

from ..allocator import keep_blocks_up_to

DEFAULT_AVG = 768 * 1024
DEFAULT_MIN = 256 * 1024
DEFAULT_MAX = 4 * 1024 * 1024
# The buffer a chunker cuts streams in, in maximum chunks: each refill moves at most one maximum chunk to its
# front (the part not cut yet) and reads the rest.
STREAM_BUFFER_CHUNKS = 4


@dataclass(frozen=True)
class ChunkerParams:
    avg_size: int = DEFAULT_AVG
    min_size: int = DEFAULT_MIN
    max_size: int = DEFAULT_MAX

    def to_dict(self) -> dict:
        return {"algorithm": "fastcdc2020", "avg": self.avg_size, "min": self.min_size, "max": self.max_size}

    @classmethod
    def from_dict(cls, d: dict) -> ChunkerParams:
        return cls(avg_size=d["avg"], min_size=d["min"], max_size=d["max"])


class Chunker:
    """Cuts streams and buffers into content-defined chunks (not thread-safe: one per thread).

    Streams are cut in one buffer the chunker keeps (``_stream_cuts``), not in pyfastcdc's stream chunker,
    which allocates and zeroes a buffer of two maximum chunks for every stream it cuts: in the backup's own
    process, where the large files and a disk image's data regions are cut, that zeroing and the page faults
    of each new buffer held the GIL the process's other threads wait for, at the end of a home directory's
    walk when nothing else runs.  The cut points are pyfastcdc's."""

    def __init__(self, params: ChunkerParams, seed: int):
        self.params = params
        self._spare_buffer: bytearray | None = None  # the stream buffer, while no stream is being cut
        self._cdc = FastCDC(
            avg_size=params.avg_size,
            min_size=params.min_size,
            max_size=params.max_size,
            normalized_chunking=1,
            seed=seed,
        )

    def chunks_of_file(self, stream: BinaryIO, size_hint: int) -> Iterator[memoryview]:
        """Chunk views of a file that should hold ``size_hint`` bytes (each valid until the next one).

        A file no larger than one maximum chunk is read whole and cut in memory.  The stream chunker
        allocates and zeroes a buffer of two maximum chunks (8 MiB) per file: ~165 us per file, more than
        reading a small file, and ~0.8 s of the backup's main thread for 5,000 of them.  Both ways cut at
        the same points, so deduplication against earlier archives is unchanged.  A file that turns out
        to have grown goes on as a stream, starting with the bytes already read.
        """
        if size_hint <= self.params.max_size:
            data = read_up_to(stream, size_hint + 1)
            if len(data) <= size_hint:
                view = memoryview(data)
                for offset, length in self.cut_points(data):
                    yield view[offset : offset + length]
                return
            stream = _Prefixed(data, stream)
        yield from self.chunks_of_stream(stream)

    def chunks_of_sparse(self, stream: BinaryIO, size: int) -> Iterator[memoryview | int] | None:
        """The chunks of a sparse file without reading its large holes, or None when it has none (or the file
        system cannot say): then ``chunks_of_file`` is the way.

        A hole of at least one maximum chunk reads as zeros, and cutting and hashing it costs as much as real
        data (a 160 MiB disk image with 18 MiB of data: ~0.5 s of the backup's busiest thread).  Here each data
        region (smaller holes included, read as zeros) is cut on its own, its last chunk ending where the
        region does, and each large hole becomes chunks of zeros of the maximum size and one of the rest,
        yielded as their length (an int): all-zero chunks of one length have one id, so the caller hashes
        each length once.  Holes are found with ``SEEK_DATA``/``SEEK_HOLE``.  The cuts next to a hole differ
        from those of the same bytes read whole, so a copy of the file that is not sparse shares all but
        those chunks with it.
        """
        regions = self.sparse_regions(stream, size)
        if regions is None:
            return None
        return self._sparse_chunks(stream, regions, size)

    def sparse_regions(self, stream: BinaryIO, size: int) -> list[tuple[int, int]] | None:
        """(start, end) of the data regions ``chunks_of_sparse`` cuts one by one, or None (no large hole)."""
        if size <= self.params.max_size or not hasattr(stream, "fileno"):
            return None
        try:
            st = os.fstat(stream.fileno())
        except (OSError, ValueError):
            return None
        # a regular file whose blocks leave room for a hole of one maximum chunk (else no SEEK_DATA calls), of
        # the size it was listed with: the holes of one that shrank since would become zeros up to that size
        if not stat.S_ISREG(st.st_mode) or st.st_size != size or st.st_blocks * 512 > size - self.params.max_size:
            return None
        return data_regions(stream.fileno(), size, self.params.max_size)

    def sparse_pieces(self, regions: list[tuple[int, int]], size: int) -> Iterator[int | tuple[int, int]]:
        """A sparse file in order: the length of each chunk of zeros (an int), and each data region (a
        (start, end) pair, to be cut on its own)."""
        position = 0
        for start, end in [*regions, (size, size)]:
            yield from _zero_run(start - position, self.params.max_size)
            if end > start:
                yield start, end
            position = end

    def _sparse_chunks(self, stream: BinaryIO, regions: list[tuple[int, int]], size: int) -> Iterator[memoryview | int]:
        for piece in self.sparse_pieces(regions, size):
            if isinstance(piece, int):
                yield piece
                continue
            start, end = piece
            stream.seek(start)
            yield from self._stream_cuts(_Window(stream, end - start).readinto)

    def chunks_of_stream(self, stream: BinaryIO) -> Iterator[memoryview]:
        """Yield chunk views of ``stream``; each view is only valid until the next one is produced."""
        return self._stream_cuts(stream.readinto)

    def _stream_cuts(self, readinto) -> Iterator[memoryview]:
        """The chunks of what ``readinto`` delivers, cut in the chunker's buffer.

        A cut is only taken while at least one maximum chunk lies ahead of it in the buffer (or the stream
        has ended): the cut function never looks further than that, so each point is the one the whole
        stream has there, the same as pyfastcdc's stream chunker finds.  A second stream cut while one is
        still open (an abandoned generator not yet collected) gets a buffer of its own."""
        max_size = self.params.max_size
        buffer = self._spare_buffer
        if buffer is None:
            keep_blocks_up_to(2 * max_size)  # chunk copies from the heap, as when pyfastcdc freed its buffers
            buffer = bytearray(STREAM_BUFFER_CHUNKS * max_size)
        self._spare_buffer = None
        view = memoryview(buffer)
        try:
            filled = 0
            ended = False
            while True:
                while not ended and filled < len(view):
                    n = readinto(view[filled:])
                    if not n:
                        ended = True
                    else:
                        filled += n
                if not filled:
                    return
                cuts = self._cdc.cut_buf(view[:filled])
                consumed = 0
                # a cut with less than a maximum chunk ahead may not be final: not asked for before a refill
                while ended or filled - consumed >= max_size:
                    chunk = next(cuts, None)
                    if chunk is None:
                        break
                    yield chunk.data
                    consumed = chunk.offset + chunk.length
                if ended:
                    return
                view[: filled - consumed] = view[consumed:filled]
                filled -= consumed
        finally:
            view.release()
            self._spare_buffer = buffer

    def cut_points(self, buf: bytes | bytearray | memoryview) -> Iterator[tuple[int, int]]:
        """(offset, length) of the chunks of an in-memory buffer."""
        for chunk in self._cdc.cut_buf(buf):
            yield chunk.offset, chunk.length


def read_up_to(stream: BinaryIO, limit: int) -> bytes:
    """Up to ``limit`` bytes, fewer only at the end of the stream (a raw read may return less)."""
    parts = []
    remaining = limit
    while remaining > 0:
        part = stream.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def data_regions(fd: int, size: int, min_hole: int) -> list[tuple[int, int]] | None:
    """(start, end) of the data of a file with at least one hole of ``min_hole`` bytes (smaller holes stay
    inside their region), or None: no such hole, or no ``SEEK_DATA`` here."""
    if not hasattr(os, "SEEK_DATA") or size < min_hole:
        return None
    regions: list[tuple[int, int]] = []
    offset = 0
    try:
        while offset < size:
            try:
                start = os.lseek(fd, offset, os.SEEK_DATA)
            except OSError as exc:
                if exc.errno != errno.ENXIO:  # ENXIO: only a hole is left
                    raise
                break
            if start >= size:
                break
            end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
            if regions and start - regions[-1][1] < min_hole:
                regions[-1] = (regions[-1][0], end)  # a small hole: read with its neighbours
            else:
                regions.append((start, end))
            offset = end
        os.lseek(fd, 0, os.SEEK_SET)
    except OSError:
        return None  # a file system without SEEK_DATA (EINVAL): read it whole
    if regions and regions[0][0] < min_hole:
        regions[0] = (0, regions[0][1])  # a small hole at the start or the end: read with its region
    if regions and size - regions[-1][1] < min_hole:
        regions[-1] = (regions[-1][0], size)
    if regions == [(0, size)]:
        return None
    return regions


def _zero_run(length: int, max_size: int) -> Iterator[int]:
    while length > 0:
        n = min(length, max_size)
        yield n
        length -= n


class _Window:
    """``readinto`` over the next ``length`` bytes of a stream (one data region of a sparse file)."""

    def __init__(self, stream: BinaryIO, length: int):
        self._stream = stream
        self._left = length

    def readinto(self, buffer) -> int:
        if self._left <= 0:
            return 0
        view = memoryview(buffer)[: self._left]
        n = self._stream.readinto(view) or 0
        self._left -= n
        return n


class _Prefixed:
    """``readinto`` over some bytes already read, then the rest of the stream they came from."""

    def __init__(self, prefix: bytes, rest: BinaryIO):
        self._prefix = memoryview(prefix)
        self._rest = rest

    def readinto(self, buffer) -> int:
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        return self._rest.readinto(buffer) or 0
