"""The archive catalogue: the ``archives/`` entries (``ArchiveEntry``), claims on archive names, soft deletion
and undeletion, tombstones and the purge of soft-deleted entries.

A part of ``Repository`` (``repository.py``), whose store, key, cache and lock it uses.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import msgpack
from borgstore.backends.errors import ObjectNotFound

from ..errors import ArchiveExists, ArchiveNotFound, ConflictError, IntegrityError
from ..storage import layout
from ..storage.store import Store, backend_of, store_new
from .objects import TYPE_ARCHIVE_ENTRY, ObjectCodec

if TYPE_CHECKING:
    from .locks import LockManager

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArchiveEntry:
    """The small record in ``archives/``: enough to list archives without reading their metadata."""

    id: bytes  # id of the archive metadata object (in a metadata pack)
    name: str
    time: str  # ISO 8601 UTC start time
    end: str
    host: str
    user: str
    comment: str = ""
    stats: dict | None = None
    paths: tuple[str, ...] | None = None
    """The paths given to ``create`` (prune's default grouping); None in entries written before they were
    recorded here, whose paths are only in the archive metadata."""
    tags: tuple[str, ...] = ()
    """Labels for selection (``list``/``prune``/``find --tag``), sorted and unique; entries written before
    tags existed have none."""

    @property
    def hex(self) -> str:
        return self.id.hex()

    def encode(self) -> bytes:
        record = {
            "id": self.id,
            "name": self.name,
            "time": self.time,
            "end": self.end,
            "host": self.host,
            "user": self.user,
            "comment": self.comment,
            "stats": self.stats or {},
        }
        if self.paths is not None:
            record["paths"] = list(self.paths)
        if self.tags:
            record["tags"] = list(self.tags)
        return msgpack.packb(record)

    @classmethod
    def decode(cls, data: bytes) -> ArchiveEntry:
        d = msgpack.unpackb(data)
        return cls(
            id=d["id"],
            name=d["name"],
            time=d["time"],
            end=d["end"],
            host=d["host"],
            user=d["user"],
            comment=d.get("comment", ""),
            stats=d.get("stats") or {},
            paths=tuple(d["paths"]) if "paths" in d else None,
            tags=tuple(d.get("tags", ())),
        )

    def renamed(self, name: str) -> ArchiveEntry:
        return replace(self, name=name)

    def retagged(self, tags: set[str] | frozenset[str]) -> ArchiveEntry:
        return replace(self, tags=tuple(sorted(tags)))


class ArchiveCatalogue:
    store: Store
    prove_unchanged: Callable[..., None]  # ``index_store.IndexStore``
    codec: ObjectCodec | None
    lock_manager: LockManager | None
    # (store key, entry) of the last listing: deleting archives one by one then needs no listing each (a
    # LIST per archive pruned); a key gone since is found out by the move itself
    _listed_entries: tuple[tuple[str, ArchiveEntry], ...] = ()
    # the soft-deleted entries that same listing held (one LIST answers both): compact's purge, under the
    # exclusive lock it listed under, needs no second listing of archives/
    _listed_deleted: tuple = ()

    def _entries(self, *, deleted: bool, strict: bool) -> list[tuple[str, ArchiveEntry]]:
        """(store key, entry) of every archive entry.  Entries are immutable, so their plaintext is cached.

        A damaged entry is skipped with a warning naming it (one bad object must not stop every command),
        unless ``strict``: compact must not go on without knowing every archive."""
        cache = self.cache
        entries = []
        if deleted:
            listed = list(self.list_namespace(layout.ARCHIVES, deleted=True))
        else:
            listed, soft_deleted = self.list_namespace_split(layout.ARCHIVES)
        cached = {info.name: cache.read(f"archive-{info.name}") for info in listed}
        # the entries this client has not seen yet are read ahead of their turn (soft-deleted ones are rare)
        unseen = [] if deleted else [key for key, text in cached.items() if text is None]
        with contextlib.closing(self.load_raw_ahead(layout.ARCHIVES, unseen)) as loads:
            for info in listed:
                plaintext = cached[info.name]
                try:
                    if plaintext is None:
                        if deleted:
                            plaintext = self.get_sealed(layout.ARCHIVES, info.name, deleted=True)
                        else:
                            plaintext = self.codec.open(next(loads)[1].result())[2]
                        cache.write(f"archive-{info.name}", plaintext)
                    entry = ArchiveEntry.decode(plaintext)
                except (IntegrityError, ValueError, KeyError, TypeError, msgpack.UnpackException) as exc:
                    if deleted:
                        continue  # a damaged entry that repair soft-deleted: nothing to undelete
                    if strict:
                        raise IntegrityError(
                            f"archive entry {info.name} is damaged ({exc})", hint="run 'packvault check --repair' first"
                        ) from None
                    log.warning(
                        "archive entry %s is damaged (%s); skipped: run 'packvault check --repair'", info.name, exc
                    )
                    continue
                entries.append((info.name, entry))
        if not deleted:
            self._listed_entries, self._listed_deleted = tuple(entries), tuple(soft_deleted)
        return entries

    def archive_entries(self, *, deleted: bool = False, strict: bool = False) -> list[ArchiveEntry]:
        """All archive entries, oldest first (damaged ones skipped with a warning unless ``strict``)."""
        entries = [entry for _, entry in self._entries(deleted=deleted, strict=strict)]
        entries.sort(key=lambda entry: (entry.time, entry.name))
        return entries

    def _key_of(self, entry: ArchiveEntry, *, deleted: bool = False) -> str:
        """The store key of exactly this entry.  Not by archive id alone: a rename or retag interrupted
        between its two writes leaves two entries of one archive, and deleting one must not hit the other."""
        keys = [] if deleted else [key for key, e in self._listed_entries if e == entry]
        keys = keys or [key for key, e in self._entries(deleted=deleted, strict=False) if e == entry]
        if not keys:
            raise ArchiveNotFound(f"archive {entry.name!r} not found")
        return keys[0]

    def entry_names(self, *, deleted: bool = False) -> dict[bytes, str]:
        """archive id -> store key of its entry."""
        return {entry.id: key for key, entry in self._entries(deleted=deleted, strict=False)}

    def archive_entries_loading_index(self) -> list[ArchiveEntry]:
        """``archive_entries()``, listed while the index loads: most commands need both, and each is a round
        trip to a distant bucket (the listing goes to the backend directly, beside the index's reads)."""
        with ThreadPoolExecutor(1, thread_name_prefix="pv-open") as pool:
            entries = pool.submit(self.archive_entries)
            self.index  # noqa: B018  (loads it)
            return entries.result()

    def find_archive(self, name: str, *, load_index: bool = False) -> ArchiveEntry:
        """The newest archive named ``name``; with ``load_index`` the index is loaded meanwhile."""
        matches = [e for e in (self.archive_entries_loading_index() if load_index else self.archive_entries())
                   if e.name == name]
        if not matches:
            raise ArchiveNotFound(f"archive {name!r} not found")
        return matches[-1]

    def put_archive_entry(self, entry: ArchiveEntry) -> str:
        """Store the entry, and keep its plaintext in the local cache: the next command that lists archives
        on this machine (a scheduled re-run) need not GET what it wrote itself."""
        plaintext = entry.encode()
        name = self.put_sealed(layout.ARCHIVES, TYPE_ARCHIVE_ENTRY, plaintext)
        with contextlib.suppress(OSError):  # the entry is stored: a cache that can't be written costs a GET
            self.cache.write(f"archive-{name}", plaintext)
        return name

    def commit_archive(self, entry: ArchiveEntry, *, beside: Sequence[Callable[[], object]] = ()) -> str:
        """Make the archive exist: prove this writer still may (``prove_unchanged``), claim its name, and
        write its entry, last.  The claim references no data, so it goes out while the proofs are asked:
        at 20-50 ms per request a commit waits one round trip less.  A claim whose proof then fails is left
        like one whose backup died between claim and entry, and the next claim of the name abandons it.
        ``beside``: more writes the entry must follow that may go out with them (the writer's last index
        fragment, already proven, ``RepositoryWriter.commit_archive``)."""
        self.prove_unchanged(alongside=(lambda: self.claim_archive_name(entry.name, entry.id), *beside))
        return self.put_archive_entry(entry)

    def claim_archive_name(self, name: str, archive_id: bytes) -> None:
        """Claim ``name`` for ``archive_id`` with a create-only write, right before its entry is written.

        Two backups of the same name that started at the same time both passed the check for an existing
        archive; only one may commit.  Each name has a series of claims ``names/<MAC of name>-<n>``, each
        created only if absent (S3 ``If-None-Match``, a hard link locally), so of two writers racing for the
        next free claim exactly one gets it; the other raises ArchiveExists and commits nothing.  A claim is
        never overwritten or deleted by a writer (a create-only writer credential can do neither): when the
        last claim's archive is not there, the claim is abandoned if that archive was deleted, or if no lock
        of the session that claimed it is held any more (its backup died between claim and entry), and the
        name is claimed again at ``n + 1``.
        """
        base = self.chunk_id(b"packvault archive name v1\0" + name.encode("utf-8", "surrogateescape")).hex()
        session = self.lock_manager.session if self.lock_manager is not None else None
        claim = self.codec.seal(archive_id, TYPE_ARCHIVE_ENTRY, msgpack.packb({"session": session}), compress=False)
        if store_new(self.store, layout.name(layout.NAMES, f"{base}-0"), claim):
            return  # a name never claimed (the usual case): one request, no look for earlier claims first
        generation, last = 0, None
        while True:
            try:
                last = self.store.load(layout.name(layout.NAMES, f"{base}-{generation}"))
            except ObjectNotFound:
                break
            generation += 1
        if last is not None:
            try:
                header, _, plaintext = self.codec.open(last)
                claimed, session = header.object_id, msgpack.unpackb(plaintext).get("session")
            except (IntegrityError, ValueError, TypeError, AttributeError, msgpack.UnpackException):
                claimed, session = None, None  # a damaged claim protects nothing: take the next one
            # The locks are listed before the archives: a backup writes its entry before it unlocks, so a
            # claim whose lock is gone here has its entry in the listings below, or its backup died.  Listed
            # the other way round, a backup committing in between looks dead and the name is taken twice.
            held = {info.session for info in self.new_lock_manager().list_locks() if not info.stale}
            deleted = self.archive_entries(deleted=True)
            if claimed == archive_id and not any(e.id == claimed and e.name == name for e in deleted):
                return  # our own claim: this is a retry (not a rename back to a name this archive once had)
            if claimed in {entry.id for entry in self.archive_entries() if entry.name == name}:
                raise ArchiveExists(f"an archive named {name!r} already exists; nothing was committed")
            gone = claimed is None or claimed in self.tombstones() or any(e.id == claimed for e in deleted)
            if not gone and session in held:
                raise ArchiveExists(
                    f"another backup is committing an archive named {name!r} right now; nothing was committed",
                    hint="run it again under another name",
                )
        if not store_new(self.store, layout.name(layout.NAMES, f"{base}-{generation}"), claim):
            raise ArchiveExists(
                f"another backup committed an archive named {name!r} at the same moment; nothing was committed",
                hint="run it again under another name",
            )

    def _cached_entry_id(self, key: str) -> bytes | None:
        """The archive id of the entry stored as ``key``, from the local cache (None: not there, or not
        readable: ask the store)."""
        plaintext = self.cache.read(f"archive-{key}")
        if plaintext is None:
            return None
        try:
            return ArchiveEntry.decode(plaintext).id
        except (ValueError, KeyError, TypeError, msgpack.UnpackException):
            return None

    def soft_delete_archive(self, entry: ArchiveEntry) -> None:
        try:
            self.soft_delete_entry(self._key_of(entry))
        except ObjectNotFound:  # deleted by another command since it was listed
            raise ArchiveNotFound(f"archive {entry.name!r} not found") from None

    def replace_archive_entry(self, old: ArchiveEntry, new: ArchiveEntry) -> None:
        """Replace the entry ``old`` by ``new`` (same archive, another name or other tags).

        Entries are immutable sealed objects, so this writes ``new`` and then soft-deletes ``old``: a crash
        in between leaves both (the archive listed under both names, each deletable on its own), never
        neither.  A new name is claimed first like a backup's (``claim_archive_name``), so a backup or
        another rename committing the same name at the same time cannot also win.
        """
        old_key = self._key_of(old)
        if new.name != old.name:
            if any(e.name == new.name for e in self.archive_entries()):
                raise ArchiveExists(f"an archive named {new.name!r} already exists; nothing was changed")
            self.claim_archive_name(new.name, new.id)
        self.put_archive_entry(new)
        try:
            self.soft_delete_entry(old_key)
        except ObjectNotFound:
            raise ConflictError(
                f"archive {old.name!r} was changed by another command at the same moment; both changes are kept "
                "as two entries of the archive",
                hint="see 'packvault list' and delete the entry you do not want",
            ) from None

    def soft_delete_entry(self, key: str) -> None:
        """Soft-delete the ``archives/`` entry stored as ``key`` (reversible until compact): also an entry
        that does not open, which repair retires by its store key."""
        self.store.move(layout.name(layout.ARCHIVES, key), delete=True)

    def undelete_archive(self, entry: ArchiveEntry) -> None:
        key = self._key_of(entry, deleted=True)
        self.store.move(f"{layout.ARCHIVES}/{key}", undelete=True)

    def tombstones(self) -> set[bytes]:
        """Ids of archives that compact purged for good."""
        return {bytes.fromhex(info.name) for info in self.list_namespace(layout.TOMBSTONES)}

    def purge_deleted_archives(self, live_ids: set[bytes] | None = None, pruned: Sequence[ArchiveEntry] = ()) -> int:
        """Remove soft-deleted entries for good (compact), and the entries ``pruned`` (``prune --compact``: listed
        under the same exclusive lock, purged without being soft-deleted first); returns how many.

        A purged archive's metadata object can outlive its entry (in a pack compact keeps, or until a crashed
        compact finishes), and would then look like an archive whose entry was lost.  A tombstone (its id,
        sealed, no content) written before the entry is deleted tells ``check`` and ``repair`` it was deleted
        on purpose and must not come back.  ``live_ids``: the ids of every live archive, when the caller
        just listed them strictly under the exclusive lock (compact's mark): the soft-deleted entries that
        listing held are then the ones purged (one LIST of archives/ answers both).
        """
        live = live_ids if live_ids is not None else {entry.id for entry in self.archive_entries(strict=True)}
        purged = []
        if live_ids is not None:
            soft_deleted = list(self._listed_deleted)
        else:
            soft_deleted = list(self.list_namespace(layout.ARCHIVES, deleted=True))
        for info in soft_deleted:
            archive_id = self._cached_entry_id(info.name)  # deleted from this machine: still in the cache
            try:
                if archive_id is None:
                    archive_id = ArchiveEntry.decode(self.get_sealed(layout.ARCHIVES, info.name, deleted=True)).id
            except IntegrityError:
                archive_id = None  # a damaged entry: nothing it could resurrect
            if archive_id is not None and archive_id not in live:  # not the old entry of a renamed archive
                sealed = self.codec.seal(archive_id, TYPE_ARCHIVE_ENTRY, b"", compress=False)
                self.store.store(f"{layout.TOMBSTONES}/{archive_id.hex()}", sealed)
            purged.append(self.store.find(f"{layout.ARCHIVES}/{info.name}", deleted=True))
            self.cache.remove(f"archive-{info.name}")
        for entry in pruned:
            key = self._key_of(entry)
            if entry.id not in live:  # not an archive that lives on under another entry
                sealed = self.codec.seal(entry.id, TYPE_ARCHIVE_ENTRY, b"", compress=False)
                self.store.store(f"{layout.TOMBSTONES}/{entry.id.hex()}", sealed)
            purged.append(self.store.find(f"{layout.ARCHIVES}/{key}"))
            self.cache.remove(f"archive-{key}")
        # every tombstone is written before any entry goes; listed under the exclusive lock, so deleted without
        # asking first, in as few requests as the store can
        backend_of(self.store).discard_many(purged)
        return len(purged)
