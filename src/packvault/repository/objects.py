"""The repository object: a plaintext header, sealed metadata, sealed data.

Layout (little endian)::

    magic        8s   b"\\x89PVOBJ\\r\\n"   resync point when scanning a damaged pack
    version      B    1
    cipher       B    aead.CIPHER_*
    object id   32s   chunk id (keyed MAC of the plaintext) or other id
    session id  16s   writer session (selects the AEAD subkey)
    counter      Q    nonce counter within the session
    meta size    I    length of the sealed metadata
    data size    I    length of the sealed data
    meta xxh64   Q    of the sealed metadata bytes
    data xxh64   Q    of the sealed data bytes
    header xxh64 Q    of all the header bytes before it

The first 74 bytes (everything up to the sizes) are the AEAD associated data of both sealed parts, so an
object cannot be relabelled with another id or moved to another session.  The xxh64 fields let anyone
(without the key: ``check --repository-only``, a server) verify the structure of a pack and find the
exact damaged object.  The sealed metadata is a small msgpack map: object type, compression, plaintext
size.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import msgpack
import xxhash

from ..chunking.compression import Compressor
from ..crypto.aead import TAG_SIZE, SessionSealer
from ..errors import IntegrityError

MAGIC = b"\x89PVOBJ\r\n"
VERSION = 1
_AAD = struct.Struct("<8sBB32s16sQII")
_SUMS = struct.Struct("<QQ")
_HSUM = struct.Struct("<Q")
AAD_SIZE = _AAD.size
HEADER_SIZE = _AAD.size + _SUMS.size + _HSUM.size
PART_META = 1
PART_DATA = 2

# object types (inside the sealed metadata)
TYPE_DATA = 0  # a chunk of file content
TYPE_ITEMS = 1  # a chunk of an archive's item stream
TYPE_ARCHIVE = 2  # archive metadata (the root of an archive)
TYPE_INDEX = 3  # an index fragment
TYPE_ARCHIVE_ENTRY = 4  # the small record in archives/
TYPE_LOCK = 5  # a lock record
TYPE_CONFIG = 6  # the encrypted part of the repository config


@dataclass(frozen=True)
class Header:
    cipher: int
    object_id: bytes
    session_id: bytes
    counter: int
    meta_size: int
    data_size: int
    meta_xxh64: int
    data_xxh64: int

    @property
    def total_size(self) -> int:
        return HEADER_SIZE + self.meta_size + self.data_size


@dataclass(frozen=True)
class ObjectMeta:
    type: int
    compression: int
    size: int  # plaintext size


def parse_header(buf: bytes | memoryview, offset: int = 0) -> Header:
    """Parse and verify the header at ``offset``; raises IntegrityError on any mismatch."""
    if len(buf) - offset < HEADER_SIZE:
        raise IntegrityError(f"truncated object header at offset {offset}")
    (hsum,) = _HSUM.unpack_from(buf, offset + AAD_SIZE + _SUMS.size)
    if xxhash.xxh64_intdigest(buf[offset : offset + AAD_SIZE + _SUMS.size]) != hsum:
        raise IntegrityError(f"object header checksum mismatch at offset {offset}")
    magic, version, cipher, oid, sid, counter, msize, dsize = _AAD.unpack_from(buf, offset)
    if magic != MAGIC:
        raise IntegrityError(f"bad object magic at offset {offset}")
    if version != VERSION:
        raise IntegrityError(f"unsupported object version {version} at offset {offset}")
    msum, dsum = _SUMS.unpack_from(buf, offset + AAD_SIZE)
    return Header(cipher, oid, sid, counter, msize, dsize, msum, dsum)


def verify_parts(header: Header, buf: bytes | memoryview, offset: int = 0) -> None:
    """Check the sealed parts' xxh64 (no key needed)."""
    start = offset + HEADER_SIZE
    end = start + header.meta_size + header.data_size
    if len(buf) < end:
        raise IntegrityError(f"truncated object at offset {offset}")
    if xxhash.xxh64_intdigest(buf[start : start + header.meta_size]) != header.meta_xxh64:
        raise IntegrityError(f"metadata checksum mismatch in object at offset {offset}")
    if xxhash.xxh64_intdigest(buf[start + header.meta_size : end]) != header.data_xxh64:
        raise IntegrityError(f"data checksum mismatch in object at offset {offset}")


