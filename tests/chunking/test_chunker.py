"""Whole-file chunking of small files cuts exactly where the stream chunker does, whatever the file does."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

from packvault.chunking.chunker import STREAM_BUFFER_CHUNKS, Chunker, ChunkerParams
from tests.support.importcount import glibc_here

PARAMS = ChunkerParams()
MAX = PARAMS.max_size


class ShortReads(io.RawIOBase):
    """A raw stream that hands out at most 1000 bytes per call, as a pipe or a network body may."""

    def __init__(self, data: bytes):
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self._data.readinto(memoryview(buffer)[:1000])
        return n


def _content(size: int) -> bytes:
    half = size // 2
    return os.urandom(half) + b"log line 42\n" * ((size - half) // 12) + b"x" * ((size - half) % 12)


def _cuts_of_stream(chunker: Chunker, data: bytes) -> list[bytes]:
    return [bytes(v) for v in chunker.chunks_of_stream(io.BytesIO(data))]


@pytest.mark.parametrize(
    "size", [0, 1, 4096, PARAMS.min_size, PARAMS.min_size + 1, 3 * MAX // 4, MAX, MAX + 1, 3 * MAX + 12345]
)
def test_same_chunks_as_the_stream_chunker(size):
    chunker = Chunker(PARAMS, seed=7)
    data = _content(size)
    assert [bytes(v) for v in chunker.chunks_of_file(io.BytesIO(data), size)] == _cuts_of_stream(chunker, data)
    assert [bytes(v) for v in chunker.chunks_of_file(ShortReads(data), size)] == _cuts_of_stream(chunker, data)


@pytest.mark.parametrize("actual", [MAX // 2, MAX + 1, 2 * MAX + 7])
def test_a_file_larger_than_its_size_hint_is_chunked_whole(actual):
    """The file grew between stat and read: every byte is still chunked, at the stream chunker's points."""
    chunker = Chunker(PARAMS, seed=7)
    data = _content(actual)
    chunks = [bytes(v) for v in chunker.chunks_of_file(io.BytesIO(data), 1000)]
    assert b"".join(chunks) == data
    assert chunks == _cuts_of_stream(chunker, data)


def test_a_file_that_shrank_gives_what_is_there():
    chunker = Chunker(PARAMS, seed=7)
    data = _content(5000)
    assert [bytes(v) for v in chunker.chunks_of_file(io.BytesIO(data), 9000)] == [data]


def _pyfastcdc_cuts(chunker: Chunker, data: bytes) -> list[bytes]:
    """The reference: pyfastcdc's own stream chunker, with the chunker's parameters and seed."""
    return [bytes(chunk.data) for chunk in chunker._cdc.cut_stream(io.BytesIO(data))]


BUFFER = STREAM_BUFFER_CHUNKS * MAX


@pytest.mark.parametrize(
    "size", [0, 1, MAX - 1, MAX, MAX + 1, BUFFER - MAX, BUFFER - 1, BUFFER, BUFFER + 1, 2 * BUFFER + 12345]
)
def test_streams_are_cut_where_pyfastcdc_cuts_them(size):
    """The chunker cuts streams in a buffer of its own: the points must stay pyfastcdc's, across refills of
    that buffer and whatever sizes the reads come in, or a new version would deduplicate nothing."""
    chunker = Chunker(PARAMS, seed=11)
    data = _content(size)
    expected = _pyfastcdc_cuts(chunker, data)
    assert b"".join(expected) == data
    assert [bytes(v) for v in chunker.chunks_of_stream(io.BytesIO(data))] == expected
    assert [bytes(v) for v in chunker.chunks_of_stream(ShortReads(data))] == expected


def test_one_buffer_serves_stream_after_stream_and_two_open_streams_do_not_share_it():
    chunker = Chunker(PARAMS, seed=5)
    first, second = _content(2 * BUFFER + 999), os.urandom(BUFFER + 7)
    assert [bytes(v) for v in chunker.chunks_of_stream(io.BytesIO(first))] == _pyfastcdc_cuts(chunker, first)
    buffer = chunker._spare_buffer
    assert buffer is not None
    assert [bytes(v) for v in chunker.chunks_of_stream(io.BytesIO(second))] == _pyfastcdc_cuts(chunker, second)
    assert chunker._spare_buffer is buffer  # reused, not allocated per stream
    # interleaved: each stream's chunks still come out right
    a, b = chunker.chunks_of_stream(io.BytesIO(first)), chunker.chunks_of_stream(io.BytesIO(second))
    got_a, got_b = [bytes(next(a))], [bytes(next(b))]
    got_a += [bytes(v) for v in a]
    got_b += [bytes(v) for v in b]
    assert (got_a, got_b) == (_pyfastcdc_cuts(chunker, first), _pyfastcdc_cuts(chunker, second))


_CHUNK_COPIES = """
import io, os, resource, sys
from packvault.chunking.chunker import Chunker, ChunkerParams
from packvault import allocator
if sys.argv[1] == "readers":
    allocator.tune_for_chunk_reads()
if sys.argv[1] == "kept":
    allocator.keep_blocks_up_to(8 * 1024 * 1024)
if sys.argv[1] in ("stream", "readers"):
    chunker = Chunker(ChunkerParams(), seed=3)
    for view in chunker.chunks_of_stream(io.BytesIO(os.urandom(9 * 1024 * 1024))):
        bytes(view)
data = memoryview(os.urandom(1024 * 1024))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # chunk-sized copies, a dozen in flight to the sealing threads, then freed
    copies = [bytes(data[n:]) for n in range(12)]
    del copies
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before, allocator._mmap_threshold_set)
"""


@pytest.mark.skipif(not glibc_here(), reason="glibc's mmap threshold")
def test_after_a_stream_chunk_sized_blocks_come_from_the_heap_and_stay():
    """pyfastcdc's stream chunker freed an 8 MiB buffer per stream, and glibc then served blocks up to that
    size from the heap and kept twice as much of it when freed; a chunker that keeps its buffer says so
    itself.  Without it the heap the chunk copies take is handed back and faulted in again (~256 pages per
    MiB) every time they are freed.  A reader process's larger setting is not lowered."""

    def faults(how: str) -> tuple[int, int]:
        out = subprocess.run([sys.executable, "-c", _CHUNK_COPIES, how], capture_output=True, text=True, check=True)
        count, threshold = out.stdout.split()
        return int(count), int(threshold)

    untouched, _ = faults("none")
    kept, _ = faults("kept")
    assert kept < 2 * 12 * 256  # about the heap's first growth, once
    assert untouched > 3 * kept  # glibc's own thresholds: the heap handed back and faulted in again and again
    assert faults("stream")[1] == 2 * MAX  # cutting a stream keeps blocks up to two maximum chunks
    assert faults("readers")[1] == 32 * 1024 * 1024  # and lowers no larger setting
