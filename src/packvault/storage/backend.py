"""``PackvaultBackend``: borgstore's backend contract plus the optional operations Packvault uses, declared.

An optional operation exists on this base class with a plain default that works for every backend, written
only in terms of borgstore's contract (``list``, ``load``, ``store``, ``delete``); a backend that can do
better overrides it (S3: one LIST per 1000 keys for a tree, uploads from a file, streamed ranges, a DELETE
without a HEAD; a local directory: pack spool files linked in, create-only by hard link).  Callers call the
operation and never ask whether a backend has it, as borgstore's own ``defrag`` works.  A wrapper (request
counting, ``accounting.py``) forwards every operation listed in ``OPTIONAL_OPERATIONS`` explicitly, so a new
one cannot slip past it.
"""

from __future__ import annotations

import io
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

from borgstore.backends._base import BackendBase, ItemInfo
from borgstore.backends.errors import ObjectNotFound, ReadRangeError

from ..errors import UsageError
from .payload import Payload
from .spool import SpoolFile

# Every operation this base class adds to borgstore's; a wrapper must forward each one of them.
OPTIONAL_OPERATIONS = (
    "list_tree",
    "list_tree_paths",
    "store_payload",
    "spool_directory",
    "store_spool",
    "open_range",
    "discard",
    "discard_many",
    "store_new",
    "request_stats",
    "reset_request_stats",
    "set_object_lock",
    "object_lock_policy",
    "retained_until",
    "retain_until",
    "restore_status",
    "restore",
    "bytes_by_class",
    "storage_classes",
    "set_storage_classes",
    "skip_open_check",
)
# The most names one multi-object delete carries (S3 DeleteObjects' limit): what ``discard_many`` costs is
# one request per this many names on a backend that has such a delete.
DELETE_BATCH = 1000
DEFAULT_CLASS = "default"  # the one storage class of a backend that has none

# What ``restore_status``/``restore`` say about an object's readability.
READABLE = "readable"  # a GET works now (a hot class, GLACIER_IR, or a finished restore)
COLD = "cold"  # a GET is refused until a restore is requested and finished
RESTORING = "restoring"  # a restore was requested and is not finished


class RangeReader(Protocol):
    """Sequential reads over a byte range of an object (``open_range``)."""

    def read(self, n: int) -> bytes: ...

    def close(self) -> None: ...


