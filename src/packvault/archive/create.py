"""``create``: turn a source (a file system walk, a bucket) into a new archive.

Per file: the files cache decides whether to read it; reading streams it through the chunker; each chunk
is hashed here (keyed BLAKE3, in C) and handed to the repository writer, which skips known ids and
compresses/encrypts/uploads new ones in its own threads.  Items go into the item stream as files finish.

The end of the run follows the DESIGN's write order: flush data and item-stream packs and their index
fragment, store the archive metadata object (and flush it), and only then write the ``archives/`` entry.
"""

from __future__ import annotations

import getpass
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgpack

from ..errors import ArchiveExists, PackvaultError
from ..repository.objects import TYPE_ARCHIVE
from ..repository.repository import ArchiveEntry, Repository
from ..repository.writer import RepositoryWriter
from . import items as it
from .filescache import FilesCache
from .walker import Entry

ARCHIVE_VERSION = 1


@dataclass
class CreateStats:
    nfiles: int = 0
    ndirs: int = 0
    nother: int = 0
    files_read: int = 0
    files_unchanged: int = 0
    original_size: int = 0
    bytes_read: int = 0
    deduplicated_size: int = 0  # plaintext bytes of new chunks
    compressed_size: int = 0  # stored bytes of new chunks (sealed)
    chunks: int = 0
    chunks_new: int = 0
    warnings: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    duration: float = 0.0

    def as_dict(self) -> dict:
        throughput = self.original_size / self.duration if self.duration else 0.0
        return {
            "nfiles": self.nfiles,
            "ndirs": self.ndirs,
            "nother": self.nother,
            "files_read": self.files_read,
            "files_unchanged": self.files_unchanged,
            "original_size": self.original_size,
            "bytes_read": self.bytes_read,
            "deduplicated_size": self.deduplicated_size,
            "compressed_size": self.compressed_size,
            "chunks": self.chunks,
            "chunks_new": self.chunks_new,
            "duration": round(self.duration, 3),
            "throughput": round(throughput, 1),
            "warnings": len(self.warnings),
        }


