"""A sparse file's chunks: its holes as chunks of zeros, its data regions cut one by one.

The backup's process meets the holes (``Chunker.sparse_pieces``); the data regions were read, cut and sealed
by the reader processes side by side (``ReadQueue.add_for_later``), or are read here (``Chunker``).  Either
way the chunks are the same, so an archive does not depend on who read the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ..repository.writer import RepositoryWriter
from .filereaders import FileRead


class ZeroChunks:
    """Id and bytes of an all-zero chunk of a length, hashed once per length (a hole is a run of them)."""

    def __init__(self, chunk_id: Callable[[bytes], bytes]):
        self._chunk_id = chunk_id
        self._known: dict[int, tuple[bytes, bytes]] = {}

    def __call__(self, length: int) -> tuple[bytes, bytes]:
        known = self._known.get(length)
        if known is None:
            data = bytes(length)
            known = self._known[length] = (self._chunk_id(data), data)
        return known


def put_region_reads(
    pieces: Iterable[int | tuple[int, int]], reads: list[FileRead], zeros: ZeroChunks, writer: RepositoryWriter
) -> list[tuple[bytes, int]]:
    """Put a sparse file's chunks in file order, its data regions from ``reads`` (one per region, in order),
    and return them."""
    chunks: list[tuple[bytes, int]] = []
    region_reads = iter(reads)
    for piece in pieces:
        if isinstance(piece, int):
            chunk_id, data = zeros(piece)
            writer.put_chunk(chunk_id, data)
            chunks.append((chunk_id, piece))
            continue
        read = next(region_reads)
        if read.objects is not None:  # the first region of its batch: the whole batch's objects
            writer.put_sealed_objects(*read.objects)
        chunks.extend(read.chunks)
    return chunks
