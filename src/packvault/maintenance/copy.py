"""``copy``: archives from one repository into another (3-2-1 backups: local -> S3, S3 -> S3).

Two ways, chosen per pair of repositories:

- **shared chunk ids** (the destination was made with ``init --copy-crypt-from``, or is the same key): the
  chunker parameters, the chunker seed and the id key agree, so every chunk of the source has the same id in
  the destination.  The destination's index answers "already there" for most of them; only missing chunks are
  read, opened and sealed again under the destination's key.  The item stream and the archive metadata are
  copied as chunks too, so the archive keeps its id, which is how a second copy knows it is done.
- **re-cut**: unrelated repositories.  Ids of one mean nothing in the other, so every file is re-chunked from
  its plaintext with the destination's chunker, the item stream is rewritten with the new chunk ids, and the
  archive gets a new id.  Its metadata records the source repository and archive id (``COPIED_FROM``), which
  is how a second copy knows it is done.

Write order is create's: data and item-stream chunks, flush (packs, then their index fragment), the metadata
object, flush, the name claim, and the ``archives/`` entry last.  A copy that stops early checkpoints what it
stored (``RepositoryWriter.checkpoint_stored``), so a rerun sends none of it again.

Memory is bounded: items are streamed one at a time, a file's data flows through the reader's window and the
writer's pipeline, and nothing holds the whole index or all items.
"""

from __future__ import annotations

import contextlib
import hmac
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

from ..archive import items as it
from ..archive.archive import ArchiveMeta, iter_archive_items, load_archive
from ..errors import ArchiveNotFound, IntegrityError, PackvaultError
from ..repository.objects import TYPE_ARCHIVE, TYPE_DATA, TYPE_ITEMS
from ..repository.reader import ChunkReader
from ..repository.repository import ArchiveEntry, Repository
from ..repository.writer import RepositoryWriter

COPIED_FROM = "copied_from"
"""Key of re-cut archive metadata: {"repository": source repository id, "archive": source archive id}."""


@dataclass
class CopyReport:
    """What a copy did: archive names copied and skipped, and what the destination received."""

    recut: bool
    copied: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)  # names held by another archive in the destination
    deleted_there: list[str] = field(default_factory=list)  # deleted in the destination (its own retention)
    chunks_new: int = 0
    bytes_new: int = 0  # plaintext bytes of chunks the destination did not have
    bytes_stored: int = 0  # their sealed size

    def as_dict(self) -> dict:
        return {
            "recut": self.recut,
            "copied": self.copied,
            "skipped": self.skipped,
            "conflicts": self.conflicts,
            "deleted_there": self.deleted_there,
            "chunks_new": self.chunks_new,
            "bytes_new": self.bytes_new,
            "bytes_stored": self.bytes_stored,
        }


Progress = Callable[[str, str], None]  # (archive name, "copied" | "skipped" | "deleted there" | "conflict")


def shares_chunk_ids(src: Repository, dst: Repository) -> bool:
    """True when a chunk has the same id in both repositories (same id key, chunker seed and parameters)."""
    assert src.key is not None and dst.key is not None and src.config is not None and dst.config is not None
    return (
        hmac.compare_digest(src.key.id_key, dst.key.id_key)
        and src.key.chunker_seed == dst.key.chunker_seed
        and src.config.chunker == dst.config.chunker
    )


def select_archives(src: Repository, names: list[str]) -> list[ArchiveEntry]:
    """The source archives to copy, oldest first: all of them, or those named (each must exist)."""
    entries = src.archive_entries()
    if not names:
        return entries
    by_name = {entry.name: entry for entry in entries}  # the newest of a name wins, as in find_archive
    missing = [name for name in names if name not in by_name]
    if missing:
        raise ArchiveNotFound(f"archive {missing[0]!r} not found in the source repository")
    wanted = set(names)
    return [entry for entry in entries if entry.name in wanted and by_name[entry.name] is entry]


