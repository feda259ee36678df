"""Writing chunks: compress + seal in worker threads, batch into packs, upload, index, checkpoint.

The pipeline, all bounded so memory stays flat whatever the size of the backup::

    caller thread          seal pool (N threads)    caller thread, in put order    upload pool (M threads)
    put_chunk(id, data) -> compress, seal       ->  append to the open pack   ->  store pack, then index its
      (skips known ids)                             of its kind                   entries, checkpoint

The order of durable writes is the DESIGN's: a pack is stored before any fragment names it, a fragment
is written before any archive can reference its chunks (``flush`` waits for both).  Every few packs or
minutes a checkpoint fragment is written, so an interrupted backup re-uploads at most one checkpoint's
worth when run again.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor

from .index import KIND_DATA, KIND_META, encode_fragment
from .objects import TYPE_DATA
from .repository import Repository

DEFAULT_CHECKPOINT_PACKS = 8
DEFAULT_CHECKPOINT_SECONDS = 300.0


class _OpenPack:
    def __init__(self, kind: int):
        self.kind = kind
        self.buffer = bytearray()
        self.records: list[tuple[bytes, int, int]] = []  # (id, offset, size)


class RepositoryWriter:
    def __init__(
        self,
        repo: Repository,
        *,
        seal_threads: int | None = None,
        upload_threads: int | None = None,
        max_chunks_in_flight: int = 16,
        checkpoint_packs: int | None = None,
        checkpoint_seconds: float | None = None,
    ):
        self.repo = repo
        self.index = repo.index
        self.pack_size = repo.config.pack_size
        self.checkpoint_packs = checkpoint_packs or int(
            os.environ.get("PACKVAULT_CHECKPOINT_PACKS", DEFAULT_CHECKPOINT_PACKS)
        )
        self.checkpoint_seconds = checkpoint_seconds or float(
            os.environ.get("PACKVAULT_CHECKPOINT_SECONDS", DEFAULT_CHECKPOINT_SECONDS)
        )
        threads = seal_threads or max(2, os.cpu_count() or 2)
        # A local store writes a pack in milliseconds: one upload at a time keeps two packs in memory at most.
        # A remote store overlaps two uploads with filling the next pack.
        upload_threads = upload_threads or (2 if repo.is_remote else 1)
        self._seal_pool = ThreadPoolExecutor(threads, thread_name_prefix="pv-seal")
        self._upload_pool = ThreadPoolExecutor(upload_threads, thread_name_prefix="pv-upload")
        self.max_chunks_in_flight = max_chunks_in_flight
        self._sealing: deque[tuple[Future, bytes, int, int]] = deque()  # in put order
        # one pack being filled per kind + uploads in flight: bounded pack memory
        self._pack_slots = threading.BoundedSemaphore(upload_threads)
        self._lock = threading.Lock()  # guards index, pending, open packs, unsaved records
        self._pending: set[bytes] = set()  # ids accepted but not yet in the index (bounded by the pipeline)
        self._open = {KIND_DATA: _OpenPack(KIND_DATA), KIND_META: _OpenPack(KIND_META)}
        self._unsaved: list[tuple[bytes, str, int, int, int]] = []  # stored, not yet in a fragment
        self._packs_since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        self._uploads: set[Future] = set()
        self._error: BaseException | None = None
        self.fragments_written: list[str] = []
        self.stats = {"chunks_new": 0, "bytes_new": 0, "bytes_stored": 0, "packs": 0, "fragments": 0}

    # --- public -----------------------------------------------------------------------------------------

    def known(self, chunk_id: bytes) -> bool:
        with self._lock:
            return chunk_id in self.index or chunk_id in self._pending

    def put_chunk(self, chunk_id: bytes, data: bytes, obj_type: int = TYPE_DATA) -> bool:
        """Make sure the chunk will be stored; returns True if it is new (not stored before)."""
        self._raise_pending_error()
        with self._lock:
            if chunk_id in self.index or chunk_id in self._pending:
                return False
            self._pending.add(chunk_id)
        kind = KIND_DATA if obj_type == TYPE_DATA else KIND_META
        future = self._seal_pool.submit(self.repo.codec.seal, chunk_id, obj_type, data)
        self._sealing.append((future, chunk_id, kind, len(data)))
        self._append_sealed(block=len(self._sealing) > self.max_chunks_in_flight)
        return True

    def flush(self) -> None:
        """Store every open pack, wait for all uploads and write the fragment: all data put so far is durable
        and indexed when this returns."""
        while self._sealing:
            self._append_sealed(block=True)
        self._raise_pending_error()
        for kind in (KIND_DATA, KIND_META):
            with self._lock:
                pack = self._open[kind]
                self._open[kind] = _OpenPack(kind)
            if pack.records:
                self._submit_upload(pack)
        self._wait(self._uploads)
        self._raise_pending_error()
        with self._lock:
            self._write_checkpoint_locked()

    def close(self) -> None:
        self._seal_pool.shutdown(wait=True, cancel_futures=True)
        self._upload_pool.shutdown(wait=True, cancel_futures=True)

    # --- pipeline stages --------------------------------------------------------------------------------

    def _append_sealed(self, *, block: bool) -> None:
        """Append sealed chunks to their packs in the order they were put.

        Sealing runs in parallel, but appending in submission order keeps a file's chunks adjacent in its
        pack, so restore reads them back with one ranged read per run instead of one per chunk.
        """
        while self._sealing and (block or self._sealing[0][0].done()):
            future, chunk_id, kind, plain_size = self._sealing.popleft()
            sealed = future.result()  # a sealing error propagates to the caller here
            block = block and len(self._sealing) > self.max_chunks_in_flight
            full = None
            with self._lock:
                pack = self._open[kind]
                offset = len(pack.buffer)
                pack.buffer += sealed
                pack.records.append((chunk_id, offset, len(sealed)))
                self.stats["chunks_new"] += 1
                self.stats["bytes_new"] += plain_size
                self.stats["bytes_stored"] += len(sealed)
                if len(pack.buffer) >= self.pack_size:
                    full = pack
                    self._open[kind] = _OpenPack(kind)
            if full is not None:
                self._submit_upload(full)

    def _submit_upload(self, pack: _OpenPack) -> None:
        self._pack_slots.acquire()
        try:
            future = self._upload_pool.submit(self._upload, pack)
        except BaseException:
            self._pack_slots.release()
            raise
        with self._lock:
            self._uploads.add(future)
        future.add_done_callback(self._upload_done)

    def _upload(self, pack: _OpenPack) -> None:
        try:
            self.repo.check_lock()
            name = self.repo.store_pack(pack.kind, memoryview(pack.buffer))
            with self._lock:
                for chunk_id, offset, size in pack.records:
                    self.index.add(chunk_id, name, pack.kind, offset, size)
                    self._unsaved.append((chunk_id, name, pack.kind, offset, size))
                    self._pending.discard(chunk_id)
                self.stats["packs"] += 1
                self._packs_since_checkpoint += 1
                due = (
                    self._packs_since_checkpoint >= self.checkpoint_packs
                    or time.monotonic() - self._last_checkpoint >= self.checkpoint_seconds
                )
                if due:
                    self._write_checkpoint_locked()
        finally:
            pack.buffer = bytearray()
            self._pack_slots.release()

    def _write_checkpoint_locked(self) -> None:
        if not self._unsaved:
            return
        name = self.repo.write_fragment(encode_fragment(self._unsaved))
        self.fragments_written.append(name)
        self.stats["fragments"] += 1
        self._unsaved = []
        self._packs_since_checkpoint = 0
        self._last_checkpoint = time.monotonic()

    # --- errors -----------------------------------------------------------------------------------------

    def _upload_done(self, future: Future) -> None:
        with self._lock:
            self._uploads.discard(future)
        self._note_error(future)

    def _note_error(self, future: Future) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None and self._error is None:
            self._error = exc

    def _raise_pending_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _wait(self, futures: set[Future]) -> None:
        while True:
            with self._lock:
                pending = list(futures)
            if not pending:
                return
            for future in pending:
                # errors are recorded by _note_error and raised by the caller
                with contextlib.suppress(BaseException):
                    future.result()
