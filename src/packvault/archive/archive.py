"""Reading an archive: its metadata object and its item stream."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import msgpack

from ..errors import IntegrityError
from ..repository.reader import ChunkReader
from ..repository.repository import ArchiveEntry
from . import items as it

META_DAMAGE = "damaged"
"""Key of the archive metadata under which ``check --repair`` records what it could not salvage."""
DAMAGE_LOST_ITEM_CHUNKS = "lost_item_chunks"  # ids of item-stream chunks that were unreadable
DAMAGE_FILES = "files"  # number of files whose lost chunks were replaced by zeros
DAMAGE_REPAIRED = "repaired"  # when (ISO 8601)


@dataclass(frozen=True)
class ArchiveMeta:
    id: bytes
    name: str
    time: str
    end: str
    host: str
    user: str
    comment: str
    paths: list[str]
    cmdline: list[str]
    item_ids: list[bytes]
    nitems: int
    stats: dict
    damage: dict  # set by check --repair: what it could not salvage (see ``DAMAGE_*``)

    @property
    def lost_item_chunks(self) -> list[bytes]:
        """Item-stream chunks repair could not read: the files they listed are unknown, and so is their data."""
        return list(self.damage.get(DAMAGE_LOST_ITEM_CHUNKS) or [])


def load_archive(reader: ChunkReader, entry: ArchiveEntry) -> ArchiveMeta:
    data = reader.read_chunk(entry.id)
    try:
        d = msgpack.unpackb(data)
        return ArchiveMeta(
            id=entry.id,
            name=d["name"],
            time=d["time"],
            end=d["end"],
            host=d["host"],
            user=d["user"],
            comment=d.get("comment", ""),
            paths=d.get("paths", []),
            cmdline=d.get("cmdline", []),
            item_ids=d["items"],
            nitems=d.get("nitems", 0),
            stats=d.get("stats", {}),
            damage=d.get(META_DAMAGE) or {},
        )
    except (ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
        raise IntegrityError(f"archive {entry.name!r}: metadata does not parse: {exc}") from None


def iter_archive_items(reader: ChunkReader, meta: ArchiveMeta) -> Iterator[dict]:
    def chunks():
        for data in reader.iter_chunks(meta.item_ids):
            if isinstance(data, BaseException):
                raise IntegrityError(f"archive {meta.name!r}: item metadata is damaged: {data}")
            yield data

    return it.iter_items(chunks())


def path_filter(paths: list[str]):
    """A predicate selecting items at or below any of ``paths`` (archive paths, leading slash optional)."""
    prefixes = [p.strip("/").encode("utf-8", "surrogateescape") for p in paths if p.strip("/")]
    if not prefixes:
        return lambda item: True

    def selected(item: dict) -> bool:
        path = item["p"]
        return any(path == p or path.startswith(p + b"/") for p in prefixes)

    return selected
