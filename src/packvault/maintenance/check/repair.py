"""``check --repair``: act on what the checker found, in the DESIGN's write order, never deleting data.

The caller holds the exclusive lock.  Steps, and why in this order:

1. **Index.**  If the index disagrees with the packs (entries pointing at missing or damaged objects,
   intact objects not indexed, lost or damaged fragments), it is rebuilt from what the pack scan proved
   intact: entries whose object is bad are dropped, or repointed at another intact copy of the same chunk;
   unindexed intact objects are added.  The epoch is bumped first (every client's cached index becomes
   invalid before anything changes), the new fragments are written, and only then are the old ones
   deleted, so a crash leaves either index, both of which ``check`` accepts.  Packs are never deleted or
   rewritten: a damaged object stays where it is, the index just stops pointing at it (``compact``
   reclaims the space later, copying the intact objects forward).
2. **Archive entries.**  Archive metadata objects that no entry (live or soft-deleted) refers to get a new
   ``archives/`` entry.  Entries that do not decrypt are soft-deleted (reversible with ``undelete`` until
   ``compact``), after the re-created entries are stored.  Entries whose metadata object is lost are kept:
   ``compact`` refuses to run while they exist, so the data they may reference is not collected before
   the user gives them up with ``delete``.
3. **Damaged files.**  An archive with files whose chunks are lost (or whose item-stream chunks are lost)
   gets a new item stream: each lost chunk becomes a chunk of zeros of the same size, the item keeps its
   original chunk list under ``ch`` and an error note under ``e``.  When a later backup brings a lost chunk
   back, the next repair finds every ``ch`` chunk intact and restores the original list.  The new item
   stream is stored, then the new archive metadata, then the new entry; the old entry is soft-deleted
   only after that.  Everything else in the archive is kept as it was.  What could not be salvaged is
   recorded in the new metadata (``damaged``: the unreadable item-stream chunks, the number of patched
   files), so ``check`` keeps reporting the archive, ``extract`` warns, and ``compact`` keeps all data
   while the file list of a live archive is incomplete.
"""

from __future__ import annotations

import dataclasses
import hmac
from datetime import UTC, datetime

from ...archive import items as it
from ...archive.archive import (
    DAMAGE_FILES,
    DAMAGE_LOST_ITEM_CHUNKS,
    DAMAGE_REPAIRED,
    ArchiveMeta,
    IncompleteArchiveMeta,
)
from ...archive.items import iter_items_robust
from ...errors import IntegrityError, PackvaultError
from ...repository.config import CONFIG_COPY_NAME, CONFIG_MAC_NAME, CONFIG_NAME, RepoConfig
from ...repository.index import ChunkIndex, Location, encode_index_fragments
from ...repository.objects import TYPE_ARCHIVE, iter_headers
from ...repository.repository import ArchiveEntry, content_name, defrag_pack_name
from ...repository.writer import RepositoryWriter
from .checker import Checker
from .report import FLAG_BAD


def repair(checker: Checker, *, dry_run: bool) -> None:
    if checker.config_rewrite and checker.has_key:
        restore_config(checker, dry_run=dry_run)
    if checker.has_key:
        rename_misnamed_packs(checker, dry_run=dry_run)
    if checker.index_changed:
        rebuild_index(checker, dry_run=dry_run)
    if checker.opts.repository_only or not checker.has_key:
        return
    recreate_entries(checker, dry_run=dry_run)
    retire_entries(checker, dry_run=dry_run)
    rewrite_archives(checker, dry_run=dry_run)


# --- 0. the config ------------------------------------------------------------------------------------------------