class ArchiveCopier:
    """Copies archives from ``src`` to ``dst``; both opened with their keys and (shared) locks."""

    def __init__(
        self,
        src: Repository,
        dst: Repository,
        *,
        on_archive: Progress | None = None,
        writer_factory: Callable[[Repository], RepositoryWriter] = RepositoryWriter,
    ):
        """``writer_factory`` makes the destination's writer (tests wrap it to stop a copy part-way)."""
        self.src = src
        self.dst = dst
        self.on_archive = on_archive
        self.writer_factory = writer_factory
        self.recut = not shares_chunk_ids(src, dst)
        self.report = CopyReport(recut=self.recut)
        self.stored_packs: int | None = None  # after a stopped copy: packs it stored, all indexed (None: unknown)

    def run(self, entries: Iterable[ArchiveEntry]) -> CopyReport:
        dst_entries = self.dst.archive_entries()  # listed once: the copies this run commits are not candidates
        # Same ids: an archive deleted in the destination (soft, or purged with a tombstone) was there and was
        # removed on purpose (e.g. a prune with the offsite copy's own retention): a scheduled copy must not
        # bring it back every run.
        deleted = set() if self.recut else set(self.dst.entry_names(deleted=True)) | self.dst.tombstones()
        for entry in entries:
            if self._already_there(entry, dst_entries):
                self.report.skipped.append(entry.name)
                self._tell(entry.name, "skipped")
                continue
            if entry.id in deleted:
                self.report.deleted_there.append(entry.name)
                self._tell(entry.name, "deleted there")
                continue
            if any(e.name == entry.name for e in dst_entries):
                # another archive holds the name there: copying would fail at the name claim anyway
                self.report.conflicts.append(entry.name)
                self._tell(entry.name, "conflict")
                continue
            self._copy_one(entry)
            self.report.copied.append(entry.name)
            self._tell(entry.name, "copied")
        return self.report

    def _tell(self, name: str, what: str) -> None:
        if self.on_archive is not None:
            self.on_archive(name, what)

    def _already_there(self, entry: ArchiveEntry, dst_entries: list[ArchiveEntry]) -> bool:
        """Same id in the destination (shared ids), or a re-cut copy of this very source archive."""
        if not self.recut:
            return any(e.id == entry.id for e in dst_entries)
        same_name = [e for e in dst_entries if e.name == entry.name]
        if not same_name:
            return False
        source = {"repository": self.src.config.repository_id, "archive": entry.id}
        with ChunkReader(self.dst) as reader:
            for candidate in same_name:
                if load_archive(reader, candidate).extra.get(COPIED_FROM) == source:
                    return True
        return False

    def _copy_one(self, entry: ArchiveEntry) -> None:
        writer = self.writer_factory(self.dst)
        committed = False
        try:
            with ChunkReader(self.src) as items_reader, ChunkReader(self.src) as data_reader:
                meta = load_archive(items_reader, entry)
                if self.recut:
                    new_meta = self._recut_items(meta, items_reader, data_reader, writer)
                    plaintext = new_meta.encode()
                    archive_id = self.dst.chunk_id(plaintext)
                else:
                    self._copy_items(meta, items_reader, data_reader, writer)
                    plaintext = items_reader.read_chunk(entry.id)
                    archive_id = entry.id
            writer.flush()  # data and item stream -> index, before the metadata references them
            writer.put_chunk(archive_id, plaintext, TYPE_ARCHIVE)
            new_entry = ArchiveEntry(
                id=archive_id,
                name=entry.name,
                time=entry.time,
                end=entry.end,
                host=entry.host,
                user=entry.user,
                comment=entry.comment,
                stats=entry.stats,
                paths=entry.paths,
            )
            writer.commit_archive(new_entry)  # the archive exists in the destination from here on
            committed = True
            self._count(writer)
            with contextlib.suppress(OSError):  # the archive exists: a stale local cache only costs time
                self.dst.remember_written_fragments(writer.fragments_written)
        except BaseException:
            if not committed:
                # what is stored is indexed: a rerun does not send it again; the original failure is the one
                # to report (a second interrupt is no Exception: it abandons the checkpoint)
                with contextlib.suppress(Exception):
                    self.stored_packs = writer.checkpoint_stored()
                    self.dst.remember_written_fragments(writer.fragments_written)
            raise
        finally:
            writer.close()

    def _count(self, writer: RepositoryWriter) -> None:
        self.report.chunks_new += writer.stats["chunks_new"]
        self.report.bytes_new += writer.stats["bytes_new"]
        self.report.bytes_stored += writer.stats["bytes_stored"]

    # --- shared chunk ids: copy the chunks the destination lacks ------------------------------------------

    def _copy_items(
        self, meta: ArchiveMeta, items_reader: ChunkReader, data_reader: ChunkReader, writer: RepositoryWriter
    ) -> None:
        def item_chunks() -> Iterator[bytes]:
            for chunk_id, data in items_reader.iter_tagged((cid, cid) for cid in meta.item_ids):
                if isinstance(data, BaseException):
                    raise IntegrityError(f"archive {meta.name!r}: item metadata is damaged: {data}")
                writer.put_chunk(chunk_id, data, TYPE_ITEMS)
                yield data

        def missing() -> Iterator[tuple[bytes, bytes]]:
            for item in it.iter_items(item_chunks()):
                if item[it.TYPE] == it.FILE:
                    for chunk_id, _ in item.get(it.CHUNKS) or ():
                        if not writer.known(chunk_id):
                            yield chunk_id, chunk_id

        for chunk_id, data in data_reader.iter_tagged(missing()):
            if isinstance(data, BaseException):
                raise data
            writer.put_chunk(chunk_id, data, TYPE_DATA)  # known again by now (read twice): skipped

    # --- unrelated repositories: re-cut every file ------------------------------------------------------------

    def _recut_items(
        self, meta: ArchiveMeta, items_reader: ChunkReader, data_reader: ChunkReader, writer: RepositoryWriter
    ) -> ArchiveMeta:
        dst = self.dst
        chunker = dst.chunker()
        stream = it.ItemStreamWriter(dst.chunker(), dst.chunk_id, writer.put_chunk)
        for item in iter_archive_items(items_reader, meta):
            chunks = item.get(it.CHUNKS)
            if item[it.TYPE] == it.FILE and chunks:
                source = _ChunkStream(data_reader.iter_chunks(cid for cid, _ in chunks), it.path_str(item))
                new_chunks = []
                for view in chunker.chunks_of_file(source, item.get(it.SIZE, 0)):
                    data = bytes(view)
                    chunk_id = dst.chunk_id(data)
                    writer.put_chunk(chunk_id, data, TYPE_DATA)
                    new_chunks.append([chunk_id, len(data)])
                item[it.CHUNKS] = new_chunks
                item.pop(it.ORIGINAL_CHUNKS, None)  # ids of the source: they name nothing here
            stream.add(item)
        item_ids = stream.finish()
        extra = dict(meta.extra)
        extra[COPIED_FROM] = {"repository": self.src.config.repository_id, "archive": meta.id}
        return ArchiveMeta(
            id=b"",
            name=meta.name,
            time=meta.time,
            end=meta.end,
            host=meta.host,
            user=meta.user,
            item_ids=item_ids,
            nitems=stream.count,
            comment=meta.comment,
            paths=meta.paths,
            cmdline=meta.cmdline,
            stats=meta.stats,
            damage=meta.damage,
            repaired=meta.repaired,
            version=meta.version,
            extra=extra,
        )


class _ChunkStream:
    """A file's plaintext as a readable stream over its chunks, in order (what the chunker reads from)."""

    def __init__(self, chunks: Iterator[bytes | PackvaultError], path: str):
        self._chunks = chunks
        self._path = path
        self._current = memoryview(b"")

    def _fill(self) -> bool:
        while not self._current:
            data = next(self._chunks, None)
            if data is None:
                return False
            if isinstance(data, BaseException):
                raise IntegrityError(f"{self._path}: a chunk cannot be read from the source: {data}")
            self._current = memoryview(data)
        return True

    def readinto(self, buffer) -> int:
        target = memoryview(buffer).cast("B")
        filled = 0
        while filled < len(target) and self._fill():
            n = min(len(target) - filled, len(self._current))
            target[filled : filled + n] = self._current[:n]
            self._current = self._current[n:]
            filled += n
        return filled

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            parts = []
            while self._fill():
                parts.append(bytes(self._current))
                self._current = memoryview(b"")
            return b"".join(parts)
        buffer = bytearray(size)
        n = self.readinto(buffer)
        del buffer[n:]
        return bytes(buffer)
