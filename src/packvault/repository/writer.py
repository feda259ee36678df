"""Writing chunks: compress + seal in worker threads, batch into packs, upload, index, checkpoint.

The pipeline, all bounded so memory stays flat whatever the size of the backup::

    caller thread          seal pool (N threads)    caller thread, in put order    upload pool (M threads)
    put_chunk(id, data) -> compress, seal       ->  append to the open pack   ->  store pack, then index its
      (skips known ids)                             of its kind                   entries, checkpoint

An open pack is an anonymous spool file (``SpooledPack``): for a remote repository in the cache directory,
uploaded from there (uploads are slow and several run at once, so in-memory packs would dominate the
peak memory); for a local directory inside the repository, linked in when complete (``storage/local.py``).
Only a store that can do neither fills a ``bytearray``.

The order of durable writes is the DESIGN's: a pack is stored before any fragment names it, a fragment
is written before any archive can reference its chunks (``flush`` waits for both).  Every few packs or
minutes a checkpoint fragment is written, so a backup killed outright re-uploads at most one checkpoint's
worth when run again; one that is stopped (a signal, a failure) calls ``checkpoint_stored`` and loses none.

Every failure of the pipeline (the spool, the seal and upload threads, a fragment) reaches the caller as a
``RepositoryWriteError``/``StorageFull`` naming the repository (or the spool directory) and the cause, so
that nobody above mistakes a full repository disk for an unreadable source file.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from .catalogue import ArchiveEntry
from .index import KIND_DATA, KIND_META, encode_fragment
from .objects import TYPE_DATA
from .openpack import OpenPack, SpooledPack
from .repository import Repository
from .write_errors import write_failure

# Uploads in flight to a remote store.  One upload of a pack goes at one connection's throughput, and a
# first backup fills packs faster than two connections carry them (bench/README.md).  Each upload in flight
# is a spool file of at most a pack on disk, not memory.
REMOTE_UPLOADS = 4

# Chunks put but not yet in their pack (being sealed, or sealed behind an earlier one): past this, a put waits
# for the oldest.  It bounds the pipeline's memory, and how far the live counters lag behind the reads.
MAX_CHUNKS_IN_FLIGHT = 16


class RepositoryWriter:
    def __init__(
        self,
        repo: Repository,
        *,
        seal_threads: int | None = None,
        upload_threads: int | None = None,
        max_chunks_in_flight: int = MAX_CHUNKS_IN_FLIGHT,
        checkpoint_packs: int | None = None,
        checkpoint_seconds: float | None = None,
        spool: bool | None = None,
        spool_dir: str | os.PathLike | None = None,
    ):
        """``spool``: fill packs in temporary files instead of memory; default: for remote repositories.
        ``spool_dir``: where, for a remote repository (default: ``spool/`` in the Packvault cache directory);
        a local directory repository spools inside itself."""
        self.repo = repo
        self.index = repo.index
        self.pack_size = repo.config.pack_size
        self.checkpoint_packs = checkpoint_packs or repo.settings.checkpoint_packs
        self.checkpoint_seconds = checkpoint_seconds or repo.settings.checkpoint_seconds
        threads = seal_threads or max(2, os.cpu_count() or 2)
        # A local store writes a pack in milliseconds: one upload at a time keeps two packs in memory at most.
        # A remote store overlaps REMOTE_UPLOADS uploads with filling the next pack (spooled: on disk, not in
        # memory).
        upload_threads = upload_threads or (REMOTE_UPLOADS if repo.is_remote else 1)
        self._seal_pool = ThreadPoolExecutor(threads, thread_name_prefix="pv-seal")
        self._upload_pool = ThreadPoolExecutor(upload_threads, thread_name_prefix="pv-upload")
        self.max_chunks_in_flight = max_chunks_in_flight
        self._sealing: deque[tuple[Future, bytes | None, int, int]] = deque()  # in put order (None: a run of objects)
        # one pack being filled per kind + uploads in flight: bounded pack memory (or spool disk space)
        self._pack_slots = threading.BoundedSemaphore(upload_threads)
        self._lock = threading.Lock()  # guards index, pending, open packs, unsaved records
        self._pending: set[bytes] = set()  # ids accepted but not yet in the index (bounded by the pipeline)
        # Remote: packs are spooled to files, so memory holds no pack, however slow the uploads.  Local
        # directory: spooled inside the repository and linked in, so the bytes are written once.  Otherwise
        # (a local store that can't link) a pack in memory is cheaper than writing it twice.
        self.spool = (repo.is_remote or repo.links_pack_spools) if spool is None else spool
        self.spool_dir = Path(spool_dir) if spool_dir is not None else repo.settings.spool_dir
        self._spooled: set[SpooledPack] = set()  # spool files not yet removed (closed by close())
        self._open = {KIND_DATA: self._new_pack(KIND_DATA), KIND_META: self._new_pack(KIND_META)}
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

    def all_known(self, chunk_ids: list[bytes]) -> bool:
        """``known`` for each of a file's chunks under one take of the lock (an unchanged file's question)."""
        index, pending = self.index, self._pending
        with self._lock:
            return all(chunk_id in index or chunk_id in pending for chunk_id in chunk_ids)

    def put_chunk(self, chunk_id: bytes, data: bytes, obj_type: int = TYPE_DATA) -> bool:
        """Make sure the chunk will be stored; returns True if it is new (not stored before).

        Raises the pipeline's first failure (see the module docstring), also one from an earlier chunk."""
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

    def put_sealed_objects(self, sealed: bytes | memoryview, objects: list[tuple[bytes, int, int]]) -> None:
        """Like ``put_chunk``, for data objects sealed elsewhere (a reader process, ``SealingKit``) and lying
        back to back in ``sealed``: (chunk id, plaintext size, sealed size) each.  They join the open pack
        in put order, after the chunks still being sealed here; the new ones go in with one write per run
        of them, not one per object (a reader's batch of small files is a run on a first backup)."""
        self._raise_pending_error()
        new = []
        offset = 0
        with self._lock:
            index, pending = self.index, self._pending
            for chunk_id, plain_size, size in objects:
                if chunk_id not in index and chunk_id not in pending:
                    pending.add(chunk_id)
                    new.append((chunk_id, offset, size, plain_size))
                offset += size
        if new:
            done: Future = Future()
            done.set_result((memoryview(sealed), new))
            self._sealing.append((done, None, KIND_DATA, 0))
            self._append_sealed(block=len(self._sealing) > self.max_chunks_in_flight)

    def drain(self) -> None:
        """Wait until every chunk put so far is sealed and in its open pack: the counters in ``stats`` are
        final then (a backup records them in its archive metadata, which goes into the same packs)."""
        while self._sealing:
            self._append_sealed(block=True)
        self._raise_pending_error()

    def flush(self) -> None:
        """Store every open pack, wait for all uploads and write the fragment: all data put so far is durable
        and indexed when this returns."""
        self._store_open_packs()
        self._checkpoint()

    def commit_archive(self, entry: ArchiveEntry) -> None:
        """``flush``, then make the archive ``entry`` describes exist (``Repository.commit_archive``).

        The last fragment is written after its own proof, as every fragment is, but beside the archive's
        proofs and name claim rather than before them: the entry still waits for all of them (the write
        order holds), and a commit to a bucket 50 ms away waits one round trip less."""
        self._store_open_packs()
        with self._lock:
            records = self._take_unsaved_locked()
        beside = ()
        if records:
            self._prove_for_fragment(records)
            beside = (lambda: self._store_fragment(records),)
        self.repo.commit_archive(entry, beside=beside)

    def _store_open_packs(self) -> None:
        self.drain()
        for kind in (KIND_DATA, KIND_META):
            with self._lock:
                pack = self._open[kind]
                self._open[kind] = self._new_pack(kind)
            if pack.records:
                self._submit_upload(pack)
        self._wait(self._uploads)
        self._raise_pending_error()

    def raise_if_failed(self) -> None:
        """Raise the first failure of the upload threads now, rather than at the next ``put_chunk``: a run that
        only meets known chunks (an unchanged tree) must stop as soon as the repository failed, too."""
        self._raise_pending_error()

    def checkpoint_stored(self) -> int:
        """Index every pack stored so far in a fragment, after a failure or an interrupt; returns how many
        packs this run stored (all indexed now).

        Waits for the uploads in flight (at most one per upload thread): they are whole packs, and dropping
        them would make the next run send them again.  The open packs and the chunks still being sealed are
        dropped instead: they were never uploaded, so the next run sends them once, and nothing about them
        (a half-appended chunk after an interrupt) has to be trusted.  Only packs whose store returned go
        into the fragment (``_upload`` records them after ``store``), so it never names a missing pack.
        A second interrupt while waiting is not swallowed: it abandons the checkpoint.  The writer takes no
        more chunks afterwards.
        """
        with self._lock:
            dropped = list(self._open.values())
            self._open = {kind: self._new_pack(kind) for kind in self._open}
        for pack in dropped:
            pack.discard()  # first: on a full disk its spool file holds the space the fragment needs
        self._seal_pool.shutdown(wait=False, cancel_futures=True)
        # every upload ever submitted, also one whose future an interrupt kept out of ``_uploads``
        self._upload_pool.shutdown(wait=True)
        self._checkpoint()
        with self._lock:
            return self.stats["packs"]

    def close(self) -> None:
        self._seal_pool.shutdown(wait=True, cancel_futures=True)
        self._upload_pool.shutdown(wait=True, cancel_futures=True)
        # after an error: open packs and packs whose upload was cancelled still have their spool files
        for pack in list(self._spooled):
            pack.discard()

    def _new_pack(self, kind: int) -> OpenPack:
        if self.spool:
            return SpooledPack(kind, self.repo, self.spool_dir, self._spooled)
        return OpenPack(kind)

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
            if chunk_id is None:  # objects sealed elsewhere (``put_sealed_objects``)
                self._append_objects(kind, *sealed)
                continue
            # open packs belong to this (the caller's) thread: the copy or file write needs no lock
            pack = self._open[kind]
            try:
                offset = pack.append(sealed)
            except OSError as exc:
                raise self._failure(exc, "spooling a pack", spool=True) from exc
            pack.records.append((chunk_id, offset, len(sealed)))
            full = pack.size >= self.pack_size
            with self._lock:
                self.stats["chunks_new"] += 1
                self.stats["bytes_new"] += plain_size
                self.stats["bytes_stored"] += len(sealed)
                if full:
                    self._open[kind] = self._new_pack(kind)
            if full:
                self._submit_upload(pack)

    def _append_objects(self, kind: int, sealed: memoryview, objects: list[tuple[bytes, int, int, int]]) -> None:
        """Append (chunk id, offset in ``sealed``, sealed size, plaintext size) objects in order, each run of
        adjacent ones in one write; a pack is full after the object that reaches the pack size, as in
        ``_append_sealed``."""
        i = 0
        while i < len(objects):
            pack = self._open[kind]
            room = self.pack_size - pack.size
            first = end = objects[i][1]
            j = i
            while j < len(objects) and objects[j][1] == end and end - first < room:
                end += objects[j][2]
                j += 1
            try:
                base = pack.append(sealed[first:end]) - first
            except OSError as exc:
                raise self._failure(exc, "spooling a pack", spool=True) from exc
            pack.records.extend((chunk_id, base + offset, size) for chunk_id, offset, size, _ in objects[i:j])
            full = pack.size >= self.pack_size
            with self._lock:
                self.stats["chunks_new"] += j - i
                self.stats["bytes_new"] += sum(plain for _, _, _, plain in objects[i:j])
                self.stats["bytes_stored"] += end - first
                if full:
                    self._open[kind] = self._new_pack(kind)
            if full:
                self._submit_upload(pack)
            i = j

    def _submit_upload(self, pack: OpenPack) -> None:
        self._pack_slots.acquire()
        try:
            future = self._upload_pool.submit(self._upload, pack)
        except BaseException:
            self._pack_slots.release()
            raise
        with self._lock:
            self._uploads.add(future)
        future.add_done_callback(self._upload_done)

    def _upload(self, pack: OpenPack) -> None:
        try:
            self.repo.check_lock()
            try:
                pack.settle()  # a write that failed in the background is the spool's failure, not the store's
            except OSError as exc:
                raise self._failure(exc, "spooling a pack", spool=True) from exc
            try:
                name = pack.store(self.repo)
            except Exception as exc:
                raise self._failure(exc, "storing a pack") from exc
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
                records = self._take_unsaved_locked() if due else []
            self._write_fragment(records)
        finally:
            try:
                pack.discard()  # frees the buffer / removes the spool file, also when the upload failed
            finally:
                self._pack_slots.release()  # else the next full pack would wait for a slot forever

    def _checkpoint(self) -> None:
        """A fragment of every pack stored and not indexed yet."""
        with self._lock:
            records = self._take_unsaved_locked()
        self._write_fragment(records)

    def _take_unsaved_locked(self) -> list[tuple[bytes, str, int, int, int]]:
        """The records of the packs stored since the last fragment, for ``_write_fragment``."""
        records, self._unsaved = self._unsaved, []
        self._packs_since_checkpoint = 0
        self._last_checkpoint = time.monotonic()
        return records

    def _write_fragment(self, records: list[tuple[bytes, str, int, int, int]]) -> None:
        """Index ``records`` in a fragment (a checkpoint).  Its round trips (the proofs, the PUT) run without
        the writer's lock, which every chunk lookup of the backup and every finished upload takes: held, the
        whole backup stood still for them.  Records whose fragment failed go back, for the next one (the
        checkpoint after an interrupt)."""
        if not records:
            return
        self._prove_for_fragment(records)
        self._store_fragment(records)

    def _prove_for_fragment(self, records: list[tuple[bytes, str, int, int, int]]) -> None:
        """A fragment makes what this run deduplicated count as stored: proven first (``prove_unchanged``)."""
        try:
            self.repo.prove_unchanged()
        except BaseException:
            with self._lock:
                self._unsaved[:0] = records
            raise

    def _store_fragment(self, records: list[tuple[bytes, str, int, int, int]]) -> None:
        try:
            try:
                name = self.repo.write_fragment(encode_fragment(records))
            except Exception as exc:
                raise self._failure(exc, "writing an index fragment") from exc
        except BaseException:
            with self._lock:
                self._unsaved[:0] = records
            raise
        with self._lock:
            self.fragments_written.append(name)
            self.stats["fragments"] += 1

    # --- errors -----------------------------------------------------------------------------------------

    def _failure(self, exc: BaseException, doing: str, *, spool: bool = False) -> BaseException:
        if spool and not self.repo.links_pack_spools:
            where = f"cannot write the pack spool in {self.spool_dir} (for the repository {self.repo.location})"
        else:
            where = f"cannot write to the repository {self.repo.location}"
        return write_failure(exc, where, doing)

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
                # errors are recorded by _note_error and raised by the caller; an interrupt is not an error
                with contextlib.suppress(Exception):
                    future.result()
