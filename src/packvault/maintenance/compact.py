"""``compact``: garbage collection without reference counts, and copy-forward of partly dead packs.

The steps, and why they are in this order (DESIGN "Compaction", principles 1, 4 and 5):

1. The caller holds the exclusive lock.  The packs are listed once, now: this listing is what every
   decision below is proven against (DESIGN: safety is proven where it is decided).
2. Proof that the index describes the packs that exist: an index entry naming a pack that is not listed
   (a lost pack, or old index fragments written back after an earlier compact) means some chunk's only
   readable copy may be in a pack the index does not point at, which a sweep would take for garbage.
   Compact then refuses before changing anything; ``check --repair`` re-indexes from the packs.
3. Mark: every archive's metadata and item stream is streamed, and each referenced id gets the USED flag
   in the index table itself; no second structure.  An archive that cannot be read completely (damaged,
   or recorded as damaged by an earlier repair) stops compact before anything is deleted: the data only
   it references cannot be told from garbage.  The user decides (salvage, then ``delete`` it).
4. Only now are soft-deleted archive entries purged, and the index epoch bumped *before* any change to the
   index or packs, so every client's cached index is invalid from then on.
5. Sweep, pack by pack: one pass over the index sums live bytes per pack (an array, one slot per pack).
   Packs younger than ``min_age`` are never touched.  Fully dead packs are dropped; packs at least
   ``threshold`` % dead, and undersized packs (merged together), have their live objects copied forward
   into new content-named packs (``copy_forward.py``: ``Store.defrag`` on a local repository, through memory
   on S3, where a server-side copy would have to be read back whole to be verified).  Every object of a new
   pack is verified (header, checksums, id and size in the expected order: the pack read back, or its bytes
   before they are stored) before the index points at it, so a damaged source object stops compact instead
   of replacing its original.
   Metadata packs are rewritten one source pack at a time and never merged with each other: one archive's
   metadata must not end up in the same object as every other archive's.
6. The new index (every surviving entry, repointed) is written as fresh fragments, *then* the old
   fragments are deleted, *then* the old packs.  A crash anywhere leaves either the old index over the
   old packs, or both indexes over both sets of packs (the merge rule picks one copy deterministically),
   or the new index over the new packs: always a repository that ``check`` passes.
7. With S3 Object Lock, a pack to be deleted whose retention has not run out is not deleted but reported
   as held until its date (``packs_held``): nothing references it any more (the new index does not), so
   the first compact after that date finds it unreferenced again and deletes it.  Not an error.
8. Cold data packs (GLACIER, DEEP_ARCHIVE) are never copied forward by default: that reads them.  With a
   restore asked for (``CompactOptions.restore``: ``compact --restore-tier``), the partly dead ones whose
   dead share reaches ``threshold`` (and that are past their class's minimum storage duration) are
   restored (``repository/restores.py``; one HEAD each, one RestoreObject each that is still cold) and,
   once readable, copied forward like any other pack, but through memory: their live objects are read
   from the restored copy, verified, and written as a new pack (in the data class: cold again), since a
   cold copy could not be read back to verify it.  Packs whose restore is not finished stay as they are
   and are reported (``packs_restore_pending``); the next compact with the same options copies them.
   With ``wait`` compact polls until they are readable, holding its exclusive lock meanwhile.
"""

from __future__ import annotations

import time
from array import array
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ..errors import IntegrityError
from ..repository.catalogue import ArchiveEntry
from ..repository.index import FLAG_USED, KIND_DATA, KIND_META, ChunkIndex, encode_index_fragments
from ..repository.reader import ChunkReader
from ..repository.repository import Repository
from .cold_compact import ColdRestore, restore_cold_packs
from .copy_forward import copy_forward
from .mark import REPAIR_HINT, mark, prove_index_matches_packs

UNDERSIZED_SHARE = 0.25  # a kept pack below this share of the target pack size is merged with others
DAY = 86400.0
# Minimum storage durations: an object deleted (or rewritten) earlier is charged for the rest of them anyway,
# so compact leaves data packs of these classes alone until they are that old (--cold-min-age overrides).
MIN_STORAGE_DAYS = {"GLACIER": 90, "DEEP_ARCHIVE": 180, "GLACIER_IR": 90}