def restore_config(checker: Checker, *, dry_run: bool) -> None:
    """Rewrite the config, its copy and its MAC from a version the key vouches for.

    With a MAC, only a stored version that authenticates is used (a forged one is never blessed); an older
    repository without a MAC has only its checksum-verified config, which is then signed as it is."""
    repo = checker.repo
    objects = repo.config_objects()
    mac = objects[CONFIG_MAC_NAME]
    chosen = None
    for name in (CONFIG_NAME, CONFIG_COPY_NAME):
        raw = objects[name]
        if raw is None:
            continue
        try:
            config = RepoConfig.decode(raw)
        except IntegrityError:
            continue
        if mac is None or hmac.compare_digest(mac, repo.key.config_mac(raw)):
            chosen = config
            break
    if chosen is None:
        checker.report.notes.append(
            "no stored version of the repository config authenticates under the key: it was not rewritten"
        )
        return
    checker.report.repairs.append("rewrite the repository config, its copy and its MAC from the authentic version")
    if not dry_run:
        repo.check_lock()
        repo.write_config(chosen, repo.key)


# --- 0b. packs whose bytes do not match their name ------------------------------------------------------------------


def rename_misnamed_packs(checker: Checker, *, dry_run: bool) -> None:
    """Give the intact objects of a misnamed pack a correctly named copy and point the index there.

    A pack's name is a hash of its bytes (or of the ids it holds); bytes under the wrong name (two packs
    swapped, a pack written back under another name) stay a ``pack-name`` problem for as long as the index
    reads them through that name.  The copy gets its content name when that is free, else its copy-forward
    name; the misnamed pack itself is left alone (repair deletes nothing) and compact removes it once
    nothing points into it."""
    repo = checker.repo
    present = set(checker.packs)
    for state in sorted(checker.packs.values(), key=lambda p: p.name):
        used = state.indexed or state.unindexed or state.name in checker.repoint_targets
        if not state.misnamed or state.damaged or not used:
            continue
        buf = repo.load_pack_range(state.kind, state.name)
        new = content_name(buf)
        if new in present:
            new = defrag_pack_name((h.object_id, h.total_size) for _, h in iter_headers(buf))
        checker.report.repairs.append(f"copy misnamed pack {state.name} to {new} and point the index there")
        if dry_run:
            continue
        if new not in present:
            repo.check_lock()
            repo.store_pack_as(state.kind, new, buf)
            present.add(new)
        for table in (checker.index, checker.alt):
            old_no = table.packs.lookup(state.name)
            if old_no is None:
                continue
            new_no = table.packs.number(new, state.kind)
            for chunk_id, entry in table.entries():
                if entry.pack == old_no:
                    table.table[chunk_id] = entry._replace(pack=new_no)
        checker.index_changed = True


# --- 1. the index -----------------------------------------------------------------------------------------------


def rebuild_index(checker: Checker, *, dry_run: bool) -> None:
    repo = checker.repo
    index = checker.index
    bad = bytearray()  # packed ids: the table cannot shrink while it is iterated
    repointed = 0
    for chunk_id, entry in index.entries():
        if entry.flags & FLAG_BAD:
            bad += chunk_id
            if chunk_id in checker.alt:
                repointed += 1
    for pos in range(0, len(bad), 32):
        del index.table[bytes(bad[pos : pos + 32])]
    dropped = len(bad) // 32 - repointed
    added = 0
    alt_names, alt_kinds = checker.alt.packs.names, checker.alt.packs.kinds
    for chunk_id, entry in checker.alt.entries():
        if chunk_id not in index:
            index.add(chunk_id, alt_names[entry.pack], alt_kinds[entry.pack], entry.offset, entry.size)
            added += 1
    added -= repointed
    for chunk_id, entry in index.entries():
        if entry.flags:
            index.table[chunk_id] = entry._replace(flags=0)
    checker.alt = ChunkIndex()  # everything intact is in the index now
    checker.report.repairs.append(
        f"rebuild the index from the packs: {dropped} entr(ies) dropped (no intact copy), {repointed} repointed "
        f"to another intact copy, {added} intact object(s) added; {len(index)} entries in "
        f"new fragments, then {len(checker.fragments)} old fragment(s) deleted"
    )
    if dry_run:
        return
    repo.epoch()  # read first: on S3 the epoch is replaced by compare-and-swap against the ETag read here
    repo.bump_epoch()  # before any change: no client may trust its cached index from here on
    repo.invalidate_index_cache()
    new = [repo.write_fragment(fragment) for fragment in encode_index_fragments(index)]
    for name in checker.fragments:
        if name not in new:
            repo.check_lock()
            repo.discard_fragment(name)
    checker.fragments = new
    repo.save_index_cache(index, repo.epoch(), sorted(new))
    repo.reset_index(index)


