"""Items (one per file system entry) and the item stream that holds them.

An item is a msgpack map with short keys (the on-disk format: one or two letters keep the metadata
small); paths are bytes, so names that are not valid UTF-8 survive the round trip.  Code names a key by
its constant below, never by its letter: this module is the one place the item format is written down.

The stream of items is msgpack-concatenated and cut with the same content-defined chunker as file data,
so an unchanged part of a tree gives identical metadata chunks from one archive to the next and they are
deduplicated like data.  It is cut incrementally: only the bytes after the last final cut point are held.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import msgpack

from ..chunking.chunker import Chunker
from ..repository.objects import TYPE_ITEMS

# --- the keys of an item ---------------------------------------------------------------------------------
PATH = "p"  # bytes, relative, no leading slash
TYPE = "t"  # one of the item types below
MODE = "m"
UID, GID = "u", "g"
USER, GROUP = "U", "G"  # user and group names
MTIME, ATIME, CTIME = "mt", "at", "ct"  # in ns; no ATIME for symlinks (readlink moves it)
SIZE = "s"  # files
CHUNKS = "c"  # files: [[id, size], ...]
SYMLINK_TARGET = "l"  # bytes
HARDLINK_TARGET = "h"  # path (bytes) of an earlier item of the same archive
RDEV = "r"  # devices
XATTRS = "x"  # {name: value}
ERROR = "e"  # note of a file check --repair patched (restored with zeros in place of lost chunks)
ORIGINAL_CHUNKS = "ch"  # the chunk list of a file before repair patched it (to heal it when they are back)
S3 = "s3"  # {"etag": ...} for objects backed up from a bucket

# --- item types (the values of TYPE) ------------------------------------------------------------------------
FILE, DIR, SYMLINK, HARDLINK, FIFO, CHARDEV, BLOCKDEV = "f", "d", "l", "h", "p", "c", "b"
_FLUSH_AT = 8 * 1024 * 1024


class ItemStreamWriter:
    """Packs items, cuts the stream into chunks and hands them to ``put(id, data, type)``."""

    def __init__(self, chunker: Chunker, chunk_id, put):
        self._chunker = chunker
        self._chunk_id = chunk_id
        self._put = put
        self._buffer = bytearray()
        self._packer = msgpack.Packer()
        self.chunk_ids: list[bytes] = []
        self.count = 0

    def add(self, item: dict) -> None:
        self._buffer += self._packer.pack(item)
        self.count += 1
        if len(self._buffer) >= _FLUSH_AT:
            self._cut(final=False)

    def finish(self) -> list[bytes]:
        self._cut(final=True)
        return self.chunk_ids

    def _cut(self, *, final: bool) -> None:
        points = list(self._chunker.cut_points(self._buffer))
        if not final:
            points = points[:-1]  # the last cut depends on bytes not yet written
        consumed = 0
        view = memoryview(self._buffer)
        for offset, length in points:
            data = bytes(view[offset : offset + length])
            chunk_id = self._chunk_id(data)
            self._put(chunk_id, data, TYPE_ITEMS)
            self.chunk_ids.append(chunk_id)
            consumed = offset + length
        view.release()
        del self._buffer[:consumed]


def iter_items(chunks: Iterable[bytes]) -> Iterator[dict]:
    """Items from the plaintext chunks of an item stream, in order."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=64 * 1024 * 1024)
    for data in chunks:
        unpacker.feed(data)
        yield from unpacker


def chunk_pairs(items: Iterable[dict]) -> Iterator[tuple[dict, bytes | None]]:
    """(item, chunk id) for every chunk of every file, and (item, None) for items without data: the one
    ordered stream a ChunkReader turns into (item, data) for restore."""
    for item in items:
        chunks = item.get(CHUNKS)
        if item[TYPE] == FILE and chunks:
            for chunk_id, _ in chunks:
                yield item, chunk_id
        else:
            yield item, None


def damaged_chunks(item: dict) -> int | None:
    """How many chunks of a file ``check --repair`` replaced by zeros, or None when it is intact."""
    if not item.get(ERROR):
        return None
    original = item.get(ORIGINAL_CHUNKS) or []
    return sum(1 for (now, _), (then, _) in zip(item.get(CHUNKS) or [], original, strict=False) if now != then)


def path_str(item: dict) -> str:
    """The item's path for display: undecodable bytes are escaped, never lost."""
    return item[PATH].decode("utf-8", "surrogateescape")


# --- items restore must not follow -----------------------------------------------------------------------

ITEM_TYPES = frozenset((FILE, DIR, SYMLINK, HARDLINK, FIFO, CHARDEV, BLOCKDEV))
ROOT_PATH = b"."  # the one item of a backup of "/" whose path has no name: the restore target itself
UNSAFE_ABSOLUTE = "absolute path"
UNSAFE_DOTDOT = "'..' component"
UNSAFE_DOT = "'.' component"
UNSAFE_EMPTY = "empty path or path component"
UNSAFE_NUL = "NUL byte"
UNSAFE_NOT_BYTES = "path is not a byte string"


