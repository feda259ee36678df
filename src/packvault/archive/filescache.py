"""The files cache: skip reading files that did not change since the last backup.

A file whose (inode, size, mtime_ns, ctime_ns) equals what the cache recorded is not read again; its
chunk list is reused, provided every chunk is still in the index (compact or a deleted archive may have
removed them).  ctime is part of the key because tools can reset mtime; a changed ctime catches that.

Entries are keyed by a 16-byte hash of the absolute path in a ``borghash`` table of fixed-size records,
whose chunk lists live back to back in one byte array: about 110 bytes per file in memory and on disk, no
Python object per file, and loading or saving it is reading or writing two files, not decoding or encoding
one object per file (a tree of 200,000 files otherwise held ~50 MB of small objects through a backup that
changes nothing).  Each entry records the backup (generation) that last saw it, refreshed every
``SEEN_REFRESH`` backups; entries not seen for 5 to ``MAX_AGE`` backups are dropped when the cache is
rewritten, so the cache follows the tree.  The cache is
written once a backup's last file is in, while the archive is committed (``save_meanwhile``: the commit is
a few round trips to a distant bucket, and a tree of 200,000 files has 20 MB of cache to write), or after a
failed backup's checkpoint.  Written before the archive exists is safe for the same reason a checkpoint's
save is: a remembered file is only trusted when the index knows every one of its chunks.

On disk: ``<name>.meta`` names the table and chunk files of the current version and their sizes; it is
replaced last, atomically, and new versions go to new file names, so a crash leaves the old version or the
new one, never a table paired with another version's chunk lists; the files a killed save left behind are
removed by a later save.

Each entry also says whether the file had extended attributes.  Setting or removing one changes the file's
ctime, so an entry that matches vouches for those too: a file that had none is not asked again (one
``listxattr`` per file was ~6 % of an unchanged re-run), one that had some has them read again.
"""

from __future__ import annotations

import contextlib
import os
import re
import struct
import time
from collections import namedtuple
from concurrent.futures import Future, ThreadPoolExecutor

import blake3
import msgpack
from borghash import HashTableNT

from ..repository.cache import RepositoryCache
from ..writes import write_gathered

MAX_AGE = 10
# A hit rewrites the entry's seen-mark only once the mark is this many backups old: a write per unchanged file
# per backup was ~6 % of an unchanged re-run.  A file seen in the last MAX_AGE - SEEN_REFRESH backups is
# therefore still kept; one not seen for 5 to 10 backups may be dropped.
SEEN_REFRESH = MAX_AGE // 2
LEFT_BEHIND_SECONDS = 3600  # far longer than a save takes
KEY_SIZE = 16
Entry = namedtuple("Entry", "inode size mtime_ns ctime_ns seen offset count xattrs")
_ENTRY_FORMAT = Entry("Q", "Q", "q", "q", "I", "Q", "I", "B")
_CHUNK = struct.Struct("<32sI")
_VERSION = 3
_VERSION_WITHOUT_XATTRS = 2  # entries without the xattrs flag: taken over as "had some" (read them again)
CachedFile = namedtuple("CachedFile", "chunks xattrs")  # chunks: [(id, size)]; xattrs: the file had some
_V1_HEAD = struct.Struct("<QQqqB")  # inode, size, mtime_ns, ctime_ns, age (earlier versions' file)