class PackvaultBackend(BackendBase):
    """A borgstore backend with Packvault's optional operations (module doc)."""

    # True where ``open_range`` streams (one request, one object in memory at a time, so a range may span a
    # whole pack); the default reads the range into memory, where a reader keeps ranges small.
    streams_ranges: bool = False
    # True where bulk data is written to a storage class that must be restored before it is read (S3
    # GLACIER, DEEP_ARCHIVE): readers then plan restores before they read.
    cold_data: bool = False
    # The storage class bulk data is written to, where a backend has classes (S3: storage_class=).
    data_storage_class: str | None = None

    def list_tree(self, name: str) -> Iterator[ItemInfo]:
        """Every object below ``name`` at any depth, soft-deleted ones included, named by their last path
        component; nothing for a ``name`` that does not exist.

        Default: the directories one ``list`` at a time, depth first and sorted by name within each, as
        borgstore's ``Store.list`` walks them (for Packvault's hex-named nesting that is key order too).
        """
        for _path, info in self.list_tree_paths(name):
            yield info

    def list_tree_paths(self, name: str) -> Iterator[tuple[str, ItemInfo]]:
        """``list_tree`` with each object's path below ``name`` (``data/ab/abcd...``): one listing of a tree
        whose subtrees mean different things (compact lists ``packs/``, data and metadata packs, at once).

        Default: the directories one ``list`` at a time, as ``list_tree``."""
        entries = iter(self.list(name))
        while True:
            try:
                info = next(entries)
            except StopIteration:
                return
            except ObjectNotFound:  # raised by the first step of a listing of a missing directory
                return
            if info.directory:
                for path, inner in self.list_tree_paths(f"{name}/{info.name}"):
                    yield f"{info.name}/{path}", inner
            else:
                yield info.name, info

    def store_payload(self, name: str, payload: Payload) -> None:
        """``store`` for content that need not be in memory (a spooled pack); default: read it, then store."""
        self.store(name, payload.read_at(0, payload.size))

    def spool_directory(self) -> Path | None:
        """Where pack spool files must be created for ``store_spool`` to take them without a copy; None:
        anywhere (the default stores a copy)."""
        return None

    def store_spool(self, name: str, spool: SpoolFile) -> None:
        """Store a finished spool file's content as ``name``; the caller closes the spool file afterwards.

        Default: the bytes, read back into memory, stored like any value."""
        self.store(name, spool.read_all())

    def open_range(self, name: str, offset: int, size: int) -> RangeReader:
        """Bytes [offset, offset + size) of ``name``, read in pieces; ``ReadRangeError`` if it ends early.

        Default: one ``load`` of the whole range (see ``streams_ranges``)."""
        data = self.load(name, offset=offset, size=size)
        if len(data) != size:
            raise ReadRangeError(f"{name} ends before byte {offset + size}")
        return io.BytesIO(data)

    def discard(self, name: str) -> bool:
        """Delete ``name`` for a caller that doesn't need to know whether it still existed; True if it was
        there or may have been (a backend that deletes without asking first cannot tell).

        Default: ``delete``, with a missing object not an error."""
        try:
            self.delete(name)
        except ObjectNotFound:
            return False
        return True

    def discard_many(self, names: Sequence[str]) -> None:
        """Delete every one of ``names``, a name already gone being no error, for a caller that proved them
        all deletable (compact: unreferenced packs, replaced index fragments, purged archive entries).  A
        name that cannot be deleted raises exactly what ``discard`` of it raises; names after it in the
        sequence may or may not be deleted then.

        Default: one ``discard`` per name.  S3 sends one DeleteObjects per ``DELETE_BATCH`` names."""
        for name in names:
            self.discard(name)

    def store_new(self, name: str, value: bytes) -> bool:
        """Store ``name`` only if nothing is there yet; False if something was there first.  A backend that
        compares may count the same bytes already there as created (a retry of this very write): S3 and this
        default do, the local directory's hard link cannot tell.

        Default: look, then store.  Right for one writer; two racing writers may both see nothing, which is
        why the local and the S3 backend override it with an atomic create."""
        try:
            existing = self.load(name)
        except ObjectNotFound:
            self.store(name, value)
            return True
        return existing == bytes(value)

    def set_object_lock(self, mode: str, retention_seconds: int) -> None:
        """Give every object written from now on (but lock records) this S3 Object Lock retention.

        Default: refused, since only S3 has Object Lock; a repository that records a lock must never be
        written without it."""
        raise UsageError(
            "S3 Object Lock needs an s3:// repository", hint="use a bucket created with Object Lock enabled"
        )

    def object_lock_policy(self) -> tuple[str | None, int]:
        """The Object Lock mode and retention (seconds) writes get; default: none."""
        return None, 0

    def retained_until(self, name: str) -> datetime | None:
        """The Object Lock retain-until date of ``name``; None when it has none.  Default: none."""
        return None

    def retain_until(self, name: str, until: datetime) -> None:
        """Extend the Object Lock retention of ``name`` to ``until``.  Default: refused (only S3 has it)."""
        raise UsageError("S3 Object Lock needs an s3:// repository")

    def storage_classes(self) -> tuple[str | None, str | None]:
        """(data, hot): the storage classes bulk data and everything else (but lock records) are written to,
        for a repository to record at init.  Default: (None, None), a backend without classes."""
        return None, None

    def set_storage_classes(self, data: str | None, hot: str | None) -> None:
        """Write with the storage classes a repository recorded (``storage_classes`` at its init).

        Default: nothing to do, a backend without classes never records any."""
        return None

    def restore_status(self, name: str) -> tuple[str, int]:
        """(``READABLE``/``COLD``/``RESTORING``, size in bytes) of the object ``name``.

        Default: every object of a backend without cold storage classes is readable (one ``info``)."""
        return READABLE, self.info(name).size

    def restore(self, name: str, *, days: int, tier: str) -> str:
        """Ask for a temporary readable copy of a cold object for ``days`` days, fetched at ``tier``
        (``bulk``, ``standard``, ``expedited``); returns the state afterwards (``RESTORING`` or ``READABLE``).

        Default: nothing to restore, the object is readable."""
        return READABLE

    def bytes_by_class(self, name: str) -> dict[str, int]:
        """Bytes of the objects below ``name`` (any depth, soft-deleted ones too) by storage class.

        Default: one class, ``DEFAULT_CLASS``, summed over ``list_tree``."""
        total = sum(info.size for info in self.list_tree(name))
        return {DEFAULT_CLASS: total} if total else {}

    def skip_open_check(self) -> None:
        """Let the next ``open`` skip proving that the store exists, for a caller whose first request proves
        it anyway: ``Repository.open`` reads the config first, and a missing bucket fails that read with the
        error the check would have raised, so the check is a round trip that answers nothing new.

        Default: nothing to skip (a local directory's check costs no request)."""
        return None

    def request_stats(self) -> dict[str, int]:
        """Requests made so far by kind (``accounting.empty_stats`` keys); default: nothing counted."""
        return {}

    def reset_request_stats(self) -> None:
        """Start counting from zero; default: nothing to reset."""
