"""The files cache: skip reading files that did not change since the last backup.

A file whose (inode, size, mtime_ns, ctime_ns) equals what the cache recorded is not read again; its
chunk list is reused, provided every chunk is still in the index (compact or a deleted archive may have
removed them).  ctime is part of the key because tools can reset mtime; a changed ctime catches that.

Entries are keyed by a 16-byte hash of the absolute path and stored as packed bytes (two small Python
objects per file).  An entry not seen for ``MAX_AGE`` backups is dropped, so the cache follows the tree.
The cache is only written after an archive is complete: an interrupted backup leaves the previous one.
"""

from __future__ import annotations

import struct

import blake3
import msgpack

from ..repository.cache import RepositoryCache

MAX_AGE = 10
_HEAD = struct.Struct("<QQqqB")  # inode, size, mtime_ns, ctime_ns, age
_CHUNK = struct.Struct("<32sI")


class FilesCache:
    def __init__(self, cache: RepositoryCache, name: str = "files"):
        self._cache = cache
        self._name = name
        self._entries: dict[bytes, bytes] = {}
        raw = cache.read(name)
        if raw:
            try:
                self._entries = msgpack.unpackb(raw, use_list=False, strict_map_key=False)
            except (ValueError, msgpack.UnpackException):
                self._entries = {}
        self._seen: set[bytes] = set()

    @staticmethod
    def key(path: bytes) -> bytes:
        return blake3.blake3(path).digest(16)

    def lookup(
        self, path: bytes, inode: int, size: int, mtime_ns: int, ctime_ns: int
    ) -> list[tuple[bytes, int]] | None:
        key = self.key(path)
        value = self._entries.get(key)
        if value is None:
            return None
        c_inode, c_size, c_mtime, c_ctime, _ = _HEAD.unpack_from(value)
        if (c_inode, c_size, c_mtime, c_ctime) != (inode, size, mtime_ns, ctime_ns):
            return None
        self._seen.add(key)
        return [(cid, csize) for cid, csize in _CHUNK.iter_unpack(memoryview(value)[_HEAD.size :])]

    def remember(self, path: bytes, inode: int, size: int, mtime_ns: int, ctime_ns: int, chunks) -> None:
        key = self.key(path)
        self._seen.add(key)
        self._entries[key] = _HEAD.pack(inode, size, mtime_ns, ctime_ns, 0) + b"".join(
            _CHUNK.pack(cid, csize) for cid, csize in chunks
        )

    def save(self) -> None:
        kept = {}
        for key, value in self._entries.items():
            if key in self._seen:
                kept[key] = value
                continue
            age = value[_HEAD.size - 1] + 1
            if age < MAX_AGE:
                kept[key] = value[: _HEAD.size - 1] + bytes([age]) + value[_HEAD.size :]
        self._cache.write(self._name, msgpack.packb(kept))