class FilesCache:
    def __init__(self, cache: RepositoryCache, name: str = "files"):
        self._cache = cache
        self._name = name
        self._table = _new_table()
        self._chunks = bytearray()
        self._garbage = 0  # bytes of ``_chunks`` that no entry points at any more
        self._generation = 1  # this backup's
        self._unseen = 0  # entries loaded that this backup has not seen (yet)
        self._files: tuple[str, str] | None = None  # the version loaded (removed once a newer one is saved)
        self._saving: Future | None = None
        self._load()

    @staticmethod
    def key(path: bytes) -> bytes:
        return blake3.blake3(path).digest(KEY_SIZE)

    def _load(self) -> None:
        raw = self._cache.read(f"{self._name}.meta")
        if raw is None:
            self._load_version_1()
            return
        try:
            meta = msgpack.unpackb(raw)
            if meta["version"] not in (_VERSION, _VERSION_WITHOUT_XATTRS):
                return
            table_file, chunks_file = self._cache.file(meta["table"]), self._cache.file(meta["chunks"])
            if table_file.stat().st_size != meta["table_size"] or chunks_file.stat().st_size != meta["chunks_size"]:
                return
            table = HashTableNT.read(str(table_file))
            if meta["version"] == _VERSION_WITHOUT_XATTRS:
                table = _with_xattrs_flag(table)
            chunks = bytearray(meta["chunks_size"])
            with open(chunks_file, "rb") as f:
                if f.readinto(chunks) != len(chunks):
                    return
            generation = int(meta["generation"])
        except Exception:  # a damaged cache costs reading the files again, it is never trusted
            return
        self._table, self._chunks, self._generation = table, chunks, generation + 1
        self._garbage = int(meta.get("garbage", 0))
        self._unseen = len(table)
        self._files = (meta["table"], meta["chunks"])

    def _load_version_1(self) -> None:
        """Take over the msgpack file of earlier versions (a dict of path key to packed entry), so that the
        first backup after an upgrade does not read every file again."""
        raw = self._cache.read(self._name)
        if not raw:
            return
        try:
            entries = msgpack.unpackb(raw, use_list=False, strict_map_key=False)
            del raw
            table = _new_table(capacity=len(entries))
            chunks = bytearray()
            for key, value in entries.items():
                inode, size, mtime_ns, ctime_ns, _ = _V1_HEAD.unpack_from(value)
                listed = value[_V1_HEAD.size :]
                table[key] = Entry(inode, size, mtime_ns, ctime_ns, 0, len(chunks), len(listed) // _CHUNK.size, 1)
                chunks += listed
        except Exception:  # as unreadable as a damaged cache: the files are read again
            return
        self._table, self._chunks, self._unseen = table, chunks, len(table)

    def lookup(
        self, path: bytes, cache_key: tuple[int, int, int, int], *, key: bytes | None = None
    ) -> CachedFile | None:
        """What was remembered of ``path`` if its (inode, size, mtime_ns, ctime_ns) are still ``cache_key``;
        ``key``: ``key(path)``, where the caller has it already (a backup computes it once per file)."""
        key = key or self.key(path)
        entry = self._table.get(key)
        if entry is None or entry[:4] != cache_key:
            return None
        offset, count = entry.offset, entry.count
        end = offset + count * _CHUNK.size
        if end > len(self._chunks):
            return None
        if entry.seen != self._generation:
            if self._generation - entry.seen >= SEEN_REFRESH:
                self._table[key] = Entry(*cache_key, self._generation, offset, count, entry.xattrs)
            self._unseen -= 1  # a path looked up twice counts twice: at worst a compaction waits for the next
        return CachedFile(list(_CHUNK.iter_unpack(self._chunks[offset:end])), bool(entry.xattrs))

    def has_no_xattrs(self, path: bytes, *, key: bytes | None = None) -> None:
        """The file remembered as having extended attributes (or taken over from version 2) has none now,
        though its entry still matches: not asked again until it changes."""
        key = key or self.key(path)
        entry = self._table.get(key)
        if entry is not None and entry.xattrs:
            self._table[key] = entry._replace(xattrs=0)

    def remember(
        self,
        path: bytes,
        inode: int,
        size: int,
        mtime_ns: int,
        ctime_ns: int,
        chunks: list[tuple[bytes, int]],
        *,
        xattrs: bool = True,
        key: bytes | None = None,
    ) -> None:
        """Remember a file read whole; ``xattrs``: it had extended attributes (or nobody looked)."""
        key = key or self.key(path)
        old = self._table.get(key)
        if old is not None:
            self._garbage += old.count * _CHUNK.size
            if old.seen != self._generation:
                self._unseen -= 1
        offset = len(self._chunks)
        count = 0
        for chunk_id, chunk_size in chunks:
            self._chunks += _CHUNK.pack(chunk_id, chunk_size)
            count += 1
        self._table[key] = Entry(inode, size, mtime_ns, ctime_ns, self._generation, offset, count, int(xattrs))

    def save_meanwhile(self) -> None:
        """Begin ``save`` in a thread of its own; nothing may change the cache until ``finish_save``."""
        with ThreadPoolExecutor(1, thread_name_prefix="pv-filescache") as pool:
            self._saving = pool.submit(self.save)
            pool.shutdown(wait=False)

    def finish_save(self) -> None:
        """Wait for the save ``save_meanwhile`` began and raise what it raised; without one, save now."""
        saving, self._saving = self._saving, None
        if saving is None:
            self.save()
        else:
            saving.result()

    def save(self) -> None:
        """Write this version (after a complete archive, or a checkpoint): drops old entries and compacts
        the chunk lists when there is something to drop (the usual unchanged re-run writes them as they are)."""
        table, chunks, garbage = self._table, self._chunks, self._garbage
        if self._unseen > 0 and self._generation % MAX_AGE == 0 or garbage > len(chunks) // 2:
            table, chunks = self._compacted()
            garbage = 0
        token = os.urandom(8).hex()
        names = (f"{self._name}.{token}.table", f"{self._name}.{token}.chunks")
        try:
            tmp = self._cache.temp_path(names[1])
            with open(tmp, "wb", buffering=0) as f:
                write_gathered(f.fileno(), [chunks])  # megabytes at 200,000 files: in pieces (``writes.py``)
            self._cache.commit(tmp, names[1])
            tmp = self._cache.temp_path(names[0])
            table.write(str(tmp))
            self._cache.commit(tmp, names[0])
            meta = {
                "version": _VERSION,
                "generation": self._generation,
                "table": names[0],
                "chunks": names[1],
                "table_size": self._cache.file(names[0]).stat().st_size,
                "chunks_size": len(chunks),
                "garbage": garbage,
            }
            self._cache.write(f"{self._name}.meta", msgpack.packb(meta))
        except BaseException:
            for name in names:
                self._cache.remove(name)
            raise
        with contextlib.suppress(OSError):
            for name in (*(self._files or ()), self._name):  # the version replaced (and the old format's file)
                self._cache.remove(name)
        self._files = names
        self._remove_left_behind(names)

    def _remove_left_behind(self, current: tuple[str, str]) -> None:
        """Remove the files of saves that never got to replace the meta file (killed mid-way), and their temp
        files: only this cache's own names (other caches share the directory), and only once they are older
        than ``LEFT_BEHIND_SECONDS``, since a backup running beside this one may be in the middle of a save."""
        own = re.compile(rf"\.?{re.escape(self._name)}\.[0-9a-f]{{16}}\.(table|chunks)(\..+\.tmp)?")
        cutoff = time.time() - LEFT_BEHIND_SECONDS
        with contextlib.suppress(OSError):
            for entry in os.scandir(self._cache.path):
                if entry.name in current or not own.fullmatch(entry.name):
                    continue
                with contextlib.suppress(OSError):
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)

    def _compacted(self) -> tuple[HashTableNT, bytearray]:
        """The entries seen in the last ``MAX_AGE`` backups, their chunk lists copied back to back."""
        table = _new_table(capacity=len(self._table))
        chunks = bytearray()
        oldest = self._generation - MAX_AGE
        for key, entry in self._table.items():
            if entry.seen <= oldest:
                continue
            end = entry.offset + entry.count * _CHUNK.size
            table[key] = entry._replace(offset=len(chunks))
            chunks += self._chunks[entry.offset : end]
        return table, chunks


def _with_xattrs_flag(old: HashTableNT) -> HashTableNT:
    """A version-2 table's entries with the flag set (their files' attributes are read once more)."""
    table = _new_table(capacity=len(old))
    for key, entry in old.items():
        table[key] = Entry(*entry, 1)
    return table


def _new_table(capacity: int = 1000) -> HashTableNT:
    return HashTableNT(key_size=KEY_SIZE, value_type=Entry, value_format=_ENTRY_FORMAT, capacity=max(capacity, 1000))
