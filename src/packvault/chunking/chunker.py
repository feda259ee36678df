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

    def chunks_of_stream(self, stream: BinaryIO) -> Iterator[memoryview]:
        """Yield chunk views of ``stream``; each view is only valid until the next one is produced."""
        for chunk in self._cdc.cut_stream(stream):
            yield chunk.data

    def cut_points(self, buf: bytes | bytearray | memoryview) -> Iterator[tuple[int, int]]:
        """(offset, length) of the chunks of an in-memory buffer."""
        for chunk in self._cdc.cut_buf(buf):
            yield chunk.offset, chunk.length