@dataclass
class CompactReport:
    archives_purged: int = 0
    packs_total: int = 0
    packs_dropped: int = 0
    packs_rewritten: int = 0
    packs_merged: int = 0
    packs_created: int = 0
    packs_too_young: int = 0
    packs_cold_kept: int = 0  # partly dead data packs in a cold class: a copy-forward would retrieve them
    packs_restored: int = 0  # cold packs copied forward after their restore (``CompactOptions.restore``)
    packs_restore_pending: int = 0  # cold packs to copy forward whose restore is not finished
    bytes_restore_pending: int = 0
    bytes_before: int = 0
    bytes_after: int = 0
    bytes_freed: int = 0
    bytes_copied: int = 0
    live_bytes: int = 0
    chunks_live: int = 0
    chunks_dropped: int = 0
    dry_run: bool = False
    requests: dict = field(default_factory=dict)
    duration: float = 0.0
    packs_held: list[dict] = field(default_factory=list)  # {"pack", "until"}: retained by Object Lock
    retention: dict | None = None  # the Object Lock extension run after compact (retention_lock.py), if any

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class _PackPlan:
    kind: int
    name: str
    size: int
    live: int
    action: str  # keep | drop | rewrite | merge | young


def _live_per_pack(index: ChunkIndex) -> array:
    live = array("Q", bytes(8 * len(index.packs)))
    for _, entry in index.entries():
        if entry.flags & FLAG_USED:
            live[entry.pack] += entry.size
    return live


def list_all_packs(repo: Repository) -> dict[int, list]:
    """The packs of both kinds, from one listing of ``packs/`` (``Repository.list_packs_of_both_kinds``)."""
    return repo.list_packs_of_both_kinds()


def plan(
    repo: Repository,
    index: ChunkIndex,
    listed: dict[int, list],
    *,
    threshold: float,
    min_age: float,
    cold_min_age: float | None = None,
    max_unused: float = 0.0,
) -> list[_PackPlan]:
    """What to do with each pack.  ``cold_min_age``: data packs are in a cold class (``MIN_STORAGE_DAYS``):
    this is their min age, and they are only ever dropped whole, never copied forward (a copy reads them,
    which S3 refuses before a restore, or charges a retrieval for GLACIER_IR)."""
    live = _live_per_pack(index)
    now = time.time()
    undersized = repo.config.pack_size * UNDERSIZED_SHARE
    plans = []
    for kind in (KIND_DATA, KIND_META):
        for info in listed[kind]:
            no = index.packs.lookup(info.name)
            live_bytes = live[no] if no is not None else 0
            cold = cold_min_age is not None and kind == KIND_DATA
            pack_min_age = max(min_age, cold_min_age) if cold else min_age
            if info.mtime and now - info.mtime < pack_min_age:
                action = "young"
            elif live_bytes == 0:
                action = "drop"
            elif cold:
                action = "cold"
            elif (info.size - live_bytes) * 100.0 >= threshold * info.size:
                action = "rewrite"
            elif info.size < undersized and kind == KIND_DATA:
                action = "merge"  # metadata packs are never merged: see the module docstring
            else:
                action = "keep"
            plans.append(_PackPlan(kind, info.name, info.size, live_bytes, action))
    for kind in (KIND_DATA, KIND_META):  # merging a single small pack would only copy it
        merges = [p for p in plans if p.kind == kind and p.action == "merge"]
        if len(merges) == 1:
            merges[0].action = "keep"
    if max_unused > 0:
        _tolerate_unused(plans, max_unused)
    return plans


