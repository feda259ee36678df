"""A pack on its way to a remote store, written to an anonymous temporary file instead of memory.

Why: a remote backup keeps two uploads in flight while the next pack fills.  Held in memory that is
three 32 MiB packs per kind (and botocore used to copy each upload once more).  Spooled, a pack costs
disk space and page cache (which the kernel can write back and reclaim), not process memory, and the
upload reads it back in small blocks (``payload.FilePayload``).

- The file is anonymous (``tempfile.TemporaryFile``: ``O_TMPFILE`` or created and unlinked at once), so it
  disappears when it is closed, on any error path, and even when the process is killed: no stale spool
  files to clean up, and no name another process could open.
- The MD5 (for ``Content-MD5``) and, when given, the content hash that names the pack are computed while
  the bytes are written, so nothing is read back just to hash it.
- Nothing is fsynced: a spool file is never the durable copy; the pack is durable once the store has it.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from .payload import FilePayload


class SpoolFile:
    """Append-only temporary file with running hashes; ``payload()`` is the upload view of what was written."""

    def __init__(self, directory: str | os.PathLike | None = None, *, content_hash=None):
        """``content_hash``: an extra hash object (``update``/``hexdigest``) fed with every byte."""
        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
        self._file = tempfile.TemporaryFile(dir=directory, prefix="pv-spool-")  # noqa: SIM115 - closed by close()
        self._md5 = hashlib.md5()
        self._content_hash = content_hash
        self.size = 0

    @property
    def closed(self) -> bool:
        return self._file.closed

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``; return the offset it starts at."""
        offset = self.size
        self._file.write(data)
        self._md5.update(data)
        if self._content_hash is not None:
            self._content_hash.update(data)
        self.size += len(data)
        return offset

    @property
    def md5(self) -> bytes:
        return self._md5.digest()

    def content_digest(self) -> str:
        if self._content_hash is None:
            raise ValueError("this spool file has no content hash")
        return self._content_hash.hexdigest()

    def payload(self) -> FilePayload:
        """Everything written so far, for an upload; valid until the spool file is closed."""
        self._file.flush()
        return FilePayload(self._file.fileno(), self.size, self.md5)

    def read_all(self) -> bytes:
        """The whole content in memory: only for backends that cannot upload from a file."""
        payload = self.payload()
        return payload.read_at(0, payload.size)

    def close(self) -> None:
        """Close and so remove the file; closing twice is fine."""
        self._file.close()

    def __enter__(self) -> SpoolFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