Progress = Callable[[CreateStats, str], None]


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
    ):
        self.repo = repo
        self.name = name
        self.comment = comment
        self.progress = progress
        self.deadline = deadline
        self.stats = CreateStats()
        self.files_cache = FilesCache(repo.cache, files_cache_name) if use_files_cache else None
        self.started = datetime.now(UTC)

    def warn(self, path: str, message: str) -> None:
        self.stats.warnings.append(f"{path}: {message}")
        print(f"warning: {path}: {message}", file=sys.stderr)

    def run(self, source: Iterable[Entry], *, paths: list[str], cmdline: list[str]) -> ArchiveEntry:
        repo = self.repo
        if any(entry.name == self.name for entry in repo.archive_entries()):
            raise ArchiveExists(f"an archive named {self.name!r} already exists")
        writer = RepositoryWriter(repo)
        try:
            chunker = repo.chunker()
            stream = it.ItemStreamWriter(chunker, repo.chunk_id, writer.put_chunk)
            for entry in source:
                if self._deadline_due():
                    self._stop_at_deadline(writer)
                try:
                    self._backup_entry(entry, writer, chunker, stream)
                except _DeadlineInFile:
                    self._stop_at_deadline(writer)
                if self.progress:
                    self.progress(self.stats, entry.item["p"].decode("utf-8", "replace"))
            item_ids = stream.finish()
            writer.flush()  # packs -> index fragment, before anything references them
            self.stats.duration = time.monotonic() - self.stats.started
            self.stats.deduplicated_size = writer.stats["bytes_new"]
            self.stats.compressed_size = writer.stats["bytes_stored"]
            self.stats.chunks_new = writer.stats["chunks_new"]
            ended = datetime.now(UTC)
            meta = {
                "version": ARCHIVE_VERSION,
                "name": self.name,
                "time": self.started.isoformat(),
                "end": ended.isoformat(),
                "host": socket.gethostname(),
                "user": getpass.getuser(),
                "comment": self.comment,
                "paths": paths,
                "cmdline": cmdline,
                "items": item_ids,
                "nitems": stream.count,
                "stats": self.stats.as_dict(),
            }
            plaintext = msgpack.packb(meta)
            archive_id = repo.chunk_id(plaintext)
            writer.put_chunk(archive_id, plaintext, TYPE_ARCHIVE)
            writer.flush()  # archive metadata -> its fragment
            entry = ArchiveEntry(
                id=archive_id,
                name=self.name,
                time=meta["time"],
                end=meta["end"],
                host=meta["host"],
                user=meta["user"],
                comment=self.comment,
                stats=meta["stats"],
                paths=tuple(paths),
            )
            repo.check_lock()
            repo.put_archive_entry(entry)  # last: the archive exists from here on
            repo.remember_written_fragments(writer.fragments_written)
        finally:
            writer.close()
        if self.files_cache is not None:
            self.files_cache.save()
        return entry

    def _deadline_due(self) -> bool:
        return self.deadline is not None and self.deadline()

    def _stop_at_deadline(self, writer: RepositoryWriter) -> None:
        """Checkpoint what is stored, so the next run deduplicates against it and resumes, then stop."""
        writer.flush()
        self.repo.remember_written_fragments(writer.fragments_written)
        if self.files_cache is not None:
            self.files_cache.save()
        raise DeadlineReached("stopped before the deadline; the next run resumes")

    def _backup_entry(self, entry: Entry, writer: RepositoryWriter, chunker, stream: it.ItemStreamWriter) -> None:
        item = entry.item
        kind = item["t"]
        if kind == it.DIR:
            self.stats.ndirs += 1
        elif kind in (it.FILE, it.HARDLINK):
            self.stats.nfiles += 1
        else:
            self.stats.nother += 1
        if kind == it.FILE and entry.opener is not None:
            chunks = self._file_chunks(entry, writer, chunker)
            if chunks is None:
                return  # unreadable: warned, not in the archive
            item["c"] = [[cid, size] for cid, size in chunks]
            self.stats.original_size += item["s"]
            self.stats.chunks += len(chunks)
        stream.add(item)

    def _file_chunks(self, entry: Entry, writer: RepositoryWriter, chunker) -> list[tuple[bytes, int]] | None:
        path_text = entry.item["p"].decode("utf-8", "replace")
        cache = self.files_cache
        if cache is not None and entry.cache_key is not None:
            cached = cache.lookup(entry.source_path, *entry.cache_key)
            if cached is not None and all(writer.known(cid) for cid, _ in cached):
                self.stats.files_unchanged += 1
                return cached
        chunks: list[tuple[bytes, int]] = []
        try:
            with entry.opener() as f:
                for view in chunker.chunks_of_file(f, entry.item.get("s", 0)):
                    data = bytes(view)
                    chunk_id = self.repo.chunk_id(data)
                    writer.put_chunk(chunk_id, data)
                    chunks.append((chunk_id, len(data)))
                    if self._deadline_due():
                        raise _DeadlineInFile  # a large file must not outlive the deadline
                after = _stat_after(f)
        except FileNotFoundError:
            self.warn(path_text, "vanished during backup")
            return None
        except PackvaultError:
            raise
        except OSError as exc:
            self.warn(path_text, f"cannot read: {exc.strerror or exc}")
            return None
        size = sum(size for _, size in chunks)
        self.stats.files_read += 1
        self.stats.bytes_read += size
        if entry.cache_key is not None:
            # a stream without fstat (an S3 object read by ETag) is checked by the size it delivered
            changed = size != entry.cache_key[1] or (
                after is not None and (after.st_size, after.st_mtime_ns) != (entry.cache_key[1], entry.cache_key[2])
            )
            if changed:
                self.warn(path_text, "changed while being backed up (stored as read)")
                entry.item["s"] = size
                return chunks  # not remembered: the next run reads it again
            if cache is not None:
                cache.remember(entry.source_path, *entry.cache_key, chunks)
        entry.item["s"] = size
        return chunks


class _DeadlineInFile(Exception):
    """Internal: the deadline came in the middle of a file; the file's chunks so far are kept."""


class DeadlineReached(PackvaultError):
    """A time-boxed run (serverless) stopped early; everything uploaded so far is indexed."""

    exit_code = 3


def _stat_after(f) -> os.stat_result | None:
    try:
        return os.fstat(f.fileno())
    except (OSError, AttributeError, ValueError):
        return None