def _tolerate_unused(plans: list[_PackPlan], max_unused: float) -> None:
    """Keep partly dead packs as they are while the dead bytes left in the repository stay within
    ``max_unused`` % of what it holds after compact (restic's ``prune --max-unused``).

    Why: copying a pack forward reads its live part and writes it again (on S3 a range copy per pack, a
    verifying GET, a PUT), to free its dead part.  A few percent of dead bytes cost less to store than that
    traffic; the packs with the most dead bytes are rewritten first, and only as many as it takes."""
    kept = [p for p in plans if p.action != "drop"]
    dead = sum(p.size - p.live for p in kept)
    allowed = max_unused / 100.0 * sum(p.size for p in kept)
    for p in sorted((p for p in kept if p.action == "rewrite"), key=lambda p: p.size - p.live, reverse=True):
        if dead <= allowed:
            p.action = "keep"
        else:
            dead -= p.size - p.live


@dataclass(frozen=True)
class CompactOptions:
    threshold: float = 10.0  # rewrite a pack once at least this many percent of its bytes are dead
    max_unused: float = 0.0  # percent of the repository that may stay dead in partly used packs (0: none)
    min_age: float = 7200.0  # seconds: younger unreferenced packs may belong to a backup running now
    dry_run: bool = False
    cold_min_age: float | None = None  # seconds; None: the data packs' class's minimum storage duration
    restore: ColdRestore | None = None  # copy partly dead cold packs forward after restoring them (step 8)


def cold_min_age(repo: Repository, opts: CompactOptions) -> float | None:
    """The min age of data packs in a cold class (``plan``); None where they are not in one."""
    days = MIN_STORAGE_DAYS.get(repo.data_storage_class or "")
    if days is None:
        return None
    return opts.cold_min_age if opts.cold_min_age is not None else days * DAY


