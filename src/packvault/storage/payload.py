"""Upload bodies that are never copied whole: a buffer we already hold, or a spooled file.

Why this exists: botocore accepts ``bytes``, ``bytearray`` or a file-like object as a request body, but not
a ``memoryview``.  Turning a 32 MiB pack view into ``bytes`` for every upload doubled the memory of each
upload in flight.  A ``Payload`` is "bytes that can be read again from any offset", and ``reader()`` hands
botocore a small read-only, seekable file-like object over (a range of) it:

- botocore finds the length with ``seek``/``tell`` (no ``__len__``: botocore would take it as the length
  *from the current position*, and ``not body`` would call it);
- SigV4 over plain HTTP hashes the body in 1 MiB reads and seeks back, urllib3 then sends it in 128 KiB
  reads; ``read`` returns ``bytes`` (botocore's hashing loop stops at ``b""``), so at most one such block
  is copied at a time;
- every retry attempt gets a *fresh* reader, so it starts at offset 0 whatever the failed attempt read;
- nothing changes on the wire: botocore turns ``bytes`` bodies of PutObject/UploadPart into a ``BytesIO``
  anyway, so uploads were file-like (with ``Expect: 100-continue``) before too.

``BufferPayload`` wraps a ``memoryview``; ``FilePayload`` reads a file descriptor with ``os.pread`` (no
shared file position, so parallel multipart parts can read it at once).  The writing side of a spooled
pack is ``spool.SpoolFile``, which computes the MD5 while it writes, so nothing is read twice just to hash.
"""

from __future__ import annotations

import functools
import hashlib
import io
import os
from collections.abc import Iterator

BLOCK = 1024 * 1024


class Payload:
    """Bytes to upload, readable any number of times from any offset.  ``size`` and ``md5`` (of all bytes)."""

    size: int
    md5: bytes

    def read_at(self, offset: int, size: int) -> bytes:
        """``size`` bytes from ``offset`` (fewer only at the end)."""
        raise NotImplementedError

    def blocks(self, start: int = 0, length: int | None = None, block: int = BLOCK) -> Iterator[bytes | memoryview]:
        """The bytes of ``[start, start + length)`` in blocks of at most ``block`` bytes."""
        end = self.size if length is None else min(self.size, start + length)
        for offset in range(start, end, block):
            yield self.read_at(offset, min(block, end - offset))

    def reader(self, start: int = 0, length: int | None = None) -> PayloadReader:
        """A fresh file-like reader over ``[start, start + length)``, positioned at its beginning."""
        length = self.size - start if length is None else length
        if start < 0 or length < 0 or start + length > self.size:
            raise ValueError(f"range {start}+{length} outside a payload of {self.size} bytes")
        return PayloadReader(self, start, length)

    def range_md5(self, start: int, length: int) -> bytes:
        h = hashlib.md5()
        for block in self.blocks(start, length):
            h.update(block)
        return h.digest()

    def same_bytes(self, data: bytes | memoryview) -> bool:
        """True if ``data`` equals the payload (compared block by block)."""
        if len(data) != self.size:
            return False
        view = memoryview(data).cast("B")
        offset = 0
        for block in self.blocks():
            if view[offset : offset + len(block)] != block:
                return False
            offset += len(block)
        return True


class BufferPayload(Payload):
    """A payload over memory we already hold; blocks are views, ``read_at`` copies only what is asked."""

    def __init__(self, data: bytes | bytearray | memoryview):
        self.view = memoryview(data).cast("B")
        self.size = len(self.view)

    @functools.cached_property
    def md5(self) -> bytes:  # computed on first use: a multipart part only needs its own range's MD5
        return hashlib.md5(self.view).digest()

    def read_at(self, offset: int, size: int) -> bytes:
        return bytes(self.view[offset : offset + size])

    def blocks(self, start: int = 0, length: int | None = None, block: int = BLOCK) -> Iterator[memoryview]:
        end = self.size if length is None else min(self.size, start + length)
        for offset in range(start, end, block):
            yield self.view[offset : min(offset + block, end)]

    def range_md5(self, start: int, length: int) -> bytes:
        return hashlib.md5(self.view[start : start + length]).digest()


class FilePayload(Payload):
    """A payload in a file the caller keeps open (and owns) while the payload is used; read with pread."""

    def __init__(self, fd: int, size: int, md5: bytes):
        self.fd = fd
        self.size = size
        self.md5 = md5

    def read_at(self, offset: int, size: int) -> bytes:
        size = max(0, min(size, self.size - offset))
        data = os.pread(self.fd, size, offset)
        if len(data) == size:
            return data
        parts = [data]
        got = len(data)
        while got < size:  # a short read (a regular file should not give one, but the contract allows it)
            more = os.pread(self.fd, size - got, offset + got)
            if not more:
                raise OSError(f"spool file ended at {offset + got} of {self.size} bytes")
            parts.append(more)
            got += len(more)
        return b"".join(parts)


class PayloadReader(io.RawIOBase):
    """Read-only, seekable file-like view of ``[start, start + length)`` of a payload (for botocore)."""

    def __init__(self, payload: Payload, start: int, length: int):
        super().__init__()
        self._payload = payload
        self._start = start
        self._length = length
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        self._check_closed()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_closed()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._length + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    def read(self, size: int | None = -1) -> bytes:
        self._check_closed()
        remaining = max(0, self._length - self._pos)
        size = remaining if size is None or size < 0 else min(size, remaining)
        if size == 0:
            return b""
        data = self._payload.read_at(self._start + self._pos, size)
        self._pos += len(data)
        return data

    def readall(self) -> bytes:
        return self.read(-1)

    def readinto(self, buffer) -> int:
        data = self.read(len(memoryview(buffer)))
        memoryview(buffer).cast("B")[: len(data)] = data
        return len(data)

    def _check_closed(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed payload reader")
