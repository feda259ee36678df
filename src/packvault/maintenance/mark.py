"""Compact's mark phase: which chunks are live, proven against the store before anything is deleted.

``prove_index_matches_packs`` refuses an index that names a pack the listing does not hold (a lost pack,
old fragments written back); ``mark`` sets the USED flag on every chunk a live archive references, and
refuses an archive it cannot read completely (damaged, or recorded by repair as incomplete): the data only
such an archive references cannot be told from garbage.  See ``compact.py`` for the whole run.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..archive import items as it
from ..archive.archive import iter_archive_items, load_archive
from ..errors import IntegrityError, ObjectMissing
from ..repository.catalogue import ArchiveEntry
from ..repository.index import FLAG_USED, ChunkIndex
from ..repository.reader import ChunkReader
from ..repository.repository import Repository

REPAIR_HINT = "run 'packvault check --repair' first"


def prove_index_matches_packs(index: ChunkIndex, listed: dict[int, list]) -> None:
    """Refuse (ObjectMissing) if any index entry names a pack that the listing does not hold."""
    present = {info.name for infos in listed.values() for info in infos}
    missing = [no for no, name in enumerate(index.packs.names) if name not in present]
    if not missing:
        return
    missing_set = set(missing)
    per_pack: dict[int, int] = {}
    for _, entry in index.entries():
        if entry.pack in missing_set:
            per_pack[entry.pack] = per_pack.get(entry.pack, 0) + 1
    if not per_pack:
        return  # pack numbers without entries (a table carried over from a cache): nothing points there
    first = min(per_pack, key=lambda no: index.packs.names[no])
    raise ObjectMissing(
        f"the index points into {len(per_pack)} pack(s) that are not in the repository (e.g. pack "
        f"{index.packs.names[first]}, {per_pack[first]} chunk(s)); compact changed nothing",
        hint=REPAIR_HINT,
    )


def mark(
    repo: Repository, reader: ChunkReader, index: ChunkIndex, entries: Sequence[ArchiveEntry] | None = None
) -> set[bytes]:
    """Set USED on every id an archive references; returns the ids of the archives walked (every live one:
    the listing is strict, so compact's purge needs no second listing to know them).

    ``entries``: the live archives, when the caller listed them (strictly) under this exclusive lock already
    (``prune --compact``, whose pruned archives are not among them); None: listed here.

    Raises (before anything is changed) when an archive cannot be read completely."""
    table = index.table
    for chunk_id, entry in index.entries():
        if entry.flags & FLAG_USED:
            table[chunk_id] = entry._replace(flags=entry.flags & ~FLAG_USED)

    def use(chunk_id: bytes, what: str) -> None:
        entry = table.get(chunk_id)
        if entry is None:
            raise ObjectMissing(
                f"{what} references chunk {chunk_id.hex()} that is not in the index; nothing was deleted",
                hint=REPAIR_HINT,
            )
        if not entry.flags & FLAG_USED:
            table[chunk_id] = entry._replace(flags=entry.flags | FLAG_USED)

    def keep_if_present(chunk_id: bytes) -> None:
        entry = table.get(chunk_id)
        if entry is not None and not entry.flags & FLAG_USED:
            table[chunk_id] = entry._replace(flags=entry.flags | FLAG_USED)

    if entries is None:
        entries = repo.archive_entries(strict=True)
    for archive in entries:
        label = f"archive {archive.name!r}"
        use(archive.id, label)
        try:
            meta = load_archive(reader, archive)
            if meta.lost_item_chunks:
                raise IntegrityError(
                    f"{label} is damaged: repair could not read {len(meta.lost_item_chunks)} part(s) of its file "
                    "list, so the data only those files reference cannot be told from garbage; nothing was deleted",
                    hint=f"salvage what you need, then 'packvault delete REPO::{archive.name}' and compact again",
                )
            for chunk_id in meta.item_ids:
                use(chunk_id, label)
            for item in iter_archive_items(reader, meta):
                for chunk_id, _ in item.get(it.CHUNKS) or ():
                    use(chunk_id, label)
                for chunk_id, _ in item.get(it.ORIGINAL_CHUNKS) or ():
                    keep_if_present(chunk_id)  # the original chunks of a repaired file, for healing
        except ObjectMissing as exc:
            raise ObjectMissing(
                f"{label} cannot be read completely ({exc}); nothing was deleted", hint=REPAIR_HINT
            ) from None
        except IntegrityError as exc:
            if exc.hint:
                raise
            raise IntegrityError(
                f"{label} is damaged ({exc}); nothing was deleted",
                hint=f"run 'packvault check --repair'; if it stays damaged, 'packvault delete REPO::{archive.name}'",
            ) from None
    return {archive.id for archive in entries}


