"""The reader processes' side of ``filereaders.py``: each reads, cuts, hashes, compresses and seals the small
files of the batches it is handed, writing the sealed objects into the shared arena where the backup
reserved room for them (``sharedarena.py``), so that only their counts go back through the pool's pipe.

A module of its own because it is what the pool's server process imports before it forks the readers:
what they need, and nothing of the backup's side.
"""

from __future__ import annotations

import os
import struct

from ..allocator import tune_for_chunk_reads
from ..chunking.chunker import read_up_to
from ..processes import ignore_interrupts
from ..repository.objects import TYPE_DATA
from ..repository.sealing import SealingKit
from ..sharedarena import RegionWriter
from .fsmeta import open_source_file, read_xattrs

# The records of a batch's chunks, back to back: chunk id, plaintext size, sealed size.
CHUNK_RECORD = struct.Struct("<32sII")

_reader: _Reader | None = None
_arena = None  # the shared arena, mapped (``sharedarena.WorkerArena``)
allocator_tuned = False  # this reader process keeps freed file buffers (``allocator.tune_for_chunk_reads``)


class _Reader:
    def __init__(self, kit: SealingKit):
        self.chunker = kit.chunker()
        self.chunk_id = kit.chunk_id_hasher()
        self.codec = kit.codec()
        self.max_size = kit.chunker_params.max_size

    def read(
        self, path: bytes, size: int, sealed: RegionWriter, records: bytearray, offset: int | None = None
    ) -> tuple:
        """Read, cut, hash and seal one file, appending to the batch's buffers; returns its file tuple
        (chunks, size after, mtime after, error, grown, xattrs or None).  With ``offset``: the ``size`` bytes
        there, one data region of a sparse file (``grown`` when they are not all there any more)."""
        try:
            with open_source_file(path) as f:
                if offset is not None:
                    f.seek(offset)
                    data = read_up_to(f, size)
                    if len(data) != size:
                        return (0, None, None, None, True, None)
                    st, xattrs = os.fstat(f.fileno()), None
                else:
                    data = read_up_to(f, size + 1)
                    if len(data) > size:
                        return (0, None, None, None, True, None)
                    st = os.fstat(f.fileno())
                    xattrs = read_xattrs(f.fileno()) or None
        except OSError as exc:
            return (0, None, None, exc, False, None)
        view = memoryview(data)
        count = 0
        for offset, length in self.chunker.cut_points(data):
            piece = view[offset : offset + length]
            chunk_id = self.chunk_id(piece)
            obj = self.codec.seal(chunk_id, TYPE_DATA, piece)
            sealed.add(obj)
            records += CHUNK_RECORD.pack(chunk_id, length, len(obj))
            count += 1
        return (count, st.st_size, st.st_mtime_ns, None, False, xattrs)


def start_reader(kit: SealingKit, arena=None) -> None:  # noqa: ANN001 - the mapping, or None
    """The pool's initializer: ``arena`` is the backup's shared arena as this process maps it, or None."""
    global _reader, allocator_tuned, _arena
    ignore_interrupts()
    allocator_tuned = tune_for_chunk_reads()
    _reader = _Reader(kit)
    _arena = arena


def read_batch(batch: list[tuple], start: int | None = None, length: int = 0) -> tuple:
    """The batch's reads (``filereaders.BatchReads``), the sealed objects written at ``start`` in the arena where the
    backup reserved room (then only their byte count is returned).  A job is (path, size) for a whole file, or
    (path, size, offset) for a region of one."""
    assert _reader is not None
    sealed, records = RegionWriter(_arena, start, length), bytearray()
    files = [_reader.read(job[0], job[1], sealed, records, *job[2:]) for job in batch]
    return sealed.result(), records, files
