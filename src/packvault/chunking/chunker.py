"""Content-defined chunking with FastCDC, seeded from the repository key.

Average chunk size about 1 MiB (pyfastcdc's effective average is avg + min): big enough that a GiB is
about a thousand objects (few index entries, few requests), small enough that an edit in a large file
re-uploads only a few MiB.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from pyfastcdc import FastCDC

DEFAULT_AVG = 768 * 1024
DEFAULT_MIN = 256 * 1024
DEFAULT_MAX = 4 * 1024 * 1024


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
    """Cuts streams and buffers into content-defined chunks (not thread-safe: one per thread)."""

    def __init__(self, params: ChunkerParams, seed: int):
        self.params = params
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

    def chunks_of_stream(self, stream: BinaryIO) -> Iterator[memoryview]:
        """Yield chunk views of ``stream``; each view is only valid until the next one is produced."""
        for chunk in self._cdc.cut_stream(stream):
            yield chunk.data

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
