"""Streamed ranged reads (``S3Backend.open_range``): the bytes of the range, whatever breaks on the way.

A download cut mid-body is resumed from the first byte not yet handed out, so the reader sees exactly the
range; a missing object and a range past the end are errors, not silent short data.
"""

from __future__ import annotations

import os

import pytest
from borgstore.backends.errors import ObjectNotFound, ReadRangeError

from packvault.errors import ServiceUnavailable

KiB = 1024
MiB = 1024 * KiB


def proxied(url: str, upstream: str, proxy) -> str:
    return url.replace(upstream, proxy.endpoint)


def read_in_pieces(stream, sizes: list[int]) -> list[bytes]:
    try:
        return [stream.read(n) for n in sizes]
    finally:
        stream.close()


def test_stream_reads_exactly_the_range(moto_endpoint, open_s3):
    be = open_s3(moto_endpoint)
    data = os.urandom(3 * MiB + 17)
    be.store("packs/data/aa/aa01", data)
    before = be.request_stats()["GET"]
    pieces = read_in_pieces(be.open_range("packs/data/aa/aa01", 1000, 2 * MiB), [10, 0, MiB, MiB - 10, 5])
    assert b"".join(pieces) == data[1000 : 1000 + 2 * MiB]
    assert pieces[-1] == b""  # past the end of the range
    assert be.request_stats()["GET"] - before == 1


def test_cut_downloads_resume_where_they_broke(moto_endpoint, open_s3, make_s3_url, fault_proxy):
    url = make_s3_url(moto_endpoint)
    proxy = fault_proxy(
        moto_endpoint, fault_rate=1.0, kinds=["cut_body"], methods=["GET"], path_contains="packs/", max_faults=3
    )
    be = open_s3(moto_endpoint, url=proxied(url, moto_endpoint, proxy))
    data = os.urandom(4 * MiB)
    be.store("packs/data/bb/bb01", data)
    sizes = [300 * KiB] * 13 + [len(data) - 13 * 300 * KiB]
    pieces = read_in_pieces(be.open_range("packs/data/bb/bb01", 0, len(data)), sizes)
    assert b"".join(pieces) == data
    assert proxy.faults["cut_body"] == 3
    stats = be.request_stats()
    assert stats["retries"] == 3
    assert stats["GET"] == 4  # the first GET and one resumption per cut, each from where it broke
    assert stats["bytes_down"] == len(data)  # handed-out bytes are never fetched twice


def test_a_service_that_keeps_cutting_is_given_up_on(moto_endpoint, open_s3, make_s3_url, fault_proxy):
    url = make_s3_url(moto_endpoint, retry_attempts="3", retry_max_seconds="5")
    proxy = fault_proxy(moto_endpoint, fault_rate=1.0, kinds=["cut_body"], methods=["GET"], path_contains="packs/")
    be = open_s3(moto_endpoint, url=proxied(url, moto_endpoint, proxy))
    be.store("packs/data/cc/cc01", os.urandom(MiB))
    stream = be.open_range("packs/data/cc/cc01", 0, MiB)
    with pytest.raises(ServiceUnavailable, match="kept failing"):
        read_in_pieces(stream, [MiB])


def test_missing_object_and_range_past_the_end(moto_endpoint, open_s3):
    be = open_s3(moto_endpoint)
    with pytest.raises(ObjectNotFound):
        read_in_pieces(be.open_range("packs/data/dd/dd01", 0, 100), [100])
    be.store("packs/data/dd/dd02", b"x" * 100)
    with pytest.raises(ReadRangeError):
        read_in_pieces(be.open_range("packs/data/dd/dd02", 200, 100), [100])


def test_tree_listing_is_one_request_per_thousand_keys(moto_endpoint, open_s3):
    """``list_tree`` names the same objects as borgstore's recursive listing, without a LIST per nesting
    directory."""
    from packvault.storage.layout import STORE_CONFIG
    from packvault.storage.store import Store

    be = open_s3(moto_endpoint)
    names = [f"{i:02x}{'ab' * 31}" for i in range(0, 256, 7)]  # 37 packs in 37 nesting directories
    for pack in names:
        be.store(f"packs/data/{pack[:2]}/{pack}", b"x" * (len(pack) % 5 + 1))
    before = be.request_stats()["LIST"]
    tree = list(be.list_tree("packs/data"))
    assert be.request_stats()["LIST"] - before == 1
    assert [info.name for info in tree] == sorted(names)
    store = Store(backend=be, config=STORE_CONFIG)
    before = be.request_stats()["LIST"]
    recursive = list(store.list("packs/data"))
    assert be.request_stats()["LIST"] - before == 1 + len(names)
    assert [(i.name, i.size) for i in tree] == [(i.name, i.size) for i in recursive]


class _Body:
    """A response body over ``data[first:last + 1]`` that counts its reads and can break once."""

    def __init__(self, data: bytes, first: int, last: int, log: list, break_after: int | None = None):
        self._data, self._pos, self._end = data, first, last + 1
        self._log = log
        self._break_after = break_after

    def read(self, n: int) -> bytes:
        self._log.append((self._pos, n))
        if self._break_after is not None and len(self._log) > self._break_after:
            piece = self._data[self._pos : self._pos + n // 2]  # a cut connection: a short body
            self._pos += len(piece)
            return piece
        piece = self._data[self._pos : min(self._pos + n, self._end)]
        self._pos += len(piece)
        return piece

    def close(self) -> None:
        pass


def _stream(data: bytes, start: int, size: int, log: list, breaks: list[int | None]):
    from packvault.storage.s3.stream import RangeStream

    def open_body(first: int, last: int):
        return _Body(data, first, last, log, breaks.pop(0) if breaks else None)

    def call(fn):
        from packvault.storage.s3.errors import TransientError

        for _ in range(3):
            try:
                return fn()
            except TransientError:
                continue
        raise AssertionError("kept failing")

    return RangeStream(open_body, call, start, size)


def test_small_pieces_are_cut_from_block_reads_and_large_ones_read_whole():
    from packvault.storage.s3.stream import READ_BLOCK

    rnd = __import__("random").Random(5)
    data = rnd.randbytes(12 * MiB)
    sizes = []  # mostly small objects, now and then a large one
    while sum(sizes) < len(data) - 3 * MiB:
        sizes.append(2 * MiB + 5 if len(sizes) % 400 == 399 else rnd.randint(1, 8 * KiB))
    log: list = []
    stream = _stream(data, 100, len(data) - 200, log, [])
    pieces = read_in_pieces(stream, sizes)
    assert b"".join(pieces) == data[100 : 100 + sum(sizes)]
    assert all(isinstance(piece, bytes) for piece in pieces)
    large = sum(1 for size in sizes if size > READ_BLOCK)
    assert len(log) <= sum(sizes) // READ_BLOCK + large + 1  # not one body read per piece
    assert len(log) < len(sizes) // 10


def test_a_body_cut_inside_a_block_resumes_at_the_first_byte_not_received():
    data = os.urandom(5 * MiB)
    log: list = []
    stream = _stream(data, 0, len(data), log, [2, None])  # the first body breaks on its third read
    pieces = read_in_pieces(stream, [5000] * (len(data) // 5000) + [len(data) % 5000])
    assert b"".join(pieces) == data
    resumed = [pos for pos, _ in log[3:4]]
    assert resumed and resumed[0] % (1024 * KiB) == 0  # from where the last whole block ended
