"""Opening sealed objects: every kind of damage is refused, and says whether bytes were damaged or forged."""

from __future__ import annotations

import os

import pytest
import xxhash

from packvault.chunking.compression import CompressionSpec, Compressor
from packvault.crypto.aead import CIPHER_AES_GCM, CIPHER_CHACHA20, SessionSealer
from packvault.errors import IntegrityError
from packvault.repository.objects import _HSUM, _SUMS, AAD_SIZE, HEADER_SIZE, ObjectCodec, parse_header

OBJECT_ID = bytes(range(32))
DATA = b"text that compresses " * 3000 + os.urandom(5000)


@pytest.fixture(params=[CIPHER_AES_GCM, CIPHER_CHACHA20])
def codec(request) -> ObjectCodec:
    return ObjectCodec(SessionSealer(os.urandom(32), request.param), Compressor(CompressionSpec.parse("auto,zstd,3")))


def _sealed(codec: ObjectCodec) -> bytearray:
    return bytearray(codec.seal(OBJECT_ID, 1, DATA))


def test_round_trip_from_bytes_and_from_a_view_into_a_larger_buffer(codec):
    sealed = bytes(_sealed(codec))
    assert codec.open(sealed, expected_id=OBJECT_ID)[2] == DATA
    padded = memoryview(b"x" * 7 + sealed + b"y" * 3)
    header, meta, data = codec.open(padded, 7)
    assert (header.object_id, meta.size, data) == (OBJECT_ID, len(DATA), DATA)


def test_a_flipped_data_byte_is_reported_as_damage(codec):
    sealed = _sealed(codec)
    sealed[-100] ^= 1
    with pytest.raises(IntegrityError, match="data checksum mismatch"):
        codec.open(sealed)


def test_intact_checksums_over_forged_bytes_still_fail_authentication(codec):
    """Someone without the key can recompute the xxh64s; only the AEAD tag stops them."""
    sealed = _sealed(codec)
    sealed[-100] ^= 1
    header = parse_header(sealed)
    start = HEADER_SIZE
    sealed_meta = bytes(sealed[start : start + header.meta_size])
    sealed_data = bytes(sealed[start + header.meta_size :])
    sums = _SUMS.pack(xxhash.xxh64_intdigest(sealed_meta), xxhash.xxh64_intdigest(sealed_data))
    sealed[AAD_SIZE : AAD_SIZE + _SUMS.size] = sums
    covered = bytes(sealed[: AAD_SIZE + _SUMS.size])
    sealed[AAD_SIZE + _SUMS.size : HEADER_SIZE] = _HSUM.pack(xxhash.xxh64_intdigest(covered))
    with pytest.raises(IntegrityError, match="failed authentication"):
        codec.open(sealed)


def test_wrong_id_and_truncation_are_refused(codec):
    sealed = bytes(_sealed(codec))
    with pytest.raises(IntegrityError, match="id mismatch"):
        codec.open(sealed, expected_id=bytes(32))
    with pytest.raises(IntegrityError, match="truncated"):
        codec.open(sealed[:-1])