def compact(
    repo: Repository,
    opts: CompactOptions,
    *,
    live: Sequence[ArchiveEntry] | None = None,
    pruned: Sequence[ArchiveEntry] = (),
) -> CompactReport:
    """Run the steps of the module docstring under the caller's exclusive lock.

    ``live``, ``pruned``: ``prune --compact`` listed the archives strictly under this lock and decided which
    to prune; ``live`` is then what mark walks (no second listing), and ``pruned`` are purged with the
    soft-deleted entries (they were never renamed: compact would delete the renamed copy right away).
    A dry run purges nothing, so it shows what compact would free once ``pruned`` are gone."""
    threshold, min_age, dry_run = opts.threshold, opts.min_age, opts.dry_run
    started = time.monotonic()
    report = CompactReport(dry_run=dry_run)
    before_requests = repo.request_stats()
    with ThreadPoolExecutor(1, thread_name_prefix="packvault-list") as pool:
        # the packs are listed while the index loads (both under the caller's exclusive lock): their order
        # does not matter, their round trips overlap
        pack_listing = pool.submit(list_all_packs, repo)
        index = repo.index
        if repo.damaged_fragments:
            raise IntegrityError(
                f"index fragment {repo.damaged_fragments[0]} is damaged; compact changed nothing", hint=REPAIR_HINT
            )
        # The index was loaded under this exclusive lock, so index/ holds what it listed then (no writer since)
        old_fragments = repo.fragments_at_load if repo.fragments_at_load is not None else repo.list_fragments()
        listed = pack_listing.result()
    prove_index_matches_packs(index, listed)
    meta_packs = repo.meta_pack_cache()  # the archives' metadata, kept locally and authenticated on each read
    if meta_packs is not None:
        meta_packs.know_sizes(listed[KIND_META])  # which packs are small enough to fetch whole, in one GET
    with ChunkReader(repo, meta_packs=meta_packs) as reader:
        live_archives = mark(repo, reader, index, live)
    epoch = b""
    if not dry_run:
        report.archives_purged = repo.purge_deleted_archives(live_ids=live_archives, pruned=pruned)
        epoch = repo.bump_epoch()  # before any change to index or packs
        repo.invalidate_index_cache()
        repo.reset_index(index)
    plans = plan(
        repo, index, listed, threshold=threshold, min_age=min_age, cold_min_age=cold_min_age(repo, opts),
        max_unused=opts.max_unused,
    )
    if opts.restore is not None and not dry_run:
        restore_cold_packs(repo, plans, threshold, opts.restore, report)
    report.packs_total = len(plans)
    report.bytes_before = sum(p.size for p in plans)
    report.live_bytes = sum(p.live for p in plans)
    for p in plans:
        if p.action == "drop":
            report.packs_dropped += 1
        elif p.action == "rewrite":
            report.packs_rewritten += 1
        elif p.action == "merge":
            report.packs_merged += 1
        elif p.action == "young":
            report.packs_too_young += 1
        elif p.action == "cold":
            report.packs_cold_kept += 1
        elif p.action == "restoring":
            report.packs_restore_pending += 1
            report.bytes_restore_pending += p.size
    removed = {p.name for p in plans if p.action in ("drop", "rewrite", "merge")}
    if dry_run:
        copied = sum(p.live for p in plans if p.action in ("rewrite", "merge"))
        report.bytes_copied = copied
        report.bytes_freed = sum(p.size for p in plans if p.name in removed) - copied
        report.bytes_after = report.bytes_before - report.bytes_freed
        report.duration = time.monotonic() - started
        return report
    existing = {p.name for p in plans}
    created: set[str] = set()
    for kind in (KIND_DATA, KIND_META):
        sources = [p for p in plans if p.kind == kind and p.action in ("rewrite", "merge")]
        if sources:
            # a new pack can coincide with an old one (same content after a crashed run): keep it, then
            through_memory = repo.is_remote or (kind == KIND_DATA and repo.cold_data_packs)  # copy_forward.py
            created |= set(copy_forward(repo, index, kind, sources, report, existing, through_memory=through_memory))
    removed -= created
    # Entries that still point into removed packs are garbage (unused): drop them from the index.
    removed_numbers = {index.packs.lookup(name) for name in removed} - {None}
    dead_ids = bytearray()  # packed 32-byte ids: deleting while iterating the table is not allowed
    for chunk_id, entry in index.entries():
        if entry.pack in removed_numbers:
            if entry.flags & FLAG_USED:
                raise IntegrityError(f"internal error: live chunk {chunk_id.hex()} was not copied forward")
            dead_ids += chunk_id
    for pos in range(0, len(dead_ids), 32):
        del index.table[bytes(dead_ids[pos : pos + 32])]
    report.chunks_dropped = len(dead_ids) // 32
    del dead_ids
    # New index first, then the old fragments, then the old packs.
    new_fragments = [repo.write_fragment(fragment) for fragment in encode_index_fragments(index)]
    # listed above, under the exclusive lock: no existence check needed; all of them before any pack
    replaced = set(new_fragments)
    repo.check_lock()
    repo.discard_fragments([name for name in old_fragments if name not in replaced])
    locked = bool(repo.config is not None and repo.config.object_lock)
    now = datetime.now(UTC)
    doomed = []
    for p in plans:
        if p.name not in removed:
            continue
        until = repo.pack_retained_until(p.kind, p.name) if locked else None
        if until is not None and until > now:
            report.packs_held.append({"pack": p.name, "until": until.isoformat()})
            continue
        doomed.append((p.kind, p.name))
    repo.check_lock()
    repo.delete_packs(doomed)  # one request per 1000 packs where the store can (S3 DeleteObjects)
    if meta_packs is not None:
        meta_packs.forget(name for kind, name in doomed if kind == KIND_META)
    report.chunks_live = sum(1 for _, e in index.entries() if e.flags & FLAG_USED)
    for chunk_id, entry in index.entries():
        if entry.flags:
            index.table[chunk_id] = entry._replace(flags=0)
    repo.save_index_cache(index, epoch, sorted(new_fragments))  # the epoch it set (exclusive lock: still so)
    # What the listing had, less what was deleted, plus the copies written (a pack is its objects, no
    # header) that are not one of the listed packs already: no LIST of every pack again to know it.
    held = {h["pack"] for h in report.packs_held}
    kept = sum(p.size for p in plans if p.name not in removed or p.name in held)
    report.bytes_after = kept + report.bytes_copied - sum(p.size for p in plans if p.name in created)
    report.bytes_freed = report.bytes_before - report.bytes_after
    after = repo.request_stats()
    report.requests = {k: after.get(k, 0) - before_requests.get(k, 0) for k in after}
    report.duration = time.monotonic() - started
    return report

