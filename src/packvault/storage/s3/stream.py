"""A byte range of an S3 object read as a stream: one GET, consumed piece by piece, resumed if it breaks.

The one resumable download of Packvault: the backend's pack ranges (``S3Backend.open_range``) and the
objects of a bucket backed up as a source (``storage/buckets.py``) both read through it.

Why: restore reads each pack's wanted objects in a few long ranged reads.  Read whole into memory, a range
costs its full size per worker thread, so ranges had to stay small (4 MiB), and small ranges cost GETs:
~250 per GiB against restic's ~50, and on servers that load the whole object per ranged GET (moto) much
more work on the server.  Streamed, a worker holds one object at a time whatever the range's length, so a
range can span a whole pack.

The body is read a block at a time (``READ_BLOCK``) and pieces are cut from the block.  Why: a pack of
small files is thousands of objects of a few KiB, and each read through botocore, urllib3 and the retry
policy costs tens of microseconds of Python under the GIL that the restore's other threads need; per
block it is a few hundred reads per GiB.  The block never reaches past the range, so nothing more is
downloaded than asked for.

A stream that breaks (reset connection, timeout, short body) is resumed with a new ranged GET from the
first byte not yet received, within the backend's retry bounds, and counted as a retry.  Received bytes
are never re-read, so a resumed stream yields exactly the bytes an unbroken one would.
"""

from __future__ import annotations

from collections.abc import Callable

from .errors import TransientError, is_transient

READ_BLOCK = 1024 * 1024


class RangeStream:
    """Sequential reads over bytes [start, start + size) of one object."""

    def __init__(
        self,
        open_body: Callable[[int, int], object],
        call_with_retries: Callable[[Callable[[], bytes]], bytes],
        start: int,
        size: int,
        on_bytes: Callable[[int], None] | None = None,
        *,
        body: object | None = None,
        on_resume: Callable[[], None] | None = None,
    ):
        """``open_body(first, last)`` GETs that inclusive byte range and returns the streaming body;
        ``call_with_retries(fn)`` runs ``fn`` under the retry policy; ``on_bytes(n)`` counts bytes
        received.  ``body``: a response body already open at ``start`` (the caller's first GET); ``on_resume()`` is
        called whenever a body has to be opened again after one broke."""
        self._open_body = open_body
        self._call = call_with_retries
        self._on_bytes = on_bytes
        self._on_resume = on_resume
        self._pos = start  # first byte not yet received
        self._end = start + size
        self._body = body
        self._opened = body is not None
        self._block = b""  # received, not yet handed out from ``_taken`` on
        self._taken = 0

    def read(self, n: int) -> bytes:
        """Exactly the next ``n`` bytes (fewer only if the range ends first)."""
        held = len(self._block) - self._taken
        if n <= held:
            piece = self._block[self._taken : self._taken + n]
            self._taken += len(piece)
            return piece
        # the rest of the block and the new bytes are copied once, into the piece handed out (an object that
        # straddles two reads is usually a large one)
        head = memoryview(self._block)[self._taken :]
        self._block, self._taken = b"", 0
        want = min(n - held, self._end - self._pos)
        if want <= 0:
            return bytes(head)
        fetch = min(max(want, READ_BLOCK), self._end - self._pos)
        data = self._call(lambda: self._read_once(fetch))
        self._pos += fetch
        if self._on_bytes is not None:
            self._on_bytes(fetch)
        if fetch > want:
            self._block, self._taken = data, want
            return b"".join((head, memoryview(data)[:want]))
        return b"".join((head, data)) if head else data

    def _read_once(self, n: int) -> bytes:
        try:
            if self._body is None:
                if self._opened and self._on_resume is not None:
                    self._on_resume()
                self._body = self._open_body(self._pos, self._end - 1)
                self._opened = True
            data = self._body.read(n)
            if len(data) != n:
                raise TransientError(f"stream ended {self._end - self._pos - len(data)} bytes early")
            return data
        except BaseException as exc:
            if is_transient(exc):
                self.close()  # the next attempt opens a new GET at self._pos
            raise

    def close(self) -> None:
        """Give the connection back when the range was read to its end; drop it otherwise (a half-read
        response can't carry another request)."""
        body, self._body = self._body, None
        if body is None:
            return
        raw = getattr(body, "_raw_stream", None)
        try:
            if self._pos >= self._end and hasattr(raw, "release_conn"):
                raw.release_conn()
            else:
                body.close()
        except Exception:  # noqa: BLE001 - closing a broken stream may fail too; it is dropped either way
            pass