# --- 2. archive entries ---------------------------------------------------------------------------------------------


def recreate_entries(checker: Checker, *, dry_run: bool) -> None:
    repo = checker.repo
    names = {entry.name for _, entry in checker.entries}
    for archive_id in checker.orphans:
        loc, _ = checker.locate(archive_id)
        try:
            if loc is None:
                raise PackvaultError("its object is gone")
            data = checker.read_object(archive_id, loc)
            try:
                meta = ArchiveMeta.decode(data, archive_id)
            except IncompleteArchiveMeta:
                raise PackvaultError("its metadata is incomplete") from None
        except PackvaultError as exc:
            checker.report.notes.append(f"archive metadata {archive_id.hex()} cannot be re-created: {exc}")
            continue
        name = meta.name
        if name in names:
            name = f"{name}.recovered-{archive_id.hex()[:8]}"
        names.add(name)
        entry = ArchiveEntry(
            id=archive_id,
            name=name,
            time=meta.time,
            end=meta.end,
            host=meta.host,
            user=meta.user,
            comment=meta.comment,
            stats=meta.stats,
        )
        checker.report.repairs.append(f"re-create the archives/ entry of archive {name!r} ({archive_id.hex()})")
        key = f"(new entry for {archive_id.hex()})"
        if not dry_run:
            repo.check_lock()
            key = repo.put_archive_entry(entry)
        checker.entries.append((key, entry))
        checker.metas[key] = meta
        checker.findings[key] = checker.walk_archive(name, meta)


def retire_entries(checker: Checker, *, dry_run: bool) -> None:
    """Soft-delete entries that do not open (their archive, if its metadata survived, got a new entry).

    An entry whose archive metadata is lost is kept: which data that archive references is unknown, so
    retiring it would let compact delete data that may be all that is left of it.  It stays a problem in
    ``check`` and stops ``compact`` until the user deletes it."""
    repo = checker.repo
    doomed = [(key, "it does not decrypt") for key in checker.damaged_entries]
    for key, entry in checker.entries:
        if key not in checker.metas:
            checker.report.notes.append(
                f"archive {entry.name!r}: its metadata is lost; the entry is kept so compact cannot delete data "
                f"it may reference; delete it ('packvault delete REPO::{entry.name}') when you give it up"
            )
    for key, why in doomed:
        checker.report.repairs.append(f"soft-delete archives/ entry {key}: {why}")
        if not dry_run:
            repo.check_lock()
            repo.soft_delete_entry(key)
    retired = {key for key, _ in doomed}
    checker.entries = [(key, entry) for key, entry in checker.entries if key not in retired]


# --- 3. damaged files ------------------------------------------------------------------------------------------------


def rewrite_archives(checker: Checker, *, dry_run: bool) -> None:
    todo = [
        (key, entry)
        for key, entry in checker.entries
        if key in checker.findings and checker.findings[key].needs_rewrite
    ]
    if not todo:
        return
    repo = checker.repo
    # Resolve item-chunk locations before the writer starts: its upload threads add to the index table,
    # which must not be read concurrently.
    plans = []
    for key, entry in todo:
        meta = checker.metas[key]
        locations = [(item_id, checker.locate(item_id)[0]) for item_id in meta.item_ids]
        plans.append((key, entry, meta, locations))
    writer = None
    if not dry_run:
        for chunk_id, entry in checker.index.entries():
            if entry.flags:
                checker.index.table[chunk_id] = entry._replace(flags=0)
        repo.reset_index(checker.index)
        writer = RepositoryWriter(repo)
    try:
        for key, entry, meta, locations in plans:
            _rewrite_one(checker, key, entry, meta, locations, writer)
    finally:
        if writer is not None:
            writer.close()