class ObjectCodec:
    """Seals and opens objects with one writer session and one compressor."""

    def __init__(self, sealer: SessionSealer, compressor: Compressor):
        self.sealer = sealer
        self.compressor = compressor

    def seal(self, object_id: bytes, obj_type: int, data: bytes | memoryview, *, compress: bool = True) -> bytes:
        if compress:
            algorithm, payload = self.compressor.compress(data)
        else:
            algorithm, payload = 0, data
        meta = msgpack.packb([obj_type, algorithm, len(data)])
        counter = self.sealer.next_counter()
        msize = len(meta) + TAG_SIZE
        dsize = len(payload) + TAG_SIZE
        aad = _AAD.pack(MAGIC, VERSION, self.sealer.cipher, object_id, self.sealer.session_id, counter, msize, dsize)
        sealed_meta = self.sealer.seal(counter, PART_META, meta, aad)
        sealed_data = self.sealer.seal(counter, PART_DATA, payload, aad)
        sums = _SUMS.pack(xxhash.xxh64_intdigest(sealed_meta), xxhash.xxh64_intdigest(sealed_data))
        hsum = _HSUM.pack(xxhash.xxh64_intdigest(aad + sums))
        return b"".join((aad, sums, hsum, sealed_meta, sealed_data))

    def _aad(self, h: Header) -> bytes:
        return _AAD.pack(MAGIC, VERSION, h.cipher, h.object_id, h.session_id, h.counter, h.meta_size, h.data_size)

    def open(
        self, buf: bytes | memoryview, offset: int = 0, *, expected_id: bytes | None = None
    ) -> tuple[Header, ObjectMeta, bytes]:
        """Authenticate, decrypt and decompress the object at ``offset``.

        The AEAD tags prove every sealed byte, so the parts' xxh64 (there for key-less checks) are only
        computed when authentication fails, to tell damaged bytes (a checksum mismatch: storage or
        transit) from bytes that are intact but not sealed with this key.  That spares restore and
        ``check --verify-data`` a pass over every chunk, and the parts are decrypted in place, uncopied.
        """
        header = parse_header(buf, offset)
        if expected_id is not None and header.object_id != expected_id:
            raise IntegrityError(f"object id mismatch: expected {expected_id.hex()}, found {header.object_id.hex()}")
        start = offset + HEADER_SIZE
        middle = start + header.meta_size
        end = middle + header.data_size
        if len(buf) < end:
            raise IntegrityError(f"truncated object at offset {offset}")
        view = memoryview(buf)
        aad = self._aad(header)
        opening = (header.cipher, header.session_id, header.counter)
        try:
            meta = self.sealer.open(*opening, PART_META, view[start:middle], aad)
            payload = self.sealer.open(*opening, PART_DATA, view[middle:end], aad)
        except IntegrityError:
            verify_parts(header, buf, offset)  # damaged bytes get the more precise message
            raise
        obj_type, algorithm, size = msgpack.unpackb(meta)
        data = self.compressor.decompress(algorithm, payload, size)
        if len(data) != size:
            raise IntegrityError(f"object {header.object_id.hex()} has size {len(data)}, expected {size}")
        return header, ObjectMeta(obj_type, algorithm, size), data


def iter_headers(buf: bytes | memoryview) -> Iterator[tuple[int, Header]]:
    """(offset, header) of each object in a pack, verifying header checksums; stops with IntegrityError."""
    offset = 0
    while offset < len(buf):
        header = parse_header(buf, offset)
        if offset + header.total_size > len(buf):
            raise IntegrityError(f"truncated object at offset {offset}")
        yield offset, header
        offset += header.total_size


def resync(buf: bytes | memoryview, start: int) -> int:
    """Offset of the next plausible object header after ``start``, or len(buf)."""
    data = bytes(buf) if isinstance(buf, memoryview) else buf
    pos = start + 1
    while True:
        pos = data.find(MAGIC, pos)
        if pos < 0:
            return len(data)
        try:
            parse_header(data, pos)
            return pos
        except IntegrityError:
            pos += 1


def open_verified(
    codec: ObjectCodec, chunk_id_of: Callable[[bytes], bytes], pack: str, chunk_id: bytes, part: memoryview, size: int
) -> bytes | IntegrityError:
    """The plaintext of the sealed object ``part`` (``size`` bytes in the index), authenticated and its id
    recomputed, or the error that says why not (in this process or in a restore process)."""
    if len(part) < size:
        return IntegrityError(f"chunk {chunk_id.hex()} is truncated in pack {pack}")
    try:
        data = codec.open(part, expected_id=chunk_id)[2]
        if chunk_id_of(data) != chunk_id:
            raise IntegrityError("plaintext does not match its id (MAC)")
        return data
    except IntegrityError as exc:
        return IntegrityError(f"chunk {chunk_id.hex()} in pack {pack}: {exc}")