def _path_reason(path: object, *, root_ok: bool) -> str | None:
    if not isinstance(path, bytes):
        return UNSAFE_NOT_BYTES
    if path == ROOT_PATH and root_ok:
        return None
    if b"\0" in path:
        return UNSAFE_NUL
    if path.startswith(b"/"):
        return UNSAFE_ABSOLUTE
    for part in path.split(b"/"):
        if part == b"..":
            return UNSAFE_DOTDOT
        if part == b".":
            return UNSAFE_DOT
        if not part:
            return UNSAFE_EMPTY
    return None


def unsafe_item_reason(item: dict) -> str | None:
    """Why an item could make a restore write outside its target, or None when its names are safe.

    The writers only produce relative, normalised paths (no empty, ``.`` or ``..`` component, no NUL), and
    a hardlink names an earlier item of the same archive; anything else comes from damage or from a crafted
    archive.  Restore skips such an item with a warning and ``check`` reports it.  A symlink's own target
    may point anywhere (``/etc/alternatives/...`` is normal): restore creates the link but never follows it,
    which is what keeps it harmless, so only an empty target or one holding NUL (no file system takes it)
    is flagged.
    """
    kind = item.get(TYPE)
    if kind not in ITEM_TYPES:
        return f"unknown item type {kind!r}"
    reason = _path_reason(item.get(PATH), root_ok=kind == DIR)
    if reason is not None:
        return reason
    if kind == HARDLINK:
        reason = _path_reason(item.get(HARDLINK_TARGET), root_ok=False)
        if reason is not None:
            return f"hardlink target: {reason}"
        if item[HARDLINK_TARGET] == item[PATH]:
            return "hardlink to itself"
    if kind == SYMLINK:
        link = item.get(SYMLINK_TARGET)
        if not isinstance(link, bytes) or not link or b"\0" in link:
            return "symlink target is empty, not bytes or holds a NUL byte"
    return None


# --- item stream decoding that survives lost chunks -------------------------------------------------------------


def _is_item(obj) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get(PATH), bytes) and isinstance(obj.get(TYPE), str)


def iter_items_robust(chunks) -> Iterator[dict]:
    """Items from an item stream whose chunks may be missing (``None``).

    The stream is msgpack concatenated and cut at content-defined points, so after a lost chunk the next
    chunk starts in the middle of some item.  Decoding resumes at the first offset from which a whole
    item (a map with a bytes path and a type) decodes: the items wholly inside the lost chunk, and the
    two cut by its edges, are lost; every other item survives.
    """
    unpacker = _new_unpacker()
    pending: bytearray | None = None  # bytes after a gap, until a plausible item start is found
    for data in chunks:
        if data is None:
            unpacker = _new_unpacker()
            pending = bytearray()
            continue
        if pending is None:
            unpacker.feed(data)
            try:
                for obj in unpacker:
                    if _is_item(obj):
                        yield obj
            except (ValueError, msgpack.UnpackException):
                unpacker = _new_unpacker()
                pending = bytearray()
            continue
        pending += data
        start = _find_item_start(pending, final=False)
        if start is None:
            continue
        unpacker.feed(bytes(pending[start:]))
        pending = None
        try:
            for obj in unpacker:
                if _is_item(obj):
                    yield obj
        except (ValueError, msgpack.UnpackException):
            unpacker = _new_unpacker()
            pending = bytearray()
    if pending:
        start = _find_item_start(pending, final=True)
        if start is not None:
            unpacker = _new_unpacker()
            unpacker.feed(bytes(pending[start:]))
            try:
                for obj in unpacker:
                    if _is_item(obj):
                        yield obj
            except (ValueError, msgpack.UnpackException):
                return


def _new_unpacker() -> msgpack.Unpacker:
    return msgpack.Unpacker(raw=False, strict_map_key=False, max_buffer_size=64 * 1024 * 1024)


_MAP_START = re.compile(rb"[\x80-\x8f\xde]")  # msgpack fixmap and map16: where an item can begin


def _find_item_start(buf: bytearray, *, final: bool) -> int | None:
    """Offset of the first plausible item in ``buf``; None to wait for more bytes (or, if final, none)."""
    for match in _MAP_START.finditer(buf):
        pos = match.start()
        probe = _new_unpacker()
        probe.feed(bytes(buf[pos:]))
        try:
            obj = probe.unpack()
        except msgpack.OutOfData:
            if final:
                continue
            return None  # maybe an item that continues in the next chunk: decide when it is there
        except Exception:  # msgpack raises several types on garbage
            continue
        if _is_item(obj):
            return pos
    return None
