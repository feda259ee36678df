"""Whole-file chunking of small files cuts exactly where the stream chunker does, whatever the file does."""

from __future__ import annotations

import io
import os

import pytest

from packvault.chunking.chunker import Chunker, ChunkerParams

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