def _rewrite_one(
    checker: Checker,
    key: str,
    entry: ArchiveEntry,
    meta: ArchiveMeta,
    locations: list[tuple[bytes, Location | None]],
    writer: RepositoryWriter | None,
) -> None:
    repo = checker.repo
    findings = checker.findings[key]
    zero_ids: dict[int, bytes] = {}

    def put(chunk_id: bytes, data: bytes, obj_type: int | None = None) -> None:
        if writer is not None:
            if obj_type is None:
                writer.put_chunk(chunk_id, data)
            else:
                writer.put_chunk(chunk_id, data, obj_type)

    def zero_chunk(size: int) -> bytes:
        chunk_id = zero_ids.get(size)
        if chunk_id is None:
            data = bytes(size)
            chunk_id = zero_ids[size] = repo.chunk_id(data)
            put(chunk_id, data)
        return chunk_id

    def chunks():
        for item_id, loc in locations:
            if loc is None:
                yield None
                continue
            try:
                yield checker.read_object(item_id, loc)
            except PackvaultError:
                yield None

    stream = it.ItemStreamWriter(repo.chunker(), repo.chunk_id, put)
    damaged = healed = 0
    for item in iter_items_robust(chunks()):
        if item.get(it.TYPE) == it.FILE:
            path = it.path_str(item)
            if item[it.PATH] in findings.healable_paths:
                item[it.CHUNKS] = item.pop(it.ORIGINAL_CHUNKS)
                item.pop(it.ERROR, None)
                healed += 1
                checker.report.repairs.append(f"archive {entry.name!r}: file {path!r} healed, its chunks are back")
            else:
                chunk_list = item.get(it.CHUNKS) or []
                lost = sum(1 for cid, _ in chunk_list if cid in checker.lost_ids)
                if lost:
                    item.setdefault(it.ORIGINAL_CHUNKS, [list(pair) for pair in chunk_list])
                    item[it.CHUNKS] = [
                        [zero_chunk(size), size] if cid in checker.lost_ids else [cid, size] for cid, size in chunk_list
                    ]
                    item[it.ERROR] = f"damaged: {lost} chunk(s) lost, replaced by zeros (check --repair)"
                    damaged += 1
                    checker.report.repairs.append(
                        f"archive {entry.name!r}: file {path!r} marked damaged, {lost} lost chunk(s) replaced by zeros"
                    )
        stream.add(item)
    item_ids = stream.finish()
    repaired = datetime.now(UTC).isoformat()
    damage = dict(meta.damage)
    lost_items = list(damage.get(DAMAGE_LOST_ITEM_CHUNKS) or []) + findings.lost_item_ids
    if lost_items:
        damage[DAMAGE_LOST_ITEM_CHUNKS] = lost_items
    if damaged:
        damage[DAMAGE_FILES] = damage.get(DAMAGE_FILES, 0) + damaged
    if damage:
        damage[DAMAGE_REPAIRED] = repaired
    new_meta = dataclasses.replace(meta, item_ids=item_ids, nitems=stream.count, repaired=repaired, damage=damage)
    plaintext = new_meta.encode()
    archive_id = repo.chunk_id(plaintext)
    checker.report.repairs.append(
        f"archive {entry.name!r}: new item stream ({stream.count} items, {damaged} damaged, {healed} healed, "
        f"{findings.lost_item_chunks} lost item chunk(s) skipped), new metadata {archive_id.hex()}, new entry; "
        f"old entry {key} soft-deleted after"
    )
    if writer is None:
        return
    writer.flush()  # zero chunks and item stream: packs, then their index fragment
    put(archive_id, plaintext, TYPE_ARCHIVE)
    writer.flush()
    repo.check_lock()
    repo.put_archive_entry(dataclasses.replace(entry, id=archive_id))  # the new entry first...
    repo.soft_delete_entry(key)  # ...then the old one goes (reversibly)
