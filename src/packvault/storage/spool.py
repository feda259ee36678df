"""A pack on its way to a remote store, written to an anonymous temporary file instead of memory.

Why: a remote backup keeps two uploads in flight while the next pack fills.  Held in memory that is
three 32 MiB packs per kind (and botocore used to copy each upload once more).  Spooled, a pack costs
disk space and page cache (which the kernel can write back and reclaim), not process memory, and the
upload reads it back in small blocks (``payload.FilePayload``).

- The file is anonymous (``tempfile.TemporaryFile``: ``O_TMPFILE`` or created and unlinked at once), so it
  disappears when it is closed, on any error path, and even when the process is killed: no stale spool
  files to clean up, and no name another process could open.
- The MD5 (for ``Content-MD5``) and, when given, the content hash that names the pack are computed when
  first asked for, by reading the file back from the page cache in 1 MiB blocks, in one pass for both.
  That is the upload thread, when the pack is stored.  Hashing while writing put them on the thread that
  writes: the backup's busiest, which reads, chunks and orders everything (MD5 alone is ~1.2 s per GiB of
  packs there); reading 32 MiB back from the page cache costs a few milliseconds.
- Nothing is fsynced on the way: a spool file is never the durable copy; the pack is durable once the
  store has it.
- Writes go to the page cache in a thread of their own (``background``): the buffers are gathered in 1 MiB
  blocks on the caller's thread and written by the spool thread while the caller goes on; the system call
  itself, the page cache copy and the file system's block allocation, was ~20 % of the backup main
  thread's samples on a tree of small files, time nothing else could use.  A buffer that cannot change
  (``bytes``, a read-only view) is gathered by reference, others are copied: copying every sealed chunk
  into the block was the main thread's again.  The spool thread writes a block with gathered writes
  (``writev``, at most ``writes.WRITE_PIECE`` bytes each), which copy without the GIL: handed to the
  buffered file one by one, the few-KiB objects of small files were each copied into its buffer holding the
  GIL, which the main thread then waited for.  At most ``_BLOCKS_IN_FLIGHT`` blocks wait, and a failed
  write (a full disk) is raised by the caller's next ``write`` or by ``settle``, before anything reads the
  file back.
- A local directory repository takes the spool file itself (``link_as``): the file was created in the
  repository's file system, so storing the pack is a link and a rename, and its bytes are written once.
  No MD5 is computed for it (only S3 uploads send ``Content-MD5``).
- Such a spool file is written past the page cache (``direct``, ``directwrites.py``) where the file system
  allows: it is ``fsync``ed before it is linked in anyway, and its hash is fed by the spool thread as the
  bytes go out instead of being read back.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
import threading
import uuid
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from borgstore.constants import TMP_SUFFIX

from ..writes import WRITE_PIECE, write_gathered
from .directwrites import DirectWriter
from .payload import FilePayload

_HASH_BLOCK = 1024 * 1024
# Sealed small files are a few KiB each: blocks this large handed to the spool thread turn thousands of
# hand-offs (each a release and re-take of the GIL on the backup's busiest thread) into one per MiB.
_WRITE_BUFFER = 1024 * 1024
_BLOCKS_IN_FLIGHT = 4  # per spool file: a few MiB of memory, enough to keep the spool thread busy

_spool_thread: ThreadPoolExecutor | None = None
_spool_thread_lock = threading.Lock()


def _background_writer() -> ThreadPoolExecutor:
    """The one thread that writes background spool files (in order per file: it is a single thread)."""
    global _spool_thread
    with _spool_thread_lock:
        if _spool_thread is None:
            _spool_thread = ThreadPoolExecutor(1, thread_name_prefix="pv-spool")
        return _spool_thread


class SpoolFile:
    """Append-only temporary file with hashes of its content; ``payload()`` is the upload view of it."""

    def __init__(
        self,
        directory: str | os.PathLike | None = None,
        *,
        content_hash=None,
        md5: bool = True,
        linkable: bool = False,
        background: bool = False,
        direct: bool = False,
    ):
        """``content_hash``: an extra hash object (``update``/``hexdigest``) to be fed with every byte.
        ``md5``: keep the MD5 an S3 upload sends (off for packs that stay on a local disk).
        ``linkable``: create it so that ``link_as`` can give it a name (where the file system allows).
        ``background``: write in the spool thread (see the module docstring); the caller appends from one
        thread and calls ``settle`` (or a method that reads the file) before handing it to another.
        ``direct``: with ``background``, write past the page cache where the file system allows
        (``directwrites.py``), hashing in the spool thread as the bytes go out."""
        if directory is not None:
            Path(directory).mkdir(parents=True, exist_ok=True)
        self._file = _linkable_temp_file(directory) if linkable else None
        if self._file is None:
            self._file = tempfile.TemporaryFile(dir=directory, prefix="pv-spool-", buffering=WRITE_PIECE)  # noqa: SIM115
        self._md5 = hashlib.md5() if md5 else None
        self._content_hash = content_hash
        self._hashed = 0  # bytes fed to the hashes so far
        self._direct: DirectWriter | None = None
        if direct and background:
            hashes = [h for h in (self._md5, self._content_hash) if h is not None]
            self._direct = DirectWriter.for_file(self._file.fileno(), hashes)
        self.size = 0
        # gathered, not yet handed off: immutable buffers by reference, others copied (``write``)
        self._block: list[bytes | memoryview] | None = [] if background else None
        self._block_size = 0
        self._writes: deque[Future] = deque()  # blocks handed to the spool thread, oldest first
        self._failed: BaseException | None = None  # the first write that failed in the spool thread

    @property
    def closed(self) -> bool:
        return self._file.closed

    def write(self, data: bytes | bytearray | memoryview) -> int:
        """Append ``data``; return the offset it starts at."""
        offset = self.size
        if self._block is None:
            view = memoryview(data)
            for start in range(0, len(view), WRITE_PIECE):  # the file's buffer passes larger writes on whole
                self._file.write(view[start : start + WRITE_PIECE])
        else:
            if not isinstance(data, bytes) and not (isinstance(data, memoryview) and data.readonly):
                data = bytes(data)  # the caller may change it once this returns
            self._block.append(data)
            self._block_size += len(data)
            if self._block_size >= _WRITE_BUFFER:
                self._hand_off()
        self.size += len(data)
        return offset

    def _hand_off(self) -> None:
        """Give the gathered block to the spool thread, after raising any failed write (and waiting while
        ``_BLOCKS_IN_FLIGHT`` are pending)."""
        assert self._block is not None
        if self._failed is not None:
            raise self._failed
        while self._writes and (len(self._writes) >= _BLOCKS_IN_FLIGHT or self._writes[0].done()):
            self._wait_oldest()
        block, self._block, self._block_size = self._block, [], 0
        self._writes.append(_background_writer().submit(self._write_through, block))

    def _write_through(self, block: list[bytes | memoryview]) -> None:
        """In the spool thread: write the block past the file's buffer (which a background spool file never
        fills), so a failure comes from here and not later from a flush in whichever thread reads the file
        back (where it would be taken for a failure of the store)."""
        if self._direct is not None:
            self._direct.write(block)
        else:
            write_gathered(self._file.fileno(), block)

    def settle(self) -> None:
        """Wait until every byte appended so far is written (raising the first failed write); no-op for a
        spool file written in the caller's thread."""
        if self._block is None:
            return
        if self._block:
            self._hand_off()
        if self._direct is not None and self._failed is None:
            self._writes.append(_background_writer().submit(self._direct.complete, self.size))
        while self._writes:
            self._wait_oldest()
        if self._failed is not None:
            raise self._failed
        if self._direct is not None:
            self._hashed = self.size  # the direct writer fed the hashes as it wrote

    def _wait_oldest(self) -> None:
        """Wait for the oldest pending write; a failure sticks: the file misses bytes from there on, so every
        later write and settle raises it again (the spool is never read back as if complete)."""
        exc = self._writes.popleft().exception()
        if exc is not None and self._failed is None:
            self._failed = exc
        if self._failed is not None:
            raise self._failed

    @property
    def md5(self) -> bytes:
        if self._md5 is None:
            raise ValueError("this spool file keeps no MD5")
        self._catch_up()
        return self._md5.digest()

    def content_digest(self) -> str:
        if self._content_hash is None:
            raise ValueError("this spool file has no content hash")
        self._catch_up()
        return self._content_hash.hexdigest()

    def _catch_up(self) -> None:
        """Feed the bytes written since the last call to the hashes (both in one read)."""
        if self._hashed == self.size:
            return
        self.settle()
        if self._hashed == self.size:
            return
        self._file.flush()
        hashes = [h for h in (self._md5, self._content_hash) if h is not None]
        block = bytearray(min(_HASH_BLOCK, self.size - self._hashed))
        view = memoryview(block)
        fd = self._file.fileno()
        while self._hashed < self.size:
            n = os.preadv(fd, [view[: self.size - self._hashed]], self._hashed)
            if n <= 0:
                raise OSError(f"spool file ended at {self._hashed} of {self.size} bytes")
            for h in hashes:
                h.update(view[:n])
            self._hashed += n

    def _for_reading(self) -> None:
        """Settle, and end direct writing: reads of a descriptor opened for direct I/O must be aligned."""
        self.settle()
        if self._direct is not None:
            self._direct.end(self.size)
            self._direct = None
        self._file.flush()

    def payload(self) -> FilePayload:
        """Everything written so far, for an upload; valid until the spool file is closed."""
        self._for_reading()
        return FilePayload(self._file.fileno(), self.size, self.md5)

    def read_all(self) -> bytes:
        """The whole content in memory: only for backends that cannot upload from a file."""
        self._for_reading()
        return os.pread(self._file.fileno(), self.size, 0) if self.size else b""

    def link_as(self, path: Path, *, fsync: bool) -> bool:
        """Give the spool file the name ``path`` (same file system), replacing what is there; False when this
        file cannot be linked (no ``O_TMPFILE`` here, or another file system): then store a copy instead.

        Linked under a temporary name first and renamed over ``path``, so the name appears atomically with
        the complete content, as a store's temp-file-and-rename would.  The spool file stays open and is
        closed by the caller as usual; closing no longer removes the data once it has a name.
        """
        self.settle()
        self._file.flush()
        fd = self._file.fileno()
        if fsync:
            os.fsync(fd)
        temp = path.with_name(f"{path.name}.{uuid.uuid4().hex[:12]}{TMP_SUFFIX}")
        try:
            proc_fds = os.open("/proc/self/fd", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return False  # no /proc: no way to name an anonymous file
        try:
            for attempt in (1, 2):
                try:
                    # linkat(.., AT_SYMLINK_FOLLOW) on the /proc entry names the open file itself; os.link only
                    # uses linkat (rather than link, which would link the magic symlink) with a src_dir_fd
                    os.link(str(fd), temp, src_dir_fd=proc_fds, follow_symlinks=True)
                    break
                except FileNotFoundError:
                    if attempt == 2 or path.parent.exists():
                        return False  # the file has no inode to link (it was created and unlinked)
                    path.parent.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    if exc.errno in (errno.EXDEV, errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EACCES):
                        return False
                    raise
        finally:
            os.close(proc_fds)
        try:
            os.replace(temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        return True

    def close(self) -> None:
        """Close and so remove the file; closing twice is fine.  Never raises: a pack being discarded after
        a failure (a full disk) may still hold buffered bytes that cannot be written, and nobody needs them;
        the file is closed all the same (the buffer's close closes the descriptor before it re-raises)."""
        self._block = None
        while self._writes:  # nothing may write into a closed (or reused) descriptor
            with contextlib.suppress(Exception):
                self._writes.popleft().result()
        if self._direct is not None:
            self._direct.release()
            self._direct = None
        with contextlib.suppress(OSError):
            self._file.close()

    def __enter__(self) -> SpoolFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _linkable_temp_file(directory: str | os.PathLike | None):
    """An anonymous file that ``linkat`` can name later: ``O_TMPFILE`` without ``O_EXCL`` (Python's
    ``TemporaryFile`` adds ``O_EXCL``, which forbids exactly that).  None where unsupported."""
    flag = getattr(os, "O_TMPFILE", 0)
    if not flag:
        return None
    try:
        fd = os.open(directory or tempfile.gettempdir(), flag | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError:  # EISDIR/EOPNOTSUPP: kernel or file system without O_TMPFILE
        return None
    return open(fd, "w+b", buffering=WRITE_PIECE)  # noqa: SIM115 - closed by SpoolFile.close()
