"""Reading an archive: its metadata object and its item stream."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import msgpack

from ..errors import IntegrityError
from ..repository.reader import ChunkReader
from ..repository.repository import ArchiveEntry
from . import items as it

ARCHIVE_VERSION = 1

META_DAMAGE = "damaged"
"""Key of the archive metadata under which ``check --repair`` records what it could not salvage."""
DAMAGE_LOST_ITEM_CHUNKS = "lost_item_chunks"  # ids of item-stream chunks that were unreadable
DAMAGE_FILES = "files"  # number of files whose lost chunks were replaced by zeros
DAMAGE_REPAIRED = "repaired"  # when (ISO 8601)


class IncompleteArchiveMeta(IntegrityError):
    """Archive metadata that parses but lacks keys every archive has (``missing``)."""

    def __init__(self, message: str, missing: list[str]):
        super().__init__(message)
        self.missing = missing


@dataclass(frozen=True)
class ArchiveMeta:
    """The archive metadata object: THE schema of it.  ``create`` writes it, ``list``/``extract``/``compact``
    read it, ``check`` validates it and ``repair`` rewrites it, all through ``encode``/``decode``.

    Keys the schema does not know (written by a newer version) are kept in ``extra`` and written back as
    they were, so a repair by this version does not drop them."""

    id: bytes  # the id of the object (a MAC of the encoded bytes); not part of the encoding
    name: str
    time: str  # ISO 8601 UTC start
    end: str
    host: str
    user: str
    item_ids: list[bytes]
    nitems: int
    comment: str = ""
    paths: list[str] = field(default_factory=list)
    cmdline: list[str] = field(default_factory=list)
    stats: dict = field(default_factory=dict)
    damage: dict = field(default_factory=dict)  # set by check --repair: what it could not salvage (``DAMAGE_*``)
    repaired: str | None = None  # when check --repair last rewrote it (ISO 8601)
    version: int = ARCHIVE_VERSION
    extra: dict = field(default_factory=dict)

    REQUIRED = ("version", "name", "time", "end", "host", "user", "items", "nitems")
    _KNOWN = frozenset(REQUIRED) | {"comment", "paths", "cmdline", "stats", "repaired", META_DAMAGE}

    @property
    def lost_item_chunks(self) -> list[bytes]:
        """Item-stream chunks repair could not read: the files they listed are unknown, and so is their data."""
        return list(self.damage.get(DAMAGE_LOST_ITEM_CHUNKS) or [])

    def entry(self, archive_id: bytes) -> ArchiveEntry:
        """The ``archives/`` entry that lists this archive once its metadata is stored as ``archive_id``: what
        ``list`` shows without reading the metadata, so it is taken from it, never assembled apart."""
        return ArchiveEntry(
            id=archive_id,
            name=self.name,
            time=self.time,
            end=self.end,
            host=self.host,
            user=self.user,
            comment=self.comment,
            stats=self.stats,
            paths=tuple(self.paths),
        )

    def encode(self) -> bytes:
        record = {
            "version": self.version,
            "name": self.name,
            "time": self.time,
            "end": self.end,
            "host": self.host,
            "user": self.user,
            "comment": self.comment,
            "paths": self.paths,
            "cmdline": self.cmdline,
            "items": self.item_ids,
            "nitems": self.nitems,
            "stats": self.stats,
        }
        if self.repaired is not None:
            record["repaired"] = self.repaired
        if self.damage:
            record[META_DAMAGE] = self.damage
        record.update(self.extra)
        return msgpack.packb(record)

    @classmethod
    def decode(cls, data: bytes, archive_id: bytes) -> ArchiveMeta:
        """Raises IntegrityError when ``data`` does not parse, IncompleteArchiveMeta when keys are missing."""
        try:
            d = msgpack.unpackb(data)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise IntegrityError(str(exc)) from None
        missing = [k for k in cls.REQUIRED if not isinstance(d, dict) or k not in d]
        if missing:
            raise IncompleteArchiveMeta(f"lacks {', '.join(missing)}", missing)
        try:
            return cls(
                id=archive_id,
                version=d["version"],
                name=d["name"],
                time=d["time"],
                end=d["end"],
                host=d["host"],
                user=d["user"],
                item_ids=list(d["items"]),
                nitems=d["nitems"],
                comment=d.get("comment", ""),
                paths=d.get("paths", []),
                cmdline=d.get("cmdline", []),
                stats=d.get("stats") or {},
                damage=d.get(META_DAMAGE) or {},
                repaired=d.get("repaired"),
                extra={k: v for k, v in d.items() if k not in cls._KNOWN},
            )
        except (TypeError, ValueError) as exc:
            raise IntegrityError(str(exc)) from None

    @staticmethod
    def name_of(data: bytes) -> str:
        """The archive name in metadata that may be incomplete or damaged ("?" when there is none): for messages
        about an archive whose metadata ``decode`` refuses."""
        try:
            d = msgpack.unpackb(data)
        except (ValueError, TypeError, msgpack.UnpackException):
            return "?"
        return d.get("name", "?") if isinstance(d, dict) else "?"


def load_archive(reader: ChunkReader, entry: ArchiveEntry) -> ArchiveMeta:
    data = reader.read_chunk(entry.id)
    try:
        return ArchiveMeta.decode(data, entry.id)
    except IncompleteArchiveMeta as exc:
        raise IntegrityError(f"archive {entry.name!r}: metadata {exc}") from None
    except IntegrityError as exc:
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
        path = item[it.PATH]
        return any(path == p or path.startswith(p + b"/") for p in prefixes)

    return selected
