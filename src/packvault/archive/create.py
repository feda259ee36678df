"""``create``: turn a source (a file system walk, a bucket) into a new archive.

Per file: the files cache decides whether to read it; reading streams it through the chunker; each chunk
is hashed here (keyed BLAKE3, in C) and handed to the repository writer, which skips known ids and
compresses/encrypts/uploads new ones in its own threads.  Items go into the item stream as files finish.

The end of the run follows the DESIGN's write order: flush data and item-stream packs and their index
fragment, store the archive metadata object (and flush it), and only then write the ``archives/`` entry.

A run that does not get there (the repository failed, a signal, nothing could be read) raises, after a
checkpoint: the packs stored so far are indexed (``RepositoryWriter.checkpoint_stored``), so the next run
uploads none of them again.  Only an error *reading a source file* is a warning and lets the run go on;
anything the writer raises (a full repository disk, an S3 error that outlived the retries) ends it.  So
a run that returns has written its ``archives/`` entry: exit 0/1 means an archive exists.

The engine reports and never prints: warnings, notes and live progress go to the caller's callbacks.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime

from ..errors import ArchiveExists, PackvaultError
from ..processes import usable_processes
from ..repository.objects import TYPE_ARCHIVE
from ..repository.repository import ArchiveEntry, Repository
from ..repository.writer import RepositoryWriter
from . import fsmeta
from . import items as it
from .archive import ArchiveMeta
from .createstats import CreateStats
from .filereaders import FileRead, Queued, ReadQueue
from .filescache import FilesCache
from .sparsefiles import ZeroChunks, put_region_reads
from .walker import Entry

Progress = Callable[[CreateStats, str], None]
Notice = Callable[[str, str], None]  # (path, message)


class ArchiveCreator:
    def __init__(
        self,
        repo: Repository,
        name: str,
        *,
        comment: str = "",
        use_files_cache: bool = True,
        progress: Progress | None = None,
        deadline: Callable[[], bool] | None = None,
        files_cache_name: str = "files",
        on_warning: Notice | None = None,
        on_note: Notice | None = None,
        meta_extra: dict | None = None,
    ):
        """``progress(stats, path)`` is called after every chunk and item with live counters (new bytes
        included); ``on_warning``/``on_note`` as each warning/note happens (all are also in ``stats``);
        ``meta_extra``: further keys of the archive metadata (a scale-out part records its key range)."""
        self.repo = repo
        self.name = name
        self.comment = comment
        self.progress = progress
        self.deadline = deadline
        self.stats = CreateStats()
        self.files_cache = FilesCache(repo.cache, files_cache_name) if use_files_cache else None
        self.started = datetime.now(UTC)
        self.on_warning = on_warning
        self.on_note = on_note
        self.stored_packs: int | None = None  # after a stopped run: packs it stored, all indexed (None: unknown)
        self._writer: RepositoryWriter | None = None
        self._queue = ReadQueue(repo.sealing_kit(), usable_processes(repo.settings.read_processes))
        self.meta_extra = dict(meta_extra or {})
        self._zeros = ZeroChunks(repo.chunk_id)

    def warn(self, path: str, message: str) -> None:
        self.stats.warnings.append(f"{path}: {message}")
        if self.on_warning is not None:
            self.on_warning(path, message)

    def note(self, path: str, message: str) -> None:
        self.stats.notes.append(f"{path}: {message}")
        if self.on_note is not None:
            self.on_note(path, message)

    def run(self, source: Iterable[Entry], *, paths: list[str], cmdline: list[str]) -> ArchiveEntry:
        repo = self.repo
        if any(entry.name == self.name for entry in repo.archive_entries_loading_index()):
            raise ArchiveExists(f"an archive named {self.name!r} already exists")
        writer = RepositoryWriter(repo)
        self._writer = writer
        committed = False
        try:
            chunker = repo.chunker()
            stream = it.ItemStreamWriter(chunker, repo.chunk_id, writer.put_chunk)
            for entry in source:
                writer.raise_if_failed()  # an unchanged tree puts no chunk that would raise it
                if self._deadline_due():
                    self._stop_at_deadline(writer)
                try:
                    self._backup_entry(entry, writer, chunker)
                    self._add_ready(writer, chunker, stream, wait=self._queue.full)
                except _DeadlineInFile:
                    self._stop_at_deadline(writer)
                self._report(entry.item[it.PATH])
            try:
                self._add_ready(writer, chunker, stream, wait=True, last=True)
            except _DeadlineInFile:
                self._stop_at_deadline(writer)
            if stream.count == 0:
                raise NothingToBackUp(
                    "nothing to back up: none of the given paths could be read"
                    if self.stats.warnings
                    else "nothing to back up: every path given is excluded or left out"
                )
            if self.files_cache is not None:  # complete: written while the archive is committed
                self.files_cache.save_meanwhile()
            item_ids = stream.finish()
            # The archive metadata joins the item stream's packs and their index fragment: one pack, one
            # fragment and one lock proof fewer per backup than flushing twice, and the order still holds
            # (all of it is stored and indexed before the archives/ entry, the only pointer that makes it
            # live; docs/format.md "Write order").
            writer.drain()
            self.stats.duration = time.monotonic() - self.stats.started
            self.stats.deduplicated_size = writer.stats["bytes_new"]
            self.stats.compressed_size = writer.stats["bytes_stored"]
            self.stats.chunks_new = writer.stats["chunks_new"]
            ended = datetime.now(UTC)
            meta = ArchiveMeta(
                id=b"",  # a MAC of the encoding, known once it is encoded
                name=self.name,
                time=self.started.isoformat(),
                end=ended.isoformat(),
                host=socket.gethostname(),
                user=getpass.getuser(),
                comment=self.comment,
                paths=paths,
                cmdline=cmdline,
                item_ids=item_ids,
                nitems=stream.count,
                stats=self.stats.as_dict(),
                extra=self.meta_extra,
            )
            plaintext = meta.encode()
            archive_id = repo.chunk_id(plaintext)
            writer.put_chunk(archive_id, plaintext, TYPE_ARCHIVE)
            entry = meta.entry(archive_id)
            # data, item stream and archive metadata -> packs -> one index fragment; proven against the
            # store, not a flag; of two backups of one name only one commits (its claim); the entry goes
            # last: the archive exists from here on
            writer.commit_archive(entry)
            committed = True
            repo.remember_written_fragments(writer.fragments_written)
        except BaseException as exc:
            if not (committed and isinstance(exc, Exception)):
                self._stop(writer, exc)  # raises
            # the archive exists: a local cache that could not be updated only costs the next run time
            self.warn(self.name, f"archive created, but the local index cache was not updated: {_cause(exc)}")
        finally:
            self._queue.close()
            writer.close()
        if self.files_cache is not None:
            try:
                self.files_cache.finish_save()
            except OSError as exc:
                self.warn(self.name, f"archive created, but the files cache was not saved: {_cause(exc)}")
        return entry

    def _report(self, path: str | bytes) -> None:
        """Live counters for the caller: the writer's new/stored bytes as they are now, not after the run.
        ``path`` may be the item's bytes: decoded only when someone is told (once per entry otherwise)."""
        if self.progress is None:
            return
        if isinstance(path, bytes):
            path = path.decode("utf-8", "replace")
        writer_stats = self._writer.stats if self._writer is not None else None
        if writer_stats is not None:
            self.stats.deduplicated_size = writer_stats["bytes_new"]
            self.stats.compressed_size = writer_stats["bytes_stored"]
            self.stats.chunks_new = writer_stats["chunks_new"]
        self.stats.duration = time.monotonic() - self.stats.started
        self.progress(self.stats, path)

    def _stop(self, writer: RepositoryWriter, exc: BaseException) -> None:
        """The run cannot finish: index what it stored (and keep the files cache), then re-raise ``exc``,
        saying what the checkpoint holds when ``exc`` is a Packvault error (a one-line message)."""
        if isinstance(exc, DeadlineReached):
            raise exc  # checkpointed by _stop_at_deadline
        self.stats.duration = time.monotonic() - self.stats.started
        try:
            self.stored_packs = writer.checkpoint_stored()
            with contextlib.suppress(OSError):  # only saves the next run a GET of the checkpoint
                self.repo.remember_written_fragments(writer.fragments_written)
            outcome = (
                f"the {self.stored_packs} pack(s) stored before are indexed and the next run reuses them"
                if self.stored_packs
                else ""
            )
        except Exception as checkpoint_exc:  # (a second interrupt is no Exception: it abandons the checkpoint)
            outcome = f"no checkpoint could be written ({_cause(checkpoint_exc)})"
        if self.files_cache is not None:
            with contextlib.suppress(OSError):
                self.files_cache.finish_save()
        if outcome and isinstance(exc, PackvaultError):
            raise type(exc)(f"{exc}; {outcome}", hint=exc.hint) from exc
        raise exc

    def _deadline_due(self) -> bool:
        return self.deadline is not None and self.deadline()

    def _stop_at_deadline(self, writer: RepositoryWriter) -> None:
        """Checkpoint what is stored, so the next run deduplicates against it and resumes, then stop."""
        writer.flush()
        self.repo.remember_written_fragments(writer.fragments_written)
        if self.files_cache is not None:
            self.files_cache.finish_save()
        raise DeadlineReached("stopped before the deadline; the next run resumes")

    def _backup_entry(self, entry: Entry, writer: RepositoryWriter, chunker) -> None:
        """Count the entry and queue it in archive order: ready, or waiting for a reader process."""
        item = entry.item
        kind = item[it.TYPE]
        if kind == it.DIR:
            self.stats.ndirs += 1
        elif kind in (it.FILE, it.HARDLINK):
            self.stats.nfiles += 1
        else:
            self.stats.nother += 1
        if not (kind == it.FILE and entry.opener is not None):
            self._queue.add(entry)
            return
        chunks = self._unchanged(entry, writer)
        if chunks is None:
            queue = self._queue
            if queue.add_for_reader(entry) if queue.takes(entry) else queue.add_for_later(entry):
                return  # read by a reader process, or by this one once the readers have the files behind it
            chunks = self._file_chunks(entry, writer, chunker)
        self._queue.add(entry, chunks)

    def _add_ready(self, writer: RepositoryWriter, chunker, stream: it.ItemStreamWriter, *, wait: bool,
                   last: bool = False) -> None:
        """Put the queued entries into the item stream in archive order, as far as their reads are done."""

        def read_later(queued: Queued) -> None:
            queued.chunks = self._file_chunks(queued.entry, writer, chunker, queued.region_reads())
            queued.skip = queued.chunks is None

        for queued in self._queue.ready(wait=wait, last=last, meanwhile=read_later):
            if queued.waits:
                self._take_read(queued, writer, chunker)
                self._report(queued.entry.item[it.PATH])
            elif queued.later and not queued.read_ahead:
                read_later(queued)
            if queued.skip:
                continue
            item = queued.entry.item
            if queued.chunks is not None:
                item[it.CHUNKS] = queued.chunks  # (id, size) tuples: packed as the arrays lists would be
                self.stats.original_size += item[it.SIZE]
                self.stats.chunks += len(queued.chunks)
            stream.add(item)

    def _take_read(self, queued: Queued, writer: RepositoryWriter, chunker) -> None:
        """A reader process read the file: store its chunks (or read it here, where the reader could not:
        a pool that broke, a file that grew)."""
        read = queued.read
        entry = queued.entry
        if read is not None and read.objects is not None:
            # the first file of its batch: the whole batch's objects go into the packs now, in batch order
            # (also when this file is read here after all: the others' objects are among them)
            writer.put_sealed_objects(*read.objects)
        if read is None or read.grown:
            queued.chunks = self._file_chunks(entry, writer, chunker)
            queued.skip = queued.chunks is None
            return
        if read.error is not None:
            self._unreadable(entry.item[it.PATH].decode("utf-8", "replace"), read.error, [])
            queued.skip = True
            return
        if entry.xattrs_pending:
            _set_xattrs(entry, read.xattrs)
        self.stats.files_read_by_readers += 1
        self.stats.bytes_read += sum(size for _, size in read.chunks)
        queued.chunks = self._read_done(entry, read.chunks, (read.size_after, read.mtime_after))

    def _unchanged(self, entry: Entry, writer: RepositoryWriter) -> list[tuple[bytes, int]] | None:
        """The file's chunks from the files cache, when it is unchanged and they are all stored."""
        cache = self.files_cache
        if cache is None or entry.cache_key is None:
            return None
        entry.files_cache_key = key = cache.key(entry.source_path)
        cached = cache.lookup(entry.source_path, entry.cache_key, key=key)
        if cached is None or not writer.all_known([cid for cid, _ in cached.chunks]):
            return None
        self.stats.files_unchanged += 1
        if entry.xattrs_pending:  # the cache vouches for them (an xattr change moves ctime): read only if any
            xattrs = fsmeta.read_xattrs(entry.source_path) if cached.xattrs else None
            if cached.xattrs and not xattrs:
                cache.has_no_xattrs(entry.source_path, key=key)
            _set_xattrs(entry, xattrs)
        return cached.chunks

    def _file_chunks(
        self, entry: Entry, writer: RepositoryWriter, chunker, regions: tuple[list, list[FileRead]] | None = None
    ) -> list[tuple[bytes, int]] | None:
        """Read, cut, hash and put a file in this process (the files cache was asked before: ``_unchanged``);
        a sparse file's data ``regions`` may have been read by the readers (the regions, and their reads)."""
        path_text = entry.item[it.PATH].decode("utf-8", "replace")
        chunks: list[tuple[bytes, int]] = []
        # Only opening and reading the file are inside OSError handlers: an error of the writer (the
        # repository's disk, the spool, the upload threads) is never taken for an unreadable source file.
        try:
            f = entry.opener()
        except OSError as exc:
            return self._unreadable(path_text, exc, chunks)
        if entry.xattrs_pending:
            _set_xattrs(entry, fsmeta.read_xattrs(f.fileno()))
        try:
            try:
                size = entry.item.get(it.SIZE, 0)
                pieces = iter(()) if regions else chunker.chunks_of_sparse(f, size) or chunker.chunks_of_file(f, size)
            except OSError as exc:
                return self._unreadable(path_text, exc, chunks)
            if regions:  # read by the readers: only the holes' chunks and the regions' objects are put here
                chunks = put_region_reads(chunker.sparse_pieces(regions[0], size), regions[1], self._zeros, writer)
                self.stats.bytes_read += size
            while True:
                try:
                    view = next(pieces)
                except StopIteration:
                    break
                except OSError as exc:
                    return self._unreadable(path_text, exc, chunks)
                if isinstance(view, int):  # a stretch of a hole: zeros, never read
                    chunk_id, data = self._zeros(view)
                else:
                    data = bytes(view)
                    chunk_id = self.repo.chunk_id(data)
                writer.put_chunk(chunk_id, data)
                chunks.append((chunk_id, len(data)))
                self.stats.bytes_read += len(data)
                self._report(path_text)
                if self._deadline_due():
                    raise _DeadlineInFile  # a large file must not outlive the deadline
            after = _stat_after(f)
        finally:
            with contextlib.suppress(OSError):
                f.close()
        return self._read_done(entry, chunks, None if after is None else (after.st_size, after.st_mtime_ns))

    def _read_done(
        self, entry: Entry, chunks: list[tuple[bytes, int]], after: tuple[int | None, int | None] | None
    ) -> list[tuple[bytes, int]]:
        """A file was read whole: warn if it changed meanwhile, else remember it in the files cache."""
        size = sum(size for _, size in chunks)
        self.stats.files_read += 1
        if entry.cache_key is not None:
            # a stream without fstat (an S3 object read by ETag) is checked by the size it delivered
            changed = size != entry.cache_key[1] or (after is not None and after != entry.cache_key[1:3])
            if changed:
                path_text = entry.item[it.PATH].decode("utf-8", "replace")
                self.warn(path_text, "changed while being backed up (stored as read)")
                entry.item[it.SIZE] = size
                return chunks  # not remembered: the next run reads it again
            if self.files_cache is not None:
                self.files_cache.remember(
                    entry.source_path,
                    *entry.cache_key,
                    chunks,
                    xattrs=it.XATTRS in entry.item,
                    key=entry.files_cache_key,
                )
        entry.item[it.SIZE] = size
        return chunks

    def _unreadable(self, path_text: str, exc: OSError, chunks: list[tuple[bytes, int]]) -> None:
        self.stats.bytes_read -= sum(size for _, size in chunks)  # counted live; the file is not stored
        if isinstance(exc, FileNotFoundError):
            self.warn(path_text, "vanished during backup")
        else:
            self.warn(path_text, f"cannot read: {exc.strerror or exc}")


class NothingToBackUp(PackvaultError):
    """Not one item could be read: committing an empty archive would hide that (a cron job sees success)."""

    hint = "check the PATH arguments and the --exclude patterns"


class _DeadlineInFile(Exception):
    """Internal: the deadline came in the middle of a file; the file's chunks so far are kept."""


class DeadlineReached(PackvaultError):
    """A time-boxed run (serverless) stopped early; everything uploaded so far is indexed."""

    exit_code = 3


def _cause(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__


def _set_xattrs(entry: Entry, xattrs: dict[bytes, bytes] | None) -> None:
    """The extended attributes the walk left to be read with the file (``Entry.xattrs_pending``)."""
    entry.xattrs_pending = False
    if xattrs:
        entry.item[it.XATTRS] = xattrs


def _stat_after(f) -> os.stat_result | None:
    try:
        return os.fstat(f.fileno())
    except (OSError, AttributeError, ValueError):
        return None
